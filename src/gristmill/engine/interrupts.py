"""Ctrl-C and SIGTERM for the engine: stop the run, but never between two writes that
belong together.

A signal raises :class:`Interrupted` in the main thread, except inside a critical
section (a submission and the record of its job ids; a transaction of transitions),
where it is remembered and raised when the outermost section ends. Once the engine
cleans up after a stop, every further signal is dropped: a second Ctrl-C must not
break off the cancellation of live jobs or the last write of the run's record.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from gristmill.errors import GristmillError


class Interrupted(GristmillError):  # noqa: N818 - a stop request, not an error of the run
    """The engine was asked to stop (Ctrl-C, SIGTERM)."""

    exit_code = 130


class SignalGuard:
    """Turns SIGINT/SIGTERM into :class:`Interrupted`, deferred inside critical sections."""

    def __init__(self) -> None:
        self.critical = False  # inside a section, or cleaning up: signals wait or are dropped
        self.deferred: int | None = None
        self._handling = False

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM stop the run while inside; re-entrant; main thread only.

        The runner holds it past the engine's run, so a second Ctrl-C while the run's
        record is finished waits (it is dropped) instead of breaking that off.
        """
        if self._handling or threading.current_thread() is not threading.main_thread():
            yield
            return
        self._handling = True
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.critical:
                self.deferred = signum
                return
            self.critical = True  # from here on a second Ctrl-C waits for the cleanup
            raise Interrupted(f"stopped by {signal.Signals(signum).name}")

        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            self._handling = False

    @contextmanager
    def section(self) -> Iterator[None]:
        """Defer Ctrl-C/SIGTERM while writes that belong together are made.

        Re-entrant: only the outermost section raises the deferred signal, and never
        over an exception already on its way out.
        """
        outer = self.critical
        self.critical = True
        try:
            yield
        except BaseException:
            self.critical = outer
            raise
        self.critical = outer
        if not outer and self.deferred is not None:
            signum, self.deferred = self.deferred, None
            self.critical = True  # as in the handler: the cleanup is not interrupted
            raise Interrupted(f"stopped by {signal.Signals(signum).name}")
