"""Run directories and their links, as covid_shared's ``cli_tools`` named them (gm.runs).

Differences that matter when moving over: ``make_run_directory`` points ``latest`` at
the new run as soon as it exists (covid_shared moved it when the run succeeded), and
``setup_directory_structure`` no longer makes ``best``/``latest`` as empty
directories: they are symbolic links, made when first needed.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from gristmill import runs


def setup_directory_structure(
    output_root: str | os.PathLike[str], with_production: bool = False
) -> None:
    """Create the output root (and its ``production-runs`` directory when asked)."""
    runs.setup_directory_structure(output_root, with_production=with_production)


def make_run_directory(output_root: str | os.PathLike[str]) -> Path:
    """Create ``output_root/YYYY_MM_DD.VV`` with the next free number and return it."""
    return runs.make_run_directory(output_root)


def mark_best(run_directory: str | os.PathLike[str]) -> None:
    runs.mark_best(run_directory)


def mark_latest(run_directory: str | os.PathLike[str]) -> None:
    runs.mark_latest(run_directory)


def mark_production(run_directory: str | os.PathLike[str], date: str | None = None) -> None:
    """Add ``production-runs/<date>``; ``date`` is ``YYYY_MM_DD`` (today when not given).

    Raises ``ValueError`` for another format, as covid_shared did.
    """
    if date is None:
        date = datetime.date.today().strftime("%Y_%m_%d")
    else:
        try:
            datetime.datetime.strptime(date, "%Y_%m_%d")
        except ValueError:
            raise ValueError(
                f"production tag {date!r} is not a date in the format YYYY_MM_DD"
            ) from None
    runs.mark_production(run_directory, date)


def get_last_stage_directory(
    last_stage_version: str | os.PathLike[str],
    last_stage_directory: str | os.PathLike[str] | None = None,
    last_stage_root: str | os.PathLike[str] | None = None,
) -> Path:
    """The directory of a previous stage's run: an absolute path, or a version under a root."""
    version = last_stage_directory if last_stage_directory is not None else last_stage_version
    return runs.get_last_stage_directory(version, last_stage_root)
