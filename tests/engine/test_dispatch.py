"""Handing a whole graph to a backend that runs dependencies itself (Capabilities.dag)."""

from __future__ import annotations

import collections
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gristmill.backends.base import JobRequest
from gristmill.backends.registry import BACKENDS
from gristmill.engine.dispatch import PROBE_AFTER, SubmitCap, dag_batch, live_descendants
from gristmill.engine.runner import run_workflow
from gristmill.resources import Resources
from gristmill.spec.load import Spec
from gristmill.states import NodeState
from gristmill.store.db import Store

FIXTURES = Path(__file__).parents[1] / "fixtures"
SRC = Path(__file__).parents[2] / "src"


@pytest.fixture
def et(et: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The engine's fixture tasks, and the test backend that runs dependencies itself."""
    monkeypatch.setitem(BACKENDS, "dagtest", "gm_dag_backend:DagLocalBackend")
    return et


def fake_request(node: int) -> tuple[JobRequest, Resources]:
    res = Resources()
    path = Path(f"/nowhere/{node}")
    return JobRequest(f"k{node}", "t", f"n{node}", ("true",), res, path, path, path), res


def test_every_node_goes_at_once_in_topological_order_naming_its_upstreams(
    et: ModuleType,
) -> None:
    graph = et.layered(path="p", marker="m").graph()
    states = bytearray(graph.n_nodes)
    batch = dag_batch(graph, states, set(range(graph.n_nodes)), fake_request, lambda n: 3)
    assert len(batch) == graph.n_nodes == 8
    order = {req.key: i for i, (_, req, _) in enumerate(batch)}
    by_ident = {graph.args(node).get("ident", "bad"): req for node, req, _ in batch}
    assert sorted(by_ident[4].after) == sorted(by_ident[i].key for i in (1, 2, 3))
    assert by_ident[5].after == by_ident[6].after == (by_ident[4].key,)
    assert by_ident[7].after == (by_ident["bad"].key,)
    assert by_ident[1].after == ()
    for _, req, _ in batch:
        assert req.max_attempts == 3
        assert all(order[up] < order[req.key] for up in req.after)


def test_done_upstreams_are_left_out_and_failed_ones_hold_their_descendants_back(
    et: ModuleType,
) -> None:
    graph = et.layered(path="p", marker="m").graph()
    states = bytearray(graph.n_nodes)
    names = {graph.args(n).get("ident", "bad"): n for n in range(graph.n_nodes)}
    for ident in (1, 2, 3):
        states[names[ident]] = NodeState.DONE
    states[names["bad"]] = NodeState.FAILED
    states[names[4]] = NodeState.READY
    batch = dag_batch(graph, states, {names[4]}, fake_request, lambda n: 1)
    got = {graph.args(node)["ident"]: req for node, req, _ in batch}
    assert sorted(got) == [4, 5, 6]  # 7 waits on a failed node: not handed over
    assert got[4].after == ()
    # a READY node the tracker did not hand out is not taken either
    assert dag_batch(graph, states, set(), fake_request, lambda n: 1) == []


def test_live_descendants_are_those_below_the_node_only(et: ModuleType) -> None:
    graph = et.layered(path="p", marker="m").graph()
    names = {graph.args(n).get("ident", "bad"): n for n in range(graph.n_nodes)}
    live = set(range(graph.n_nodes))
    assert live_descendants(graph, names["bad"], live) == [names[7]]
    assert sorted(live_descendants(graph, names[1], live)) == sorted(names[i] for i in (4, 5, 6))
    assert live_descendants(graph, names[1], {names[1]}) == []


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_dag_backend_gets_the_graph_in_one_submit_and_retries_by_itself(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []
    import gm_dag_backend

    close = gm_dag_backend.DagLocalBackend.close

    def spy(self: Any) -> None:
        made.append(self)
        close(self)

    monkeypatch.setattr(gm_dag_backend.DagLocalBackend, "close", spy)
    path, marker = tmp_path / "out", tmp_path / "marker"
    spec = Spec.from_dict({"tasks": {"exit_with": {"retries": 1}}})
    result = run_workflow(et.layered(path=str(path), marker=str(marker)), backend="dagtest",
                          run_dir=tmp_path / "runs", spec=spec, poll_interval=0.2)
    assert not result.ok
    assert sorted(lines(path), key=int) == ["1", "2", "3", "4", "5", "6"]
    assert lines(marker) == ["exit_with 3", "exit_with 3"]  # the backend retried, once
    backend = made[0]
    assert [len(s) for s in backend.submits] == [8]
    store = Store.open(result.run_dir, readonly=True)
    try:
        records = store.attempts()
    finally:
        store.close()
    assert len(records) == 8
    assert {r.attempt for r in records} == {1}
    states = collections.Counter(r.state for r in records)
    assert states == {"SUCCEEDED": 6, "FAILED": 1, "CANCELLED": 1}, states
    (dropped,) = [r for r in records if r.state == "CANCELLED"]
    assert "upstream node" in dropped.reason
    assert result.counts == {"DONE": 6, "FAILED": 1, "UPSTREAM_FAILED": 1}


def test_a_submit_cap_holds_the_limit_read_at_start() -> None:
    assert SubmitCap().cap(0.0) is None  # no limit known: only the engine's own limits
    assert SubmitCap(limit=20).cap(0.0) == 20


def test_a_refusal_caps_at_what_was_held_then_probes_upwards_to_the_limit() -> None:
    cap = SubmitCap(limit=20)
    assert cap.refused(held=12, tried=1, limit=None, now=100.0) == 2.0  # short at first
    assert cap.cap(100.0) == 12  # the user's other jobs hold the rest
    assert cap.refused(held=12, tried=1, limit=None, now=101.0) == 4.0  # grows while refused
    cap.accepted()
    assert cap.refused(held=12, tried=1, limit=None, now=101.0) == 2.0
    assert cap.cap(101.0 + PROBE_AFTER) == 13  # a minute without refusal: one more
    assert cap.cap(101.0 + PROBE_AFTER) == 13
    for step in range(2, 9):
        cap.cap(101.0 + step * PROBE_AFTER)
    assert cap.cap(101.0 + 9 * PROBE_AFTER) == 20  # never above the limit read at start
    assert cap.learned is None


def test_refusals_halve_the_batch_until_it_fits() -> None:
    """An unknown MaxSubmitJobs=20 and 60 ready jobs: 60 refused, then 30; 15 go, and a
    minute without refusal adds one (a refusal of 16 + 1 would take it back to 16)."""
    cap = SubmitCap()
    cap.refused(held=0, tried=60, limit=None, now=0.0)
    assert cap.cap(0.0) == 30
    cap.refused(held=0, tried=30, limit=None, now=0.0)
    assert cap.cap(0.0) == 15
    cap.accepted()
    assert cap.cap(PROBE_AFTER) == 16
    cap.refused(held=16, tried=1, limit=None, now=PROBE_AFTER)
    assert cap.cap(PROBE_AFTER) == 16


def test_a_refusal_with_nothing_held_still_lets_one_job_try_and_pauses_at_most_30_s() -> None:
    cap = SubmitCap()
    pauses = [cap.refused(held=0, tried=1, limit=None, now=0.0) for _ in range(8)]
    assert cap.cap(0.0) == 1
    assert pauses == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    cap.refused(held=5, tried=1, limit=4, now=0.0)  # a backend that knows the limit says so
    assert cap.cap(0.0) == 1
    assert cap.limit == 4
