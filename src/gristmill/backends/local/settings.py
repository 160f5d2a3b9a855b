"""The local backend's settings: its options, declared for the command line.

A module of its own, importing nothing heavy, so the CLI can list them cheaply.
"""

from __future__ import annotations

from gristmill.backends.base import BackendSetting

#: The first three keep the flags gristmill has always had (no ``--local-`` prefix).
SETTINGS = (
    BackendSetting("max_cores", "Cores to use (default: all of this machine's).",
                   kind="int", minimum=1, flag="--max-cores"),
    BackendSetting("max_mem", "Memory to use, e.g. 8G (default: all of this machine's).",
                   kind="memory", flag="--max-mem"),
    BackendSetting("strict_resources", "Refuse tasks that ask for more than the machine has "
                   "(default: run them alone, with a warning).", kind="bool", default=False,
                   flag="--strict-resources"),
    BackendSetting("grace", "Seconds from SIGTERM to SIGKILL when an attempt is cancelled or "
                   "times out.", kind="float", minimum=0, default=5.0),
)
