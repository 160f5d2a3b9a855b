"""The run store: one SQLite database (WAL) per run, written only by the engine."""

from __future__ import annotations

import hashlib
import itertools
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gristmill.errors import RunDirError, StoreError
from gristmill.states import NodeState
from gristmill.store.db import STORE_NAME, AttemptRecord, Store
from gristmill.store.schema import SCHEMA_VERSION


def unit_row(size: int, task: str = "fit", index: int = 0, start: int = 0) -> tuple[
    int, str, str, bool, int, int, int, str
]:
    return (index, task, f"pkg.tasks:{task}", True, size, start, size, '{"const": {}}')


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_store(tmp_path: Path, n: int = 3) -> Store:
    store = Store.create(tmp_path, {"workflow": "wf", "args": {"n": n}})
    store.write_dag([unit_row(n)], [f"id{i}" for i in range(n)], [0] * n)
    return store


def attempt(identity: str = "id0", number: int = 1, **changes: object) -> AttemptRecord:
    values: dict[str, object] = dict(
        identity=identity, attempt=number, key=f"{identity}.{number}", task="fit",
        job_name=f"fit_{identity}", backend="local", job_id=None, result_path="/r.json",
        stdout="/o", stderr="/e", argv=("fit", "--draw", "1"), resources={"mem": 2**30},
        state="QUEUED", submitted=100.0 + number,
    )
    values.update(changes)
    return AttemptRecord(**values)  # type: ignore[arg-type]


# -- creating and writing --------------------------------------------------------------------


def test_a_new_store_is_wal_with_schema_version_and_meta(tmp_path: Path) -> None:
    store = Store.create(tmp_path, {"workflow": "seiir", "args": {"draws": [1, 2]}})
    try:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = store.meta()
        assert meta["schema_version"] == SCHEMA_VERSION
        assert meta["workflow"] == "seiir"
        assert meta["args"] == {"draws": [1, 2]}
        assert meta["created"] == pytest.approx(time.time(), abs=60)
    finally:
        store.close()
    with pytest.raises(StoreError, match="already exists"):
        Store.create(tmp_path, {})


def test_a_reader_never_sees_a_store_being_made(tmp_path: Path) -> None:
    """``gristmill status`` started with the run finds no store or a whole one: never an
    empty file, nor tables without their meta."""
    seen: list[str] = []
    stop = threading.Event()
    dirs = [tmp_path / f"r{i}" for i in range(40)]

    def read() -> None:
        while not stop.is_set():
            for run_dir in dirs:
                if (run_dir / STORE_NAME).exists():
                    store = Store.open(run_dir, readonly=True, check=False)
                    try:
                        seen.append(str(store.meta().get("workflow")))
                    finally:
                        store.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for run_dir in dirs:
            run_dir.mkdir()
            Store.create(run_dir, {"workflow": "wf"}).close()
    finally:
        stop.set()
        reader.join()
    assert seen
    assert set(seen) == {"wf"}
    assert not [p for p in tmp_path.glob("r*/.*")]  # no draft left behind


def test_the_dag_persists_units_nodes_and_edges(tmp_path: Path) -> None:
    store = Store.create(tmp_path, {})
    units = [
        unit_row(3, "fit"),
        (1, "validate", "pkg.tasks:validate", False, 1, 3, 1, '{"after": [[0, null]]}'),
    ]
    store.write_dag(units, ["a", "b", "c", "d"], [0, 0, 0, 1])
    store.close()
    again = Store.open(tmp_path, readonly=True)
    try:
        rows = again.units()
        assert [(r["task"], r["is_group"], r["size"], r["start"]) for r in rows] == [
            ("fit", 1, 3, 0), ("validate", 0, 1, 3),
        ]  # fmt: skip
        assert '"after": [[0, null]]' in rows[1]["definition"]  # edges live with their unit
        identities, states, tries = again.node_states()
        assert identities == ["a", "b", "c", "d"]
        assert list(states) == [NodeState.PENDING] * 4
        assert tries == [0] * 4
        assert again.counts() == {("fit", "PENDING"): 3, ("validate", "PENDING"): 1}
    finally:
        again.close()


