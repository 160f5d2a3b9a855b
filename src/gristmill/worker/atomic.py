"""Atomic file writes: a reader sees the old file, no file, or the whole new one.

Every file another process reads while it may be written goes through here: attempt
results, ``.handle`` and cancel markers, array manifests, the jobmon plan, run
metadata, a rewritten ``pyproject.toml``. The data goes to a temporary file in the
same directory (same file system, so the rename is atomic), is fsynced, and is
renamed over the target; an empty or half-written file is never visible, which
matters because an empty ``.handle`` would read as "never started" and a torn
result as a corrupt one. Standard library only: the worker wrapper imports it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def write_atomic(path: PathLike, data: str | bytes, *, fsync: bool = True,
                 make_dirs: bool = True) -> None:
    """Replace ``path`` with ``data`` in one step.

    ``fsync`` (the default) makes the content durable before the rename, so even a
    machine crash leaves the old file or the new one; pass False only for files a
    crash of the whole machine may lose (nothing gristmill keeps). ``make_dirs``
    creates a missing parent directory on the first miss.
    """
    target = os.fspath(path)
    payload = data.encode() if isinstance(data, str) else data
    directory = os.path.dirname(target) or "."
    tmp = os.path.join(
        directory, f".{os.path.basename(target)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
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
