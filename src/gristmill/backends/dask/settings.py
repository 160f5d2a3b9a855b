"""The dask backend's settings: its options, declared for the command line.

A module of its own, importing nothing heavy (not distributed), so the CLI can list
them cheaply.
"""

from __future__ import annotations

from gristmill.backends.base import BackendSetting

SETTINGS = (
    BackendSetting("scheduler", "The scheduler to use: tcp://host:8786 or a scheduler file "
                   "(default: a local cluster of this machine)."),
    BackendSetting("n_workers", "Own local cluster only: how many workers.", kind="int",
                   minimum=1),
    BackendSetting("cores", "Own local cluster only: cores shared out between its workers "
                   "(default: this machine's).", kind="int", minimum=1),
    BackendSetting("memory", "Own local cluster only: memory shared out between its workers, "
                   "e.g. 16G (default: this machine's).", kind="memory"),
    BackendSetting("grace", "Seconds from SIGTERM to SIGKILL when an attempt is cancelled or "
                   "times out.", kind="float", minimum=0, default=5.0),
    BackendSetting("connect_timeout", "Seconds to reach the scheduler.", kind="float",
                   minimum=0.1, default=30.0),
    BackendSetting("worker_timeout", "Seconds a submission waits for a first worker on a "
                   "cluster that has none.", kind="float", minimum=0, default=60.0),
    BackendSetting("lost_after", "Seconds an adopted job may be unknown to the scheduler, "
                   "with no result file, before it counts as LOST.", kind="float", minimum=0,
                   default=60.0),
    BackendSetting("max_inflight", "Jobs handed to dask at once (default: 4 x the cluster's "
                   "threads, at least 16).", kind="int", minimum=1),
)