def test_a_hundred_thousand_nodes_are_written_in_well_under_a_second(tmp_path: Path) -> None:
    n = 100_000
    store = Store.create(tmp_path, {})
    identities = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    started = time.perf_counter()
    store.write_dag([unit_row(n)], identities, [0] * n)
    with store.transaction() as cur:
        store.set_states(cur, [], [(0, n - 1, int(NodeState.READY))])
    elapsed = time.perf_counter() - started
    print(f"100,000 nodes written and released in {elapsed:.3f} s")
    assert elapsed < 3.0  # measured ~0.15 s; the bound only catches a per-row regression
    assert store.counts() == {("fit", "READY"): n}
    assert store.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    store.close()


def test_node_progress_reads_states_and_attempts_like_node_states(tmp_path: Path) -> None:
    store = Store.create(tmp_path, {})
    assert store.node_progress() == (bytearray(), [])  # no DAG yet
    units = [
        unit_row(6, "fit"),
        (1, "validate", "pkg.tasks:validate", False, 1, 6, 1, '{"digest": "d1"}'),
    ]
    store.write_dag(units, [f"id{i}" for i in range(7)], [0] * 6 + [1],
                    bytes([4, 0, 5, 4, 7, 3, 0]), [1, 0, 3, 207, 2, 1, 0])
    _, states, attempts = store.node_states()
    assert store.node_progress() == (states, attempts)
    assert list(states) == [4, 0, 5, 4, 7, 3, 0]
    assert store.unit_digests() == [(0, 6, None), (6, 1, "d1")]  # fit's row has no digest
    with store.transaction() as cur:
        store.set_attempt_counts(cur, [(3, 208)])  # past what a character holds
    assert store.node_progress() is None
    with store.transaction() as cur:
        store.set_attempt_counts(cur, [(3, 1)])
        cur.execute("DELETE FROM nodes WHERE id = 2")  # ids no longer 0..n-1
    assert store.node_progress() is None
    store.close()


def test_node_progress_keeps_id_order_over_many_pages(tmp_path: Path) -> None:
    n = 200_000
    states = bytes(i % 8 for i in range(n))
    attempts = [i % 200 for i in range(n)]
    store = Store.create(tmp_path, {})
    store.write_dag([unit_row(n)], ["x"] * n, itertools.repeat(0, n), states, attempts)
    started = time.perf_counter()
    progress = store.node_progress()
    elapsed = time.perf_counter() - started
    print(f"states of {n:,} nodes read in {elapsed:.3f} s")
    assert progress == (bytearray(states), attempts)
    assert elapsed < 3.0  # measured ~0.06 s; the bound only catches something quadratic
    store.close()


def test_transitions_are_events_with_timestamps_ranges_for_groups(tmp_path: Path) -> None:
    store = make_store(tmp_path, n=5)
    before = time.time()
    with store.transaction() as cur:
        store.set_states(cur, [], [(0, 4, int(NodeState.READY))])
    with store.transaction() as cur:
        store.set_states(cur, [(2, int(NodeState.SUBMITTED)), (3, int(NodeState.FAILED))],
                         note="why")
    events = store.conn.execute(
        "SELECT ts, node_lo, node_hi, state, note FROM events ORDER BY rowid"
    ).fetchall()
    assert [tuple(e)[1:] for e in events] == [
        (0, 4, NodeState.READY, ""), (2, 2, NodeState.SUBMITTED, "why"),
        (3, 3, NodeState.FAILED, "why"),
    ]  # fmt: skip
    assert all(before <= e["ts"] <= time.time() for e in events)
    _, states, _ = store.node_states()
    assert list(states) == [1, 1, 2, 5, 1]
    store.close()


