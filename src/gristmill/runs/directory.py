"""Run directories numbered per day, their latest/best/production links, and run metadata.

Layout under a root (covid_shared's, so existing trees keep working)::

    ROOT/
      2026_11_29.01/                      one run; run_metadata.yaml inside
      2026_11_29.02/
      latest -> 2026_11_29.02             moved by make_run_directory / mark_latest
      best -> 2026_11_29.01               moved by mark_best
      production-runs/
        2026_11_29 -> ../2026_11_29.01    added by mark_production (the tag is the name)

Links are relative, so a root can be moved or mounted elsewhere, and each is
moved atomically (a temporary link renamed over the old one): a reader never
finds ``latest`` missing.

Each run's ``run_metadata.yaml`` is written by :class:`gristmill.runs.metadata.RunMetadata`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

from loguru import logger

from gristmill.errors import RunDirError
from gristmill.runs.metadata import (
    PathLike,
)

LATEST_LINK = "latest"
BEST_LINK = "best"
PRODUCTION_DIR = "production-runs"

_LOCK_FILE = ".gristmill-runs.lock"
_RUN_NAME_RE = re.compile(r"^(\d{4}_\d{2}_\d{2})\.(\d{2,})$")


def setup_directory_structure(root: PathLike, *, with_production: bool = False) -> None:
    """Create ``root`` (and ``root/production-runs`` when asked), as covid_shared did."""
    root_path = _ensure_root(Path(root))
    if with_production:
        _mkdir(root_path / PRODUCTION_DIR, exist_ok=True)


def make_run_directory(
    root: PathLike, *, date: datetime.date | None = None, mark_latest: bool = True
) -> Path:
    """Create ``root/YYYY_MM_DD.NN`` with the next number for that day and point ``latest`` at it.

    The number is one past the highest existing one (a deleted run's number is
    never reused). Creation is a plain ``mkdir`` retried on collision, so
    concurrent callers always get distinct directories. With ``mark_latest=False``
    ``latest`` stays where it is: covid_shared applications move it only once they
    succeed, because the next stage reads ``latest`` as finished output.
    """
    root_path = _ensure_root(Path(root).absolute())
    if mark_latest:
        _check_link_place(root_path / LATEST_LINK)  # refuse before a numbered directory exists
    day = (date or datetime.date.today()).strftime("%Y_%m_%d")
    numbers = [n for d, n in (_parse_run_name(p.name) for p in _iterdir(root_path)) if d == day]
    number = max(numbers, default=0) + 1
    while True:
        run_dir = root_path / f"{day}.{number:02d}"
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            number += 1
        except OSError as exc:
            raise RunDirError(
                f"cannot create run directory {run_dir}: {exc.strerror}; "
                "choose a root you can write to or fix its permissions"
            ) from exc
    if not mark_latest:
        logger.info("created run directory {}", run_dir)
        return run_dir
    try:
        with _root_lock(root_path):
            # A concurrent caller may already have made a later run of the same day: keep
            # it latest.
            current = _parse_run_name(_read_link(root_path / LATEST_LINK))
            if not (current[0] == day and current[1] > number):
                _replace_link(root_path / LATEST_LINK, run_dir)
    except BaseException:
        with contextlib.suppress(OSError):  # a refused run leaves no empty directory behind
            run_dir.rmdir()
        raise
    logger.info("created run directory {}", run_dir)
    return run_dir


def list_runs(root: PathLike) -> list[Path]:
    """Every ``YYYY_MM_DD.NN`` directory under ``root``, oldest first."""
    runs = [(_parse_run_name(p.name), p) for p in _iterdir(Path(root)) if p.is_dir()]
    return [p for key, p in sorted(runs) if key[0]]


def latest_run(root: PathLike) -> Path | None:
    """The run ``root/latest`` points at, resolved; None when there is no (live) link."""
    link = Path(root) / LATEST_LINK
    if not link.is_symlink():
        return None
    target = link.resolve()
    if not target.is_dir():
        logger.warning("{} points at {}, which does not exist", link, target)
        return None
    return target


def get_last_stage_directory(version: PathLike, root: PathLike | None = None) -> Path:
    """Resolve a run given as an absolute path, or a name (``latest``, ``best``, ``2026_11_29.01``,
    ``production-runs/TAG``) under ``root``, to its real directory."""
    path = Path(version)
    if not path.is_absolute():
        if root is None:
            raise RunDirError(
                f"run version {str(version)!r} is relative and no root was given; "
                "pass an absolute path or the root the version lives under"
            )
        path = Path(root) / path
    if not path.is_dir():
        raise RunDirError(f"run directory {path} does not exist; check the version and root")
    return path.resolve()


def mark_latest(run_dir: PathLike) -> Path:
    """Point ``latest`` in the run's parent at ``run_dir``; returns the link."""
    run = _existing_run(run_dir)
    return _replace_link(run.parent / LATEST_LINK, run)


