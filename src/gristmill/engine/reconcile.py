"""What a run in an existing run directory keeps of the stored one, and what runs again.

A node is kept, DONE without running, when the store holds a DONE node of the same
identity, ``--rerun`` did not name it, and nothing it waits for, directly or not, is
unknown to the store or was named by ``--rerun``. Identities cover upstream identities,
so a node downstream of a changed one is itself unknown to the store; the closure over
changed nodes makes the same hold for stores made before that (identity version 1),
which are resumed with the identities they were made with.

:func:`decide` answers for every node from the store and the plan and writes nothing:
``resume`` applies the answer (:func:`apply`) and ``--dry-run`` explains it
(:mod:`gristmill.engine.preview`). When every unit's digest and id range match the
store's, so do the identities, node for node: then only the states are read, a
character per node, and nothing is hashed twice.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING

import attrs
from loguru import logger

from gristmill.engine.faults import FAULT
from gristmill.errors import GraphError
from gristmill.graph.cohorts import downstream_of
from gristmill.states import NodeState

if TYPE_CHECKING:
    from gristmill.engine.plan import Plan
    from gristmill.store.db import AttemptRecord, Store

#: A node's stored state when the store holds no node of its identity.
NO_MATCH = 255
#: Keep DONE, make every other state (and NO_MATCH) PENDING.
_KEEP_DONE = bytes(i if i == NodeState.DONE else 0 for i in range(256))
_UNMATCHED = bytes(int(i == NO_MATCH) for i in range(256))
_ONE_TO_FF = bytes(255 if i else 0 for i in range(256))
_NONZERO = re.compile(b"[^\\x00]+")
#: Identity prefixes ``--rerun`` accepts: long enough not to read as a word by accident.
_PREFIX = re.compile(r"[0-9a-f]{6,32}")


@attrs.frozen(eq=False)
class Decision:
    """Per node (bytes by node id): what the store says and what this run does with it."""

    stored: bytearray  # the stored state of the node of the same identity, or NO_MATCH
    attempts: list[int]  # attempts made so far (numbers the next attempt's files)
    same_dag: bool  # the store holds exactly this DAG, node for node
    forced: bytearray  # 1: named by --rerun
    changed_upstream: bytearray  # 1: waits for a node unknown to the store
    forced_upstream: bytearray  # 1: waits for a node named by --rerun
    states: bytearray  # what the run starts from: DONE (kept) or PENDING

    @property
    def kept(self) -> int:
        return self.states.count(NodeState.DONE)


def decide(store: Store, plan: Plan, forced: bytearray | None = None) -> Decision:
    """Match the plan's nodes with the store's and decide which are kept (writes nothing)."""
    graph = plan.graph
    n = graph.n_nodes
    stored, attempts, same_dag = _match(store, plan)
    forced = forced if forced is not None else bytearray(n)
    unmatched = stored.translate(_UNMATCHED) if not same_dag else bytearray(n)
    changed_upstream = downstream_of(graph, unmatched)
    forced_upstream = downstream_of(graph, forced)
    states = stored.translate(_KEEP_DONE)
    drop = _either(forced, changed_upstream, forced_upstream)
    if drop is not None:
        states = _cleared(states, drop)
    return Decision(stored, attempts, same_dag, forced, changed_upstream, forced_upstream,
                    states)


def apply(store: Store, plan: Plan, decision: Decision) -> list[AttemptRecord]:
    """Record the decision in the store; the attempts left open, for the engine to adopt.

    The same DAG: every node that goes back to PENDING is recorded as one event per
    id range. Another DAG: it is written again, with the states and attempt counts.
    """
    if decision.same_dag:
        changed = [
            (m.start(), m.end() - 1, int(NodeState.PENDING))
            for m in _NONZERO.finditer(_xor(decision.stored, decision.states))
        ]
        with store.transaction() as cur:
            store.set_states(cur, (), changed, note="resume")
            if FAULT:
                FAULT.reached("reconcile")
    else:
        store.write_dag(plan.unit_rows(), plan.identities, plan.unit_of_nodes(),
                        bytes(decision.states), decision.attempts)
    return store.attempts(open_only=True)


def _match(store: Store, plan: Plan) -> tuple[bytearray, list[int], bool]:
    """(stored state per node or NO_MATCH, attempts per node, whether the DAG is the same)."""
    graph, identities = plan.graph, plan.identities
    n = graph.n_nodes
    layout = plan.layout()
    stored_layout = store.unit_digests()
    if stored_layout == layout:
        progress = store.node_progress()
        if progress is not None and len(progress[0]) == n:
            return progress[0], progress[1], True
    stored_ids, stored_states, stored_attempts = store.node_states()
    if stored_layout == layout and stored_ids == identities:
        return stored_states, stored_attempts, True
    if any(digest is None for _, _, digest in stored_layout):
        logger.info("the store keeps no unit digests; matching nodes by identity")
    else:
        logger.info("the workflow changed since this run started; matching nodes by identity")
    by_identity = {identity: i for i, identity in enumerate(stored_ids)}
    stored = bytearray(b"\xff") * n
    attempts = [0] * n
    for node, identity in enumerate(identities):
        found = by_identity.get(identity)
        if found is not None:
            stored[node] = stored_states[found]
            attempts[node] = stored_attempts[found]
    return stored, attempts, False


def forced_nodes(plan: Plan) -> bytearray | None:
    """1 for each node ``--rerun`` names, 0 elsewhere; None without ``--rerun``.

    A selector is a task name (all its nodes), a job name, or a prefix of an identity (at
    least 6 hex digits). One that names nothing is an error, raised before anything is
    written.
    """
    if not plan.rerun:
        return None
    graph = plan.graph
    units = plan.workflow.units
    marks = bytearray(graph.n_nodes)
    by_task: dict[str, list[int]] = defaultdict(list)
    for unit in units:
        by_task[unit.task.name].append(unit.index)
    names: dict[str, list[int]] | None = None
    for selector in plan.rerun:
        if selector in by_task:
            for u in by_task[selector]:
                start = graph.starts[u]
                marks[start:start + graph.owned[u]] = b"\x01" * graph.owned[u]
            continue
        if names is None:  # a job name: all of them, once
            names = defaultdict(list)
            for node in range(graph.n_nodes):
                names[graph.job_name(*graph.locate(node))].append(node)
        nodes = names.get(selector, [])
        if not nodes and _PREFIX.fullmatch(selector):
            nodes = [i for i, identity in enumerate(plan.identities)
                     if identity.startswith(selector)]
            if len(nodes) > 1:
                raise GraphError(
                    f"--rerun {selector}: {len(nodes)} nodes have identities starting with "
                    "it; give more of the identity"
                )
        if not nodes:
            raise GraphError(
                f"--rerun {selector}: workflow {plan.workflow.name!r} has no task, job name "
                f"or node identity {selector!r}; its tasks are {', '.join(sorted(by_task))} "
                "(gristmill tasks RUN_DIR lists job names; --dry-run -v shows identities)"
            )
        for node in nodes:
            marks[node] = 1
    return marks


def _either(*marks: bytearray) -> bytearray | None:
    """The bytewise OR of 0/1 marks; None when no byte is set."""
    if not any(1 in m for m in marks):
        return None
    value = 0
    for m in marks:
        value |= int.from_bytes(m, "little")
    return bytearray(value.to_bytes(len(marks[0]), "little"))


def _cleared(values: bytearray, drop: bytearray) -> bytearray:
    """``values`` with 0 wherever ``drop`` is 1 (whole-integer operations, not a loop)."""
    mask = int.from_bytes(drop.translate(_ONE_TO_FF), "little")
    kept = int.from_bytes(values, "little") & ~mask
    return bytearray(kept.to_bytes(len(values), "little"))


def _xor(a: bytearray, b: bytearray) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")

