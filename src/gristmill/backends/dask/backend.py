"""The dask backend: each attempt is one task on a ``dask.distributed`` cluster.

``DaskBackend(scheduler="tcp://host:8786")`` uses a running cluster (``scheduler`` may
also be a scheduler file); without it the backend starts a ``LocalCluster`` of its own,
in this process, for as long as it lives. A worker runs each attempt through the same
monitor as the other backends' wrapper (:mod:`gristmill.backends.dask.task`), so exit
code, signal, peak RSS, OOM and TIMEOUT come from the result file the attempt writes;
logs and result files need a file system the engine and the workers share.

- *submit*: one ``client.map`` per distinct resource request of the batch (a message on
  the client's stream, no round trip), then ``fire_and_forget`` so the scheduler keeps
  the tasks when the client goes away. Attempts ask for the worker resources ``cores``,
  ``memory`` and ``gpus`` (:mod:`gristmill.backends.dask.resources`); what no worker can
  hold ends FAILED at once, saying why and how to fix it.
- *poll*: no scheduler query for our own jobs: dask pushes each task's end to its
  future, and attempts announce their start with a dask event. Adopted jobs cost one
  ``get_task_status`` call for all (:mod:`gristmill.backends.dask.status`).
- *cancel*: a running dask task cannot be interrupted, so the attempt's loop is asked
  through ``<result>.cancel``; queued tasks are also force-cancelled in dask.
- *reattach*: a job id is ``<dask key>@<scheduler address>``. An external scheduler's
  jobs run on while no engine watches and are re-adopted by key. An own
  ``LocalCluster`` dies with its engine: its jobs are LOST and rerun, after what they
  left running on this machine is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import attrs
from loguru import logger

from gristmill.backends.base import Capabilities, JobHandle, JobRequest, JobStatus
from gristmill.backends.dask.resources import (
    CORES,
    MEMORY,
    WorkerInfo,
    refusal,
    restrictions,
    workers_from_info,
)
from gristmill.backends.dask.settings import SETTINGS
from gristmill.backends.dask.status import RUNNING, Tracker, ended, file_status, key_of, lost
from gristmill.backends.dask.task import (
    TOPIC,
    AttemptSpec,
    cancel_marker,
    run_attempt,
    stop_orphans,
)
from gristmill.errors import BackendError, SpecError
from gristmill.resources import parse_memory
from gristmill.states import JobState
from gristmill.worker.atomic import write_atomic
from gristmill.worker.procfs import mem_total
from gristmill.worker.result import AttemptResult, write_result

_WORKERS_TTL = 2.0  # seconds a look at the workers' resources stays good for submit
_N = TypeVar("_N", int, float)


def _dd() -> Any:
    """The distributed package, imported when a backend is built, not with this module.

    The CLI imports every backend class for its settings, and distributed takes 0.3 s to
    import (or is not installed: then building the backend says what to install). It
    is only partly typed (mypy --strict rejects calls into it), so it is used untyped.
    """
    import distributed

    return distributed


def _number(kind: type[_N], value: str | float, what: str, least: float) -> _N:
    """An option's value as ``kind`` (text such as "2" is parsed), at least ``least``."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < least:
        raise SpecError(f"dask backend option {what}={value!r}: give a number of at least "
                        f"{least:g}, e.g. {what}={max(least, 2):g}")
    return number


def dask_key(job: JobRequest) -> str:
    """The attempt's dask key: task name first (dask groups keys by it), unique per run.

    The engine's key is unique within a run only; the digest of the result path keeps two
    runs of one workflow on a shared scheduler apart.
    """
    where = os.path.abspath(job.result_path).encode()
    return f"{job.task}-{job.key}-{hashlib.blake2b(where, digest_size=6).hexdigest()}"


@attrs.define
class _Live:
    future: Any
    result_path: str


