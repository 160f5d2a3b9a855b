"""Commands run when a run ends: ``--on-success`` / ``--on-failure`` (or the spec's
``workflow.on_success`` / ``workflow.on_failure``).

Enough to send a mail or a chat message, or start the next stage, without gristmill
knowing any of them: the command runs with ``/bin/sh -c`` after the run's record is
complete and its lock released, with what happened in its environment:

==========================  =====================================================
``GRISTMILL_RUN_DIR``       the run directory
``GRISTMILL_STATUS``        ``succeeded``, ``failed`` or ``cancelled``
``GRISTMILL_WORKFLOW``      the workflow's name
``GRISTMILL_NODES``         nodes in the run
``GRISTMILL_DONE``          nodes DONE
``GRISTMILL_FAILED``        nodes FAILED, UPSTREAM_FAILED or CANCELLED
``GRISTMILL_COUNTS``        every count by state, as JSON
==========================  =====================================================

``on_failure`` runs for a failed and for a cancelled run. A hook that fails or outlives
:data:`HOOK_TIMEOUT` is logged and never changes the run's outcome or exit code.

A run directory is data, never code: a hook is not stored with the run, and the
spec kept in a run's store has its hooks dropped when ``resume`` reads it back; give
them to ``resume`` again (flag or ``--spec``) to have them run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import attrs
from loguru import logger

#: Seconds a hook may run before it is killed (with its process group).
HOOK_TIMEOUT = 600.0
_FAILED = ("FAILED", "UPSTREAM_FAILED", "CANCELLED")


@attrs.frozen
class Hooks:
    """The commands to run when the run succeeded, and when it did not."""

    on_success: str | None = None
    on_failure: str | None = None


def hook_env(run_dir: Path, status: str, workflow: str,
             counts: Mapping[str, int]) -> dict[str, str]:
    """The variables a hook gets on top of the engine's environment."""
    return {
        "GRISTMILL_RUN_DIR": str(run_dir), "GRISTMILL_STATUS": status,
        "GRISTMILL_WORKFLOW": workflow, "GRISTMILL_NODES": str(sum(counts.values())),
        "GRISTMILL_DONE": str(counts.get("DONE", 0)),
        "GRISTMILL_FAILED": str(sum(counts.get(s, 0) for s in _FAILED)),
        "GRISTMILL_COUNTS": json.dumps(dict(sorted(counts.items()))),
    }


def run_hook(hooks: Hooks, *, run_dir: Path, status: str, workflow: str,
             counts: Mapping[str, int], timeout: float = HOOK_TIMEOUT) -> int | None:
    """Run the hook for ``status``; its exit code (None: no hook, or it could not run)."""
    command = hooks.on_success if status == "succeeded" else hooks.on_failure
    if not command:
        return None
    which = "on_success" if status == "succeeded" else "on_failure"
    logger.info("running the {} hook: {}", which, command)
    env = {**os.environ, **hook_env(run_dir, status, workflow, counts)}
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as exc:
        logger.error("the {} hook could not start: {}", which, exc)
        return None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        logger.error("the {} hook ran longer than {:g} s and was killed: {}", which, timeout,
                     command)
        return None
    if code != 0:
        logger.warning("the {} hook exited with {}: {}", which, code, command)
    return code
