"""Tests for gristmill.engine.preflight: what would fail only on the cluster fails first."""

from __future__ import annotations

from pathlib import Path

import pytest
from gm_testing import fixtures_importable

from gristmill.engine.preflight import MAX_ARG_WORD, arg_max, preflight
from gristmill.engine.runner import run_workflow
from gristmill.errors import TaskArgumentError


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    fixtures_importable(monkeypatch)
    import gm_limits

    return gm_limits


def test_an_argument_longer_than_one_argv_word_is_refused_before_anything_is_written(
    limits, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    wf = limits.pairs(lefts=["a", "b" * (MAX_ARG_WORD + 1), "c"])
    with pytest.raises(TaskArgumentError, match=r"task 'pair': argument 'left' = 'bbbb.*is "
                       r"131,073 bytes, more than one command-line word"):
        run_workflow(wf, run_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    preflight(limits.pairs(lefts=["a", "é" * (MAX_ARG_WORD // 2)]))  # 2 bytes each: fits
    with pytest.raises(TaskArgumentError, match="argument 'right'"):
        preflight(limits.pairs(lefts=["a"], right="é" * (MAX_ARG_WORD // 2 + 1)))


def test_a_command_longer_than_the_system_takes_is_refused_naming_the_node(
    limits, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    word = "x" * (MAX_ARG_WORD - 10)
    budget = arg_max()
    monkeypatch.setenv("GM_FILL", "y" * max(0, budget - MAX_ARG_WORD - 100))  # ~128 KiB left
    assert arg_max() < 2 * len(word)
    preflight(limits.pairs(lefts=[word, "a"]))  # one long argument still fits
    with pytest.raises(TaskArgumentError, match=r"command of its node 1 would be .* argument "
                       r"'(left|right)' is the largest part"):
        preflight(limits.pairs(lefts=["a", word[:-100]], right=word[: MAX_ARG_WORD // 2]))
