"""The dispatch loop and the task state machine.

PENDING → READY → SUBMITTED → RUNNING → DONE | FAILED | UPSTREAM_FAILED |
CANCELLED; a retried attempt goes back to READY. Every transition is written
to the store before the engine acts on it: an attempt is recorded before it is
submitted and its job id right after, so a crash at any point leaves a record
that the next engine can re-adopt (see :meth:`Engine.adopt`).

The loop never busy-waits: it blocks in ``backend.wait`` (the local backend
wakes as soon as an attempt ends; schedulers are polled on an interval that is at
its floor after a submission or a poll that saw jobs end, and grows towards its
ceiling while nothing changes: :mod:`gristmill.engine.polling`).

Fault injection for the reliability tests: :mod:`gristmill.engine.faults`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from gristmill.backends.base import (
    Backend,
    JobHandle,
    JobRequest,
    JobStatus,
    SubmitLimit,
    SubmitLimitError,
)
from gristmill.dsl.scripts import render_argv
from gristmill.engine.adopt import adopt as adopt_attempts
from gristmill.engine.dispatch import SubmitCap, dag_batch, live_descendants
from gristmill.engine.faults import FAULT
from gristmill.engine.interrupts import Interrupted, SignalGuard
from gristmill.engine.outcome import Action, authoritative, decide, spends_retry
from gristmill.engine.plan import Plan
from gristmill.engine.polling import PollSchedule
from gristmill.engine.progress import Failure, Observer, finished_count, snapshot
from gristmill.engine.steering import META_KEY as STEERING_KEY
from gristmill.engine.steering import (
    RESCAN,
    Limits,
    Mailbox,
    Request,
    Steering,
    check_tasks,
    steered,
    tell_dag_backend,
)
from gristmill.engine.tracker import Tracker
from gristmill.errors import BackendError, RunDirError, RunDirGoneError, SpecError, StoreError
from gristmill.graph.names import task_dir
from gristmill.resources import Resources
from gristmill.states import JobState, NodeState
from gristmill.store.db import AttemptRecord, Store
from gristmill.store.watch import RunWatch
from gristmill.worker.result import AttemptResult, ResultMismatchError, read_result

#: Consecutive transient submission failures before the batch fails for good.
SUBMIT_RETRIES = 5
_READY = bytes([NodeState.READY])
#: Seconds at most between a commit and the checkpoint that makes it durable on disk.
SYNC_EVERY = 1.0
#: Seconds at most between two looks at whether the run directory is still there, while
#: the loop waits (between cycles it looks every cycle).
WATCH_EVERY = 1.0


@attrs.define
class Live:
    node: int
    attempt: int
    key: str
    task: str
    handle: JobHandle
    resources: Resources
    result_path: str
    state: JobState = JobState.QUEUED
    adopted: bool = False  # submitted by an earlier engine of this run
    reason: str = ""  # why the scheduler keeps it queued, as last recorded
    chunk: int = 1  # its task's chunk: the share of one scheduler job it takes is 1/chunk


class Engine:
    """Runs one resolved graph against one backend, recording everything in the store."""

    def __init__(
        self,
        *,
        plan: Plan,
        store: Store,
        backend: Backend,
        run_dir: Path,
        states: bytearray,
        attempts: list[int],
        watch: RunWatch | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.graph = graph = plan.graph
        self.store = store
        self.backend = backend
        self.run_dir = run_dir
        #: Whether the run directory, store and lock file are still the ones taken.
        self.watch = watch
        self.config = plan.config
        self.base_plans = plan.units
        self.plans = list(plan.units)
        self.tracker = Tracker(graph, states)
        self.attempts = attempts  # per node: attempts ever made (numbers log files)
        self.tries: dict[int, int] = defaultdict(int)  # per node: failed attempts this run
        self.lost: dict[int, int] = defaultdict(int)
        self.preempted: dict[int, int] = defaultdict(int)  # PREEMPTED or NODE_FAIL ends
        self.escalated: dict[int, Resources] = {}
        self.live: dict[str, Live] = {}
        self.live_per_task: dict[str, int] = defaultdict(int)
        self.identities = plan.identities
        self.stopping = False
        self._submit_failures = 0
        self._submit_paused_until = 0.0
        #: The scheduler's submit limit, as read at start or learned from refusals.
        self.submit_cap = SubmitCap()
        self._reasons: dict[str, str] = {}  # attempt key -> pending reason, not yet written
        self.guard = SignalGuard()
        self._unsynced: float | None = None  # when the oldest commit not yet synced was made
        self._log_dirs: dict[str, Path] = {}  # task name -> its made log directory
        self._attempt_updates: list[dict[str, Any]] = []
        self._new_attempts: list[AttemptRecord] = []
        self._attempt_counts: dict[int, int] = {}
        self.failed_nodes: list[int] = []
        #: What the backend declared; read once, each field honoured below.
        self.capabilities = backend.capabilities
        #: What ``gristmill limit``/``pause`` set (:mod:`.steering`); applied over the plan.
        self.steering = Steering()
        self.mailbox = Mailbox(run_dir)
        self._unit_tasks = [unit.task.name for unit in graph.workflow.units]
        self.window = 10_000
        self._apply_steering()
        #: The backend runs dependencies and retries itself: it gets every node at once.
        self.dag = self.capabilities.dag
        self._polled_at = 0.0  # when ``poll`` was last called (time.monotonic())
        #: When polls began to fail (the scheduler does not answer); None while they work.
        self._unanswered_since: float | None = None
        #: How long the loop waits before its next poll (:mod:`.polling`).
        self.schedule = PollSchedule.of(
            engine_min=self.config.poll_min, engine_max=self.config.poll_max,
            backend_min=self.capabilities.poll_min, backend_max=self.capabilities.poll_max)
        #: Who watches (the CLI's progress display); snapshots at most every interval.
        self.observer = observer
        self._started = time.monotonic()
        self._finished_before = 0
        self._observed_at = -math.inf
        #: Whether requests carry their task's ``chunk``: only to a backend that packs them.
        self.chunks = self.capabilities.chunks
        self._chunked = any((p.policy.chunk or 1) > 1 for p in self.plans)
        if self._chunked and not self.chunks:
            logger.debug("backend {} runs one node per job: the tasks' chunk is ignored",
                         backend.name)
            self._chunked = False

    # -- helpers -----------------------------------------------------------------------------

    def _unit_of(self, node: int) -> tuple[int, int]:
        return self.graph.locate(node)

    def _task_limit(self, unit: int) -> int | None:
        return self.plans[unit].policy.max_concurrent

    # -- steering ------------------------------------------------------------------------------

    def _apply_steering(self) -> None:
        """Plans, caps and the in-flight window as the plan and steering make them."""
        self.plans = steered(self.base_plans, self._unit_tasks, self.steering)
        first = self.steering.workflow.max_concurrent or self.config.max_concurrent
        limits = [x for x in (first, self.capabilities.max_inflight) if x]
        self.window = min(limits) if limits else 10_000

    def steer(self, requests: Sequence[Request]) -> None:
        """Apply steering requests and record them in the store before acting on them."""
        steering = self.steering
        for request in requests:
            try:
                check_tasks(request, self._unit_tasks)
            except SpecError as exc:
                logger.warning("ignoring steering request {}: {}", request.describe(), exc)
                continue
            steering = steering.apply(request)
            logger.info("steering: {}", request.describe())
            if self.dag and request.action == "limit":
                tell_dag_backend(self.backend, request)
        if steering is self.steering:
            return
        with self.guard.section(), self.store.transaction() as cur:
            self.store.set_meta(cur, STEERING_KEY, steering.to_json())
        self.steering = steering
        self._apply_steering()

    def _check_mailbox(self) -> None:
        if self.mailbox.pending():
            self.steer(self.mailbox.take())

    def observe(self, *, final: bool = False) -> None:
        """Hand the observer a snapshot when its interval has passed (or at the end)."""
        observer = self.observer
        if observer is None:
            return
        now = time.monotonic()
        if not final and now < self._observed_at + observer.interval:
            return
        self._observed_at = now
        observer.update(snapshot(self.graph, self.tracker.states, started=self._started,
                                 finished_before=self._finished_before, final=final))

    def _work_waits(self) -> bool:
        """A paused run with nothing live still has READY nodes to run once unpaused."""
        return self.steering.paused and not self.stopping and _READY in self.tracker.states

    # -- signals -------------------------------------------------------------------------------

    def signals(self) -> AbstractContextManager[None]:
        """Ctrl-C and SIGTERM stop the run while inside (see :class:`SignalGuard`)."""
        return self.guard.handling()

    def defer_signals(self) -> None:
        """From now on a Ctrl-C or SIGTERM inside :meth:`signals` is dropped (the run ended)."""
        self.guard.critical = True

    # -- the loop ---------------------------------------------------------------------------

    def run(self, adopt: Sequence[AttemptRecord] = ()) -> dict[str, int]:
        """Run until nothing is ready or running; return the final counts by state."""
        with self.signals():
            try:
                self.steering = Steering.from_json(self.store.meta().get(STEERING_KEY))
                self._apply_steering()
                if self.dag and self.steering.workflow.max_concurrent:  # steered before
                    tell_dag_backend(self.backend, Request("limit", limits=Limits(
                        max_concurrent=self.steering.workflow.max_concurrent)))
                self._check_mailbox()  # requests left while no engine ran
                if self.capabilities.submit_limit and isinstance(self.backend, SubmitLimit):
                    self.submit_cap.limit = self.backend.submit_limit()
                arrived = adopt_attempts(self, adopt)
                self.tracker.start()
                self._finished_before = finished_count(self.tracker.states)
                for live, status in arrived:  # ended while no engine watched
                    self._finish(live, status)
                self.flush()
                self._loop()
                self._check_run_dir()  # a run that vanished is never reported as complete
                self.observe(final=True)
            except RunDirGoneError:
                logger.warning("stopping: the run directory is gone; cancelling {} live job(s)",
                               len(self.live))
                self.guard.critical = True  # a Ctrl-C must not break the cleanup
                self.stopping = True
                self.cancel_all("the run directory was deleted or moved while the engine ran")
                with contextlib.suppress(RunDirError):  # the store may be gone with it
                    self.flush()
                raise
            except (Interrupted, KeyboardInterrupt):
                logger.warning("stopping: cancelling {} live job(s)", len(self.live))
                self.guard.critical = True  # a second Ctrl-C must not break the cleanup
                self.cancel_all("the run was interrupted")
                self.flush()
                raise Interrupted(
                    "the run was interrupted; resume it with gristmill resume"
                ) from None
        return self.tracker.counts()

    def _loop(self) -> None:
        schedule = self.schedule
        while True:
            self._check_run_dir()
            self.observe()
            self._check_mailbox()
            submitted = 0 if self.stopping or self.steering.paused else self.dispatch()
            self.flush()
            if submitted:
                schedule.submitted()
            if not self.live:
                if self._work_waits():  # paused: wait for unpause, Ctrl-C or cancel
                    time.sleep(RESCAN)
                    continue
                pause = self._submit_paused_until - time.monotonic()
                if submitted == 0 and pause <= 0:
                    return
                if pause > 0:  # a transient submission failure: wait, then try again
                    time.sleep(pause)
                continue
            self._pause(schedule.interval)
            finished = self.collect()
            self.flush()
            schedule.polled(finished)

    def _pause(self, interval: float) -> None:
        """Wait for news at most ``interval`` s, and until the backend's poll floor passed.

        The wait is cut into slices of at most :data:`~.steering.RESCAN` seconds so that
        a steering request is acted on within about a second. The local backend's
        ``wait`` returns as soon as an attempt ends, and a due
        checkpoint (:meth:`_sync`) cuts a wait short; neither may make the engine poll a
        backend sooner than its declared ``poll_min`` after the last poll. The rest of
        the floor is slept here: news cannot be acted on before the next poll anyway.

        Each slice of the wait (at most ``WATCH_EVERY`` s) ends with a look at the run
        directory (:meth:`_check_run_dir`), so a run directory that went is noticed
        within about a second however long the poll interval.
        """
        deadline = time.monotonic() + self._sync(interval)
        while (left := deadline - time.monotonic()) > 0:  # sliced: a steering request cuts it
            step = min(left, RESCAN, WATCH_EVERY)
            began = time.monotonic()
            self.backend.wait(step)
            self._check_run_dir()
            self.observe()
            if time.monotonic() - began < step * 0.9 or self.mailbox.pending():
                break  # the backend has news, or a steering request came
        rest = self._polled_at + self.capabilities.poll_min - time.monotonic()
        while rest > 0:
            time.sleep(min(self._sync(rest), WATCH_EVERY))
            self._check_run_dir()
            rest = self._polled_at + self.capabilities.poll_min - time.monotonic()

    def _check_run_dir(self) -> None:
        """Raise :class:`RunDirGoneError` when the run directory, its store or its lock file
        was deleted or moved (see :mod:`gristmill.store.watch`)."""
        if self.watch is not None:
            self.watch.check()

    def _sync(self, interval: float) -> float:
        """Make what was written durable (SQLite checkpoint, fsync) at most every SYNC_EVERY s;
        how long the loop may now wait.

        Every commit survives an engine crash at once; this bounds what a machine crash
        or failing storage can take back to the last second of transitions (their tasks
        would rerun), and never the run itself.
        """
        if self._unsynced is None:
            return interval
        due = self._unsynced + SYNC_EVERY - time.monotonic()
        if due > 0:
            return min(interval, due)
        self.store.checkpoint()
        self._unsynced = None
        return interval

    def dispatch(self) -> int:
        """Submit ready nodes up to the window, in batches; return how many."""
        total = 0
        if time.monotonic() < self._submit_paused_until:
            return 0
        if self.dag:
            return self._dispatch_dag()
        cap = self.submit_cap.cap(time.monotonic())
        window = self.window if cap is None else min(self.window, cap)
        while (inflight := self._inflight()) < window:
            batch: list[tuple[int, JobRequest, Resources]] = []
            room = min(window - inflight, self.config.batch_size)
            planned: dict[str, int] = defaultdict(int)
            full = functools.partial(self._full_with, planned=planned)
            jobs = 0.0
            for node in self.tracker.next_ready(full):
                request, resources = self._request(node)
                self.tracker.set(node, NodeState.SUBMITTED)  # an alias is not taken twice
                unit, _ = self._unit_of(node)
                planned[self.graph.workflow.units[unit].task.key] += 1
                batch.append((node, request, resources))
                jobs += 1.0 / request.chunk
                if jobs >= room:
                    break
            if not batch:
                break
            self._submit(batch)
            total += len(batch)
            if time.monotonic() < self._submit_paused_until:
                break  # refused for now: the batch waits out the pause
        return total

    def _inflight(self) -> float:
        """Jobs handed over and not yet ended, as the window and batches count them: a node
        of a chunked task is ``1/chunk`` of a job (its chunk's scheduler job runs it), so
        ``chunk: 1000`` lets a thousand times as many of its nodes through."""
        if not self._chunked:
            return len(self.live)
        return sum(1.0 / live.chunk for live in self.live.values())

    def _dispatch_dag(self) -> int:
        """Hand a ``dag`` backend every node it can run now, at once (see dag_dispatch)."""
        ready = list(self.tracker.next_ready(lambda _node: False))
        if not ready:
            return 0
        batch = dag_batch(self.graph, self.tracker.states, set(ready), self._request,
                          self._max_attempts)
        for node, _, _ in batch:
            self.tracker.set(node, NodeState.SUBMITTED)
        self._submit(batch)
        return len(batch)

    def _max_attempts(self, node: int) -> int:
        unit, _ = self._unit_of(node)
        return (self.plans[unit].policy.retries or 0) + 1

    def _full_with(self, node: int, planned: Mapping[str, int]) -> bool:
        unit, _ = self._unit_of(node)
        limit = self._task_limit(unit)
        if limit is None:
            return False
        key = self.graph.workflow.units[unit].task.key
        return self.live_per_task[key] + planned.get(key, 0) >= limit

    def _request(self, node: int) -> tuple[JobRequest, Resources]:
        unit_index, element = self._unit_of(node)
        unit = self.graph.workflow.units[unit_index]
        task = unit.task
        attempt = self.attempts[node] + 1
        self.attempts[node] = attempt
        self._attempt_counts[node] = attempt
        job_name = self.graph.job_name(unit_index, element)
        log_dir = self._log_dirs.get(task.name)
        if log_dir is None:
            # task_dir: a task's name never reaches outside logs/ nor makes a hidden directory.
            log_dir = self.run_dir / "logs" / task_dir(task.name)
            try:  # never parents=True: a run directory deleted meanwhile is not made again
                log_dir.parent.mkdir(exist_ok=True)
                log_dir.mkdir(exist_ok=True)
            except OSError as exc:
                self._check_run_dir()
                raise RunDirError(
                    f"cannot create the log directory {log_dir}: {exc.strerror}; free space or "
                    f"fix permissions, then resume the run (gristmill resume {self.run_dir})"
                ) from None
            self._log_dirs[task.name] = log_dir
        resources = self.escalated.get(node, self.plans[unit_index].resources)
        key = f"{self.identities[node][:16]}.{attempt}"
        # The key in the file names makes them the attempt's alone: the store keeps keys
        # unique, whatever the job names (which a changed workflow may give another node).
        name = f"{job_name}.{key}"
        request = JobRequest(
            key=key,
            task=task.name,
            job_name=job_name,
            argv=tuple(render_argv(task, unit.element_args(element))),
            resources=resources,
            stdout=log_dir / f"{name}.out",
            stderr=log_dir / f"{name}.err",
            result_path=log_dir / f"{name}.result.json",
            chunk=(self.plans[unit_index].policy.chunk or 1) if self.chunks else 1,
            fork_entry=task.key if self.plans[unit_index].policy.launch == "fork" else None,
        )
        return request, resources

    def _submit(self, batch: list[tuple[int, JobRequest, Resources]]) -> None:
        now = time.time()
        records = [
            AttemptRecord(
                identity=self.identities[node], attempt=self.attempts[node], key=req.key,
                task=req.task, job_name=req.job_name, backend=self.backend.name, job_id=None,
                result_path=str(req.result_path), stdout=str(req.stdout),
                stderr=str(req.stderr), argv=req.argv, resources=res.as_dict(),
                state=JobState.QUEUED.value, submitted=now,
            )
            for node, req, res in batch
        ]
        self._new_attempts.extend(records)
        self.flush()  # the attempt is on disk before the job can exist
        if FAULT:
            FAULT.reached("submit")
        with self.guard.section():
            try:
                handles = list(self.backend.submit([req for _, req, _ in batch]))
            except SubmitLimitError as exc:
                self._submission_limited(batch, exc)
                return
            except BackendError as exc:
                self._submission_failed(batch, exc)
                return
            self._submit_failures = 0
            self.submit_cap.accepted()
            if len(handles) != len(batch):
                raise BackendError(
                    f"backend {self.backend.name} returned {len(handles)} handles for "
                    f"{len(batch)} jobs"
                )
            if FAULT:
                FAULT.reached("after_submit")
            with self.store.transaction() as cur:
                self.store.set_job_ids(cur, [(h.key, h.job_id) for h in handles])
        for (node, req, res), handle in zip(batch, handles):
            self._track(node, self.attempts[node], req.task, handle, res, str(req.result_path))

    def _track(
        self, node: int, attempt: int, task: str, handle: JobHandle, res: Resources, result: str,
        *, adopted: bool = False,
    ) -> None:
        unit, _ = self._unit_of(node)
        task_key = self.graph.workflow.units[unit].task.key
        self.live[handle.key] = Live(
            node, attempt, handle.key, task_key, handle, res, result, adopted=adopted,
            chunk=(self.plans[unit].policy.chunk or 1) if self._chunked else 1,
        )
        self.live_per_task[task_key] += 1

    def collect(self) -> int:
        """Poll every live job once; handle what finished. Returns how many finished."""
        handles = [live.handle for live in self.live.values()]
        if not handles:
            return 0
        self._polled_at = time.monotonic()
        try:
            statuses = self.backend.poll(handles)
        except BackendError as exc:
            self._unanswered(exc)
            return 0
        if self._unanswered_since is not None:
            logger.warning("{} answers again after {:.0f} s; the run goes on",
                           self.backend.name, time.monotonic() - self._unanswered_since)
            self._unanswered_since = None
        finished = 0
        for handle, status in statuses.items():
            live = self.live.get(handle.key)
            if live is None:
                continue
            if not status.state.finished:
                if status.state is JobState.RUNNING and live.state is not JobState.RUNNING:
                    live.state = JobState.RUNNING
                    self.tracker.set(live.node, NodeState.RUNNING)
                    self._pending_reason(live, "")
                elif live.state is JobState.QUEUED:
                    self._pending_reason(live, status.reason)
                continue
            finished += 1
            self._finish(live, self._authoritative(live, status))
        return finished

    def _unanswered(self, exc: BackendError) -> None:
        """A poll failed: say so once, and keep waiting (polls back off meanwhile).

        A scheduler whose controller is busy, restarting or stopped fails every poll
        until it answers again; one warning says so, with what the first failure said,
        and one line when it answers. Nothing is concluded about the jobs meanwhile: they
        may well be running, and no attempt ends without a status or a result file.
        """
        if self._unanswered_since is None:
            self._unanswered_since = time.monotonic()
            logger.warning("polling {} failed: {}; waiting for it to answer (the jobs are "
                           "left as they are, nothing fails meanwhile)", self.backend.name, exc)
        else:
            logger.debug("polling {} failed again: {}", self.backend.name, exc)

    def _pending_reason(self, live: Live, reason: str) -> None:
        """Note why a queued job waits (the scheduler's reason; "" once it runs), to be
        written with the next flush only when it changed: no store write per poll per job."""
        if reason != live.reason:
            live.reason = reason
            self._reasons[live.key] = reason

    def _submission_limited(
        self, batch: list[tuple[int, JobRequest, Resources]], exc: SubmitLimitError
    ) -> None:
        """The scheduler refused the batch for a submit limit: no attempt was made.

        The batch's attempts are taken back (their rows deleted, their numbers reused),
        its nodes go back to READY, and the engine holds fewer jobs from now on
        (:class:`~.dispatch.SubmitCap`). Never a failure, never a spent retry.
        """
        held = math.ceil(self._inflight())  # scheduler jobs: a chunk of nodes is one
        tried = math.ceil(sum(1.0 / req.chunk for _, req, _ in batch))
        pause = self.submit_cap.refused(held, tried, exc.limit, time.monotonic())
        logger.warning("{}; holding at most {} job(s), next submission in {:g} s", exc,
                       self.submit_cap.cap(time.monotonic()), pause)
        keys = [req.key for _, req, _ in batch]
        with self.store.transaction() as cur:
            self.store.drop_attempts(cur, keys)
        for node, _, _ in batch:
            self.attempts[node] -= 1
            self._attempt_counts[node] = self.attempts[node]
            self.tracker.requeue(node)
        self._submit_paused_until = time.monotonic() + pause

    def _submission_failed(
        self, batch: list[tuple[int, JobRequest, Resources]], exc: BackendError
    ) -> None:
        """A transient refusal puts the batch back with a growing pause; others fail it."""
        self._submit_failures += 1
        final = not exc.transient or self._submit_failures > SUBMIT_RETRIES
        logger.error("submission failed{}: {}", "" if final else ", will retry", exc)
        for node, req, _ in batch:
            self._attempt_ended(node, req.key, JobStatus(JobState.FAILED, reason=str(exc)))
            if final:
                self._final_failure(node, NodeState.FAILED, JobStatus(JobState.FAILED,
                                                                      reason=str(exc)))
            else:
                self.tracker.requeue(node)
        if not final:
            self._submit_paused_until = time.monotonic() + min(60.0, 2.0**self._submit_failures)

    def _authoritative(self, live: Live, status: JobStatus) -> JobStatus:
        """How the attempt ended, by :func:`.outcome.authoritative` (the result file wins).

        A result file that is not this attempt's (:meth:`own_result`) makes it LOST,
        whatever the backend said: it is never taken for this attempt's outcome.
        """
        try:
            result = self.own_result(live.key, live.result_path)
        except ResultMismatchError as exc:
            logger.warning("{}", exc)
            return JobStatus(JobState.LOST, reason=str(exc))
        except BackendError as exc:
            logger.warning("{}", exc)
            return status
        return authoritative(status, result)

    def own_result(self, key: str, path: str) -> AttemptResult | None:
        """The result file of attempt ``key`` at ``path``; ``None`` while there is none.

        :class:`ResultMismatchError` for a file naming another attempt, and for one naming
        none (gristmill 0.1 wrote such) at a path the store gave another attempt too: a
        result naming no attempt is believed only where the path is the attempt's alone.
        A corrupt file raises :class:`BackendError`.
        """
        result = read_result(path, key=key)
        if result is not None and result.key is None and self.store.shares_result_path(
                key, path):
            raise ResultMismatchError(
                f"result file {path} names no attempt and was the result file of another "
                f"attempt as well (gristmill 0.1 named files by job name only): it cannot "
                f"be told whose it is, so attempt {key} is lost and runs again"
            )
        return result

    def _finish(self, live: Live, status: JobStatus) -> None:
        del self.live[live.key]
        self.live_per_task[live.task] -= 1
        node = live.node
        self._attempt_ended(node, live.key, status)
        if self.tracker.states[node] == NodeState.CANCELLED:
            return
        if status.state is JobState.SUCCEEDED:
            self.tracker.node_done(node)
            return
        if status.state is JobState.CANCELLED:
            if live.adopted and not self.stopping:
                # Cancelled while no engine ran (``gristmill cancel``); resuming means run it.
                self.tracker.requeue(node)
                return
            self.tracker.set(node, NodeState.CANCELLED)
            return
        self._retry_or_fail(live, status)

    def _retry_or_fail(self, live: Live, status: JobStatus) -> None:
        node = live.node
        unit, _ = self._unit_of(node)
        plan = self.plans[unit]
        if spends_retry(status.state, lost=self.lost[node], preempted=self.preempted[node]):
            self.tries[node] += 1
        verdict = decide(status, policy=plan.policy, base=plan.resources,
                         current=live.resources, tries=self.tries[node], lost=self.lost[node],
                         preempted=self.preempted[node],
                         no_retry=self.stopping or self.dag)  # a dag backend retried already
        if verdict.action is Action.RETRY_LOST:
            self.lost[node] += 1
            logger.warning("attempt {} was lost ({}); retrying", live.key, status.reason)
        elif verdict.action is Action.RETRY_PREEMPTED:
            self.preempted[node] += 1
            logger.warning("attempt {} ended {} ({}); retrying as it was", live.key,
                           status.state.value, status.reason)
        elif verdict.action is Action.FAIL:
            if verdict.why:
                logger.warning("{} of {}: {}; not retrying", status.state.value, live.key,
                               verdict.why)
            self._final_failure(node, NodeState.FAILED, status)
            return
        elif verdict.resources is not None:
            logger.info("{} of {}: retrying with {}", status.state.value, live.key,
                        verdict.resources.describe())
            self.escalated[node] = verdict.resources
        self.tracker.requeue(node)

    def _final_failure(self, node: int, state: NodeState, status: JobStatus) -> None:
        self.failed_nodes.append(node)
        if self.observer is not None:
            unit, element = self._unit_of(node)
            self.observer.failed(Failure(self.graph.workflow.units[unit].task.name,
                                         self.graph.job_name(unit, element), status.describe()))
        blocked = self.tracker.node_failed(node, state)
        if self.dag:
            blocked += self._drop_live_descendants(node)
        if blocked:
            logger.info("{} node(s) downstream of node {} cannot run", blocked, node)
        if self.config.fail_fast and not self.stopping:
            self.stopping = True
            logger.warning("fail_fast: stopping after the first failure")
            self.cancel_all("fail_fast after another node failed")

    def _drop_live_descendants(self, node: int) -> int:
        """Nodes handed to a ``dag`` backend below a failed one: it will not run them."""
        by_node = {live.node: live for live in self.live.values()}
        dropped = live_descendants(self.graph, node, by_node)
        for n in dropped:
            live = by_node[n]
            del self.live[live.key]
            self.live_per_task[live.task] -= 1
            self._attempt_ended(n, live.key, JobStatus(
                JobState.CANCELLED, reason=f"not run: upstream node {node} failed"))
            self.tracker.set(n, NodeState.UPSTREAM_FAILED)
        return len(dropped)

    def cancel_all(self, reason: str) -> None:
        """Cancel every live job, after one poll: what already ended keeps its real outcome."""
        if not self.live:
            return
        self.collect()
        if not self.live:
            return
        handles = [live.handle for live in self.live.values()]
        try:
            self.backend.cancel(handles)
        except BackendError as exc:
            logger.error("cancelling failed: {}", exc)
        for live in list(self.live.values()):
            del self.live[live.key]
            self.live_per_task[live.task] -= 1
            self._attempt_ended(live.node, live.key, JobStatus(JobState.CANCELLED, reason=reason))
            self.tracker.set(live.node, NodeState.CANCELLED)

    def _attempt_ended(self, node: int, key: str, status: JobStatus) -> None:
        self._attempt_updates.append(
            {
                "key": key, "state": status.state.value, "exit_code": status.exit_code,
                "signal": status.signal, "peak_rss": status.peak_rss, "elapsed": status.elapsed,
                "host": status.host, "reason": status.reason, "ended": time.time(),
                "cpu_time": status.cpu_time, "usage_source": status.usage_source,
            }
        )

    # -- persistence ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending change in one transaction.

        Signals wait until it is done, and a failed write keeps the changes for the
        next flush: a transition lost here would make a resume rerun a finished node.
        """
        with self.guard.section():
            singles, ranges = self.tracker.drain_changes()
            reasons = self._reasons
            if not (singles or ranges or self._new_attempts or self._attempt_updates
                    or reasons):
                return
            try:
                with self.store.transaction() as cur:
                    if self._new_attempts:
                        self.store.add_attempts(cur, self._new_attempts)
                    if self._attempt_updates:
                        self.store.finish_attempts(cur, self._attempt_updates)
                    if reasons:
                        self.store.set_pending_reasons(cur, list(reasons.items()))
                    self.store.set_states(cur, singles, ranges)
                    if self._attempt_counts:
                        self.store.set_attempt_counts(cur, list(self._attempt_counts.items()))
                    if FAULT:
                        FAULT.reached("status")
            except BaseException as exc:
                self.tracker.single_changes[:0] = singles
                self.tracker.range_changes[:0] = ranges
                if isinstance(exc, StoreError) and not isinstance(exc, RunDirGoneError):
                    self._check_run_dir()  # a store that moved away is the news, not the write
                raise
            self._new_attempts = []
            self._attempt_updates = []
            self._attempt_counts = {}
            self._reasons = {}
            if self._unsynced is None:
                self._unsynced = time.monotonic()
