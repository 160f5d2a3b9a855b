"""Refusing a run store that cannot be trusted, and saying why a write to one failed.

A store is checked read-only before anything writes to it: empty, not a gristmill
store, from a newer gristmill, or corrupt (``PRAGMA quick_check``) — each refused with
a message saying what to do, the file left byte-for-byte as it was. A failed write is
explained by trying one next to the store (SQLite only says "I/O error").
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import urllib.parse
from pathlib import Path

from gristmill.errors import StoreError
from gristmill.store.lock import is_locked
from gristmill.store.schema import SCHEMA_VERSION
from gristmill.users import user_name

#: SQLite result codes of a reader that can neither make nor use the ``-shm`` index beside
#: a WAL store (the directory is not writable by it): SQLITE_CANTOPEN (primary code), and
#: SQLITE_READONLY_CANTINIT and SQLITE_READONLY_DIRECTORY (extended codes).
_CANTOPEN = 14
_READONLY_NO_INDEX = (1288, 1544)


def check_store(path: Path, full: bool = True, *, immutable: bool = False) -> None:
    """Refuse a store that is corrupt, not a gristmill store, or from a newer gristmill.

    ``immutable`` reads a store whose write-ahead log is empty without making the
    ``-wal`` and ``-shm`` files a read-only connection otherwise leaves beside it.
    """
    unreadable = [p for p in (path, path.with_name(path.name + "-wal"))
                  if p.exists() and not os.access(p, os.R_OK)]
    if unreadable:
        raise StoreError(f"cannot read the run store {path}: {not_readable(unreadable[0])}")
    conn = open_readonly(path, immutable=immutable)
    conn.execute("PRAGMA busy_timeout=30000")
    try:
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                wal = path.with_name(path.name + "-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    raise StoreError(
                        f"cannot read the run store {path}: its content is in its "
                        f"write-ahead log {wal}, which SQLite could not use "
                        f"({diagnose(path)}); nothing was changed; fix the storage (or "
                        "copy the run directory elsewhere) and try again"
                    )
                raise StoreError(
                    f"the run store {path} is empty (an engine stopped while creating it, "
                    "before any task could run, or the file was truncated); it was left "
                    "untouched; delete it and start the run again"
                )
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row is not None else None
            if version is None or version > SCHEMA_VERSION:
                checked = None
            else:
                checked = conn.execute("PRAGMA quick_check").fetchone()[0] if full else "ok"
        except sqlite3.DatabaseError as exc:
            if cannot_open(exc):
                raise StoreError(
                    f"cannot open the run store {path}: {exc} ({diagnose(path)}); it "
                    "was left untouched"
                ) from None
            raise corrupt(path, exc) from None
        except ValueError as exc:
            raise corrupt(path, exc) from None
    finally:
        conn.close()
    if version is None:
        raise StoreError(
            f"the run store {path} has no schema version, so it is not a gristmill store; "
            "it was left untouched"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the run store {path} has schema version {version}, newer than this gristmill "
            f"understands ({SCHEMA_VERSION}); upgrade gristmill to use it (nothing was changed)"
        )
    if checked != "ok":
        raise StoreError(
            f"the run store {path} is corrupt (integrity check: {checked}); it was left "
            "untouched; move it aside (or restore it from a backup) and start a new run"
        )


def open_readonly(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection, also where the reader cannot write: another user's run, a
    read-only mount, an archived copy.

    A reader of a WAL store needs the ``-shm`` index beside it, which SQLite makes when
    it is missing; a reader who cannot write the directory cannot make it. A store its
    engine closed has neither ``-wal`` nor ``-shm`` left (the engine's last connection
    removed them), so when no ``-wal`` is there and no engine holds the run, the store is
    read as immutable: from the file alone, making nothing beside it (a reader who could
    write there would otherwise leave ``-wal`` and ``-shm`` files its owner may then be
    unable to write). A run an engine holds, or one an engine left with changes in its
    log, is read through its ``-shm``: SQLite uses it read-only when it cannot write it.
    Otherwise a store whose log is empty is read as immutable after all; ``immutable``
    asks for that at once (the caller checked that the log is empty and that no engine
    holds the run).
    """
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    wal = path.with_name(path.name + "-wal")
    if immutable or (not wal.exists() and not is_locked(path.parent)):
        return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30)
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        if not cannot_open(exc) or os.access(path.parent, os.W_OK):
            return conn  # not the read-only case: the caller's first query reports it
        conn.close()
    else:
        return conn
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(
            f"cannot read the run store {path}: its write-ahead log {wal} holds changes not "
            f"yet in it, and reading them needs the index file {path.name}-shm, which is "
            f"missing and cannot be made in {path.parent} (not writable by you, or read-only "
            "storage); copy the run directory to storage you can write (cp -a) and read the "
            "copy, or ask its owner to run gristmill status there once"
        )
    return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30)


def not_readable(path: Path) -> str:
    """Why this user cannot read ``path``: whose it is, its mode, and what to ask for."""
    info = os.stat(path)
    return (f"{path} belongs to {user_name(info.st_uid)} (mode {stat.filemode(info.st_mode)}) "
            f"and is not readable by you ({user_name(os.geteuid())}); ask its owner to make "
            "the run directory readable (chmod -R a+rX, or g+rX for a shared group)")


def corrupt(path: Path, exc: Exception) -> StoreError:
    return StoreError(
        f"the run store {path} is corrupt or not a gristmill store ({exc}); it was left "
        "untouched; move it aside (or restore it from a backup) and start a new run"
    )


def cannot_open(exc: Exception) -> bool:
    """A file could not be opened or made (permissions, read-only storage), as opposed to
    a store that is damaged: SQLITE_CANTOPEN, or a WAL index the reader cannot make."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == _CANTOPEN or code in _READONLY_NO_INDEX
    return "unable to open database file" in str(exc)


def diagnose(path: Path) -> str:
    """Why a write next to ``path`` fails, found by trying one (SQLite only says "I/O error")."""
    probe = path.with_name(f".{path.name}.probe.{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return "its file system is read-only"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "its disk is full" if exc.errno == errno.ENOSPC else "its disk quota is used up"
        return f"writing there fails: {exc.strerror}"
    return "a write next to it works now; it may have been a passing fault"


def write_error(path: Path, exc: sqlite3.Error) -> StoreError:
    return StoreError(
        f"cannot write the run store {path}: {exc} ({diagnose(path)}); the store keeps "
        f"every change before this one, and the run can be resumed once that is fixed: "
        f"gristmill resume {path.parent}"
    )
