"""From a recorded workflow to a finished run: spec, run directory, lock, store, engine.

This is what ``Workflow.run`` and ``gristmill run|resume`` call. Everything
that can be wrong with the user's input (spec, graph, run directory) is
checked before anything is written, so bad input leaves no half-made run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from gristmill import runs
from gristmill.backends.base import Backend
from gristmill.backends.registry import make_backend
from gristmill.engine.hooks import Hooks, run_hook
from gristmill.engine.interrupts import Interrupted
from gristmill.engine.loop import Engine
from gristmill.engine.plan import Plan, RunOptions, make_plan
from gristmill.engine.progress import Observer
from gristmill.engine.reconcile import apply, decide, forced_nodes
from gristmill.errors import GristmillError, RunDirError
from gristmill.graph.identity import IDENTITY_VERSION
from gristmill.resources import Policy, Resources
from gristmill.runs.directory import check_writable
from gristmill.spec.load import Spec
from gristmill.spec.settings import idle_escalations
from gristmill.states import NodeState
from gristmill.store.db import STORE_NAME, Store
from gristmill.store.lock import LOCK_NAME, RunLock
from gristmill.store.watch import RunWatch

if TYPE_CHECKING:
    from gristmill.dsl.workflow import Workflow


@attrs.frozen
class RunResult:
    """How a run ended. Task failures are here, not raised."""

    ok: bool
    run_dir: Path
    counts: Mapping[str, int]
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return self.counts.get("FAILED", 0) + self.counts.get("UPSTREAM_FAILED", 0)


def prepare_run_dir(run_dir: str | os.PathLike[str], *, resume: bool) -> tuple[Path, bool]:
    """(run directory, whether it already holds a run). A root gets a new numbered run."""
    path, existing = locate_run_dir(run_dir, resume=resume)
    return (path, True) if existing else (runs.make_run_directory(path), False)


def locate_run_dir(run_dir: str | os.PathLike[str], *, resume: bool) -> tuple[Path, bool]:
    """(an existing run, True) or (the root a new run would be made in, False); writes nothing.

    The path is made absolute with links resolved (``runs/latest`` is the run it points
    at now), so the paths the store records stay right from any working directory and
    after ``latest`` moves on.
    """
    path = Path(run_dir).resolve()
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--run-dir {path} is a file; give a directory (a root for runs)")
    if (path / STORE_NAME).exists():
        if not resume:
            raise RunDirError(
                f"{path} already holds a run; resume it (gristmill resume {path}) or give a "
                "root directory to start a new numbered run in"
            )
        return path, True
    return path, False


def plan_for_run(plan: Plan, path: Path) -> Plan:
    """The plan as the run stored in ``path`` needs it (read without writing anything).

    A run directory keeps its meaning: another workflow function is refused, before
    anything in the directory changes. The run's identity version is kept, so a store
    made by an older gristmill still recognises its DONE nodes.
    """
    with Store.untouched(path, full=False) as store:  # refuses a run an engine holds
        meta = store.meta()
    stored = meta.get("function")
    wf = plan.workflow
    if stored != wf.function:
        raise RunDirError(
            f"{path} holds a run of workflow {meta.get('workflow')!r} ({stored}), not of "
            f"{wf.name!r} ({wf.function}); nothing was changed. Start a new run by giving a "
            f"root directory for runs (--run-dir {path.parent}), or continue that run with: "
            f"gristmill resume {path}"
        )
    version = meta.get("identity_version", 1)
    if version not in (1, IDENTITY_VERSION):
        raise RunDirError(
            f"{path}: the run identifies its nodes by version {version} of gristmill's "
            f"identities, which this gristmill does not know (it makes version "
            f"{IDENTITY_VERSION}); upgrade gristmill to resume it (nothing was changed)"
        )
    if version != IDENTITY_VERSION:
        logger.info("{} was started by an older gristmill: it keeps its node identities "
                    "(version {}); a node still reruns when anything upstream of it changed",
                    path, version)
    return attrs.evolve(plan, identity_version=version)


def _package_of(function_key: str) -> str | None:
    module = function_key.partition(":")[0]
    top = module.split(".")[0]
    return top if top and top != "__main__" else None


def run_workflow(
    wf: Workflow,
    *,
    backend: str | None = None,
    run_dir: str | os.PathLike[str] = "runs",
    spec: Spec | str | os.PathLike[str] | None = None,
    resume: bool = True,
    resources: Resources | None = None,
    policy: Policy | None = None,
    max_concurrent: int | None = None,
    fail_fast: bool | None = None,
    poll_interval: float | None = None,
    argv: list[str] | None = None,
    backend_options: Mapping[str, Any] | None = None,
    rerun: Sequence[str] = (),
    observer: Observer | None = None,
    on_success: str | None = None,
    on_failure: str | None = None,
    **more_backend_options: Any,
) -> RunResult:
    """Run ``wf`` to completion in ``run_dir`` (a root, or an existing run to resume).

    Backend options may come as one mapping (``backend_options``) as well as keywords.
    ``rerun`` names tasks, job names or identity prefixes to run again even if DONE, with
    everything downstream of them. ``observer`` receives progress while it runs
    (:mod:`gristmill.engine.progress`); ``on_success``/``on_failure`` are shell
    commands run when it ends (:mod:`gristmill.engine.hooks`).
    """
    plan = make_plan(wf, RunOptions(
        backend=backend, spec=spec, resources=resources, policy=policy,
        max_concurrent=max_concurrent, fail_fast=fail_fast, poll_interval=poll_interval,
        backend_options={**(backend_options or {}), **more_backend_options},
        rerun=(rerun,) if isinstance(rerun, str) else tuple(rerun),
        hooks=Hooks(on_success, on_failure),
    ))
    return run_plan(plan, run_dir, resume=resume, argv=argv, observer=observer)


def run_plan(
    plan: Plan, run_dir: str | os.PathLike[str], *, resume: bool = True,
    argv: list[str] | None = None, observer: Observer | None = None,
) -> RunResult:
    """Run a plan: its backend, a run directory, the lock, the store, the engine.

    What can be refused is refused before anything is written or started: a run directory
    this user cannot write, another workflow's run directory, a ``--rerun`` that names
    nothing, an unknown backend.
    """
    for warning in idle_escalations((u.task.name, p.policy)
                                    for u, p in zip(plan.workflow.units, plan.units)):
        logger.warning(warning)
    path, existing = locate_run_dir(run_dir, resume=resume)
    if existing:
        check_writable(path, (STORE_NAME, f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", LOCK_NAME,
                              runs.METADATA_FILE, "logs"))
        plan = plan_for_run(plan, path)
    forced = forced_nodes(plan)
    backend = make_backend(plan.backend, **plan.backend_options)
    try:
        if existing:  # a damaged or newer store is refused before even the lock file
            checked = Store.check_in_background(path)
            plan.identities  # noqa: B018 -- needed anyway: hashing hides the check's read
            checked()
        else:
            path = runs.make_run_directory(path)
        with RunLock(path) as lock:
            result = _run_locked(plan, path, existing, backend, argv, forced, lock, observer)
            for hook in plan.workflow.on_finish:
                hook(result)
    finally:
        backend.close()  # again after a run: close is idempotent
    status = "succeeded" if result.ok else ("cancelled" if result.interrupted else "failed")
    run_hook(plan.hooks, run_dir=result.run_dir, status=status, workflow=plan.workflow.name,
             counts=result.counts)  # after the lock: a hook may read or report the run
    return result


def _run_locked(
    plan: Plan, path: Path, existing: bool, backend: Backend, argv: list[str] | None,
    forced: bytearray | None, lock: RunLock, observer: Observer | None = None,
) -> RunResult:
    meta = plan.meta(backend.name)
    store = Store.open(path, check=False) if existing else Store.create(path, meta)
    try:
        assert lock.fd is not None
        watch = RunWatch.take(path, store.path, lock.path, lock.fd)
        if existing:
            decision = decide(store, plan, forced)
            open_attempts = apply(store, plan, decision)
            states, attempts = decision.states, decision.attempts
            logger.info("resuming {}: {} of {} nodes DONE and kept", path, decision.kept,
                        plan.graph.n_nodes)
            with store.transaction() as cur:  # `resume` rebuilds what ran last, not first
                for key, value in meta.items():
                    store.set_meta(cur, key, value)
        else:
            states = bytearray(plan.graph.n_nodes)
            attempts = [0] * plan.graph.n_nodes
            store.write_dag(plan.unit_rows(), plan.identities, plan.unit_of_nodes())
            open_attempts = []
        store.checkpoint()  # the run's definition is on disk before any task can start
        metadata = _collect_metadata(plan, backend.name, argv)
        if existing:  # the command that started the run stays; this resume is appended
            metadata = runs.resumed_metadata(path, metadata)
        metadata.dump(path)
        engine = Engine(plan=plan, store=store, backend=backend, run_dir=path, states=states,
                        attempts=attempts, watch=watch, observer=observer)
        interrupted = False
        with engine.signals():  # held until the run's record is complete
            try:
                counts = engine.run(open_attempts)
            except Interrupted:
                interrupted = True
                counts = engine.tracker.counts()
            engine.defer_signals()  # the run is over: another Ctrl-C must not cut the record
            ok = counts.get(NodeState.DONE.name, 0) == plan.graph.n_nodes
            status: runs.RunStatus = (
                "succeeded" if ok else ("cancelled" if interrupted else "failed")
            )
            metadata.finish(status, counts)
            try:
                metadata.dump(path)
            except RunDirError as exc:  # the store has the outcome; do not hide it behind this
                logger.error("{}; the run's outcome is in its store (gristmill status {})",
                             exc, path)
            backend.close()  # may wait for its helpers: here, a Ctrl-C does not cut it short
            store.close()  # checkpoints the log into the store
    finally:
        store.close()  # again after a run: closing twice is harmless
    logger.info("run {} {}: {}", path, "interrupted" if interrupted else status, counts)
    return RunResult(ok=ok, run_dir=path, counts=counts, interrupted=interrupted)


def _collect_metadata(plan: Plan, backend: str, argv: list[str] | None) -> runs.RunMetadata:
    try:
        metadata = runs.RunMetadata.collect(package=_package_of(plan.workflow.function),
                                            argv=argv)
    except GristmillError:
        metadata = runs.RunMetadata.collect(package=None, argv=argv)
    metadata.extra.update({"workflow": plan.workflow.name, "backend": backend})
    return metadata
