"""The processes of the jobmon backend: the driver that runs a jobmon workflow, and the
wrapper each jobmon task runs (``python -m gristmill.backends.jobmon.driver``).

- ``drive PLAN``: build the plan's Tool, TaskTemplates and Tasks and block in jobmon's
  ``workflow.run()``, in a session of its own, so the engine stays responsive and an
  engine crash does not stop the jobmon run.
- ``attempt ... -- argv``: one try of an attempt, :mod:`gristmill.backends.jobmon.attempt`
  (which jobmon tasks now start directly, without this module's imports); kept for the
  commands jobmon holds for tasks that earlier versions made.

The small process and file helpers here are shared with :mod:`gristmill.backends.jobmon.backend`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from gristmill.backends.jobmon.translate import WorkflowPlan, templates
from gristmill.errors import BackendError
from gristmill.logs import configure_logging
from gristmill.worker.atomic import write_atomic


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_atomic(path, json.dumps(data))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


#: Starts the driver in a session of its own and says its pid: the driver is then no
#: child of the engine (nothing to reap, nothing to warn about when the engine lets go).
_LAUNCHER = (
    "import subprocess, sys\n"
    "with open(sys.argv[1], 'ab') as log:\n"
    "    p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,\n"
    "                         stderr=subprocess.STDOUT, start_new_session=True)\n"
    "print(p.pid)\n"
)


def launch(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path) -> int:
    """Start ``argv`` detached from this process, output to ``log``; its pid."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(log), *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise BackendError(f"could not start the jobmon driver {argv}: {done.stderr.strip()}",
                           transient=True)
    return int(done.stdout.strip())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


#: Seconds jobmon may take to stop its distributor once the workflow run has ended.
STOP_GRACE = 20.0


class _StopWatch(logging.Handler):
    """Ends a driver that jobmon leaves hanging while it stops its distributor.

    After a workflow run ends (fail_fast, say), jobmon's ``Workflow.run`` stops the
    distributor and waits for its reply; a distributor signalled mid-task can leave it
    waiting forever, and the run's tasks would never be reported. Once jobmon logs that
    it is stopping, a timer gives it ``STOP_GRACE`` seconds; then the exit file is
    written and the driver's process group (distributor and workers) is killed.
    """

    def __init__(self, exit_path: Path, end: dict[str, Any]) -> None:
        super().__init__(level=logging.INFO)
        self.exit_path, self.end = exit_path, end
        self.timer: threading.Timer | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.timer is None and "Stopping Distributor" in record.getMessage():
            self.timer = threading.Timer(STOP_GRACE, self._give_up)
            self.timer.daemon = True
            self.timer.start()

    def _give_up(self) -> None:
        end = {**self.end, "status": "S",
               "error": f"jobmon did not stop its distributor within {STOP_GRACE:g} s"}
        with contextlib.suppress(OSError):
            write_json(self.exit_path, end)
        sys.stderr.write(f"gristmill: {end['error']}; ending the driver\n")
        sys.stderr.flush()
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGKILL)  # the driver leads its own group
        os._exit(1)