def test_every_attempt_is_recorded_with_what_the_worker_measured(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with store.transaction() as cur:
        store.add_attempts(cur, [attempt("id0", 1), attempt("id1", 1)])
        store.set_attempt_counts(cur, [(0, 1), (1, 1)])
    with store.transaction() as cur:
        store.set_job_ids(cur, [("id0.1", "4242.1.1"), ("id1.1", "4242.1.2")])
    assert [a.key for a in store.attempts(open_only=True)] == ["id0.1", "id1.1"]
    with store.transaction() as cur:
        store.finish_attempts(cur, [{
            "key": "id0.1", "state": "OOM", "exit_code": None, "signal": 9,
            "peak_rss": 3 * 2**30, "elapsed": 12.5, "host": "node7",
            "reason": "exceeded memory limit 1G", "ended": 200.0,
        }])  # fmt: skip
        store.add_attempts(cur, [attempt("id0", 2, resources={"mem": 3 * 2**29})])
    store.close()
    again = Store.open(tmp_path, readonly=True)
    try:
        first = again.attempts(identity="id0")[0]
        assert (first.job_id, first.state, first.signal, first.peak_rss) == (
            "4242.1.1", "OOM", 9, 3 * 2**30,
        )  # fmt: skip
        assert (first.elapsed, first.host, first.ended) == (12.5, "node7", 200.0)
        assert first.argv == ("fit", "--draw", "1")
        assert first.resources == {"mem": 2**30}
        assert (first.stdout, first.stderr, first.result_path) == ("/o", "/e", "/r.json")
        assert [a.key for a in again.attempts(open_only=True)] == ["id1.1", "id0.2"]
        last = {node: a.key if a else None for node, _, _, a in again.last_attempts()}
        assert last == {0: "id0.2", 1: "id1.1", 2: None}
        assert again.node_states()[2] == [1, 1, 0]
    finally:
        again.close()


def test_one_attempt_is_read_by_its_key_and_its_end_seen_by_a_reader(tmp_path: Path) -> None:
    """A reader holding the store open (``logs --follow``) sees the engine close the attempt."""
    store = make_store(tmp_path)
    with store.transaction() as cur:
        store.add_attempts(cur, [attempt("id0", 1), attempt("id1", 1)])
    reader = Store.open(tmp_path, readonly=True)
    try:
        found = reader.attempt("id1.1")
        assert found is not None
        assert (found.identity, found.attempt, found.ended) == ("id1", 1, None)
        assert reader.attempt("id9.1") is None
        with store.transaction() as cur:
            store.finish_attempts(cur, [{
                "key": "id1.1", "state": "SUCCEEDED", "exit_code": 0, "signal": None,
                "peak_rss": None, "elapsed": 1.0, "host": "h", "reason": "", "ended": 300.0,
            }])  # fmt: skip
        ended = reader.attempt("id1.1")
        assert ended is not None
        assert (ended.state, ended.ended) == ("SUCCEEDED", 300.0)
    finally:
        reader.close()
        store.close()


def _half_written(store: Store, failure: str) -> None:
    """Write a transition and an attempt, then fail inside the same transaction."""
    with store.transaction() as cur:
        store.set_states(cur, [(0, int(NodeState.DONE))])
        store.add_attempts(cur, [attempt("id0", 1)])
        if failure == "python":
            raise ZeroDivisionError
        cur.execute("INSERT INTO no_such_table VALUES (1)")


@pytest.mark.parametrize(("failure", "raised"), [("python", ZeroDivisionError),
                                                  ("sqlite", StoreError)])
def test_a_failed_transaction_changes_nothing(
    tmp_path: Path, failure: str, raised: type[Exception]
) -> None:
    store = make_store(tmp_path)
    with pytest.raises(raised):
        _half_written(store, failure)
    assert list(store.node_states()[1]) == [0, 0, 0]
    assert store.attempts() == []
    store.close()


# -- only the engine writes; bad stores are refused, untouched ------------------------------


def test_a_read_only_store_refuses_writes(tmp_path: Path) -> None:
    make_store(tmp_path).close()
    reader = Store.open(tmp_path, readonly=True)
    try:
        with pytest.raises(StoreError, match="cannot write"), reader.transaction() as cur:
            reader.set_states(cur, [(0, int(NodeState.DONE))])
    finally:
        reader.close()


def test_a_directory_without_a_store_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is it a run directory") as info:
        Store.open(tmp_path)
    assert isinstance(info.value, RunDirError)  # the CLI reports both the same way


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_a_store_from_a_newer_gristmill_is_refused_untouched(tmp_path: Path, journal: str) -> None:
    make_store(tmp_path).close()
    path = tmp_path / STORE_NAME
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA journal_mode={journal}")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
    conn.close()
    before = digest(path)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer") as e:
            Store.open(tmp_path, readonly=readonly)
        assert "upgrade gristmill" in str(e.value)
    assert digest(path) == before


#: The tables of a store of schema version 2, as gristmill made them before attempts
#: recorded their CPU time.
SCHEMA_V2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE units (
    id INTEGER PRIMARY KEY, task TEXT NOT NULL, task_key TEXT NOT NULL,
    is_group INTEGER NOT NULL, size INTEGER NOT NULL, start INTEGER NOT NULL,
    owned INTEGER NOT NULL, definition TEXT NOT NULL
);
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY, identity TEXT NOT NULL, unit INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE attempts (
    identity TEXT NOT NULL, attempt INTEGER NOT NULL, key TEXT NOT NULL,
    task TEXT NOT NULL, job_name TEXT NOT NULL, backend TEXT NOT NULL,
    job_id TEXT, result_path TEXT NOT NULL, stdout TEXT NOT NULL, stderr TEXT NOT NULL,
    argv TEXT NOT NULL, resources TEXT NOT NULL, state TEXT NOT NULL,
    exit_code INTEGER, signal INTEGER, peak_rss INTEGER, elapsed REAL, host TEXT,
    reason TEXT NOT NULL DEFAULT '', submitted REAL NOT NULL, ended REAL,
    PRIMARY KEY (identity, attempt)
);
CREATE INDEX attempts_open ON attempts (ended) WHERE ended IS NULL;
CREATE UNIQUE INDEX attempts_key ON attempts (key);
CREATE TABLE events (
    ts REAL NOT NULL, node_lo INTEGER NOT NULL, node_hi INTEGER NOT NULL,
    state INTEGER NOT NULL, note TEXT NOT NULL DEFAULT ''
);
"""


def make_v2_store(run_dir: Path) -> Path:
    """A store exactly as a gristmill of schema version 2 left it, one attempt ended."""
    path = run_dir / STORE_NAME
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(SCHEMA_V2)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                         [("schema_version", "2"), ("created", "1.0"), ("workflow", '"wf"')])
        conn.execute("INSERT INTO units VALUES (0, 'fit', 'pkg.tasks:fit', 0, 1, 0, 1, '{}')")
        conn.execute("INSERT INTO nodes (id, identity, unit, state, attempts) "
                     "VALUES (0, 'id0', 0, ?, 1)", (int(NodeState.DONE),))
        conn.execute(
            "INSERT INTO attempts (identity, attempt, key, task, job_name, backend, result_path, "
            "stdout, stderr, argv, resources, state, exit_code, peak_rss, elapsed, host, "
            "reason, submitted, ended) VALUES ('id0', 1, 'id0.1', 'fit', 'fit_id0', 'local', "
            "'/r.json', '/o', '/e', '[\"fit\"]', '{}', 'SUCCEEDED', 0, 1024, 2.5, 'n1', "
            "'exit code 0', 100.0, 102.5)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    return path


def test_a_version_2_store_reads_as_it_is_and_is_migrated_when_written(tmp_path: Path) -> None:
    path = make_v2_store(tmp_path)
    before = digest(path)
    with Store.untouched(tmp_path) as untouched:
        (old,) = untouched.attempts()
    store = Store.open(tmp_path, readonly=True)
    try:
        assert store.attempts() == [old]
    finally:
        store.close()
    assert digest(path) == before  # reading changed nothing
    assert (old.state, old.peak_rss, old.cpu_time, old.usage_source) == (
        "SUCCEEDED", 1024, None, None)

    store = Store.open(tmp_path)  # to be written: brought to the current version first
    try:
        assert store.meta()["schema_version"] == SCHEMA_VERSION == 3
        assert store.attempts() == [old]  # what it held is kept, CPU time unknown
        with store.transaction() as cur:
            store.add_attempts(cur, [attempt("id0", 2)])
            store.finish_attempts(cur, [{
                "key": "id0.2", "state": "SUCCEEDED", "exit_code": 0, "signal": None,
                "peak_rss": 2048, "elapsed": 1.0, "host": "n1", "reason": "exit code 0",
                "ended": 103.0, "cpu_time": 0.75, "usage_source": "worker"}])
        new = store.attempt("id0.2")
        assert new is not None
        assert (new.cpu_time, new.usage_source) == (0.75, "worker")
    finally:
        store.close()
    Store.open(tmp_path).close()  # opening a current store again changes nothing
    conn = sqlite3.connect(path)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(attempts)")]
    finally:
        conn.close()
    assert columns.count("cpu_time") == columns.count("usage_source") == 1


def test_a_check_in_the_background_answers_like_check(tmp_path: Path) -> None:
    make_store(tmp_path).close()
    assert Store.check_in_background(tmp_path)() == tmp_path / STORE_NAME
    (tmp_path / STORE_NAME).write_bytes(b"this is no sqlite database" * 200)
    wait = Store.check_in_background(tmp_path)
    with pytest.raises(StoreError, match="corrupt"):
        wait()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4096 * 6 : 4096 * 8] = os.urandom(8192)
    path.write_bytes(bytes(data))


def _noise(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


@pytest.mark.parametrize("damage", [_truncate, _garble, _noise])
def test_a_corrupt_store_is_refused_untouched(tmp_path: Path, damage: object) -> None:
    store = Store.create(tmp_path, {})
    store.write_dag([unit_row(4000)], [f"identity-{i:08d}" for i in range(4000)], [0] * 4000)
    store.close()
    path = tmp_path / STORE_NAME
    damage(path)  # type: ignore[operator]
    before = digest(path)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="corrupt") as info:
            Store.open(tmp_path, readonly=readonly)
        assert str(path) in str(info.value)
        assert "left untouched" in str(info.value)
    assert digest(path) == before


def test_a_check_without_the_page_scan_still_refuses_what_is_not_a_usable_store(
    tmp_path: Path,
) -> None:
    store = Store.create(tmp_path, {})
    store.write_dag([unit_row(4000)], [f"identity-{i:08d}" for i in range(4000)], [0] * 4000)
    store.close()
    path = tmp_path / STORE_NAME
    _garble(path)  # pages deep in the nodes table: only the full check reads them
    assert Store.check(tmp_path, full=False) == path
    with pytest.raises(StoreError, match="corrupt"):
        Store.check(tmp_path)
    _noise(path)
    with pytest.raises(StoreError, match="corrupt"):
        Store.check(tmp_path, full=False)
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="is empty"):
        Store.check(tmp_path, full=False)


def test_pending_reasons_are_kept_for_open_attempts_only_and_counted_per_task(
    tmp_path: Path,
) -> None:
    store = Store.create(tmp_path, {"workflow": "w"})
    records = [
        AttemptRecord(identity=f"id{i}", attempt=1, key=f"k{i}", task="fit" if i < 3 else "plot",
                      job_name=f"j{i}", backend="slurm", job_id=None, result_path=f"/r{i}",
                      stdout="/o", stderr="/e", argv=("x",), resources={}, state="QUEUED",
                      submitted=1.0)
        for i in range(5)
    ]
    with store.transaction() as cur:
        store.add_attempts(cur, records)
        store.finish_attempts(cur, [{"key": "k4", "state": "FAILED", "exit_code": 1,
                                     "signal": None, "peak_rss": None, "elapsed": None,
                                     "host": None, "reason": "exit code 1", "ended": 2.0}])
        store.set_job_ids(cur, [("k0", "7_0"), ("k1", "7_1"), ("k2", "7_2"), ("k3", "8_0")])
        store.set_pending_reasons(cur, [("k0", "Resources"), ("k1", "Resources"),
                                        ("k2", "Priority"), ("k3", "ReqNodeNotAvail"),
                                        ("k4", "Resources")])
    assert store.waiting_reasons() == {
        "fit": {"Resources": 2, "Priority": 1}, "plot": {"ReqNodeNotAvail": 1},
    }
    assert store.attempt("k4").reason == "exit code 1"  # an ended attempt keeps its own
    with store.transaction() as cur:
        store.set_pending_reasons(cur, [("k2", "")])  # it runs now
        store.drop_attempts(cur, ["k0", "k4"])  # submitted (a job id) or ended: kept
    assert store.waiting_reasons() == {"fit": {"Resources": 2}, "plot": {"ReqNodeNotAvail": 1}}
    assert store.attempt("k0") is not None
    assert store.attempt("k4") is not None
    with store.transaction() as cur:
        cur.execute("UPDATE attempts SET job_id = NULL WHERE key = 'k0'")
        store.drop_attempts(cur, ["k0"])  # never reached a backend: gone
    assert store.attempt("k0") is None
    store.close()
