"""Random DAGs with random failures and retries always end consistent with the graph.

Hypothesis draws DAGs of at most 200 nodes (single nodes, groups, a group's element
recorded again as a single node with edges of its own, edges to whole units and to
single elements), how often each node fails before it succeeds (with seeded
probabilities), the number of retries, and (for the in-process backend) attempts the
infrastructure loses. The real Engine, Tracker and Store run each one; the final state
of every node is then predicted exactly from the graph:

- a node with an upstream node that is not DONE is UPSTREAM_FAILED and never ran;
- otherwise it is DONE if it fails at most ``retries`` times, else FAILED;

and checked in the store, in the run's counts (which add up to the number of nodes),
in every node's attempts, and in the side effects (each DONE node's exactly once,
nobody else's). A cyclic draw must be refused with a GraphError naming the cycle.

Most examples run on :class:`DoubleBackend`, an in-process implementation of the
Backend protocol (the only test double of the suite); some run every node as a real
process on the local backend.
"""

from __future__ import annotations

import collections
import graphlib
import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gristmill.backends.base import (
    Capabilities,
    JobHandle,
    JobRequest,
    JobStatus,
    SleepingWaitMixin,
)
from gristmill.engine.runner import run_workflow
from gristmill.errors import GraphError
from gristmill.resources import Policy
from gristmill.states import JobState, NodeState
from gristmill.store.db import Store

#: Hypothesis's report of a failing example imports mypy_extensions, which warns.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

# -- drawing DAGs -----------------------------------------------------------------------------


@attrs.frozen
class Dag:
    units: list[dict[str, Any]]  # what rel_tasks.random_dag records
    fails: dict[int, int]  # ident -> failures before its first success
    deps: dict[int, set[int]]  # ident -> upstream idents
    retries: int
    lost: frozenset[int]  # idents whose first attempt the double backend loses

    @property
    def cyclic(self) -> bool:
        try:
            tuple(graphlib.TopologicalSorter(self.deps).static_order())
        except graphlib.CycleError:
            return True
        return False

    def expected(self) -> dict[int, NodeState]:
        states: dict[int, NodeState] = {}
        for ident in graphlib.TopologicalSorter(self.deps).static_order():
            if any(states[up] is not NodeState.DONE for up in self.deps[ident]):
                states[ident] = NodeState.UPSTREAM_FAILED
            elif self.fails[ident] <= self.retries:
                states[ident] = NodeState.DONE
            else:
                states[ident] = NodeState.FAILED
        return states


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 200, max_units: int = 40, lost: bool = True) -> Dag:
    p_fail = draw(st.sampled_from([0.0, 0.1, 0.3, 0.6]))
    p_lost = draw(st.sampled_from([0.0, 0.1])) if lost else 0.0
    retries = draw(st.integers(0, 2))
    units: list[dict[str, Any]] = []
    members: list[list[int]] = []  # idents of each unit
    fails: dict[int, int] = {}
    deps: dict[int, set[int]] = {}
    lost_idents: set[int] = set()
    for index in range(draw(st.integers(1, max_units))):
        room = max_nodes - len(fails)
        if room <= 0:
            break
        groups = [j for j, u in enumerate(units) if u["kind"] == "group"]
        kind = draw(st.sampled_from(["single", "group", "dup"] if groups else ["single", "group"]))
        if kind == "group" and room < 2:
            kind = "single"
        # A duplicate's edges may close a cycle through its group; mostly they do not.
        dup_of = draw(st.sampled_from(groups)) if kind == "dup" else None
        reach = index if dup_of is None or draw(st.floats(0, 1)) < 0.15 else dup_of
        after: list[list[int]] = []
        for _ in range(draw(st.integers(0, min(3, reach)))):
            j = draw(st.integers(0, reach - 1))
            if units[j]["kind"] == "group" and draw(st.booleans()):
                after.append([j, draw(st.integers(0, len(members[j]) - 1))])
            else:
                after.append([j])
        if dup_of is not None:
            idents = [members[dup_of][draw(st.integers(0, len(members[dup_of]) - 1))]]
        else:
            size = draw(st.integers(2, min(20, room))) if kind == "group" else 1
            idents = list(range(len(fails), len(fails) + size))
            for ident in idents:
                failing = draw(st.floats(0, 1)) < p_fail
                fails[ident] = draw(st.integers(1, 3)) if failing else 0
                deps[ident] = set()
                if draw(st.floats(0, 1)) < p_lost:
                    lost_idents.add(ident)
        upstream = {i for ref in after for i in (
            members[ref[0]] if len(ref) == 1 else [members[ref[0]][ref[1]]])}
        for ident in idents:
            deps[ident] |= upstream
        members.append(idents)
        units.append({"kind": "group" if kind == "group" else "single", "idents": idents,
                      "fails": [fails[i] for i in idents], "after": after})
    return Dag(units, fails, deps, retries, frozenset(lost_idents))


# -- an in-process backend -----------------------------------------------------------------------


def _option(argv: Sequence[str], name: str) -> str:
    return argv[argv.index(name) + 1]


