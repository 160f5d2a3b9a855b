"""parallel.run_parallel: in order, in this process for one core, on pathos processes for more."""

from __future__ import annotations

import os

import pytest

from gristmill.compat.covid_shared import parallel


def test_one_core_runs_here_and_more_run_in_other_processes() -> None:
    here = os.getpid()
    assert parallel.run_parallel(lambda x: (x * x, os.getpid()), [1, 2, 3], 1) == [
        (1, here), (4, here), (9, here)]
    results = parallel.run_parallel(lambda x: (x * x, os.getpid()), list(range(6)), 2,
                                    progress_bar=True)
    assert [r for r, _ in results] == [0, 1, 4, 9, 16, 25]  # a lambda: pathos pickles with dill
    assert here not in {pid for _, pid in results}


def test_bad_core_counts_are_refused() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_cores must be a whole number"):
            parallel.run_parallel(str, [1], bad)  # type: ignore[arg-type]
    assert not parallel.is_notebook()