class DaskBackend:
    """Runs attempts as tasks on a dask.distributed cluster; see the module doc.

    ``n_workers``, ``cores`` and ``memory`` size the own ``LocalCluster`` (default: one
    worker with all of this machine). ``close()`` leaves an external cluster's jobs
    running; the own cluster is shut down after its unfinished jobs are cancelled.
    """

    name = "dask"
    #: ``max_inflight`` follows the cluster's threads: each instance sets its own.
    capabilities = Capabilities(reattach=True)
    settings = SETTINGS

    def __init__(
        self, *, scheduler: str | None = None, n_workers: int | str | None = None,
        cores: int | str | None = None, memory: int | str | None = None,
        grace: float | str = 5.0, connect_timeout: float | str = 30.0,
        worker_timeout: float | str = 60.0, lost_after: float | str = 60.0,
        max_inflight: int | str | None = None,
    ) -> None:
        # Options may come as text (``--option n_workers=2``, ``--option memory=8G``).
        self.grace = _number(float, grace, "grace", 0)
        self.worker_timeout = _number(float, worker_timeout, "worker_timeout", 0)
        lost_after = _number(float, lost_after, "lost_after", 0)
        timeout = _number(float, connect_timeout, "connect_timeout", 0.1)
        inflight = None if max_inflight is None else _number(int, max_inflight, "max_inflight", 1)
        scheduler = scheduler or None  # ``--option scheduler=`` means the own cluster
        self._futures: dict[str, _Live] = {}  # ours, not yet reported finished
        self._watch: set[str] = set()  # keys of ours whose start we wait to hear of
        self._started: set[str] = set()  # keys whose attempt announced its start
        self._running: set[str] = set()  # keys of ours reported RUNNING
        self._cancelled: set[str] = set()
        self._early: dict[str, JobStatus] = {}  # decided without dask (refused, dead cluster)
        self._warned: set[str] = set()
        self._workers_seen: tuple[float, list[WorkerInfo]] = (-_WORKERS_TTL, [])
        self._wakeup = threading.Event()
        self._closed = False
        self._cluster: Any = None
        if scheduler is None:
            self._cluster = self._start_cluster(n_workers, cores, memory)
        elif (n_workers, cores, memory) != (None, None, None):
            raise SpecError("dask backend options n_workers, cores and memory size its own "
                            "LocalCluster; drop them when you give scheduler=")
        self._client = self._connect(scheduler, timeout)
        self.address: str = self._client.scheduler.address
        self._tracker = Tracker(self.address, lost_after)
        self._client.subscribe_topic(TOPIC, self._on_started)
        self.capabilities = attrs.evolve(DaskBackend.capabilities, max_inflight=(
            inflight or max(16, 4 * sum(w.nthreads for w in self._workers()))))

    def _start_cluster(
        self, n_workers: int | str | None, cores: int | str | None, memory: int | str | None
    ) -> Any:
        """A LocalCluster in this process declaring this machine's cores and memory.

        Threads, not processes: a worker only waits on its attempts' processes, and an
        in-process cluster starts in milliseconds.
        """
        workers = 1 if n_workers is None else _number(int, n_workers, "n_workers", 1)
        total = (os.cpu_count() or 1) if cores is None else _number(int, cores, "cores", 1)
        mem = mem_total() if memory is None else parse_memory(memory, what="memory")
        each = max(1, total // workers)
        return _dd().LocalCluster(
            n_workers=workers, threads_per_worker=each, processes=False,
            resources={CORES: each, MEMORY: mem // workers}, memory_limit=0,
            dashboard_address="127.0.0.1:0",  # its HTTP server (health routes) starts anyway
            silence_logs=logging.ERROR,  # gristmill reports what matters about its jobs
        )

    def _connect(self, scheduler: str | None, timeout: float) -> Any:
        try:
            if self._cluster is not None:
                return _dd().Client(self._cluster, set_as_default=False)
            if os.path.isfile(scheduler or ""):
                return _dd().Client(scheduler_file=scheduler, timeout=timeout,
                                  set_as_default=False)
            return _dd().Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, ValueError) as exc:
            if self._cluster is not None:
                self._cluster.close()
            raise BackendError(
                f"cannot connect to the dask scheduler at {scheduler}: {exc}; start one "
                "(dask scheduler) and its workers, or give its address as tcp://host:port",
                transient=True,
            ) from None

    # -- the Backend protocol ---------------------------------------------------------

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        """One ``client.map`` per resource request; jobs no worker can hold end FAILED."""
        if self._closed:
            raise BackendError("this DaskBackend is closed; create a new one to submit jobs")
        workers = self._workers_for_submit() if jobs else []
        groups: dict[tuple[tuple[str, float], ...], list[AttemptSpec]] = {}
        handles = []
        cwd = os.getcwd()
        for job in jobs:
            key = dask_key(job)
            result = os.path.abspath(job.result_path)
            handles.append(JobHandle(self.name, f"{key}@{self.address}", job.key, result))
            need = self._restrictions(job, workers)
            why = refusal(job.task, need, workers, self.address)
            if why is not None:
                self._refuse(job, key, result, why)
                continue
            groups.setdefault(tuple(sorted(need.items())), []).append(AttemptSpec(
                key=key, attempt=job.key, argv=tuple(job.argv), stdout=os.path.abspath(job.stdout),
                stderr=os.path.abspath(job.stderr), result=result, mem=job.resources.mem,
                runtime=job.resources.runtime, env=tuple(job.env),
                cwd=os.path.abspath(job.cwd) if job.cwd is not None else cwd, grace=self.grace,
            ))
        sent: list[Any] = []
        try:
            for asked, specs in groups.items():
                self._watch.update(s.key for s in specs)
                futures = self._client.map(run_attempt, specs, key=[s.key for s in specs],
                                           resources=dict(asked) or None, pure=False)
                _dd().fire_and_forget(futures)
                sent.extend(futures)
                for spec, future in zip(specs, futures):
                    self._futures[spec.key] = _Live(future, spec.result)
                    future.add_done_callback(self._wake)
        except (OSError, RuntimeError) as exc:  # all or nothing: the engine retries the batch
            for future in sent:
                self._futures.pop(future.key, None)
            with contextlib.suppress(OSError, RuntimeError):
                self._client.cancel(sent, force=True)
            raise BackendError(f"submitting to the dask scheduler at {self.address} failed: "
                               f"{exc}", transient=True) from None
        return handles

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """What changed since the last poll. Our own jobs cost no scheduler query."""
        out: dict[JobHandle, JobStatus] = {}
        tracked = []
        for handle in handles:
            key = key_of(handle)
            early = self._early.pop(key, None)
            if early is not None:
                out[handle] = early
                continue
            live = self._futures.get(key)
            if live is None:
                if key in self._tracker.keys:
                    tracked.append(handle)
                else:  # reported before, or never ours
                    out[handle] = file_status(handle) or lost(handle, self.address)
                continue
            state = live.future.status
            if state == "pending":
                if key in self._started and key not in self._running:
                    self._running.add(key)
                    out[handle] = RUNNING
                continue
            status = ended(handle, live.future, state, key in self._cancelled)
            del self._futures[key]
            live.future.release()  # dask may forget it (and its small result) now
            self._watch.discard(key)
            self._started.discard(key)
            self._running.discard(key)
            if status is None:  # dask dropped it without being asked: follow it by key
                self._tracker.keys.add(key)
                tracked.append(handle)
            else:
                out[handle] = status
        if tracked:
            try:
                out.update(self._tracker.poll(self._client, tracked))
            except BackendError as exc:  # the others' news must not be lost with it
                logger.warning("{}; will ask again", exc)
        return out

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Leave a ``.cancel`` marker for each attempt and force-cancel our tasks in dask."""
        futures = []
        for handle in handles:
            key = key_of(handle)
            live = self._futures.get(key)
            if key not in self._tracker.keys if live is None else live.future.done():
                continue  # finished, refused, or not ours
            if os.path.exists(handle.result_path):
                continue
            try:
                write_atomic(cancel_marker(handle.result_path), "")
            except OSError as exc:
                logger.warning("cannot ask job {} to stop ({}); it will run to its end",
                               handle.key, exc)
            self._cancelled.add(key)
            if live is not None:
                futures.append(live.future)
        if futures:
            try:
                self._client.cancel(futures, force=True)
            except (OSError, RuntimeError) as exc:
                logger.warning("dask could not cancel {} queued task(s): {}; they will stop "
                               "as soon as they start", len(futures), exc)

    def attach(self, handles: Sequence[JobHandle]) -> None:
        """Re-adopt jobs of an earlier engine: by key on a live scheduler, LOST on a dead one."""
        dead: dict[str, JobHandle] = {}
        foreign: set[str] = set()
        for handle in handles:
            if handle.backend != self.name:
                raise BackendError(
                    f"job {handle.key} was submitted to the {handle.backend!r} backend, not "
                    "'dask'; resume the run with that backend"
                )
            key, _, origin = handle.job_id.partition("@")
            if origin.startswith("inproc://") and origin != self.address:  # died with its engine
                dead[key] = handle
                continue
            if origin and origin != self.address:
                foreign.add(origin)
            self._tracker.keys.add(key)
        if foreign:
            logger.warning(
                "jobs of this run were submitted to the dask scheduler at {}, not {}: they are "
                "followed through their result files only and count as LOST after {:g} s "
                "without one; resume with --dask-scheduler {} to follow them",
                ", ".join(sorted(foreign)), self.address, self._tracker.lost_after,
                min(foreign))
        if dead:
            killed = stop_orphans(set(dead))
            for key, handle in dead.items():
                pids = killed.get(key)
                left = f" (its processes {pids} were still running: killed)" if pids else ""
                self._early[key] = file_status(handle) or JobStatus(
                    JobState.LOST, reason=f"the engine's own dask LocalCluster ended with that "
                    f"engine before the attempt did{left}")

    def wait(self, timeout: float) -> None:
        """Block until one of our tasks ends, at most ``timeout`` (adopted ones: a sleep)."""
        if self._futures:
            self._wakeup.wait(max(0.0, timeout))
            self._wakeup.clear()
        else:
            time.sleep(max(0.0, timeout))

    def close(self) -> None:
        """Disconnect; an own LocalCluster's unfinished jobs are cancelled, then it stops."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._cluster is not None:
                self._stop_own_jobs()
            with contextlib.suppress(OSError, RuntimeError, asyncio.TimeoutError):
                self._client.close(timeout=10)
        finally:
            if self._cluster is not None:
                with contextlib.suppress(OSError, RuntimeError, asyncio.TimeoutError):
                    self._cluster.close(timeout=10)

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------------

    def _on_started(self, event: tuple[float, Any]) -> None:
        """Dask event handler (the client's loop thread): an attempt announced its start."""
        message = event[1]
        if isinstance(message, dict) and message.get("key") in self._watch:
            self._started.add(message["key"])

    def _wake(self, _: object) -> None:
        self._wakeup.set()

    def _workers(self) -> list[WorkerInfo]:
        try:
            info = self._client.scheduler_info()
        except (OSError, RuntimeError) as exc:
            raise BackendError(f"cannot reach the dask scheduler at {self.address}: {exc}",
                               transient=True) from None
        workers = workers_from_info(info)
        self._workers_seen = (time.monotonic(), workers)
        return workers

    def _workers_for_submit(self) -> list[WorkerInfo]:
        """The workers' resources (looked up at most every 2 s); waits for a first worker."""
        seen, workers = self._workers_seen
        if workers and time.monotonic() - seen < _WORKERS_TTL:
            return workers
        workers = self._workers()
        if not workers:
            logger.info("the dask cluster at {} has no workers; waiting up to {:g} s for one",
                        self.address, self.worker_timeout)
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                self._client.wait_for_workers(1, timeout=self.worker_timeout)
            workers = self._workers()
        if not workers:
            raise BackendError(
                f"the dask cluster at {self.address} has no workers after "
                f"{self.worker_timeout:g} s; start some with: dask worker {self.address} "
                '--nthreads N --resources "cores=N memory=BYTES"', transient=True)
        return workers

    def _restrictions(self, job: JobRequest, workers: Sequence[WorkerInfo]) -> dict[str, float]:
        need, undeclared = restrictions(job.resources, {n for w in workers for n in w.resources})
        for name in undeclared:
            if f"resource {name}" not in self._warned:
                self._warned.add(f"resource {name}")
                logger.warning(
                    "no worker of the dask cluster at {} declares a {!r} resource, so tasks are "
                    "placed without regard to it; start workers with --resources \"cores=N "
                    "memory=BYTES\"", self.address, name)
        return need

    def _refuse(self, job: JobRequest, key: str, result_path: str, reason: str) -> None:
        """End the attempt FAILED without running it; the result file says why."""
        now = time.time()
        result = AttemptResult(JobState.FAILED, None, None, None, 0.0, "", now, now, reason,
                               job.key)
        try:
            write_result(result_path, result, key=job.key)
        except OSError as exc:
            logger.warning("cannot write {}: {}", result_path, exc)
        self._early[key] = JobStatus.from_result(result)
        if job.task not in self._warned:
            self._warned.add(job.task)
            logger.error("{}", reason)

    def _stop_own_jobs(self) -> None:
        """Before the own LocalCluster stops: cancel what it still runs, wait for it to end."""
        pending = [JobHandle(self.name, key, key, lv.result_path)
                   for key, lv in self._futures.items() if not lv.future.done()]
        if pending:
            logger.warning("stopping the engine's own dask LocalCluster: cancelling {} "
                           "unfinished job(s)", len(pending))
            self.cancel(pending)
        # Cancelled attempts still stop their processes (grace); their worker threads die
        # with the cluster, so wait for the result files they write once that is done.
        deadline = time.monotonic() + self.grace + 2.0
        waiting = [lv.result_path for key, lv in self._futures.items() if key in self._started]
        while waiting and time.monotonic() < deadline:
            waiting = [path for path in waiting if not os.path.exists(path)]
            if waiting:
                time.sleep(0.05)
