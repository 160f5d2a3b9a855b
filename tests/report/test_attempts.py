"""Attempt rows as the report reads them: node ids, derived times, requests, causes."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from gristmill.report.attempts import (
    COLUMN_SQL,
    AttemptRow,
    NodeIndex,
    argv_of,
    cause,
    cause_family,
    causes,
    count_attempts,
    iter_attempts,
    iter_columns,
    retry_causes,
    signal_name,
)
from gristmill.states import NodeState
from gristmill.store.db import AttemptRecord, Store


@pytest.fixture
def rows(mixed_run: Path) -> list[AttemptRow]:
    store = Store.open(mixed_run, readonly=True)
    try:
        return list(iter_attempts(store, batch=2))  # batches smaller than the run
    finally:
        store.close()


def test_every_attempt_is_read_once_in_submission_order(
    mixed_run: Path, rows: list[AttemptRow]
) -> None:
    store = Store.open(mixed_run, readonly=True)
    try:
        assert count_attempts(store) == len(rows) == 7  # hog 2, exit_with 2, 3 plain successes
        by_store = {a.key for a in store.attempts()}
    finally:
        store.close()
    assert {r.key for r in rows} == by_store
    assert [r.submitted for r in rows] == sorted(r.submitted for r in rows)


def test_the_oom_retry_names_its_cause_and_asked_for_more(rows: list[AttemptRow]) -> None:
    first, second = (r for r in rows if r.task == "hog")
    assert (first.state, first.cause, first.retry_cause, first.last) == ("OOM", "OOM", "", False)
    assert (second.state, second.retry_cause, second.last) == ("SUCCEEDED", "OOM", True)
    assert first.mem == 200 * 2**20
    assert second.mem == 300 * 2**20
    assert first.mem_fraction is not None
    assert first.mem_fraction > 1.0  # it went over the limit
    assert second.node_state == NodeState.DONE == first.node_state
    assert first.node == second.node


def test_a_failure_for_good_is_exit_3_twice_and_its_node_failed(rows: list[AttemptRow]) -> None:
    tries = [r for r in rows if r.task == "exit_with"]
    assert [(r.attempt, r.cause, r.retry_cause) for r in tries] == [
        (1, "exit 3", ""), (2, "exit 3", "exit 3")]
    assert tries[-1].last
    assert tries[-1].node_state == NodeState.FAILED
    assert tries[0].stderr.endswith(".err")
    assert Path(tries[0].stderr).read_text().strip() == "about to exit with code 3"


def test_start_and_queue_wait_are_derived_within_submit_and_end(rows: list[AttemptRow]) -> None:
    for row in rows:
        assert row.ended is not None
        assert row.elapsed is not None
        assert row.started is not None
        assert row.submitted <= row.started <= row.ended
        assert row.queue_wait is not None
        assert row.queue_wait >= 0
        assert row.host
        assert row.node is not None


def test_argv_is_read_on_demand(mixed_run: Path, rows: list[AttemptRow]) -> None:
    store = Store.open(mixed_run, readonly=True)
    try:
        argv = argv_of(store, next(r.key for r in rows if r.task == "exit_with"))
        assert argv_of(store, "no-such-key") == []
    finally:
        store.close()
    assert "--code" in argv
    assert argv[argv.index("--code") + 1] == "3"


@pytest.mark.parametrize(("state", "code", "sig", "expected", "family"), [
    ("SUCCEEDED", 0, None, "", ""),
    ("RUNNING", None, None, "", ""),
    ("FAILED", 3, None, "exit 3", "exit code"),
    ("FAILED", None, int(signal.SIGSEGV), "SIGSEGV", "signal"),
    ("FAILED", None, None, "FAILED", "exit code"),
    ("OOM", None, 9, "OOM", "OOM"),
    ("TIMEOUT", None, 15, "TIMEOUT", "TIMEOUT"),
    ("LOST", None, None, "LOST", "LOST"),
])
def test_cause_in_a_word(state: str, code: int | None, sig: int | None, expected: str,
                         family: str) -> None:
    assert cause(state, code, sig) == expected
    assert cause_family(expected) == family


def test_signal_names() -> None:
    assert signal_name(9) == "SIGKILL"
    assert signal_name(250) == "signal 250"


def _columns_and_rows(store: Store, batch: int) -> tuple[dict[str, list[Any]], list[AttemptRow]]:
    names = list(COLUMN_SQL)
    found: dict[str, list[Any]] = {n: [] for n in names}
    for columns in iter_columns(store, names, batch=batch):
        for n in names:
            found[n] += columns[n]
        found["cause"] = found.get("cause", []) + causes(columns)
        found["retry_cause"] = found.get("retry_cause", []) + retry_causes(columns)
    return found, list(iter_attempts(store))


@pytest.mark.parametrize("batch", [2, 10_000])
def test_columns_hold_what_the_rows_hold(mixed_run: Path, batch: int) -> None:
    store = Store.open(mixed_run, readonly=True)
    try:
        found, rows = _columns_and_rows(store, batch)
    finally:
        store.close()
    for name in set(COLUMN_SQL) - {"previous", "resources"}:
        assert found[name] == [getattr(r, name) for r in rows], name
    assert [json.loads(text).get("mem") for text in found["resources"]] == [
        r.mem for r in rows]
    assert found["cause"] == [r.cause for r in rows]
    assert found["retry_cause"] == [r.retry_cause for r in rows]
    assert "OOM" in found["retry_cause"]


def test_nodes_are_found_whatever_their_identities_look_like(tmp_path: Path) -> None:
    """Identities in upper case, or shorter than 16 characters, sort otherwise as text than
    as numbers: the node index sorts them itself. An attempt of a node the graph no longer
    has gets no node."""
    identities = ["ABCDEF0123456789" + "0" * 16, "0" * 32, "abc", "ff" * 16, "1" * 32]
    store = Store.create(tmp_path, {"workflow": "odd"})
    unit = (0, "t", "m:t", True, len(identities), 0, len(identities), "{}")
    store.write_dag([unit], identities, [0] * len(identities),
                    bytes([NodeState.DONE, NodeState.FAILED, NodeState.DONE, NodeState.READY,
                           NodeState.DONE]))
    attempts = [*reversed(identities), "9" * 32]
    with store.transaction() as cur:
        store.add_attempts(cur, [
            AttemptRecord(i, 1, f"{i[:16]}.1", "t", f"t_{n}", "local", None, "r", "o", "e",
                          (), {}, "SUCCEEDED", submitted=float(n))
            for n, i in enumerate(attempts)])
    store.close()
    store = Store.open(tmp_path, readonly=True)
    try:
        index = NodeIndex(store)
        ids, states = index.lookup(attempts)
        assert ids == [4, 3, 2, 1, 0, None]
        assert states == [NodeState.DONE, NodeState.READY, NodeState.DONE, NodeState.FAILED,
                          NodeState.DONE, None]
        found, rows = _columns_and_rows(store, 4)
        assert found["node"] == [r.node for r in rows] == ids
        assert found["node_state"] == [r.node_state for r in rows]
    finally:
        store.close()


def test_unknown_columns_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown attempt column\(s\) \['nope'\]"):
        next(iter_columns(None, ["task", "nope"]))  # type: ignore[arg-type]
