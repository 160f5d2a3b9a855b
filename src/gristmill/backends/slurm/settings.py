"""The Slurm backend's settings: its options, declared for the command line.

A module of its own, importing nothing heavy, so the CLI can list them cheaply.
"""

from __future__ import annotations

from gristmill.backends.base import BackendSetting
from gristmill.backends.batch.settings import BATCH_SETTINGS

SETTINGS = (
    BackendSetting("partition", "Partition for tasks whose resources name no queue."),
    BackendSetting("account", "Account for tasks whose resources name no project."),
    BackendSetting("max_concurrent", "Elements of one array running at once (sbatch "
                   "--array=...%N).", kind="int", minimum=1),
    BackendSetting("mem_overhead", "Memory added to each request for the wrapper, e.g. 64M "
                   "(0: none).", default="64M"),
    BackendSetting("sbatch_flags", "More sbatch flags, space-separated (e.g. "
                   "'--qos=high --exclusive')."),
    BackendSetting("accounting", "Ask sacct about finished jobs (default: when the cluster "
                   "has accounting storage).", kind="bool"),
    BackendSetting("requeue", "Let Slurm requeue a preempted job or one whose node failed "
                   "(sbatch --requeue), instead of gristmill submitting it again as a new "
                   "attempt (--no-requeue).", kind="bool", default=False),
    BackendSetting("fail_on_unschedulable", "Cancel and fail jobs pending for a reason that "
                   "never clears (PartitionTimeLimit, QOSMaxMemoryPerJob...) instead of "
                   "waiting.", kind="bool", default=False),
    *BATCH_SETTINGS,
)
