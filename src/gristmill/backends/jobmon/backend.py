"""The jobmon backend: hand the whole DAG to a jobmon server, mirror its task states.

``JobmonBackend`` declares ``Capabilities.dag``: the engine submits every node left to
run at once (with ``after`` and ``max_attempts``), jobmon runs dependencies and retries,
and the engine only polls. The pieces, per run directory ``RUN_DIR``:

- *submit* merges the requests into ``RUN_DIR/jobmon/plan.json`` (a
  :class:`~gristmill.backends.jobmon.translate.WorkflowPlan`) and starts a *driver*,
  ``python -m gristmill.backends.jobmon.driver drive PLAN``, in a session of its own:
  it builds the Tool, TaskTemplates and Tasks and blocks in jobmon's ``workflow.run()``,
  so the engine stays responsive and an engine crash does not stop the jobmon run.
- Each jobmon task runs ``python -m gristmill.backends.jobmon.driver attempt ... --
  argv``:
  gristmill's worker wrapper (:func:`gristmill.worker.wrapper.main`) records exit code, peak
  RSS, OOM and TIMEOUT in the result file as on every backend. A try that fails while
  jobmon will try again moves its files aside (``<file>.try<n>``), so the result file
  only ever describes the attempt's final try.
- *poll* asks the server once per run (``GET /workflow/<id>/workflow_tasks``: every
  task's name and status) and maps jobmon's task states to :class:`JobState`.
- *cancel* sends SIGTERM to the driver's process group: the driver answers jobmon's
  "stop?" with yes (the workflow run ends STOPPED, resumable) and each wrapper cancels
  its attempt. jobmon cannot stop single tasks, so cancelling stops the whole run.
- *resume*: ``workflow_args`` is derived from the run directory (or given as an
  option), and a later submit merges into the same plan, so jobmon resumes the same
  workflow and skips what it already finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from gristmill.backends.base import (
    Capabilities,
    JobHandle,
    JobRequest,
    JobStatus,
    SleepingWaitMixin,
)
from gristmill.backends.isolated import isolated_argv
from gristmill.backends.jobmon.driver import (
    launch,
    read_json,
    write_json,
)
from gristmill.backends.jobmon.settings import SETTINGS
from gristmill.backends.jobmon.translate import (
    DRIVER,
    LOCAL_CLUSTERS,
    STATES,
    WorkflowPlan,
    ancestors_failed,
    merge,
    name_node,
    node_and_attempt,
    parse_task_name,
    parse_workflow_tasks,
    plan_tasks,
    run_dir_of,
    task_name,
    workflow_args_for,
)
from gristmill.errors import BackendError, SpecError
from gristmill.states import JobState
from gristmill.worker.atomic import write_atomic
from gristmill.worker.procfs import cmdline, group_members, start_time
from gristmill.worker.result import read_result


def _start(pid: int) -> str | None:
    """A live process's start time as the driver's info file keeps it (a string)."""
    started = start_time(pid)
    return None if started is None else str(started)

URL_ENV = "JOBMON__HTTP__SERVICE_URL"
#: jobmon's client defaults (30 s heartbeat, 10 s distributor poll) suit a cluster; its
#: own local clusters get these unless the environment says otherwise.
LOCAL_INTERVALS = {"JOBMON__HEARTBEAT__WORKFLOW_RUN_INTERVAL": "1",
                   "JOBMON__DISTRIBUTOR__POLL_INTERVAL": "1"}


def _flag(value: bool | str, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SpecError(f"jobmon backend option {what}={value!r}: give true or false")


def _count(value: int | str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise SpecError(f"jobmon backend option {what}={value!r}: give a whole number >= 1")
    return number












@attrs.define(eq=False)  # a dict key by identity
class _Run:
    """What the backend knows of one run directory's jobmon workflow."""

    root: Path  # RUN_DIR/jobmon
    plan: WorkflowPlan | None = None
    pending: bool = False  # the plan changed: a driver must (re)start
    cancelled: set[str] = attrs.Factory(set)

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"


