"""The tracker: node states in a bytearray, readiness, and compact state changes."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import gristmill as gm
from gristmill.engine.tracker import Tracker
from gristmill.graph.resolved import Graph
from gristmill.states import NodeState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
P, R, S, RUN, D, F, UF, C = (int(s) for s in NodeState)


@pytest.fixture(scope="module")
def et() -> Iterator[ModuleType]:
    sys.path.insert(0, str(FIXTURES))
    try:
        import engine_tasks

        yield engine_tasks
    finally:
        sys.path.remove(str(FIXTURES))


def tracker(wf: Any, states: list[int] | None = None) -> Tracker:
    graph: Graph = wf.graph()
    return Tracker(graph, bytearray(states if states is not None else [P] * graph.n_nodes))


def replay(t: Tracker, stored: bytearray) -> bytearray:
    """Apply the tracker's pending changes as the store does; the result must match memory."""
    singles, ranges = t.drain_changes()
    for lo, hi, state in ranges:
        stored[lo : hi + 1] = bytes([state]) * (hi + 1 - lo)
    for node, state in singles:
        stored[node] = state
    return stored


def take_all(t: Tracker, full: Any = lambda node: False) -> list[int]:
    return list(t.next_ready(full))


def test_a_fresh_start_releases_roots_as_one_range_per_group(et: ModuleType) -> None:
    t = tracker(et.appends(path="/x", n=8))  # nodes 0-5, then 6-7 after all of them
    t.start()
    assert list(t.states) == [R] * 6 + [P] * 2
    assert t.drain_changes() == ([], [(0, 5, R)])
    assert t.drain_changes() == ([], [])  # drained
    assert take_all(t) == [0, 1, 2, 3, 4, 5]


def test_a_group_is_released_when_its_last_upstream_node_is_done(et: ModuleType) -> None:
    t = tracker(et.appends(path="/x", n=8))
    t.start()
    t.drain_changes()
    for node in range(5):
        t.node_done(node)
    assert t.states[6:] == bytearray([P, P])
    t.node_done(5)
    assert t.states[6:] == bytearray([R, R])
    singles, ranges = t.drain_changes()
    assert singles == [(n, D) for n in range(6)]
    assert ranges == [(6, 7, R)]


def test_a_failure_blocks_descendants_but_not_the_other_branch(et: ModuleType) -> None:
    # 0: exit_with -> 1 -> 2;   3 -> group (4, 5) -> 6
    t = tracker(et.diamond_with_failure(path="/x"))
    t.start()
    assert take_all(t) == [0, 3]
    t.drain_changes()
    assert t.node_failed(0) == 2
    assert list(t.states) == [F, UF, UF, R, P, P, P]
    t.node_done(3)
    assert list(t.states) == [F, UF, UF, D, R, R, P]
    assert take_all(t) == [4, 5]
    assert replay(t, bytearray([R, P, P, R, P, P, P])) == t.states
    assert t.counts() == {"PENDING": 1, "READY": 2, "DONE": 1, "FAILED": 1, "UPSTREAM_FAILED": 2}


def test_a_failure_marks_a_downstream_group_as_one_range(et: ModuleType) -> None:
    t = tracker(et.appends(path="/x", n=8))
    t.start()
    t.drain_changes()
    assert t.node_failed(2) == 2
    assert t.drain_changes() == ([(2, F)], [(6, 7, UF)])
    t.node_done(0)  # the rest of the group still finishes; nothing is released
    assert t.states[6:] == bytearray([UF, UF])


def test_resume_counts_done_nodes_and_leaves_them_alone_in_the_store(et: ModuleType) -> None:
    """Releasing a group on resume must not write READY over DONE or adopted nodes."""
    states = [D, P, S, D, D, P, P, P]  # node 2 is an attempt being re-adopted
    t = tracker(et.appends(path="/x", n=8), states)
    t.start()
    assert list(t.states) == [D, R, S, D, D, R, P, P]
    assert t.drain_changes() == ([], [(1, 1, R), (5, 5, R)])
    assert take_all(t) == [1, 5]
    t.node_done(1)
    t.node_done(5)
    assert t.states[6:] == bytearray([P, P])  # node 2 is still running
    t.node_done(2)
    assert t.states[6:] == bytearray([R, R])


def test_resume_with_every_upstream_done_releases_the_downstream_group(et: ModuleType) -> None:
    t = tracker(et.appends(path="/x", n=8), [D] * 6 + [P, D])
    t.start()
    assert list(t.states) == [D] * 6 + [R, D]
    assert t.drain_changes() == ([], [(6, 6, R)])
    assert take_all(t) == [6]


def test_a_failure_on_resume_does_not_overwrite_done_descendants(et: ModuleType) -> None:
    t = tracker(et.appends(path="/x", n=8), [P] * 6 + [D, P])
    t.start()
    t.drain_changes()
    t.node_failed(0)
    assert t.states[6:] == bytearray([D, UF])
    assert t.drain_changes() == ([(0, F)], [(7, 7, UF)])


def test_full_tasks_are_skipped_and_retries_come_first(et: ModuleType) -> None:
    t = tracker(et.appends(path="/x", n=8))
    t.start()
    assert take_all(t, full=lambda node: True) == []  # a full task's group is not consumed
    assert list(itertools.islice(t.next_ready(lambda node: False), 2)) == [0, 1]
    t.requeue(0)  # its attempt failed and will be retried
    assert take_all(t) == [0, 2, 3, 4, 5]  # 1 was handed out and is not handed out again
    assert take_all(t) == []


def test_nodes_no_longer_ready_are_not_handed_out(et: ModuleType) -> None:
    t = tracker(et.appends(path="/x", n=8))
    t.start()
    t.set(1, NodeState.CANCELLED)
    t.requeue(3)
    t.set(3, NodeState.SUBMITTED)  # handed out by another path meanwhile
    assert take_all(t) == [0, 2, 4, 5]


@gm.workflow
def element_edges(path: str) -> None:
    from engine_tasks import append_line

    group = append_line.map(path=path, ident=range(3), pause=0.0)
    append_line(path=path, ident=10, pause=0.0, after=group[1])  # waits for one element


def test_an_edge_to_one_element_releases_on_that_element(et: ModuleType) -> None:
    t = tracker(element_edges(path="/x"))
    t.start()
    assert list(t.states) == [R, R, R, P]
    t.node_done(0)
    assert t.states[3] == P
    t.node_done(1)
    assert t.states[3] == R
    t2 = tracker(element_edges(path="/x"))
    t2.start()
    assert t2.node_failed(1) == 1
    assert list(t2.states) == [R, F, R, UF]
