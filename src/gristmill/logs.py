"""Logging configured in one place: which sink, which level for ``-v``, gristmill enabled.

The package itself only logs (``logger.disable("gristmill")`` in ``gristmill/__init__``
keeps a library user's output clean); the programs gristmill runs configure it here:
the ``gristmill`` CLI, every task's command (``-v/--verbose``), and the jobmon driver.
"""

from __future__ import annotations

import sys
from typing import Any

from loguru import logger

#: ``-v`` counted: nothing, ``-v``, ``-vv``.
LEVELS = ("WARNING", "INFO", "DEBUG")
#: loguru's own default line, for task logs that people read beside tracebacks.
TASK_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "<cyan>{name}</cyan>:<cyan>{function}</cyan>:<cyan>{line}</cyan> - <level>{message}</level>"
)
#: The CLI's terse line: what happened, not where in gristmill.
CLI_FORMAT = "<level>{level: <7}</level> {message}"


def level_for(verbose: int) -> str:
    """The level a ``-v`` count selects (clamped to the known levels)."""
    return LEVELS[min(max(verbose, 0), len(LEVELS) - 1)]


#: The sink set up last: (handler id, sink, level, format).
_configured: tuple[int, Any, str, str] | None = None


def configure_logging(verbose: int = 0, *, sink: Any = None, fmt: str = TASK_FORMAT) -> None:
    """Replace every sink with one on ``sink`` (stderr) at the ``-v`` level; enable gristmill.

    gristmill's own records are enabled too: the traceback of a failing task is
    logged by gristmill and must reach the attempt's log even without ``-v``.

    A call that would set up what is set up already (the same sink, level and format, no
    other sink added since) keeps it: a node forked from a warm interpreter (``launch:
    fork``) inherits its setup, where loguru's ``add`` would cost it ~5 ms.
    """
    global _configured
    target = sys.stderr if sink is None else sink
    level = level_for(verbose)
    handlers = getattr(getattr(logger, "_core", None), "handlers", None)
    if (_configured is not None and _configured[1:] == (target, level, fmt)
            and handlers is not None and list(handlers) == [_configured[0]]):
        logger.enable("gristmill")
        return
    logger.remove()
    handler = logger.add(target, level=level, format=fmt, backtrace=False, diagnose=False)
    _configured = (handler, target, level, fmt)
    logger.enable("gristmill")