class JobmonBackend(SleepingWaitMixin):
    """Runs a workflow's DAG on a jobmon server; see the module doc.

    Options (text from ``--option KEY=VALUE`` is parsed): ``cluster`` (jobmon cluster:
    ``sequential``, ``multiprocess``, ``slurm``, ...), ``tool`` (jobmon Tool name),
    ``queue``/``project`` (defaults for tasks that set none), ``fail_fast``,
    ``max_concurrent`` (jobmon's ``max_concurrently_running``), ``workflow_args``
    (default: derived from the run directory), ``workflow_name``, ``service_url``
    (default: jobmon's own configuration, e.g. ``JOBMON__HTTP__SERVICE_URL``) and
    ``timeout`` (seconds the driver waits for the whole workflow).
    """

    name = "jobmon"
    #: One status request every 0.5 s at most: each asks the server for every task.
    capabilities = Capabilities(reattach=True, dag=True, poll_min=0.5, live_limit=True)
    settings = SETTINGS

    def __init__(
        self, *, cluster: str = "sequential", tool: str = "gristmill", queue: str | None = None,
        project: str | None = None, fail_fast: bool | str = False,
        max_concurrent: int | str | None = None, workflow_args: str | None = None,
        workflow_name: str | None = None, service_url: str | None = None,
        timeout: int | str = 7 * 24 * 3600,
    ) -> None:
        import importlib.util

        if importlib.util.find_spec("jobmon.client") is None:
            raise BackendError("the jobmon backend needs jobmon's client; install it with "
                               "pip install 'gristmill[jobmon]' (jobmon-client, jobmon-core)")
        self.cluster = cluster
        self.tool = tool
        self.queue = queue
        self.project = project
        self.fail_fast = _flag(fail_fast, "fail_fast")
        self.max_concurrent = _count(max_concurrent, "max_concurrent")
        self.workflow_args = workflow_args
        self.workflow_name = workflow_name
        self.timeout = _count(timeout, "timeout") or 1
        self.service_url = (service_url or os.environ.get(URL_ENV) or _configured_url()).rstrip("/")
        if not self.service_url:
            raise BackendError(
                "jobmon backend: no server URL; set JOBMON__HTTP__SERVICE_URL (or jobmon's "
                "config file) or pass --option service_url=http://HOST:PORT"
            )
        self.runs: dict[Path, _Run] = {}

    # -- the protocol -------------------------------------------------------------------------

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        by_run: dict[Path, list[JobRequest]] = {}
        for job in jobs:
            by_run.setdefault(run_dir_of(job), []).append(job)
        for run_dir, group in by_run.items():
            run = self._run(run_dir)
            new = plan_tasks(group, cluster=self.cluster, python=sys.executable,
                             queue=self.queue, project=self.project)
            old = run.plan
            run.plan = WorkflowPlan(
                workflow_args=self.workflow_args or (old.workflow_args if old else
                                                     workflow_args_for(run_dir)),
                name=self.workflow_name or f"gristmill {run_dir.name}", tool=self.tool,
                cluster=self.cluster, fail_fast=self.fail_fast,
                max_concurrent=self.max_concurrent,
                tasks=merge(old.tasks if old else (), new),
            )
            run.root.mkdir(parents=True, exist_ok=True)
            write_atomic(run.plan_path, run.plan.to_json())
            run.cancelled.difference_update(job.key for job in group)
            run.pending = True
            self._ensure_driver(run)
        return [JobHandle(self.name, task_name(job.job_name, job.key), job.key,
                          str(job.result_path)) for job in jobs]

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        failed_first: dict[JobHandle, JobStatus] = {}
        rest: dict[JobHandle, JobStatus] = {}
        for run, group in self._group(handles).items():
            self._ensure_driver(run)
            alive = run.pending or self._driver_alive(run)  # before the query: no false LOST
            seen = self._task_states(run)
            failed = {node for node, (_, state) in seen.items() if state is JobState.FAILED}
            for handle in group:
                node, attempt = node_and_attempt(handle.key)
                state = None
                if handle.key in run.cancelled:
                    state = JobState.CANCELLED
                elif name_node(node) in seen:
                    try_, now = seen[name_node(node)]
                    if try_ == attempt or now is JobState.SUCCEEDED:  # D is never reset
                        state = now
                if state is JobState.FAILED:
                    failed_first[handle] = JobStatus(
                        state, reason="jobmon: the task failed on its last allowed attempt")
                elif state is not None and (state.finished or alive):
                    rest[handle] = JobStatus(state)
                elif alive:
                    rest[handle] = JobStatus(JobState.QUEUED)
                else:  # the attempt's own record, when it finished before jobmon heard of it
                    rest[handle] = self._recorded(handle) or self._orphan(run, node, failed)
        return {**failed_first, **rest}

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        for run, group in self._group(handles).items():
            run.cancelled.update(h.key for h in group)
            run.pending = False
            self._stop_driver(run)

    def attach(self, handles: Sequence[JobHandle]) -> None:
        self._group(handles)  # loads each run's plan; poll finds the driver by its pid file

    def close(self) -> None:
        """Nothing to release: drivers run on with their jobmon workflows."""

    # -- runs and drivers ---------------------------------------------------------------------

    def _run(self, run_dir: Path) -> _Run:
        run = self.runs.get(run_dir)
        if run is None:
            run = self.runs[run_dir] = _Run(run_dir / "jobmon")
            if run.plan_path.exists():
                run.plan = WorkflowPlan.from_json(run.plan_path.read_text(), str(run.plan_path))
        return run

    def _group(self, handles: Sequence[JobHandle]) -> dict[_Run, list[JobHandle]]:
        out: dict[_Run, list[JobHandle]] = {}
        for handle in handles:
            run_dir = Path(handle.result_path).resolve().parents[2]
            out.setdefault(self._run(run_dir), []).append(handle)
        return out

    def _driver_alive(self, run: _Run) -> bool:
        """Whether the run's driver still drives its jobmon workflow.

        A driver whose exit file exists has seen its workflow run end; when its process
        lingers anyway (jobmon's distributor can hang while it stops, with the driver
        waiting on it), what is left of its group is killed, not waited for.
        """
        info = read_json(run.root / "driver.json")
        pid = info.get("pid")
        if not (isinstance(pid, int) and _start(pid) == info.get("start")):
            return False
        if not (run.root / f"driver-{info.get('generation', 0)}.exit.json").exists():
            return True
        logger.warning("jobmon driver {} ended its workflow run but did not exit; killing its "
                       "group", pid)
        for member in group_members(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        return False

    def _ensure_driver(self, run: _Run) -> None:
        """Start a driver for a changed plan once no earlier driver of the run is alive."""
        if not run.pending or self._driver_alive(run):
            return
        generation = int(read_json(run.root / "driver.json").get("generation", 0)) + 1
        log = run.root / f"driver-{generation}.log"
        env = dict(os.environ)
        env[URL_ENV] = self.service_url
        if self.cluster in LOCAL_CLUSTERS:
            env.update({k: v for k, v in LOCAL_INTERVALS.items() if k not in os.environ})
        # jobmon's distributor looks its worker_node_entry_point up on PATH.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        argv = [*isolated_argv(sys.executable, DRIVER), "drive",
                str(run.plan_path), "--generation", str(generation), "--timeout", str(self.timeout)]
        pid = launch(argv, env=env, cwd=run.root, log=log)
        write_json(run.root / "driver.json", {
            "pid": pid, "start": _start(pid), "generation": generation, "log": str(log)})
        run.pending = False
        logger.info("jobmon driver {} started (pid {}), log {}", generation, pid, log)

    def _stop_driver(self, run: _Run, grace: float = 5.0) -> None:
        """Stop the run's driver and what it started; the jobmon run ends STOPPED.

        SIGTERM goes to the driver (it answers jobmon's "stop?" with yes) and to every
        other member of its process group but the distributor, which the driver stops
        itself: signalled together with its workers jobmon's distributor can hang. What
        is left after ``grace`` seconds (such a hung distributor) is killed.
        """
        if not self._driver_alive(run):
            return
        pid = int(read_json(run.root / "driver.json")["pid"])
        for member in group_members(pid):  # the driver leads its own group
            if member == pid or "jobmon.distributor.cli" not in cmdline(member):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGTERM)
        for signum in (signal.SIGKILL, None):
            deadline = time.monotonic() + grace
            while self._driver_alive(run) and time.monotonic() < deadline:
                time.sleep(0.1)
            if signum is None or not self._driver_alive(run):
                return
            logger.warning("jobmon driver {} did not stop within {} s; killing its group",
                           pid, grace)
            for member in group_members(pid):
                if member != pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signum)

    @staticmethod
    def _recorded(handle: JobHandle) -> JobStatus | None:
        try:
            result = read_result(handle.result_path, key=handle.key)
        except BackendError as exc:
            logger.warning("{}", exc)
            return None
        return None if result is None else JobStatus.from_result(result)

    def _orphan(self, run: _Run, node: str, failed: set[str]) -> JobStatus:
        """A task jobmon will not finish now that no driver runs it."""
        plan = run.plan
        if plan is not None and node in ancestors_failed(plan, _plan_nodes(plan, failed)):
            return JobStatus(JobState.CANCELLED, reason="not run: an upstream task failed")
        if plan is not None and plan.fail_fast and failed:
            return JobStatus(JobState.CANCELLED,
                             reason="not run: jobmon stopped after a failure (fail_fast)")
        info = read_json(run.root / "driver.json")
        end = read_json(run.root / f"driver-{info.get('generation', 0)}.exit.json")
        why = end.get("error") or f"status {end.get('status', 'unknown')}"
        return JobStatus(JobState.LOST, reason=(
            f"the jobmon driver ended ({why}) before this task finished; see {info.get('log')}"))

    # -- the server ---------------------------------------------------------------------------

    def _task_states(self, run: _Run) -> dict[str, tuple[int, JobState]]:
        """Node (as named in jobmon) -> (attempt, state) of every bound task: ONE request."""
        workflow_id = read_json(run.root / "workflow.json").get("workflow_id")
        if workflow_id is None:
            return {}
        rows = parse_workflow_tasks(self._get(f"/workflow/{workflow_id}/workflow_tasks"))
        out: dict[str, tuple[int, JobState]] = {}
        for name, status in rows.items():
            parsed = parse_task_name(name)
            state = STATES.get(status)
            if parsed is not None and state is not None:
                out[parsed[0]] = (parsed[1], state)
        return out

    def set_max_concurrent(self, limit: int) -> str:
        """``gristmill limit --max-concurrent``: jobmon's own live limit of each workflow
        (what ``jobmon concurrency_limit`` sets); drivers started later get it too."""
        self.max_concurrent = limit
        changed = []
        for run in self.runs.values():
            workflow_id = read_json(run.root / "workflow.json").get("workflow_id")
            if workflow_id is not None:
                self._get(f"/workflow/{workflow_id}/update_max_concurrently_running",
                          method="PUT", body={"max_tasks": limit})
                changed.append(str(workflow_id))
        if not changed:
            return f"jobmon workflows started from now on run at most {limit} task(s) at once"
        return (f"jobmon workflow {', '.join(changed)} now runs at most {limit} task(s) "
                "at once")

    def _get(self, route: str, *, method: str = "GET",
             body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        # jobmon 3.2's routes all read a JSON body: without one they answer 500.
        request = urllib.request.Request(self.service_url + route,
                                         data=json.dumps(body or {}).encode(), method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                data = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise BackendError(f"jobmon server {self.service_url}{route}: {exc}",
                               transient=True) from None
        if not isinstance(data, dict):
            raise BackendError(f"jobmon server {self.service_url}{route}: not a JSON object")
        return data






def _plan_nodes(plan: WorkflowPlan, named: set[str]) -> set[str]:
    """Plan nodes from their names as jobmon task names carry them."""
    return {t.node for t in plan.tasks if name_node(t.node) in named}


def _configured_url() -> str:
    try:
        from jobmon.core.configuration import JobmonConfig

        return str(JobmonConfig().get("http", "service_url"))
    except Exception:  # any configuration trouble means "not configured"
        return ""


# -- the processes jobmon runs ----------------------------------------------------------------
