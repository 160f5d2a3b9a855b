"""One engine per run directory, enforced with an advisory lock the kernel drops on death.

``flock`` is released when the holder exits for any reason (``kill -9``
included), so a stale lock never blocks a resume; the file also names the
holder's host, pid and process start time, for the message a second engine gets
and for :func:`verified_engine`, which ``gristmill cancel`` asks before it signals
anything: a lock file is data anyone could have written.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from gristmill.errors import RunDirError
from gristmill.worker.procfs import open_files, start_time

LOCK_NAME = ".gristmill.lock"


def read_holder(run_dir: Path) -> dict[str, object]:
    """What the lock file says about its holder (may be stale when nobody holds it)."""
    try:
        data = json.loads((run_dir / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_locked(run_dir: Path) -> bool:
    """Whether an engine holds the run directory right now."""
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def verified_engine(run_dir: Path) -> tuple[int | None, str]:
    """(pid of the engine holding ``run_dir``'s lock, "") or (None, why it is not verified).

    A pid is trusted only when it runs on this host, started when the lock file says
    (a pid is reused, a pid with its start time is not), and has the lock file open.
    """
    holder = read_holder(run_dir)
    pid, start, host = holder.get("pid"), holder.get("start"), holder.get("host")
    if host != socket.gethostname():
        return None, f"the lock file names host {host!r}; run gristmill cancel there"
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return None, f"the lock file names no valid pid ({pid!r})"
    if not isinstance(start, int) or start_time(pid) != start:
        return None, (f"process {pid} is not the engine that took the lock (its start time "
                      "differs, or the lock file does not record one)")
    try:
        lock = os.stat(run_dir / LOCK_NAME)
    except OSError as exc:
        return None, f"cannot read the lock file: {exc.strerror}"
    if (lock.st_dev, lock.st_ino) not in open_files(pid):
        return None, f"process {pid} does not hold the lock file open"
    return pid, ""


class RunLock:
    """``with RunLock(run_dir):`` — refuses with the holder's host and pid."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # umask applies
        except OSError as exc:
            raise RunDirError(
                f"cannot lock the run directory {self.path.parent}: {exc.strerror}; "
                "is it writable?"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.refuse(self.path.parent)
        info = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "start": start_time(os.getpid()),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        data = info.encode()
        os.pwrite(fd, data, 0)  # then cut what is left of an earlier holder: never empty
        os.ftruncate(fd, len(data))
        self.fd = fd
        return self

    @staticmethod
    def refuse(run_dir: Path) -> NoReturn:
        """Raise the error that says which engine holds ``run_dir``."""
        holder = read_holder(run_dir)
        for _ in range(20):  # the holder may have the lock but not yet its name written
            if holder.get("pid") is not None:
                break
            time.sleep(0.01)
            holder = read_holder(run_dir)
        raise RunDirError(
            f"the run directory {run_dir} is in use by another engine "
            f"(pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since "
            f"{holder.get('since', '?')}); wait for it to finish or stop it with "
            f"'gristmill cancel {run_dir}'"
        ) from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None
