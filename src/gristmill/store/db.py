"""The run store: one SQLite database (WAL) per run, written only by the engine.

It holds the DAG (units and nodes by identity), every state transition with a
timestamp, and every attempt with what the worker wrapper measured. Writes are
batched into one transaction per engine cycle, so a million nodes persist with
a handful of statements, and readers (``gristmill status``) never block the
engine. Transitions that move a whole group at once are stored as one event
over an id range, keeping groups compact in the store as in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from gristmill.errors import StoreError
from gristmill.states import NodeState
from gristmill.store.check import check_store, diagnose, open_readonly, write_error
from gristmill.store.lock import RunLock, is_locked
from gristmill.store.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

STORE_NAME = "gristmill.db"
#: :meth:`Store.node_progress` reads values 0.._MAX_CHAR as the characters 48..255.
_MAX_CHAR = 255 - 48
_FROM_CHAR = bytes((i - 48) % 256 for i in range(256))


@attrs.frozen
class AttemptRecord:
    """One attempt of one node, as the store keeps it."""

    identity: str
    attempt: int
    key: str
    task: str
    job_name: str
    backend: str
    job_id: str | None
    result_path: str
    stdout: str
    stderr: str
    argv: tuple[str, ...]
    resources: Mapping[str, Any]
    state: str
    exit_code: int | None = None
    signal: int | None = None
    peak_rss: int | None = None
    elapsed: float | None = None
    host: str | None = None
    reason: str = ""
    submitted: float = 0.0
    ended: float | None = None
    #: CPU seconds (user + system) of the attempt's whole process tree; ``None`` when not
    #: measured (the attempt never started, its backend measures none, or a store made
    #: before schema version 3). CPU efficiency is ``cpu_time / (elapsed * cores)``.
    cpu_time: float | None = None
    #: Who measured ``cpu_time`` and ``peak_rss``: ``"worker"`` (the wrapper's monitor),
    #: ``"scheduler"`` (sacct, qacct) or ``"scheduler+worker"`` (the scheduler's where
    #: its accounting had them); see :data:`gristmill.backends.base.USAGE_SOURCES`.
    usage_source: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AttemptRecord:
        data = dict(row)
        data["argv"] = tuple(json.loads(data["argv"]))
        data["resources"] = json.loads(data["resources"])
        return cls(**data)


_ATTEMPT_COLUMNS = [f.name for f in attrs.fields(AttemptRecord)]


class Store:
    """A run's SQLite database. Open it with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    # -- opening -----------------------------------------------------------------

    @classmethod
    def create(cls, run_dir: Path, meta: Mapping[str, Any]) -> Store:
        """Make the store of a new run; it appears at its path whole: tables and meta.

        It is written under a temporary name in SQLite's rollback-journal mode and
        renamed into place once committed and closed, so ``gristmill status`` (or any
        reader) started at the same moment finds no store or one that names its run,
        never an empty file or a write-ahead log still being written; a disk too full
        for that leaves no store at all. Then it is opened in WAL mode. The DAG is
        written next (:meth:`write_dag`), in a transaction of its own: an engine killed
        during it leaves a store that ``resume`` completes, as it knows the workflow.
        """
        path = run_dir / STORE_NAME
        if path.exists():
            raise StoreError(f"{path} already exists; open it instead of creating it")
        draft = path.with_name(f".{STORE_NAME}.{os.getpid()}.new")
        # SQLite makes new databases 0644 whatever the umask; an empty file made first
        # keeps the user's umask, and SQLite gives its -wal and -shm files the same mode.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                             0o666))
        try:  # one transaction: a crash leaves no store, never half of one
            conn = sqlite3.connect(draft, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("created", str(time.time()))]
                    + [(k, json.dumps(v, default=str)) for k, v in meta.items()],
                )
                conn.execute("COMMIT")
            finally:
                conn.close()
            if path.exists():  # (the commit above synced the file: synchronous=FULL)
                raise sqlite3.OperationalError(f"{path} appeared while it was being made")
            os.rename(draft, path)
            folder = os.open(run_dir, os.O_RDONLY | os.O_CLOEXEC)
            try:  # the rename itself survives a machine crash
                os.fsync(folder)
            finally:
                os.close(folder)
        except (sqlite3.Error, OSError) as exc:
            why = diagnose(path)  # before the draft goes: removing it frees the space
            for suffix in ("", "-journal"):  # ours and unfinished
                with contextlib.suppress(OSError):
                    draft.with_name(draft.name + suffix).unlink()
            raise StoreError(f"cannot create the run store {path}: {exc} ({why})") from exc
        return cls(path, cls._connect(path))

    @classmethod
    def open(cls, run_dir: Path, *, readonly: bool = False, check: bool = True) -> Store:
        """Open an existing store; a corrupt or newer one raises and is left byte-for-byte as is.

        ``check=False`` skips the checks :meth:`check` just made.
        """
        path = cls.check(run_dir) if check else run_dir / STORE_NAME
        conn = cls._connect(path, readonly=readonly)
        if not readonly:
            try:  # stores made before the index existed get it (attempts by key)
                conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS attempts_key ON attempts (key)")
                migrate(conn, path)
            except BaseException:
                conn.close()
                raise
        return cls(path, conn)

    @classmethod
    def check(cls, run_dir: Path, *, full: bool = True) -> Path:
        """Refuse a missing, corrupt or newer store (read-only: nothing is written); its path.

        ``full=False`` leaves out the integrity check of every page (``PRAGMA
        quick_check``), for a reader that only needs the store's metadata; whatever
        writes to the store makes the full check first.
        """
        path = run_dir / STORE_NAME
        if not path.is_file():
            raise StoreError(f"{run_dir} has no run store ({STORE_NAME}); is it a run directory?")
        check_store(path, full)  # through a read-only connection: switching to WAL would write
        return path

    @classmethod
    @contextlib.contextmanager
    def untouched(cls, run_dir: Path, *, full: bool = True) -> Iterator[Store]:
        """The store, checked and opened read-only, leaving the run directory as it was.

        For what must write nothing (``--dry-run``, refusing a run directory): a plain
        read-only connection leaves ``-wal`` and ``-shm`` files beside a WAL store. With
        an empty log (the engine closed the store) the file is read as immutable; with
        changes still in the log (an engine died) a copy of both is read. A run an engine
        holds is refused (its store changes under the reader), as the engine's lock would.
        """
        path = run_dir / STORE_NAME
        if not path.is_file():
            raise StoreError(f"{run_dir} has no run store ({STORE_NAME}); is it a run directory?")
        if is_locked(run_dir):
            RunLock.refuse(run_dir)
        wal = path.with_name(path.name + "-wal")
        with contextlib.ExitStack() as stack:
            immutable = not wal.exists() or wal.stat().st_size == 0
            if not immutable:
                copy = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gm-store-")))
                shutil.copyfile(path, copy / STORE_NAME)
                shutil.copyfile(wal, copy / wal.name)
                path = copy / STORE_NAME
            check_store(path, full, immutable=immutable)
            conn = open_readonly(path, immutable=immutable)
            conn.row_factory = sqlite3.Row
            store = cls(path, conn)
            stack.callback(store.close)
            yield store

    @classmethod
    def check_in_background(cls, run_dir: Path) -> Callable[[], Path]:
        """Start :meth:`check` in a thread; the returned function waits for it (and raises).

        The check reads the whole file (``PRAGMA quick_check``: 0.6 s for a run of a
        million nodes) with the GIL released, so work done meanwhile, such as hashing
        the workflow's identities, hides it on a second core.
        """
        outcome: list[Path | BaseException] = []

        def check() -> None:
            try:
                outcome.append(cls.check(run_dir))
            except BaseException as exc:  # handed to the waiting thread, which raises it
                outcome.append(exc)

        thread = threading.Thread(target=check, name="gristmill-store-check")
        thread.start()

        def wait() -> Path:
            thread.join()  # no thread is left behind once the answer is in
            if isinstance(outcome[0], BaseException):
                raise outcome[0]
            return outcome[0]

        return wait

    @staticmethod
    def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = None
        try:
            if readonly:
                conn = open_readonly(path)
            else:
                conn = sqlite3.connect(path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open the run store {path}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    # -- writing (engine only) -------------------------------------------------------

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def write_dag(
        self,
        units: Sequence[tuple[int, str, str, bool, int, int, int, str]],
        identities: Sequence[str],
        unit_of_node: Iterable[int],
        states: bytes | None = None,
        attempts: Sequence[int] | None = None,
    ) -> None:
        """Replace the DAG: units, then nodes in batches (one transaction)."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM units")
            cur.execute("DELETE FROM nodes")
            cur.executemany(
                "INSERT INTO units (id, task, task_key, is_group, size, start, owned, "
                "definition) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                units,
            )
            if states is None:
                cur.executemany(
                    "INSERT INTO nodes (id, identity, unit) VALUES (?, ?, ?)",
                    zip(range(len(identities)), identities, unit_of_node),
                )
            else:
                cur.executemany(
                    "INSERT INTO nodes (id, identity, unit, state, attempts) "
                    "VALUES (?, ?, ?, ?, ?)",
                    zip(range(len(identities)), identities, unit_of_node, states,
                        attempts or [0] * len(identities)),
                )

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the store, syncing both to disk.

        Commits are not synced one by one (``synchronous=NORMAL``): they survive the
        engine's death at once and a machine's or disk's after a checkpoint.
        """
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            raise write_error(self.path, exc) from exc

    def set_meta(self, cur: sqlite3.Cursor, key: str, value: Any) -> None:
        cur.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (key, json.dumps(value, default=str)),
        )

    def set_states(
        self,
        cur: sqlite3.Cursor,
        singles: Sequence[tuple[int, int]],
        ranges: Sequence[tuple[int, int, int]] = (),
        note: str = "",
    ) -> None:
        """Record transitions: ``singles`` as (node, state), ``ranges`` as (lo, hi, state)."""
        now = time.time()
        if ranges:
            cur.executemany(
                "UPDATE nodes SET state = ? WHERE id BETWEEN ? AND ?",
                [(s, lo, hi) for lo, hi, s in ranges],
            )
            cur.executemany(
                "INSERT INTO events (ts, node_lo, node_hi, state, note) VALUES (?, ?, ?, ?, ?)",
                [(now, lo, hi, s, note) for lo, hi, s in ranges],
            )
        if singles:
            cur.executemany("UPDATE nodes SET state = ? WHERE id = ?", [(s, n) for n, s in singles])
            cur.executemany(
                "INSERT INTO events (ts, node_lo, node_hi, state, note) VALUES (?, ?, ?, ?, ?)",
                [(now, n, n, s, note) for n, s in singles],
            )

    def add_attempts(self, cur: sqlite3.Cursor, records: Sequence[AttemptRecord]) -> None:
        placeholders = ", ".join("?" for _ in _ATTEMPT_COLUMNS)
        cur.executemany(
            f"INSERT OR REPLACE INTO attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
            f"VALUES ({placeholders})",
            [_attempt_row(r) for r in records],
        )

    def set_job_ids(self, cur: sqlite3.Cursor, pairs: Sequence[tuple[str, str]]) -> None:
        """(attempt key, job id) pairs from a submission."""
        cur.executemany("UPDATE attempts SET job_id = ? WHERE key = ?", [(j, k) for k, j in pairs])

    def finish_attempts(
        self, cur: sqlite3.Cursor, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Close attempts with what the backend or the worker reported (a row without
        ``cpu_time`` or ``usage_source`` records none)."""
        cur.executemany(
            "UPDATE attempts SET state = :state, exit_code = :exit_code, signal = :signal, "
            "peak_rss = :peak_rss, elapsed = :elapsed, host = :host, reason = :reason, "
            "ended = :ended, cpu_time = :cpu_time, usage_source = :usage_source "
            "WHERE key = :key",
            ({"cpu_time": None, "usage_source": None, **row} for row in rows),
        )

    def set_pending_reasons(
        self, cur: sqlite3.Cursor, pairs: Sequence[tuple[str, str]]
    ) -> None:
        """(attempt key, reason) pairs: why the scheduler keeps each open attempt queued
        (``""`` once it runs). An attempt already closed keeps the reason it ended with."""
        cur.executemany("UPDATE attempts SET reason = ? WHERE key = ? AND ended IS NULL",
                        [(reason, key) for key, reason in pairs])

    def drop_attempts(self, cur: sqlite3.Cursor, keys: Sequence[str]) -> None:
        """Delete attempts that never reached a backend (a submission refused for a submit
        limit): they were not made, and their numbers are given again."""
        cur.executemany("DELETE FROM attempts WHERE key = ? AND ended IS NULL AND job_id IS NULL",
                        [(key,) for key in keys])

    def set_attempt_counts(self, cur: sqlite3.Cursor, pairs: Sequence[tuple[int, int]]) -> None:
        cur.executemany("UPDATE nodes SET attempts = ? WHERE id = ?", [(a, n) for n, a in pairs])

    # -- reading (anyone) ----------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.conn.execute("SELECT key, value FROM meta"):
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        return out

    def identities(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT identity FROM nodes ORDER BY id")]

    def shares_result_path(self, key: str, result_path: str) -> bool:
        """Whether an attempt other than ``key`` was given the same result file.

        Only gristmill 0.1 named files that way (a result then proves nothing about whose
        it is). A scan of the attempts table: asked only for a result naming no attempt.
        """
        row = self.conn.execute(
            "SELECT 1 FROM attempts WHERE result_path = ? AND key != ? LIMIT 1",
            (result_path, key),
        ).fetchone()
        return row is not None

    def node_states(self) -> tuple[list[str], bytearray, list[int]]:
        """(identities, states, attempt counts) of every node, by id."""
        identities: list[str] = []
        states = bytearray()
        attempts: list[int] = []
        cursor = self.conn.execute("SELECT identity, state, attempts FROM nodes ORDER BY id")
        while True:
            rows = cursor.fetchmany(100_000)
            if not rows:
                break
            for identity, state, count in rows:
                identities.append(identity)
                states.append(state)
                attempts.append(count)
        return identities, states, attempts

    def unit_digests(self) -> list[tuple[int, int, str | None]]:
        """(first node id, nodes owned, digest) of every unit, by id.

        The digest lives in the unit's definition; a store written before digests were
        kept has None there, so a resume reads its identities instead.
        """
        out: list[tuple[int, int, str | None]] = []
        for start, owned, definition in self.conn.execute(
            "SELECT start, owned, definition FROM units ORDER BY id"
        ):
            try:
                found = json.loads(definition).get("digest")
            except (ValueError, AttributeError):
                found = None
            out.append((start, owned, found if isinstance(found, str) else None))
        return out

    def node_progress(self) -> tuple[bytearray, list[int]] | None:
        """(states, attempt counts) of every node, by id, without their identities.

        SQLite folds the table into two strings, a character per node each, which is
        several times faster than a row per node. None when the ids are not 0..n-1 or a
        value does not fit a character: :meth:`node_states` reads those.
        """
        low, high = self.conn.execute(
            "SELECT (SELECT min(id) FROM nodes), (SELECT max(id) FROM nodes)"
        ).fetchone()
        if low is None:
            return bytearray(), []
        # NOT INDEXED: a scan of the table itself, whose rows come in id order.
        states, attempts = self.conn.execute(
            "SELECT group_concat(char(48 + state), ''), group_concat(char(48 + attempts), '') "
            "FROM nodes NOT INDEXED"
        ).fetchone()
        if low != 0 or len(states) != high + 1:
            return None
        try:
            state_bytes = states.encode("latin-1").translate(_FROM_CHAR)
            attempt_bytes = attempts.encode("latin-1").translate(_FROM_CHAR)
        except UnicodeEncodeError:  # a value above _MAX_CHAR
            return None
        if max(state_bytes) > _MAX_CHAR or max(attempt_bytes) > _MAX_CHAR:  # below 0
            return None
        return bytearray(state_bytes), list(attempt_bytes)

    def counts(self) -> dict[tuple[str, str], int]:
        """(task, state name) -> number of nodes."""
        rows = self.conn.execute(
            "SELECT u.task, n.state, COUNT(*) FROM nodes n JOIN units u ON n.unit = u.id "
            "GROUP BY u.task, n.state"
        )
        return {(task, NodeState(state).name): count for task, state, count in rows}

    def waiting_reasons(self) -> dict[str, dict[str, int]]:
        """task -> {the scheduler's reason: open attempts queued for it}, most first."""
        rows = self.conn.execute(
            "SELECT task, reason, COUNT(*) AS n FROM attempts WHERE ended IS NULL "
            "AND reason != '' GROUP BY task, reason ORDER BY task, n DESC, reason"
        )
        out: dict[str, dict[str, int]] = {}
        for task, reason, count in rows:
            out.setdefault(task, {})[reason] = count
        return out

    def units(self) -> list[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM units ORDER BY id"))

    def attempts(
        self, *, open_only: bool = False, identity: str | None = None,
        job_name: str | None = None,
    ) -> list[AttemptRecord]:
        sql = "SELECT * FROM attempts"
        args: list[Any] = []
        clauses = []
        if open_only:
            clauses.append("ended IS NULL")
        if identity is not None:
            clauses.append("identity = ?")
            args.append(identity)
        if job_name is not None:
            clauses.append("job_name = ?")
            args.append(job_name)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY submitted, attempt"
        return [AttemptRecord.from_row(r) for r in self.conn.execute(sql, args)]

    def attempt(self, key: str) -> AttemptRecord | None:
        """One attempt by its key, ``None`` when the store has none: one indexed lookup,
        cheap enough for ``gristmill logs --follow`` to ask twice a second."""
        row = self.conn.execute("SELECT * FROM attempts WHERE key = ?", (key,)).fetchone()
        return None if row is None else AttemptRecord.from_row(row)

    def last_resources(self) -> dict[str, dict[str, Any]]:
        """The resources asked for by each node's latest attempt, by identity."""
        rows = self.conn.execute(
            "SELECT identity, resources FROM attempts a WHERE attempt = "
            "(SELECT max(attempt) FROM attempts b WHERE b.identity = a.identity)"
        )
        return {identity: json.loads(resources) for identity, resources in rows}
    def node(self, node_id: int) -> tuple[str, str, int] | None:
        """(identity, task, state) of one node by id; ``None`` when there is no such node."""
        row = self.conn.execute(
            "SELECT n.identity, u.task, n.state FROM nodes n JOIN units u ON n.unit = u.id "
            "WHERE n.id = ?", (node_id,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def node_ids(self, identities: Iterable[str]) -> dict[str, int]:
        """The node id of each identity the current graph holds (others are left out)."""
        out: dict[str, int] = {}
        for identity in identities:
            row = self.conn.execute("SELECT id FROM nodes WHERE identity = ?",
                                    (identity,)).fetchone()
            if row is not None:
                out[identity] = row[0]
        return out

    def last_attempts(self, states: Sequence[NodeState] | None = None) -> Iterator[
        tuple[int, str, int, AttemptRecord | None]
    ]:
        """(node id, task, state, its latest attempt) for nodes in ``states``."""
        sql = (
            "SELECT n.id, u.task, n.state, n.identity FROM nodes n JOIN units u ON n.unit = u.id"
        )
        args: list[Any] = []
        if states is not None:
            sql += f" WHERE n.state IN ({', '.join('?' for _ in states)})"
            args = [int(s) for s in states]
        for node_id, task, state, identity in self.conn.execute(sql + " ORDER BY n.id", args):
            row = self.conn.execute(
                "SELECT * FROM attempts WHERE identity = ? ORDER BY attempt DESC LIMIT 1",
                (identity,),
            ).fetchone()
            yield node_id, task, state, (AttemptRecord.from_row(row) if row else None)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the store at ``path`` (opened writable, checked) to :data:`SCHEMA_VERSION`.

    One transaction, so a crash leaves it at its old version, whole; the version is read
    again inside it, so two openers never apply a step twice. Refusing a newer store is
    :func:`check_store`'s job, done before.
    """
    def version() -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    try:
        if version() >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = version()
            for step in range(old + 1, SCHEMA_VERSION + 1):
                for table, column, kind in MIGRATIONS[step]:
                    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            if old < SCHEMA_VERSION:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                             (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot bring the run store {path} to schema version {SCHEMA_VERSION}: {exc} "
            f"({diagnose(path)}); it was left as it was"
        ) from exc


def _attempt_row(record: AttemptRecord) -> tuple[Any, ...]:
    values = []
    for name in _ATTEMPT_COLUMNS:
        value = getattr(record, name)
        if name == "argv":
            value = json.dumps(list(value))
        elif name == "resources":
            value = json.dumps(dict(value))
        values.append(value)
    return tuple(values)


class _Transaction:
    """``with store.transaction() as cur``: BEGIN IMMEDIATE … COMMIT, errors as StoreError."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cur: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        try:
            self.cur = self.store.conn.cursor()
            self.cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the run store {self.store.path}: {exc}") from exc
        return self.cur

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.cur is not None
        if exc_type is not None:
            with contextlib.suppress(sqlite3.Error):
                self.cur.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise write_error(self.store.path, exc) from exc
            return
        try:
            self.cur.execute("COMMIT")
        except sqlite3.Error as commit_exc:
            with contextlib.suppress(sqlite3.Error):
                self.cur.execute("ROLLBACK")
            raise write_error(self.store.path, commit_exc) from commit_exc