def drive(plan_path: Path, generation: int, timeout: int) -> int:
    """Build the plan's jobmon workflow and run it to the end (blocks); 0 when all is done.

    How it ended goes to ``driver-<generation>.exit.json`` whatever happens, so a poll
    can say why tasks were left unfinished.
    """
    from jobmon.core.exceptions import WorkflowAlreadyComplete

    root = plan_path.parent
    # On Ctrl-C jobmon's swarm asks on stdin whether to stop; SIGTERM means yes.
    sys.stdin = io.StringIO("y\n")
    signal.signal(signal.SIGTERM, _interrupt)
    end: dict[str, Any] = {"generation": generation}
    try:
        plan = WorkflowPlan.from_json(plan_path.read_text(), str(plan_path))
        wf = _build(plan)
        wf.bind()
        write_json(root / "workflow.json", {"workflow_id": wf.workflow_id,
                                             "generation": generation})
        if generation > 1 and not getattr(wf, "_newly_created", False):
            _reap_orphaned_runs(wf, timeout=300)
        # jobmon sleeps resume_timeout / 10 before it looks again whether the workflow
        # may resume; orphaned runs are already ended above, so a short wait suffices.
        watch = _StopWatch(root / f"driver-{generation}.exit.json", end)
        logging.getLogger("jobmon.client.workflow").addHandler(watch)
        end["status"] = wf.run(fail_fast=plan.fail_fast, resume=True, resume_timeout=10,
                               seconds_until_timeout=timeout, configure_logging=True)
        if watch.timer is not None:
            watch.timer.cancel()
    except WorkflowAlreadyComplete:
        end["status"] = "D"
    except KeyboardInterrupt:
        end["status"] = "S"
    except Exception as exc:
        end["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        write_json(root / f"driver-{generation}.exit.json", end)
    return 0 if end.get("status") == "D" else 1


def _build(plan: WorkflowPlan) -> Any:
    """The jobmon Workflow of a plan: its Tool, a TaskTemplate per task, a Task per node."""
    from jobmon.client.tool import Tool

    tool: Any = Tool(name=plan.tool)  # typed, but Any-heavy: used untyped, as dask's client is
    made_templates = {
        name: (tool.get_task_template(
            template_name=name, command_template=t.command_template, node_args=list(t.node_args),
            task_args=list(t.task_args), op_args=list(t.op_args),
            default_cluster_name=plan.cluster), t)
        for name, t in templates(plan).items()
    }
    kwargs: dict[str, Any] = {}
    if plan.max_concurrent:
        kwargs["max_concurrently_running"] = plan.max_concurrent
    wf = tool.create_workflow(workflow_args=plan.workflow_args, name=plan.name,
                              default_cluster_name=plan.cluster, **kwargs)
    tasks: dict[str, Any] = {}
    for task in plan.tasks:
        template, values = made_templates[task.task]
        tasks[task.node] = template.create_task(
            name=task.name, upstream_tasks=[tasks[u] for u in task.upstream if u in tasks],
            max_attempts=task.max_attempts, compute_resources=dict(task.compute_resources),
            cluster_name=plan.cluster, **values.values[task.node])
    wf.add_tasks(list(tasks.values()))
    return wf


def _reap_orphaned_runs(wf: Any, timeout: float) -> None:
    """End jobmon workflow runs whose driver died (SIGKILL, reboot) so the resume can start.

    A driver only starts when no earlier driver of the run is alive, so a live jobmon
    workflow run of this workflow has lost its swarm. Once its last heartbeat has
    expired, a resume request turns it COLD RESUME and a workflow reset terminates it;
    reset before the expiry would leave the workflow unable to halt, so wait it out.
    """
    from jobmon.core.configuration import JobmonConfig

    route = f"/workflow/{wf.workflow_id}"
    _, answer = wf.requester.send_request(f"{route}/is_resumable", {}, "get")
    if answer.get("workflow_is_resumable"):
        return
    config = JobmonConfig()
    expiry = (config.get_float("heartbeat", "workflow_run_interval")
              * config.get_float("heartbeat", "report_by_buffer"))
    logger.warning("jobmon workflow {} has a run whose driver died; ending it in {:.0f} s",
                   wf.workflow_id, expiry + 1)
    time.sleep(expiry + 1)
    wf.requester.send_request(f"{route}/set_resume", {"reset_running_jobs": True}, "post")
    wf.requester.send_request(f"{route}/reset", {}, "put")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, answer = wf.requester.send_request(f"{route}/is_resumable", {}, "get")
        if answer.get("workflow_is_resumable"):
            return
        time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gristmill.backends.jobmon.driver drive PLAN | attempt ...``."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["attempt"]:  # the command of tasks that earlier versions made
        from gristmill.backends.jobmon.attempt import attempt

        return attempt(words[1:])
    if words[:1] == ["drive"] and len(words) >= 2:
        import argparse

        parser = argparse.ArgumentParser(prog="python -m gristmill.backends.jobmon.driver drive")
        parser.add_argument("plan", type=Path)
        parser.add_argument("--generation", type=int, default=1)
        parser.add_argument("--timeout", type=int, default=7 * 24 * 3600)
        options = parser.parse_args(words[1:])
        configure_logging(1)
        return drive(options.plan, options.generation, options.timeout)
    sys.stderr.write(
        "usage: python -m gristmill.backends.jobmon.driver drive PLAN | attempt ARGS\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
