"""``configure_logging_to_terminal`` and friends: loguru set up from ``-v`` as covid_shared did."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO, Union

from loguru import logger

from gristmill.compat.covid_shared import paths

#: A level below DEBUG, for ``-vvv`` (covid_shared logged jobmon's internals there).
TRACE_LEVEL = "TRACE"
#: covid_shared's number for that level (loguru's TRACE is 5).
JOBMON_LOGGING_LEVEL = 5
DEFAULT_LOG_MESSAGING_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | "
    "<cyan>{name}</cyan>:<cyan>{function}</cyan>:<cyan>{line}</cyan> "
    "- <level>{message}</level> - {extra}"
)
#: verbosity -> (level, format); a higher verbosity uses the last entry.
LOG_FORMATS: dict[int, tuple[str, str]] = {
    0: ("WARNING", DEFAULT_LOG_MESSAGING_FORMAT),
    1: ("INFO", DEFAULT_LOG_MESSAGING_FORMAT),
    2: ("DEBUG", DEFAULT_LOG_MESSAGING_FORMAT),
    3: (TRACE_LEVEL, DEFAULT_LOG_MESSAGING_FORMAT),
}
LOG_DIR = paths.LOG_DIR
LOG_FILE_NAME = paths.LOG_FILE_NAME
DETAILED_LOG_FILE_NAME = paths.DETAILED_LOG_FILE_NAME

Sink = Union[TextIO, "os.PathLike[str]", str]


def _level_and_format(verbose: int) -> tuple[str, str]:
    return LOG_FORMATS.get(max(verbose, 0), LOG_FORMATS[max(LOG_FORMATS)])


def add_logging_sink(
    sink: Sink, verbose: int, colorize: bool | None = None, serialize: bool = False
) -> None:
    """Add a loguru sink at the level ``verbose`` selects."""
    level, message_format = _level_and_format(verbose)
    target = Path(sink) if isinstance(sink, (str, os.PathLike)) else sink
    logger.add(
        target, colorize=colorize, level=level, format=message_format, serialize=serialize
    )


def configure_logging_to_terminal(verbose: int) -> None:
    """Log to stdout at WARNING, INFO (``-v``), DEBUG (``-vv``) or TRACE (``-vvv``).

    Every earlier sink is removed (covid_shared removed only loguru's first one, and
    failed if that was already gone); gristmill's own records are enabled, so the
    engine's progress shows with ``-v``. Colours only when stdout is a terminal.
    """
    logger.remove()
    logger.enable("gristmill")
    add_logging_sink(sys.stdout, verbose)


def configure_logging_to_files(output_path: str | os.PathLike[str]) -> None:
    """Also log everything (TRACE and up) to ``output_path/logs/master_log.txt`` and, one JSON
    record a line, ``master_log.json`` (covid_shared's names, which its tools look for)."""
    log_dir = Path(output_path) / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    top = max(LOG_FORMATS)
    add_logging_sink(log_dir / DETAILED_LOG_FILE_NAME, verbose=top, serialize=True)
    add_logging_sink(log_dir / LOG_FILE_NAME, verbose=top)
