"""From a recorded workflow to a finished run: spec, run directory, lock, store, engine.

This is what ``Workflow.run`` and ``gristmill run|resume`` call. Everything
that can be wrong with the user's input (spec, graph, run directory) is
checked before anything is written, so bad input leaves no half-made run.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from gristmill import runs
from gristmill.backends.registry import make_backend
from gristmill.dsl.scripts import script_prefix
from gristmill.engine.faults import FAULT
from gristmill.engine.interrupts import Interrupted
from gristmill.engine.loop import Engine, EngineConfig, UnitPlan
from gristmill.errors import GristmillError, RunDirError, SpecError, TaskArgumentError
from gristmill.graph.resolved import Graph
from gristmill.resources import Policy, Resources
from gristmill.spec.load import Spec, load_spec
from gristmill.states import NodeState
from gristmill.store.db import STORE_NAME, Store
from gristmill.store.lock import RunLock

if TYPE_CHECKING:
    from gristmill.dsl.workflow import Workflow

#: The floor under every task's resources: one core, nothing else assumed.
BASE_RESOURCES = Resources(cores=1)


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


def resolve_spec(wf: Workflow, spec: Spec | str | os.PathLike[str] | None) -> Spec:
    """The workflow's own spec with the given one layered on top; task names checked."""
    merged = wf.spec or Spec.empty()
    if spec is not None:
        merged = merged.merged_with(spec if isinstance(spec, Spec) else load_spec(spec))
    merged.check_tasks({u.task.name for u in wf.units})
    return merged


def unit_plans(
    wf: Workflow, spec: Spec, cli_resources: Resources | None, cli_policy: Policy | None
) -> list[UnitPlan]:
    """decorator < spec default < spec task < per-call resources= < CLI flags."""
    plans = []
    cache: dict[str, tuple[Resources, Policy]] = {}
    for unit in wf.units:
        task = unit.task
        if task.key not in cache:
            settings = spec.settings_for(task.name)
            cache[task.key] = (
                BASE_RESOURCES.merged_with(task.resources).merged_with(settings.resources),
                task.policy.merged_with(settings.policy).merged_with(cli_policy),
            )
        resources, policy = cache[task.key]
        resources = resources.merged_with(unit.resources).merged_with(cli_resources)
        plans.append(UnitPlan(resources, policy))
    return plans


def _unit_rows(graph: Graph) -> list[tuple[int, str, str, bool, int, int, int, str]]:
    rows = []
    digests = graph.unit_digests()
    for unit in graph.workflow.units:
        columns = {
            name: (
                {"range": [col.start, col.stop, col.step]}
                if isinstance(col, range)
                else list(col)
            )
            for name, col in unit.columns.items()
        }
        definition = json.dumps(
            {
                "const": unit.const,
                "columns": columns,
                "product": unit.is_product,
                "after": unit.after,
                "resources": unit.resources.as_dict() if unit.resources else None,
                "digest": digests[unit.index],
            },
            default=str,
        )
        rows.append(
            (
                unit.index, unit.task.name, unit.task.key, unit.is_group, unit.size,
                graph.starts[unit.index], graph.owned[unit.index], definition,
            )
        )
    return rows


def _unit_of_nodes(graph: Graph) -> Iterator[int]:
    nodes = itertools.chain.from_iterable(
        itertools.repeat(u, graph.owned[u]) for u in range(len(graph.members))
    )
    return _faulty(nodes) if FAULT else nodes


def _faulty(nodes: Iterator[int]) -> Iterator[int]:
    """The test hook of a DAG write: it fires once the transaction has begun."""
    assert FAULT is not None
    FAULT.reached("persist")
    yield from nodes


def preflight(wf: Workflow) -> None:
    """Refuse what would only fail once jobs run, before anything is written.

    Resolves each task's command (a task defined in ``__main__`` cannot run in a new
    process; the lookup is cached for dispatch) and refuses NUL bytes in argument values,
    which no command line can carry.
    """
    for task in {unit.task.key: unit.task for unit in wf.units}.values():
        if task.program is None:
            script_prefix(task)
    for unit in wf.units:
        columns: list[tuple[str, Sequence[Any]]] = [(n, [v]) for n, v in unit.const.items()]
        columns += [(n, c) for n, c in unit.columns.items() if not isinstance(c, range)]
        for name, column in columns:
            if any(map(_has_nul, column)):  # about 60 ns a value
                value = next(v for v in column if _has_nul(v))
                raise TaskArgumentError(
                    f"task {unit.task.name!r}: argument {name!r} = {value!r} is not valid: it "
                    "holds a NUL byte, which no command line can carry; remove it (pass "
                    "binary data in a file)"
                )


def _has_nul(value: Any) -> bool:
    if type(value) is str:
        return "\0" in value
    if isinstance(value, (tuple, list)):
        return any(map(_has_nul, value))
    return False


