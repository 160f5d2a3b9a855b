"""The Grid Engine backend's settings: its options, declared for the command line.

A module of its own, importing nothing heavy, so the CLI can list them cheaply.
"""

from __future__ import annotations

from gristmill.backends.base import BackendSetting
from gristmill.backends.batch.settings import BATCH_SETTINGS

SETTINGS = (
    BackendSetting("queue", "Queue for tasks whose resources name none."),
    BackendSetting("project", "Project for tasks whose resources name none."),
    BackendSetting("max_concurrent", "Tasks of one array running at once (qsub -tc).",
                   kind="int", minimum=1),
    BackendSetting("memory_resource", "The complex memory is requested with: h_vmem or "
                   "m_mem_free.", default="h_vmem"),
    BackendSetting("mem_overhead", "Memory added to each request for the wrapper, e.g. 256M "
                   "(0: none).", default="256M"),
    BackendSetting("pe", "Parallel environment for tasks of more than one core.",
                   default="smp"),
    BackendSetting("shell", "Run each element's script by this shell (default: by Python "
                   "itself, no login shell)."),
    BackendSetting("qsub_flags", "More qsub flags, space-separated."),
    BackendSetting("h_rt_margin", "Seconds added to each task's runtime for h_rt (the "
                   "wrapper enforces the runtime itself).", kind="int", minimum=0, default=60),
    *BATCH_SETTINGS,
)
