"""The settings every batch-scheduler backend (Slurm, Grid Engine) shares.

A module of its own, importing nothing heavy, so the CLI can list them cheaply.
"""

from __future__ import annotations

from gristmill.backends.base import BackendSetting

#: Options of :class:`gristmill.backends.batch.backend.ArrayBackend` itself.
BATCH_SETTINGS = (
    BackendSetting("batch_size", "Jobs at most per array.", kind="int", minimum=1,
                   default=1000),
    BackendSetting("python", "The Python that runs each array element (default: the "
                   "engine's own)."),
    BackendSetting("command_timeout", "Seconds a scheduler command may take.", kind="float",
                   minimum=0, default=60.0),
    BackendSetting("poll_min", "Seconds at least between two status queries; the engine "
                   "polls this soon after a submission or a job's end.", kind="float",
                   minimum=0, default=5.0),
    BackendSetting("poll_max", "Seconds at most between two status queries, reached "
                   "while nothing changes (--poll-interval overrides it).", kind="float",
                   minimum=0, default=60.0),
    BackendSetting("lost_after", "Seconds a job may be unknown to the scheduler, with no "
                   "result file, before it counts as LOST.", kind="float", minimum=0,
                   default=180.0),
)