def prepare_run_dir(run_dir: Path | str, *, resume: bool) -> tuple[Path, bool]:
    """(run directory, whether it already holds a run). A root gets a new numbered run."""
    path = Path(run_dir)
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
    run_dir: Path | str = "runs",
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
    """Run ``wf`` to completion in ``run_dir`` (a root, or an existing run to resume)."""
    full_spec = resolve_spec(wf, spec)
    graph = wf.graph()  # cycle and argument errors surface before anything is written
    preflight(wf)
    plans = unit_plans(wf, full_spec, resources, policy)
    settings = full_spec.workflow
    backend_name = backend or settings.backend or "local"
    # Backend options may also come as one mapping, so that an option named like an
    # engine setting (max_concurrent: the Slurm array throttle) cannot collide with it.
    options = {
        **dict(settings.backend_options), **(backend_options or {}), **more_backend_options
    }
    config = EngineConfig(
        fail_fast=wf.fail_fast if fail_fast is None and settings.fail_fast is None
        else bool(fail_fast if fail_fast is not None else settings.fail_fast),
        max_concurrent=max_concurrent or settings.max_concurrent or wf.max_concurrent,
        poll_max=poll_interval or settings.poll_interval or 30.0,
    )
    settings_meta = {
        "resources": resources.as_dict() if resources else None,
        "retries": policy.retries if policy else None,
        "max_concurrent": max_concurrent,
        "fail_fast": fail_fast,
    }
    backend_obj = make_backend(backend_name, **options)  # unknown backend: error, nothing written
    try:
        path, existing = prepare_run_dir(run_dir, resume=resume)
        if existing:  # a damaged or newer store is refused before even the lock file
            checked = Store.check_in_background(path)
            graph.identities()  # needed anyway: hashing them hides the check's read of the store
            checked()
        with RunLock(path):
            return _run_locked(
                wf, graph, path, existing, backend_obj, config, plans, full_spec, argv,
                options, settings_meta,
            )
    finally:
        backend_obj.close()  # again after a run: close is idempotent


def _run_locked(
    wf: Workflow,
    graph: Graph,
    path: Path,
    existing: bool,
    backend: Any,
    config: EngineConfig,
    plans: list[UnitPlan],
    spec: Spec,
    argv: list[str] | None,
    options: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> RunResult:
    identities = graph.identities()
    meta = {
        "workflow": wf.name,
        "function": wf.function,
        "args": wf.args,
        "backend": backend.name,
        "backend_options": dict(options),
        "spec": spec.to_dict(),
        "settings": dict(settings),
        "nodes": graph.n_nodes,
    }
    store = Store.open(path, check=False) if existing else Store.create(path, meta)
    try:
        if existing:
            states, attempts, open_attempts = _reconcile(store, graph, identities)
            with store.transaction() as cur:  # `resume` rebuilds what ran last, not first
                for key, value in meta.items():
                    store.set_meta(cur, key, value)
        else:
            states = bytearray(graph.n_nodes)
            attempts = [0] * graph.n_nodes
            store.write_dag(_unit_rows(graph), identities, _unit_of_nodes(graph))
            open_attempts = []
        store.checkpoint()  # the run's definition is on disk before any task can start
        try:
            metadata = runs.RunMetadata.collect(package=_package_of(wf.function), argv=argv)
        except GristmillError:
            metadata = runs.RunMetadata.collect(package=None, argv=argv)
        metadata.extra.update({"workflow": wf.name, "backend": backend.name})
        metadata.dump(path)
        engine = Engine(
            graph=graph, store=store, backend=backend, run_dir=path, config=config,
            plans=plans, states=states, attempts=attempts,
        )
        interrupted = False
        with engine.signals():  # held until the run's record is complete
            try:
                counts = engine.run(open_attempts)
            except Interrupted:
                interrupted = True
                counts = engine.tracker.counts()
            engine.defer_signals()  # the run is over: another Ctrl-C must not cut the record
            ok = counts.get(NodeState.DONE.name, 0) == graph.n_nodes
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


def _reconcile(
    store: Store, graph: Graph, identities: list[str]
) -> tuple[bytearray, list[int], list[Any]]:
    """Carry DONE states over by identity; everything else runs again or is re-adopted.

    When every unit's digest and id range match the store's, so do the identities,
    node for node: then only the states are read, a character per node. Otherwise
    (another workflow, or a store without digests) nodes are matched by identity and
    the DAG is written again.
    """
    layout = [(graph.starts[u], graph.owned[u], d) for u, d in enumerate(graph.unit_digests())]
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
    store.write_dag(_unit_rows(graph), identities, _unit_of_nodes(graph), bytes(states),
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
    return wf_fn(**args), meta
