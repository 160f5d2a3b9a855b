"""From a recorded workflow to a finished run: spec, run directory, lock, store, engine.

This is what ``Workflow.run`` and ``gristmill run|resume`` call. Everything
that can be wrong with the user's input (spec, graph, run directory) is
checked before anything is written, so bad input leaves no half-made run.
"""

from __future__ import annotations

import importlib
import os
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from gristmill import runs
from gristmill.backends.base import Backend
from gristmill.backends.registry import make_backend
from gristmill.engine.faults import FAULT
from gristmill.engine.interrupts import Interrupted
from gristmill.engine.loop import Engine
from gristmill.engine.plan import Plan, RunOptions, make_plan
from gristmill.errors import GristmillError, RunDirError, SpecError
from gristmill.resources import Policy, Resources
from gristmill.spec.load import Spec
from gristmill.spec.settings import idle_escalations
from gristmill.states import NodeState
from gristmill.store.db import STORE_NAME, Store
from gristmill.store.lock import RunLock

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
    """(run directory, whether it already holds a run). A root gets a new numbered run.

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
    return runs.make_run_directory(path), False


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
    **more_backend_options: Any,
) -> RunResult:
    """Run ``wf`` to completion in ``run_dir`` (a root, or an existing run to resume).

    Backend options may come as one mapping (``backend_options``) as well as keywords.
    """
    plan = make_plan(wf, RunOptions(
        backend=backend, spec=spec, resources=resources, policy=policy,
        max_concurrent=max_concurrent, fail_fast=fail_fast, poll_interval=poll_interval,
        backend_options={**(backend_options or {}), **more_backend_options},
    ))
    return run_plan(plan, run_dir, resume=resume, argv=argv)


def run_plan(
    plan: Plan, run_dir: str | os.PathLike[str], *, resume: bool = True,
    argv: list[str] | None = None,
) -> RunResult:
    """Run a plan: its backend, a run directory, the lock, the store, the engine."""
    for warning in idle_escalations((u.task.name, p.policy)
                                    for u, p in zip(plan.workflow.units, plan.units)):
        logger.warning(warning)
    backend = make_backend(plan.backend, **plan.backend_options)  # unknown: nothing written
    try:
        path, existing = prepare_run_dir(run_dir, resume=resume)
        if existing:  # a damaged or newer store is refused before even the lock file
            checked = Store.check_in_background(path)
            plan.identities  # noqa: B018 -- needed anyway: hashing hides the check's read
            checked()
        with RunLock(path):
            return _run_locked(plan, path, existing, backend, argv)
    finally:
        backend.close()  # again after a run: close is idempotent


def _run_locked(
    plan: Plan, path: Path, existing: bool, backend: Backend, argv: list[str] | None
) -> RunResult:
    meta = plan.meta(backend.name)
    store = Store.open(path, check=False) if existing else Store.create(path, meta)
    try:
        if existing:
            states, attempts, open_attempts = _reconcile(store, plan)
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
                        attempts=attempts)
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


def _reconcile(store: Store, plan: Plan) -> tuple[bytearray, list[int], list[Any]]:
    """Carry DONE states over by identity; everything else runs again or is re-adopted.

    When every unit's digest and id range match the store's, so do the identities,
    node for node: then only the states are read, a character per node. Otherwise
    (another workflow, or a store without digests) nodes are matched by identity and
    the DAG is written again.
    """
    graph, identities = plan.graph, plan.identities
    layout = plan.layout()
    stored_layout = store.unit_digests()
    if stored_layout == layout:
        progress = store.node_progress()
        if progress is not None and len(progress[0]) == graph.n_nodes:
            return _carry_over(store, *progress)
    stored_ids, stored_states, stored_attempts = store.node_states()
    if stored_layout == layout and stored_ids == identities:
        return _carry_over(store, stored_states, stored_attempts)
    if any(digest is None for _, _, digest in stored_layout):
        logger.info("the store keeps no unit digests; matching nodes by identity")
    else:
        logger.info("the workflow changed since this run started; matching nodes by identity")
    by_identity = {i: (s, a) for i, s, a in zip(stored_ids, stored_states, stored_attempts)}
    done = int(NodeState.DONE)
    states = bytearray(graph.n_nodes)
    attempts = [0] * graph.n_nodes
    for node, identity in enumerate(identities):
        found = by_identity.get(identity)
        if found is not None:
            states[node] = done if found[0] == done else 0
            attempts[node] = found[1]
    store.write_dag(plan.unit_rows(), identities, plan.unit_of_nodes(), bytes(states),
                    attempts)
    return states, attempts, store.attempts(open_only=True)


#: Resuming keeps DONE and makes every other state PENDING (live attempts are re-adopted).
_KEEP_DONE = bytes(i if i == NodeState.DONE else 0 for i in range(256))
_UNFINISHED = re.compile(b"[^\\x%02x\\x%02x]+" % (NodeState.PENDING, NodeState.DONE))


def _carry_over(
    store: Store, stored_states: bytearray, attempts: list[int]
) -> tuple[bytearray, list[int], list[Any]]:
    """The same DAG as stored: keep DONE, record every other node going back to PENDING."""
    changed = [
        (m.start(), m.end() - 1, int(NodeState.PENDING))
        for m in _UNFINISHED.finditer(stored_states)
    ]
    with store.transaction() as cur:
        store.set_states(cur, (), changed, note="resume")
        if FAULT:
            FAULT.reached("reconcile")
    return stored_states.translate(_KEEP_DONE), attempts, store.attempts(open_only=True)


def rebuild_workflow(run_dir: Path) -> tuple[Workflow, dict[str, Any]]:
    """Record the run's workflow again from what its store says (for ``gristmill resume``).

    Only the store's metadata is read here: the full check of the store comes once,
    in :func:`run_workflow`, before anything is written.
    """
    Store.check(run_dir, full=False)
    store = Store.open(run_dir, readonly=True, check=False)
    try:
        meta = store.meta()
    except sqlite3.DatabaseError:
        Store.check(run_dir)  # says what is wrong with the store
        raise
    finally:
        store.close()
    function = meta.get("function")
    if not isinstance(function, str) or ":" not in function:
        raise RunDirError(f"{run_dir}: the store does not name the workflow function")
    module, _, qualname = function.partition(":")
    try:
        wf_fn: Any = importlib.import_module(module)
    except ImportError as exc:
        raise RunDirError(
            f"{run_dir}: cannot import {module!r} to rebuild workflow {function}: {exc}"
        ) from exc
    for part in qualname.split("."):
        wf_fn = getattr(wf_fn, part)
    args = meta.get("args") or {}
    if not isinstance(args, dict):
        raise SpecError(f"{run_dir}: stored workflow arguments are not a mapping")
    source = f"{run_dir} (stored spec)"  # as written by any version, in today's units:
    meta["spec"] = Spec.from_stored(meta.get("spec") or {}, source).to_dict()
    return wf_fn(**args), meta
