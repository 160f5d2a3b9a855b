"""Noticing that a run directory was deleted or moved under the engine that runs it.

An engine holds its store and its lock file open, and on POSIX both stay usable after
the directory is deleted or renamed: without a check the engine would go on recording
into a file nobody will find (or one now elsewhere), start tasks whose logs have nowhere
to go, and report success for a run that no longer exists where it was. Worse, once the
name is free another engine could take it: two engines would then think they own one
run directory.

So the engine compares, once per cycle, what is at the paths with what it opened: the
run directory's, the store's and the lock file's (device, inode). Three ``stat`` calls
and no file opened: about 10 µs a look on a loaded two-core machine, against the
milliseconds a cycle's store transaction takes; while the loop waits it looks once a
second.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import attrs

from gristmill.errors import RunDirGoneError

#: errno values meaning "nothing is at this path any more" (ESTALE: NFS, removed on the server).
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE)


@attrs.frozen
class FileId:
    """Which file a path named: (device, inode) survive a rename and tell a replacement apart."""

    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileId:
        return cls(st.st_dev, st.st_ino)


@attrs.frozen
class Watched:
    """One path the engine relies on, what it was when the engine took it, and its role."""

    path: Path
    was: FileId
    what: str


@attrs.frozen
class RunWatch:
    """The run directory, store and lock file as the engine took them; :meth:`check` compares.

    Made right after the lock is taken and the store opened: the lock file's identity
    comes from the very descriptor that holds the lock, the others from a ``stat`` then.
    """

    run_dir: Path
    watched: tuple[Watched, ...]

    @classmethod
    def take(cls, run_dir: Path, store: Path, lock: Path, lock_fd: int) -> RunWatch:
        try:
            return cls(run_dir, (
                Watched(run_dir, FileId.of(os.stat(run_dir)), "the run directory"),
                Watched(lock, FileId.of(os.fstat(lock_fd)), "its lock file"),
                Watched(store, FileId.of(os.stat(store)), "its run store"),
            ))
        except OSError as exc:
            raise RunDirGoneError(
                f"{exc.filename or run_dir}: {exc.strerror} as the engine started; nothing "
                "ran; check the run directory and start again"
            ) from None

    def check(self) -> None:
        """Raise :class:`RunDirGoneError` when any of them is gone or is another file now.

        The directory comes first: when it moved, its files are gone from the path too, and
        the message should say what really happened.
        """
        for item in self.watched:
            try:
                now: FileId | None = FileId.of(os.stat(item.path))
            except OSError as exc:
                if exc.errno not in _GONE:
                    continue  # unreadable for now (EIO, EACCES): a write will say so if it lasts
                now = None
            if now != item.was:
                raise RunDirGoneError(self.describe(item, replaced=now is not None))

    def describe(self, item: Watched, *, replaced: bool) -> str:
        """What happened to ``item``, and what it means for the run."""
        how = ("was replaced by another one (moved or deleted, and something new made in its "
               "place)" if replaced else "was deleted or moved away")
        if item.path == self.run_dir:
            where = (f"if it was moved, continue it where it is now with gristmill resume "
                     f"NEW_PATH; nothing is written to {self.run_dir} any more")
        elif item.what == "its lock file":
            where = ("another engine could have taken the run meanwhile; check that none runs "
                     f"it (gristmill status {self.run_dir}), then gristmill resume {self.run_dir}")
        else:
            where = ("the run cannot be resumed without it; restore it (it holds every node's "
                     "state) or start a new run")
        return (f"{item.what} {item.path} {how} while the engine ran it; the engine cancelled "
                f"its live jobs and stopped; {where}")