class DoubleBackend(SleepingWaitMixin):
    """The Backend protocol in process: each job ends after 0 to 2 polls, in any order.

    A job's outcome is what ``rel_tasks.dag_step`` would do: fail its first ``--fail``
    attempts (exit 3), then succeed and record the side effect. The first attempt of a
    node in ``lost`` is LOST instead (the infrastructure's fault: it counts no try).
    """

    name = "double"
    capabilities = Capabilities(reattach=True)
    settings = ()

    def __init__(self, lost: frozenset[int], seed: int) -> None:
        self.lost = set(lost)
        self.rng = random.Random(seed)
        self.tries: dict[int, int] = collections.Counter()
        self.effects: list[int] = []
        self.pending: dict[str, tuple[int, JobStatus]] = {}  # job id -> (polls left, end)
        self.seq = 0

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        handles = []
        for job in jobs:
            ident, fail = int(_option(job.argv, "--ident")), int(_option(job.argv, "--fail"))
            if ident in self.lost:
                self.lost.discard(ident)
                end = JobStatus(JobState.LOST, reason="lost by the double backend")
            elif self.tries[ident] < fail:
                self.tries[ident] += 1
                end = JobStatus(JobState.FAILED, exit_code=3, reason="exit code 3")
            else:
                self.tries[ident] += 1
                self.effects.append(ident)
                end = JobStatus(JobState.SUCCEEDED, exit_code=0, reason="exit code 0")
            self.seq += 1
            job_id = f"double.{self.seq}"
            self.pending[job_id] = (self.rng.randint(0, 2), end)
            handles.append(JobHandle(self.name, job_id, job.key, str(job.result_path)))
        return handles

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        out: dict[JobHandle, JobStatus] = {}
        for handle in handles:
            left, end = self.pending[handle.job_id]
            if left == 0:
                out[handle] = end
                del self.pending[handle.job_id]
            else:
                self.pending[handle.job_id] = (left - 1, end)
                if self.rng.random() < 0.5:  # omitted handles are unchanged
                    out[handle] = JobStatus(JobState.RUNNING)
        return out

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        for handle in handles:
            self.pending.pop(handle.job_id, None)

    def attach(self, handles: Sequence[JobHandle]) -> None:
        raise AssertionError("nothing to re-adopt in a fresh run")

    def wait(self, timeout: float) -> None:
        """Nothing to wait for: every job moves on at each poll."""

    def close(self) -> None:
        assert not self.pending, "the engine left jobs running"


# -- checking a run --------------------------------------------------------------------------------


@attrs.frozen
class Outcome:
    counts: Mapping[str, int]
    states: dict[int, NodeState]  # ident -> final state in the store
    attempts: dict[int, list[str]]  # ident -> states of its attempts, in order
    effects: list[int]  # side effects, in order


def run_dag(rt: ModuleType, dag: Dag, folder: Path, backend: DoubleBackend | None) -> Outcome:
    wf = rt.random_dag(units=dag.units, state=str(folder))
    ident_of = {node.identity: node.args["ident"] for node in wf.nodes()}
    if backend is None:
        result = run_workflow(wf, run_dir=folder / "runs", policy=Policy(retries=dag.retries),
                              max_cores=4)
    else:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("gristmill.engine.runner.make_backend", lambda name, **options: backend)
            result = run_workflow(wf, run_dir=folder / "runs",
                                  policy=Policy(retries=dag.retries))
    store = Store.open(result.run_dir, readonly=True)
    try:
        identities, states, _ = store.node_states()
        records = store.attempts()
    finally:
        store.close()
    attempts: dict[int, list[str]] = collections.defaultdict(list)
    for record in sorted(records, key=lambda r: (r.identity, r.attempt)):
        attempts[ident_of[record.identity]].append(record.state)
    if backend is None:
        done = folder / "done"
        effects = [int(w) for w in done.read_text().split()] if done.exists() else []
    else:
        effects = backend.effects
    return Outcome(
        result.counts,
        {ident_of[i]: NodeState(s) for i, s in zip(identities, states)},
        dict(attempts),
        effects,
    )


def check(dag: Dag, outcome: Outcome) -> None:
    expected = dag.expected()
    assert outcome.states == expected
    # The same, as the properties the issue states them:
    for ident, state in outcome.states.items():
        ups = [outcome.states[u] for u in dag.deps[ident]]
        if state is NodeState.DONE:  # no node DONE whose upstream is not DONE
            assert all(u is NodeState.DONE for u in ups)
        if state is NodeState.FAILED:  # its descendants are all UPSTREAM_FAILED
            for other in outcome.states:
                if ident in ancestors(dag, other):
                    assert outcome.states[other] is NodeState.UPSTREAM_FAILED
    assert sum(outcome.counts.values()) == len(dag.fails)  # counts add up
    assert outcome.counts == {
        s.name: n for s, n in collections.Counter(expected.values()).items()}
    for ident, state in expected.items():
        lost = ["LOST"] if ident in dag.lost else []
        if state is NodeState.UPSTREAM_FAILED:
            want: list[str] = []
        elif state is NodeState.DONE:
            want = lost + ["FAILED"] * dag.fails[ident] + ["SUCCEEDED"]
        else:
            want = lost + ["FAILED"] * (dag.retries + 1)
        assert outcome.attempts.get(ident, []) == want, ident
    done = sorted(i for i, s in expected.items() if s is NodeState.DONE)
    assert sorted(outcome.effects) == done  # each DONE node's side effect exactly once


