"""Atomic file writes: a reader sees the old file, no file, or the whole new one.

Every file another process reads while it may be written goes through here: attempt
results, ``.handle`` and cancel markers, array manifests, the jobmon plan, run
metadata, a rewritten ``pyproject.toml``. The data goes to a temporary file in the
same directory (same file system, so the rename is atomic), is fsynced, and is
renamed over the target; an empty or half-written file is never visible, which
matters because an empty ``.handle`` would read as "never started" and a torn
result as a corrupt one. Standard library only, and light (no ``typing``, no ``secrets``):
the worker wrapper imports it.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from typing import Union

    PathLike = Union[str, "os.PathLike[str]"]


def write_atomic(path: PathLike, data: str | bytes, *, fsync: bool = True,
                 make_dirs: bool = True) -> None:
    """Replace ``path`` with ``data`` in one step.

    ``fsync`` (the default) makes the content durable before the rename, so even a
    machine crash leaves the old file or the new one; pass False only for files a
    crash of the whole machine may lose (nothing gristmill keeps). ``make_dirs``
    creates a missing parent directory on the first miss (an attempt's files use
    :func:`write_attempt_file` instead).
    """
    target = os.fspath(path)
    payload = data.encode() if isinstance(data, str) else data
    directory = os.path.dirname(target) or "."
    tmp = os.path.join(
        directory, f".{os.path.basename(target)}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any file the user writes
    except FileNotFoundError:
        if not make_dirs:
            raise
        os.makedirs(directory, exist_ok=True)
        fd = os.open(tmp, flags, 0o666)
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_attempt_file(path: PathLike, data: str | bytes, *, fsync: bool = True) -> None:
    """:func:`write_atomic` for a file of an attempt (result, handle, cancel request): its
    directory is made when missing, never that directory's parents (:func:`make_own_dir`)."""
    try:
        write_atomic(path, data, fsync=fsync, make_dirs=False)
    except FileNotFoundError:
        make_own_dir(path)
        write_atomic(path, data, fsync=fsync, make_dirs=False)


def make_own_dir(path: PathLike) -> None:
    """Make the directory ``path`` is in, never its parents.

    Attempt files (results, logs, handles) live in ``RUN_DIR/logs/<task>/``: a missing
    task directory is made, but a run directory deleted or moved while an attempt ran is
    not made again, half empty, where it was (FileNotFoundError instead).
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(os.path.dirname(os.fspath(path)) or ".")
