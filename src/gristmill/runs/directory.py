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
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from loguru import logger

from gristmill.errors import RunDirError
from gristmill.runs.metadata import (
    PathLike,
)
from gristmill.users import user_name

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

    The number is one past the highest one of that day that was ever made here: the
    directories there now, the run ``latest`` names (even when it is gone) and the last
    run this function made, recorded in the root's lock file. So a run that was deleted
    or moved away never gives its number to a new run: an engine may still be running it
    elsewhere, and its results, logs and messages name that number. Creation is a plain
    ``mkdir`` retried on collision, so concurrent callers always get distinct directories,
    and a new run never lands in an existing one. With ``mark_latest=False``
    ``latest`` stays where it is: covid_shared applications move it only once they
    succeed, because the next stage reads ``latest`` as finished output.
    """
    root_path = _ensure_root(Path(root).absolute())
    if mark_latest:
        _check_link_place(root_path / LATEST_LINK)  # refuse before a numbered directory exists
    day = (date or datetime.date.today()).strftime("%Y_%m_%d")
    names: list[str | None] = [p.name for p in _iterdir(root_path)]
    names += [_read_link(root_path / LATEST_LINK), _read_record(root_path)]
    number = max((n for d, n in map(_parse_run_name, names) if d == day), default=0) + 1
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
        with _root_lock(root_path) as record:
            # A concurrent caller may already have made a later run of the same day: keep
            # it latest.
            current = _parse_run_name(_read_link(root_path / LATEST_LINK))
            if not (current[0] == day and current[1] > number):
                _replace_link(root_path / LATEST_LINK, run_dir)
            if record is not None:
                _write_record(record, run_dir.name)
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


def check_writable(run_dir: Path, names: Iterable[str]) -> None:
    """Refuse to continue a run in a directory this user cannot write, before anything starts.

    An engine writes the directory, the files ``names`` (those that exist) and the task
    directories under ``logs``; another user's run, a read-only mount or a ``chmod a-w``
    copy can still be read (``gristmill status``), but not continued. The message names
    what is not writable, who owns it and what to do, rather than letting SQLite or the
    lock report a write that failed.
    """
    paths = [run_dir, *(run_dir / name for name in names)]
    with contextlib.suppress(OSError):
        paths += sorted(p for p in (run_dir / "logs").iterdir() if p.is_dir())
    effective = os.access in os.supports_effective_ids
    for path in paths:
        if not os.path.lexists(path) or os.access(path, os.W_OK, effective_ids=effective):
            continue
        try:
            info = os.stat(path)
            read_only = hasattr(os, "statvfs") and bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except OSError:
            continue  # gone meanwhile: nothing to say about it
        owner = user_name(info.st_uid)
        copy = (f"copy it to storage you can write (cp -a {run_dir} NEW_PATH) and continue the "
                "copy: gristmill resume NEW_PATH")
        if read_only:
            raise RunDirError(
                f"the run directory {run_dir} (owned by {owner}) is on a read-only file system, "
                f"so the run cannot continue there; nothing was changed; {copy}"
            )
        what = "it" if path == run_dir else f"{path}"
        raise RunDirError(
            f"the run directory {run_dir} is not writable by you ({user_name(os.geteuid())}): "
            f"{what} belongs to {owner} (mode {stat.filemode(info.st_mode)}); nothing was "
            f"changed; continue it as {owner}, or {copy}"
        )


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


def _read_record(root: Path) -> str | None:
    """The last run :func:`make_run_directory` made under ``root`` (the lock file's text)."""
    try:
        return (root / _LOCK_FILE).read_text(errors="replace").strip() or None
    except OSError:
        return None


def _write_record(fd: int, name: str) -> None:
    """Record ``name`` as the last run made, unless a later one is recorded already."""
    try:
        recorded = os.pread(fd, 256, 0).decode(errors="replace").strip()
        if _parse_run_name(recorded) >= _parse_run_name(name):
            return
        data = f"{name}\n".encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError as exc:  # the numbers still come from the directories and latest
        logger.debug("cannot record {} in {}: {}", name, _LOCK_FILE, exc)


@contextlib.contextmanager
def _root_lock(root: Path) -> Iterator[int | None]:
    """Serialise moves of ``latest`` between processes; best effort where flock is missing.

    Yields the lock file's descriptor (None without one), in which the last run made is
    recorded.
    """
    if sys.platform == "win32":
        yield None
        return
    import fcntl

    try:
        fd = os.open(root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        logger.debug("no lock file in {}: {}", root, exc)
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. ENOLCK on some NFS mounts
            logger.debug("cannot lock {}: {}", root / _LOCK_FILE, exc)
        yield fd
    finally:
        os.close(fd)