def ancestors(dag: Dag, ident: int) -> set[int]:
    seen: set[int] = set()
    stack = list(dag.deps[ident])
    while stack:
        up = stack.pop()
        if up not in seen:
            seen.add(up)
            stack.extend(dag.deps[up])
    return seen


def run_and_check(rt: ModuleType, dag: Dag, backend: DoubleBackend | None) -> None:
    with tempfile.TemporaryDirectory(prefix="gm-dag-") as tmp:
        if dag.cyclic:
            with pytest.raises(GraphError, match="cycle"):
                run_dag(rt, dag, Path(tmp), backend)
            assert not (Path(tmp) / "runs").exists()
            return
        check(dag, run_dag(rt, dag, Path(tmp), backend))


FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
              HealthCheck.data_too_large]


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=FIXTURE_OK)
@given(dag=dags(), seed=st.integers(0, 2**16))
def test_random_dags_end_consistent_with_the_graph(rt: ModuleType, dag: Dag, seed: int) -> None:
    event("cyclic" if dag.cyclic else f"acyclic, {len(dag.fails) // 50 * 50}+ nodes")
    run_and_check(rt, dag, DoubleBackend(dag.lost, seed))


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=FIXTURE_OK)
@given(dag=dags(max_nodes=25, max_units=10, lost=False))
def test_random_dags_of_real_processes_end_consistent_with_the_graph(
    rt: ModuleType, dag: Dag
) -> None:
    event("cyclic" if dag.cyclic else f"acyclic, {len(dag.fails) // 10 * 10}+ nodes")
    run_and_check(rt, dag, None)


@pytest.mark.reliability
@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=FIXTURE_OK)
@given(dag=dags(), seed=st.integers(0, 2**16))
def test_many_random_dags_end_consistent_with_the_graph(
    rt: ModuleType, dag: Dag, seed: int
) -> None:
    event("cyclic" if dag.cyclic else f"acyclic, {len(dag.fails) // 50 * 50}+ nodes")
    run_and_check(rt, dag, DoubleBackend(dag.lost, seed))


@pytest.mark.reliability
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=FIXTURE_OK)
@given(dag=dags(max_nodes=60, max_units=20, lost=False))
def test_many_random_dags_of_real_processes_end_consistent_with_the_graph(
    rt: ModuleType, dag: Dag
) -> None:
    event("cyclic" if dag.cyclic else f"acyclic, {len(dag.fails) // 10 * 10}+ nodes")
    run_and_check(rt, dag, None)


#: Found by the property test (shrunk): node 7 is an element of group 2 and, recorded
#: again, a unit of its own that node 13 waits on; node 3 of group 1 also waits on node 0,
#: which fails. The failure reached group 2 but not what waited on node 7's other unit,
#: so node 13 stayed PENDING and the run ended with it neither run nor blocked.
SHARED_ELEMENT = [
    {"kind": "single", "idents": [0], "fails": [2], "after": []},
    {"kind": "group", "idents": [1, 2, 3], "fails": [0, 0, 1], "after": []},
    {"kind": "group", "idents": [4, 5, 6, 7, 8], "fails": [0, 1, 0, 3, 0], "after": [[1]]},
    {"kind": "single", "idents": [7], "fails": [3], "after": []},
    {"kind": "single", "idents": [13], "fails": [0], "after": [[3]]},
    {"kind": "single", "idents": [3], "fails": [1], "after": [[0]]},
]


@pytest.mark.parametrize("real", [False, True], ids=["double", "processes"])
def test_a_failure_reaches_what_waits_on_a_shared_element(rt: ModuleType, real: bool) -> None:
    fails = {i: f for u in SHARED_ELEMENT for i, f in zip(u["idents"], u["fails"])}
    deps = {0: set(), 1: set(), 2: set(), 3: {0}, 13: {7}, **{i: {1, 2, 3} for i in range(4, 9)}}
    dag = Dag(SHARED_ELEMENT, fails, deps, retries=1, lost=frozenset())
    assert dag.expected()[13] is NodeState.UPSTREAM_FAILED
    run_and_check(rt, dag, None if real else DoubleBackend(dag.lost, 0))


def test_the_model_predicts_a_known_case() -> None:
    """The checker itself: a failing root blocks its descendants only."""
    dag = Dag(units=[], fails={0: 5, 1: 0, 2: 0, 3: 1}, deps={0: set(), 1: {0}, 2: {1}, 3: set()},
              retries=1, lost=frozenset())
    assert dag.expected() == {0: NodeState.FAILED, 1: NodeState.UPSTREAM_FAILED,
                              2: NodeState.UPSTREAM_FAILED, 3: NodeState.DONE}
    assert ancestors(dag, 2) == {0, 1}
