"""Run directories and their links, as covid_shared's ``cli_tools`` named them (gm.runs).

As in covid_shared, ``make_run_directory`` leaves ``latest`` alone: ``make_links`` moves
``latest`` (and ``best``, a production tag) only once the application succeeded, since
the next stage reads ``latest`` as finished output. Links are relative and replaced
atomically (covid_shared removed the old link, then made an absolute one), so a reader
never finds ``latest`` missing and a root can be moved. ``setup_directory_structure`` no
longer makes ``best``/``latest`` as empty directories: they are links, made when first
needed (an empty directory left there by covid_shared is replaced).
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path
from typing import Union

from loguru import logger

from gristmill import runs
from gristmill.compat.covid_shared import paths
from gristmill.compat.covid_shared.cli_tools.metadata import Metadata

PathLike = Union[str, "os.PathLike[str]"]
_DATE_FORMAT = "%Y_%m_%d"


def setup_directory_structure(output_root: PathLike, with_production: bool = False) -> None:
    """Create the output root (and its ``production-runs`` directory when asked)."""
    runs.setup_directory_structure(output_root, with_production=with_production)


def make_run_directory(output_root: PathLike) -> Path:
    """Create ``output_root/YYYY_MM_DD.VV`` with the next free number and return it.

    ``latest`` does not move here; :func:`make_links` moves it when the run succeeded.
    """
    return runs.make_run_directory(Path(output_root).resolve(), mark_latest=False)


def get_run_directory(output_root: PathLike) -> Path:
    """The path :func:`make_run_directory` would create now (nothing is created)."""
    root = Path(output_root).resolve()
    today = datetime.date.today().strftime(_DATE_FORMAT)
    pattern = re.compile(rf"^{today}\.(\d+)$")
    numbers = [int(m.group(1)) for m in map(pattern.match, os.listdir(root)) if m]
    return root / f"{today}.{max(numbers, default=0) + 1:02d}"


def make_links(
    app_metadata: Metadata,
    run_directory: PathLike,
    mark_as_best: bool,
    production_tag: str | None,
    quick: int | None = None,
) -> None:
    """After a successful, complete run: move ``latest``, and ``best``/production when asked.

    As in covid_shared a production tag is only applied together with ``mark_as_best``,
    and a tag that is not a ``YYYY_MM_DD`` date is reported and skipped.
    """
    if not app_metadata["success"] or quick:
        return
    mark_latest(run_directory)
    if mark_as_best:
        mark_best(run_directory)
    if production_tag and not mark_as_best:
        logger.warning("production tag {!r} ignored: a run is tagged for production only "
                       "together with --mark-best", production_tag)
    elif production_tag:
        try:
            mark_production(run_directory, production_tag)
        except ValueError as exc:
            logger.warning("{}; the run was not marked for production", exc)


def mark_best(run_directory: PathLike) -> None:
    """Point ``best`` in the run's parent at it."""
    run_directory = Path(run_directory).resolve()
    mark_best_explicit(run_directory, run_directory.parent)


def mark_latest(run_directory: PathLike) -> None:
    """Point ``latest`` in the run's parent at it."""
    run_directory = Path(run_directory).resolve()
    mark_latest_explicit(run_directory, run_directory.parent)


def mark_production(run_directory: PathLike, date: str | None = None) -> None:
    """Add ``production-runs/<date>``; ``date`` is ``YYYY_MM_DD`` (today when not given).

    Raises ``ValueError`` for another format, as covid_shared did.
    """
    run_directory = Path(run_directory).resolve()
    mark_production_explicit(run_directory, run_directory.parent / paths.PRODUCTION_RUN, date)


def mark_production_explicit(
    run_directory: PathLike, version_root: PathLike, date: str | None = None
) -> None:
    """Add ``version_root/<date>`` pointing at the run; ``date`` must be ``YYYY_MM_DD``."""
    if date is None:
        date = datetime.date.today().strftime(_DATE_FORMAT)
    else:
        try:
            datetime.datetime.strptime(date, _DATE_FORMAT)
        except (TypeError, ValueError):
            raise ValueError(
                f"production tag {date!r} is not a date in the format YYYY_MM_DD"
            ) from None
    Path(version_root).mkdir(parents=True, exist_ok=True)
    mark_explicit(run_directory, version_root, date)


def mark_best_explicit(run_directory: PathLike, version_root: PathLike) -> None:
    """Point ``version_root/best`` at the run."""
    mark_explicit(run_directory, version_root, paths.BEST_LINK)


def mark_latest_explicit(run_directory: PathLike, version_root: PathLike) -> None:
    """Point ``version_root/latest`` at the run."""
    mark_explicit(run_directory, version_root, paths.LATEST_LINK)


def mark_explicit(run_directory: PathLike, version_root: PathLike, link_name: PathLike) -> None:
    """Make or move the link ``version_root/link_name`` to the run."""
    move_link(Path(version_root).resolve() / link_name, Path(run_directory).resolve())


def move_link(symlink_file: PathLike, link_target: PathLike) -> None:
    """Point ``symlink_file`` at ``link_target``, replacing a link or an empty directory.

    A file in its place is a ``ValueError``, as in covid_shared; so is a directory with
    something in it (covid_shared failed there with an ``OSError``).
    """
    link = Path(symlink_file)
    if not link.is_symlink() and link.exists():
        if not link.is_dir():
            raise ValueError(f"{link} is not a symlink or a directory; move it away")
        if any(link.iterdir()):
            raise ValueError(f"{link} is a directory with files in it, not a link; move it away")
    runs.replace_link(link, link_target)


def get_current_previous_version(
    current_run_directory: Path,
    previous_run_directory: Path | None = None,
    resolved_name: bool = True,
) -> tuple[str, str]:
    """The names of a run and of the one before it (the newest run of an earlier day).

    ``resolved_name`` gives the current run's real name when ``current_run_directory`` is a
    link such as ``latest``; otherwise the name as given.
    """
    current = Path(current_run_directory)
    resolved = current.resolve().name
    if previous_run_directory is not None:
        previous = Path(previous_run_directory).name
    else:
        day = resolved.split(".")[0]
        earlier = sorted(
            p.name for p in current.parent.iterdir() if re.match(r"^\d{4}", p.name) and day > p.name
        )
        if not earlier:
            raise ValueError(
                f"no run of a day before {day} in {current.parent}; pass "
                "previous_run_directory explicitly"
            )
        previous = earlier[-1]
    return (resolved if resolved_name else current.name), previous


def get_last_stage_directory(
    last_stage_version: PathLike,
    last_stage_directory: PathLike | None = None,
    last_stage_root: PathLike | None = None,
) -> Path:
    """The directory of a previous stage's run: an absolute path, or a version under a root."""
    version = last_stage_directory if last_stage_directory is not None else last_stage_version
    return runs.get_last_stage_directory(version, last_stage_root)
