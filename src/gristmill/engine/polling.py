"""How long the engine waits before it next polls its backend: the adaptive poll interval.

A poll of a batch scheduler is a command its controller must answer (``squeue``,
``qstat``), shared with every user of the cluster; a poll of the local backend costs
nothing, and that backend wakes the engine as soon as an attempt ends anyway. So the
interval is adaptive, between a floor and a ceiling:

* at the floor right after a submission and right after a poll that saw an attempt
  end: that is when the engine waits on a result it needs (the jobs just submitted
  may be short; where one job ended, the next of its array is often about to);
* growing by :data:`FACTOR` after every poll that saw nothing end, up to the ceiling,
  so a long quiet stretch (jobs pending behind others, hour-long tasks) costs the
  controller one query per ceiling.

The floor is the larger of the engine's own and the backend's ``Capabilities.poll_min``;
the ceiling is ``--poll-interval`` (the spec's ``workflow.poll_interval``) when given,
else the backend's ``Capabilities.poll_max``, else :data:`POLL_MAX`; never below the
floor. This module only computes the sequence; :mod:`.loop` waits it out.
"""

from __future__ import annotations

import attrs

#: The default longest wait between two polls of the backend, in seconds.
POLL_MAX = 30.0
#: How much the interval grows after a poll that saw nothing end.
FACTOR = 1.5


@attrs.define
class PollSchedule:
    """The interval before the next poll, from what the last cycle did."""

    floor: float
    ceiling: float
    factor: float = FACTOR
    #: Seconds to wait before the next poll.
    interval: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.ceiling = max(self.ceiling, self.floor)
        self.interval = self.floor

    @classmethod
    def of(cls, *, engine_min: float, engine_max: float | None, backend_min: float,
           backend_max: float | None) -> PollSchedule:
        """The schedule for an engine's settings and its backend's declared bounds."""
        floor = max(engine_min, backend_min)
        ceiling = engine_max if engine_max is not None else backend_max
        return cls(floor, POLL_MAX if ceiling is None else ceiling)

    def submitted(self) -> None:
        """Jobs were just handed over: look at them again after the floor."""
        self.interval = self.floor

    def polled(self, finished: int) -> None:
        """A poll saw ``finished`` attempts end: back to the floor, or wait longer."""
        if finished:
            self.interval = self.floor
        else:
            # The 0.05 s keeps a zero floor (a backend that wakes on news) growing.
            self.interval = min(self.ceiling, max(self.interval, 0.05) * self.factor)
