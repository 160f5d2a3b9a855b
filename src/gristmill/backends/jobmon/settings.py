"""The jobmon backend's settings: its options, declared for the command line.

A module of its own, importing nothing heavy (not jobmon), so the CLI can list them
cheaply.
"""

from __future__ import annotations

from gristmill.backends.base import BackendSetting

SETTINGS = (
    BackendSetting("cluster", "jobmon cluster: sequential, multiprocess, or one the site's "
                   "jobmon plugin and server know (slurm).", default="sequential"),
    BackendSetting("tool", "Name of the jobmon Tool the task templates belong to.",
                   default="gristmill"),
    BackendSetting("queue", "Queue for tasks whose resources name none."),
    BackendSetting("project", "Project for tasks whose resources name none."),
    BackendSetting("fail_fast", "jobmon's fail_fast: stop scheduling after the first task "
                   "that failed for good.", kind="bool", default=False),
    BackendSetting("max_concurrent", "jobmon's max_concurrently_running for the workflow.",
                   kind="int", minimum=1),
    BackendSetting("workflow_args", "jobmon's workflow_args; the same value resumes the same "
                   "jobmon workflow (default: derived from the run directory)."),
    BackendSetting("workflow_name", "The name jobmon shows (default: 'gristmill <run>')."),
    BackendSetting("service_url", "The jobmon server (default: JOBMON__HTTP__SERVICE_URL or "
                   "jobmon's config file)."),
    BackendSetting("timeout", "Seconds the driver lets the workflow run.", kind="int",
                   minimum=1, default=7 * 24 * 3600),
)
