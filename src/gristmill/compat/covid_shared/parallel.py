"""``covid_shared.parallel``: map a one-argument function over a list on local processes.

For work inside one task (gristmill schedules the tasks themselves). ``num_cores=1``
runs in this process, which keeps a debugger usable. More cores use pathos's pool,
which pickles with dill, so lambdas and closures work as runners; in a notebook,
``notebook_fallback`` uses the standard library's pool instead. tqdm draws the
progress bar. Both come with ``pip install 'gristmill[covid-shared]'``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

from gristmill.compat.covid_shared.extra import require

#: A loader of covid_shared's pipelines: (key, index, ...) -> DataFrame (for annotations only).
Loader = Callable[..., Any]


def is_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (a notebook or qtconsole)."""
    try:
        shell = get_ipython().__class__.__name__  # type: ignore[name-defined]
    except NameError:
        return False
    return bool(shell == "ZMQInteractiveShell")


def run_parallel(
    runner: Callable[[Any], Any],
    arg_list: Sequence[Any],
    num_cores: int,
    progress_bar: bool = False,
    notebook_fallback: bool = False,
) -> list[Any]:
    """``[runner(arg) for arg in arg_list]``, on up to ``num_cores`` processes, in order."""
    if isinstance(num_cores, bool) or not isinstance(num_cores, int) or num_cores < 1:
        raise ValueError(f"run_parallel: num_cores must be a whole number >= 1, got {num_cores!r}")
    tqdm = require("tqdm", "run_parallel").tqdm
    if num_cores == 1:
        return [runner(arg) for arg in tqdm(arg_list, disable=not progress_bar)]
    if is_notebook() and notebook_fallback:
        pool = multiprocessing.Pool(num_cores)
    else:
        pool = require("pathos.multiprocessing", "run_parallel").ProcessPool(num_cores)
    try:
        return list(tqdm(pool.imap(runner, arg_list), total=len(arg_list),
                         disable=not progress_bar))
    finally:
        pool.close()
        pool.join()
        clear = getattr(pool, "clear", None)  # pathos keeps a pool per size unless cleared
        if clear is not None:
            clear()