def mark_best(run_dir: PathLike) -> Path:
    """Point ``best`` in the run's parent at ``run_dir``; returns the link."""
    run = _existing_run(run_dir)
    return _replace_link(run.parent / BEST_LINK, run)


def mark_production(run_dir: PathLike, tag: str) -> Path:
    """Add ``production-runs/<tag>`` in the run's parent pointing at ``run_dir``; returns the link.

    covid_shared required the tag to be a date (``YYYY_MM_DD``); any single
    path component is accepted here. Re-using a tag moves it.
    """
    bad = not tag or tag in (".", "..") or "\0" in tag
    if bad or any(sep in tag for sep in (os.sep, os.altsep or os.sep, "/")):
        raise RunDirError(
            f'production tag {tag!r} is not a single name; use e.g. "2026_11_29" '
            "(no slashes, not empty, not '.' or '..')"
        )
    run = _existing_run(run_dir)
    production = run.parent / PRODUCTION_DIR
    _mkdir(production, exist_ok=True)
    return _replace_link(production / tag, run)


def replace_link(link: PathLike, target: PathLike) -> Path:
    """Point ``link`` at the directory ``target`` (relative, atomic), wherever the link lives.

    What ``mark_latest`` and ``mark_best`` do inside a run's parent, for a link elsewhere
    (covid_shared's ``mark_explicit`` takes the version root separately). An empty
    directory in the link's place is replaced; a file or a non-empty directory is refused.
    """
    return _replace_link(Path(link).absolute(), _existing_run(target))


def _ensure_root(root: Path) -> Path:
    if root.exists() and not root.is_dir():
        raise RunDirError(
            f"run root {root} is a file, not a directory; pass a directory path or move the file"
        )
    _mkdir(root, exist_ok=True, parents=True)
    if not os.access(root, os.W_OK | os.X_OK):
        raise RunDirError(
            f"run root {root} is not writable; choose another root or fix its permissions"
        )
    return root


def _mkdir(path: Path, *, exist_ok: bool = False, parents: bool = False) -> None:
    try:
        path.mkdir(parents=parents, exist_ok=exist_ok)
    except OSError as exc:
        raise RunDirError(
            f"cannot create directory {path}: {exc.strerror or exc}; "
            "choose a path you can write to (its parents must be directories)"
        ) from exc


def _iterdir(root: Path) -> list[Path]:
    try:
        return list(root.iterdir())
    except OSError as exc:
        raise RunDirError(f"cannot list run root {root}: {exc.strerror}; check the path") from exc


def _parse_run_name(name: str | None) -> tuple[str, int]:
    """``("2026_11_29", 1)`` for ``"2026_11_29.01"``; ``("", 0)`` for anything else."""
    match = _RUN_NAME_RE.match(name or "")
    return (match.group(1), int(match.group(2))) if match else ("", 0)


def _read_link(link: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return None


def _existing_run(run_dir: PathLike) -> Path:
    # Resolved so that marking ``root/latest`` links the run itself, not the moving link.
    run = Path(run_dir).resolve()
    if not run.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist; pass an existing run")
    return run


def _check_link_place(link: Path) -> None:
    """Refuse a ``link`` that is a file, or a directory with something in it."""
    if link.is_symlink() or not link.exists():
        return
    if not link.is_dir():
        raise RunDirError(f"{link} is a file, not a link; move it away so it can be a link")
    if any(link.iterdir()):
        raise RunDirError(
            f"{link} is a real directory, not a link; move it away so it can be a link"
        )


def _replace_link(link: Path, target: Path) -> Path:
    """Atomically make ``link`` a relative symlink to ``target``."""
    if link.exists() and not link.is_symlink():
        if not link.is_dir():
            raise RunDirError(f"{link} is a file, not a link; move it away so it can be a link")
        try:  # covid_shared's setup made empty placeholder directories here
            link.rmdir()
        except OSError as exc:
            raise RunDirError(
                f"{link} is a real directory, not a link; move it away so it can be a link"
            ) from exc
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        os.symlink(os.path.relpath(target, link.parent), tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise RunDirError(
            f"cannot point {link} at {target}: {exc.strerror}; check permissions on {link.parent}"
        ) from exc
    return link


@contextlib.contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    """Serialise moves of ``latest`` between processes; best effort where flock is missing."""
    if sys.platform == "win32":
        yield
        return
    import fcntl

    try:
        fd = os.open(root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        logger.debug("no lock file in {}: {}", root, exc)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. ENOLCK on some NFS mounts
            logger.debug("cannot lock {}: {}", root / _LOCK_FILE, exc)
        yield
    finally:
        os.close(fd)
