"""What a run would do, without doing it: ``gristmill run|resume --dry-run``.

Nothing is written: no run directory, no lock, not a byte of the store (read as
immutable, or through a copy: :meth:`Store.untouched`), and no backend is started. The
answer comes from the same decision a resume applies (:func:`reconcile.decide`), so the
dry run and the run cannot disagree; each node that would run gets one reason.
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from gristmill.backends.registry import backend_class
from gristmill.engine.reconcile import NO_MATCH, Decision, decide, forced_nodes
from gristmill.states import NodeState
from gristmill.store.db import Store

if TYPE_CHECKING:
    import os

    from gristmill.engine.plan import Plan
    from gristmill.resources import Resources


class Reason(enum.Enum):
    """Why a node would run (the byte values index :data:`_BY_CODE`)."""

    NEW = "new"
    ARGUMENTS = "arguments changed"
    UPSTREAM = "upstream changed"
    FAILED = "failed before"
    RAISED = "resources raised"
    FORCED = "forced"
    UNFINISHED = "not finished"
    RUNNING = "still running"


_BY_CODE: tuple[Reason, ...] = tuple(Reason)
_CODE = {reason: i + 1 for i, reason in enumerate(_BY_CODE)}  # 0: kept, does not run
_LIVE = (int(NodeState.SUBMITTED), int(NodeState.RUNNING))
_TO_RUN = re.compile(b"[^\\x%02x]+" % NodeState.DONE)


@attrs.frozen
class TaskPreview:
    """One task's nodes: how many are kept (DONE) and why each of the others would run."""

    task: str
    nodes: int
    kept: int
    reasons: Mapping[Reason, int]

    @property
    def runs(self) -> int:
        return self.nodes - self.kept


@attrs.frozen
class NodePreview:
    """One node that would run (listed with ``-v``)."""

    task: str
    job_name: str
    identity: str
    reason: Reason


@attrs.frozen
class Preview:
    """What ``run`` or ``resume`` would do with a plan and a run directory."""

    workflow: str
    run_dir: Path  # the run to resume, or the root a new run would be made in
    existing: bool
    backend: str
    tasks: tuple[TaskPreview, ...]
    nodes: tuple[NodePreview, ...] = ()  # only when asked for

    @property
    def total(self) -> TaskPreview:
        reasons: dict[Reason, int] = defaultdict(int)
        for t in self.tasks:
            for reason, count in t.reasons.items():
                reasons[reason] += count
        return TaskPreview("total", sum(t.nodes for t in self.tasks),
                           sum(t.kept for t in self.tasks), dict(reasons))


def preview_plan(
    plan: Plan, run_dir: str | os.PathLike[str], *, resume: bool = True, list_nodes: bool = False
) -> Preview:
    """What :func:`~gristmill.engine.runner.run_plan` would do; reads, never writes.

    Refuses what the run would refuse (another workflow's run directory, a ``--rerun``
    naming nothing, an unknown backend, a run an engine holds), with the same errors.
    """
    from gristmill.engine.runner import locate_run_dir, plan_for_run

    path, existing = locate_run_dir(run_dir, resume=resume)
    if existing:
        plan = plan_for_run(plan, path)
    forced = forced_nodes(plan)
    backend_class(plan.backend)  # an unknown backend is refused, and none is started
    if existing:
        with Store.untouched(path) as store:
            codes = _reasons(store, plan, decide(store, plan, forced))
    else:
        codes = bytearray([_CODE[Reason.NEW]]) * plan.graph.n_nodes
    return Preview(
        workflow=plan.workflow.name, run_dir=path, existing=existing, backend=plan.backend,
        tasks=_per_task(plan, codes),
        nodes=tuple(_listed(plan, codes)) if list_nodes else (),
    )


def _reasons(store: Store, plan: Plan, decision: Decision) -> bytearray:
    """One byte per node: 0 when kept, else the code of the reason it runs."""
    graph = plan.graph
    identities = plan.identities
    stored = decision.stored
    codes = bytearray(graph.n_nodes)
    live = {a.identity for a in store.attempts(open_only=True)}
    planned = [u.resources for u in plan.units]
    last: dict[str, dict[str, Any]] | None = None
    stored_sizes: dict[int, tuple[str, int]] | None = None
    for run in _TO_RUN.finditer(decision.states):
        for node in range(run.start(), run.end()):
            state = stored[node]
            if state == NO_MATCH:
                if decision.changed_upstream[node]:
                    reason = Reason.UPSTREAM
                else:
                    if stored_sizes is None:
                        stored_sizes = {r["id"]: (r["task_key"], r["size"]) for r in store.units()}
                    reason = _new_or_changed(plan, node, stored_sizes)
            elif state == NodeState.DONE:
                forced = decision.forced[node] or decision.forced_upstream[node]
                reason = Reason.FORCED if forced else Reason.UPSTREAM
            elif state == NodeState.FAILED:
                if last is None:
                    last = store.last_resources()
                unit = graph.locate(node)[0]
                raised = _raised(planned[unit], last.get(identities[node], {}))
                reason = Reason.RAISED if raised else Reason.FAILED
            elif state in _LIVE and identities[node] in live:
                reason = Reason.RUNNING
            else:
                reason = Reason.UNFINISHED
            codes[node] = _CODE[reason]
    return codes


def _new_or_changed(plan: Plan, node: int, stored: Mapping[int, tuple[str, int]]) -> Reason:
    """ARGUMENTS when the store held a node of this task at the same place (the same
    call of the workflow, the same element), else NEW."""
    unit, element = plan.graph.locate(node)
    found = stored.get(unit)
    same_place = found is not None and found[0] == plan.workflow.units[unit].task.key
    return Reason.ARGUMENTS if same_place and found is not None and element < found[1] \
        else Reason.NEW


def _raised(planned: Resources, last: Mapping[str, Any]) -> bool:
    """Whether the plan asks for more memory, time, cores or GPUs than the last attempt had."""
    for name in ("mem", "runtime", "cores", "gpus"):
        now, then = getattr(planned, name), last.get(name)
        if now is not None and then is not None and now > then:
            return True
    return False


def _per_task(plan: Plan, codes: bytearray) -> tuple[TaskPreview, ...]:
    graph = plan.graph
    nodes: dict[str, int] = defaultdict(int)
    counts: dict[str, dict[Reason, int]] = defaultdict(lambda: defaultdict(int))
    for unit in plan.workflow.units:
        name = unit.task.name
        start, owned = graph.starts[unit.index], graph.owned[unit.index]
        nodes[name] += owned
        part = codes[start:start + owned]
        for reason in _BY_CODE:
            found = part.count(_CODE[reason])
            if found:
                counts[name][reason] += found
    return tuple(
        TaskPreview(name, total, total - sum(counts[name].values()), dict(counts[name]))
        for name, total in nodes.items()
    )


def _listed(plan: Plan, codes: bytearray) -> Iterator[NodePreview]:
    graph = plan.graph
    identities = plan.identities
    units = plan.workflow.units
    for run in re.finditer(b"[^\\x00]+", codes):
        for node in range(run.start(), run.end()):
            unit, element = graph.locate(node)
            yield NodePreview(units[unit].task.name, graph.job_name(unit, element),
                              identities[node], _BY_CODE[codes[node] - 1])
