"""Fault injection, for the reliability tests only.

``GRISTMILL_FAULT=<point>:<n>`` in the environment makes the engine SIGKILL itself the
``n``-th time it reaches ``<point>``, one of ``persist`` (inside the transaction that
writes a new run's DAG), ``reconcile`` (inside the one that resets a resumed run's
unfinished nodes), ``submit`` (attempts recorded, jobs not yet handed to the
backend), ``after_submit`` (jobs handed over, their ids not yet recorded) and
``status`` (inside a transaction of state updates, before it commits). Windows that
short cannot be hit by timing. The variable is read once, at import; unset, each
point costs one test of a module constant.
"""

from __future__ import annotations

import os
import signal

import attrs

from gristmill.errors import GristmillError

FAULT_POINTS = ("persist", "reconcile", "submit", "after_submit", "status")


@attrs.define
class Fault:
    """``GRISTMILL_FAULT=<point>:<n>``: SIGKILL this process at the n-th ``reached(point)``."""

    point: str
    left: int

    @classmethod
    def from_env(cls) -> Fault | None:
        text = os.environ.get("GRISTMILL_FAULT")
        if not text:
            return None
        point, _, count = text.partition(":")
        if point not in FAULT_POINTS or not count.isdigit() or int(count) < 1:
            raise GristmillError(
                f"GRISTMILL_FAULT={text!r}: write <point>:<n> with n >= 1 and point one of "
                f"{', '.join(FAULT_POINTS)} (a test hook; unset it to run normally)"
            )
        return cls(point, int(count))

    def reached(self, point: str) -> None:
        if point == self.point:
            self.left -= 1
            if self.left == 0:
                os.kill(os.getpid(), signal.SIGKILL)


#: The fault to inject, or None (always, outside the reliability tests).
FAULT = Fault.from_env()
