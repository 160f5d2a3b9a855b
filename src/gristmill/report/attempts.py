"""Every attempt of a run as one row, streamed from the store, with what is derived from it.

The store keeps what the engine learnt about an attempt (submit and end times, exit code,
signal, peak RSS, elapsed, host, reason, the resources asked for as JSON). A reader also
wants the node's id, when the attempt started and how long it queued, the resources as
numbers, why it ended in a word, and why it was tried at all (the previous attempt's
cause). One SQL statement gives all of it in insertion order (the order attempts were
submitted), fetched in batches, so a run of a million attempts is read in constant
memory. Rows are named tuples, not attrs classes: a report reads a million of them and a
tuple costs a third of the time to make.

Where a value is derived, the derivation is the documented one (docs/report.md): the
start is the end less the elapsed time the worker measured, since the store keeps the
engine's end time and the worker's elapsed time but no start time.
"""

from __future__ import annotations

import json
import signal as signals
from array import array
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from gristmill.store.db import Store

#: How many rows one ``fetchmany`` brings in: large enough to amortise the call, small
#: enough that memory stays flat.
BATCH = 20_000
#: How many rows a batch of columns holds: small enough that a batch's columns, and all
#: that is derived from them, stay in the processor's cache (a trace of a million
#: attempts takes 16 s in batches of 1,000, 25 s in batches of 20,000).
COLUMN_BATCH = 1_000

# The attempt's own columns, the requested resources pulled out of their JSON, then the
# previous and the next attempt of the same node (primary-key lookups) and the node.
_SELECT = """
SELECT n.id, a.identity, a.attempt, a.key, a.task, a.job_name, a.backend, a.job_id,
       a.state, a.exit_code, a.signal, a.peak_rss, a.elapsed, a.host, a.reason,
       a.submitted, a.ended,
       json_extract(a.resources, '$.mem'), json_extract(a.resources, '$.cores'),
       json_extract(a.resources, '$.runtime'),
       p.state, p.exit_code, p.signal, x.attempt IS NULL, n.state, a.stderr, {usage}
FROM attempts a
LEFT JOIN nodes n ON n.identity = a.identity
LEFT JOIN attempts p ON p.identity = a.identity AND p.attempt = a.attempt - 1
LEFT JOIN attempts x ON x.identity = a.identity AND x.attempt = a.attempt + 1
"""

#: Causes of an attempt's end that count as "the node's resources were too small".
OOM = "OOM"
TIMEOUT = "TIMEOUT"
LOST = "LOST"
CANCELLED = "CANCELLED"
#: The cause of an attempt whose node had succeeded before: it ran again on request.
RERUN = "rerun"

#: Retry causes in the order tables show them.
CAUSE_ORDER = (OOM, TIMEOUT, "exit code", "signal", LOST, "PREEMPTED", "NODE_FAIL", CANCELLED,
               RERUN)


def signal_name(number: int) -> str:
    """``9`` → ``"SIGKILL"``; an unknown number stays a number."""
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def cause(state: str | None, exit_code: int | None, sig: int | None) -> str:
    """Why an attempt ended, in a word: ``""`` for success (or still open), else ``OOM``,
    ``TIMEOUT``, ``exit 3``, ``SIGSEGV``, ``LOST``, ``CANCELLED``."""
    if state is None or state in ("SUCCEEDED", "QUEUED", "RUNNING", "SUBMITTED"):
        return ""
    if state == "FAILED":
        if sig is not None:
            return signal_name(sig)
        if exit_code is not None:
            return f"exit {exit_code}"
        return "FAILED"
    return state


def cause_family(text: str) -> str:
    """The column a cause is counted under in a summary: ``exit 3`` → ``exit code``."""
    if text.startswith("exit "):
        return "exit code"
    if text.startswith("SIG") or text.startswith("signal "):
        return "signal"
    if text == "FAILED":  # failed with neither code nor signal: a submission refused
        return "exit code"
    return text


class AttemptRow(NamedTuple):
    """One attempt as :func:`iter_attempts` reads it (see the module docstring)."""

    node: int | None  #: the node's id in the current graph; None if no longer in it
    identity: str
    attempt: int
    key: str
    task: str
    job_name: str
    backend: str
    job_id: str | None
    state: str
    exit_code: int | None
    signal: int | None
    peak_rss: int | None
    elapsed: float | None
    host: str | None
    reason: str
    submitted: float
    ended: float | None
    mem: int | None  #: bytes asked for
    cores: int | None
    runtime: float | None  #: seconds asked for
    previous_state: str | None
    previous_exit_code: int | None
    previous_signal: int | None
    last: bool  #: no later attempt of the node exists
    node_state: int | None
    stderr: str
    cpu_time: float | None  #: CPU seconds of the attempt's process tree (None: not taken)
    usage_source: str | None  #: who measured cpu_time and peak_rss

    @property
    def started(self) -> float | None:
        """When it started running: the end less the measured elapsed time."""
        if self.ended is None or self.elapsed is None:
            return None
        return max(self.submitted, self.ended - self.elapsed)

    @property
    def queue_wait(self) -> float | None:
        """Seconds between submission and start."""
        started = self.started
        return None if started is None else started - self.submitted

    @property
    def cause(self) -> str:
        """Why it ended (:func:`cause`); ``""`` when it succeeded or is still open."""
        return cause(self.state, self.exit_code, self.signal)

    @property
    def retry_cause(self) -> str:
        """Why the node was tried again: the previous attempt's cause (``rerun`` after a
        success); ``""`` for a first attempt."""
        if self.previous_state is None:
            return ""
        if self.previous_state == "SUCCEEDED":
            return RERUN
        return cause(self.previous_state, self.previous_exit_code, self.previous_signal)

    @property
    def mem_fraction(self) -> float | None:
        """Peak RSS over the memory asked for."""
        if not self.peak_rss or not self.mem:
            return None
        return self.peak_rss / self.mem

    @property
    def runtime_fraction(self) -> float | None:
        """Elapsed time over the runtime asked for."""
        if self.elapsed is None or not self.runtime:
            return None
        return self.elapsed / self.runtime


def count_attempts(store: Store) -> int:
    """How many attempts the store holds (one indexed count)."""
    return int(store.conn.execute("SELECT count(*) FROM attempts").fetchone()[0])


def iter_attempts(store: Store, *, where: str = "", args: tuple[object, ...] = (),
                  batch: int = BATCH) -> Iterator[AttemptRow]:
    """Every attempt, in the order they were submitted (insertion order), in batches.

    ``where`` is an SQL condition on the attempt (alias ``a``), e.g. ``a.key = ?``.
    """
    usage = ", ".join(sql_of(store, name) for name in _SINCE_V3)
    sql = (_SELECT.format(usage=usage) + (f" WHERE {where}" if where else "")
           + " ORDER BY a.rowid")
    cursor = store.conn.cursor()
    cursor.row_factory = None
    cursor.execute(sql, args)
    make = AttemptRow._make
    try:
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            for row in rows:
                yield make(row)
    finally:
        cursor.close()


# -- columns ------------------------------------------------------------------------------------
#
# A report of a million attempts cannot afford a Python object per attempt with derived
# fields: most of its time went there. :func:`iter_columns` reads only the columns asked
# for, a batch at a time, and hands each column as one tuple, so that what is derived is
# computed a column at a time (a comprehension, a ``map`` through a memo of the few
# distinct values) and what SQLite computes exactly is computed there.

#: Where the attempt started: the end less the measured elapsed time, never before the
#: submission (the same arithmetic as :attr:`AttemptRow.started`, so the same floats).
_STARTED = ("CASE WHEN a.ended IS NULL OR a.elapsed IS NULL THEN NULL "
            "ELSE max(a.submitted, a.ended - a.elapsed) END")

#: The SQL of each column :func:`iter_columns` reads (``a`` is the attempt; ``node`` and
#: ``node_state``, the node's, are looked up in a :class:`NodeIndex` instead).
COLUMN_SQL = {
    "node": "n.id", "node_state": "n.state",
    "identity": "a.identity", "attempt": "a.attempt", "key": "a.key", "task": "a.task",
    "job_name": "a.job_name", "backend": "a.backend", "job_id": "a.job_id",
    "state": "a.state", "exit_code": "a.exit_code", "signal": "a.signal",
    "peak_rss": "a.peak_rss", "elapsed": "a.elapsed", "host": "a.host", "reason": "a.reason",
    "submitted": "a.submitted", "ended": "a.ended", "stderr": "a.stderr",
    "resources": "a.resources",
    # What the attempt used (schema 3; NULL in older stores, see sql_of).
    "cpu_time": "a.cpu_time", "usage_source": "a.usage_source",
    # What was asked for, from the resources' JSON (see :func:`requests_of`).
    "mem": "json_extract(a.resources, '$.mem')",
    "cores": "json_extract(a.resources, '$.cores')",
    "runtime": "json_extract(a.resources, '$.runtime')",
    # No later attempt of the node exists (a primary-key lookup).
    "last": "NOT EXISTS (SELECT 1 FROM attempts x WHERE x.identity = a.identity "
            "AND x.attempt = a.attempt + 1)",
    "started": _STARTED,
    "queue_wait": f"{_STARTED} - a.submitted",
    # The previous attempt's (state, exit code, signal) as JSON, for its cause: looked up
    # by primary key, and only for attempts after a node's first (numbers start at 1).
    "previous": "CASE WHEN a.attempt > 1 THEN (SELECT json_array(p.state, p.exit_code, "
                "p.signal) FROM attempts p WHERE p.identity = a.identity "
                "AND p.attempt = a.attempt - 1) END",
}

#: One batch of :func:`iter_columns`: column name → the batch's values, in row order.
Columns = dict[str, tuple[Any, ...]]

#: Columns that come from the node, not the attempt (:class:`NodeIndex`).
NODE_COLUMNS = ("node", "node_state")
#: Columns read from the resources' JSON, in :func:`requests_of`'s order.
REQUEST_COLUMNS = ("mem", "cores", "runtime")


def requests_of(store: Store, resources: str) -> tuple[Any, Any, Any]:
    """(mem, cores, runtime) of a ``resources`` text, as ``json_extract`` reads them (so
    that every reader agrees, whatever the JSON holds)."""
    row = store.conn.execute(
        "SELECT json_extract(?1, '$.mem'), json_extract(?1, '$.cores'), "
        "json_extract(?1, '$.runtime')", (resources,)).fetchone()
    return row[0], row[1], row[2]


#: A key's top bits, by which :class:`NodeIndex` buckets its keys.
_SHIFT = 48
_BUCKETS = 1 << (64 - _SHIFT)


class NodeIndex:
    """Each node's id and state by its identity, in 17 bytes a node (and half a megabyte).

    The nodes table has no index on identity: joining it to a million attempts makes
    SQLite build one for the query and probe it a million times (6 to 8 seconds under
    load, most of a trace). Here the nodes are read once, sorted by identity, and an
    attempt's node is found by bisection on the first 64 bits of its identity, the part
    the store's attempt keys already rely on to be unique (``<identity[:16]>.<attempt>``).
    """

    def __init__(self, store: Store) -> None:
        self.keys = array("Q")
        self.ids = array("q")
        self.states = bytearray()
        ordered = True
        cursor = store.conn.cursor()
        cursor.row_factory = None
        cursor.execute("SELECT identity, id, state FROM nodes ORDER BY identity")
        while True:
            rows = cursor.fetchmany(BATCH)
            if not rows:
                break
            identity, node, state = zip(*rows)
            keys = [int(i[:16], 16) for i in identity]
            # SQLite sorted the text: the numbers are in order when it is lowercase hex.
            ordered = ordered and keys == sorted(keys) and (
                not self.keys or self.keys[-1] <= keys[0])
            self.keys.extend(keys)
            self.ids.extend(node)
            self.states.extend(state)
        if not ordered:
            order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
            self.keys = array("Q", [self.keys[i] for i in order])
            self.ids = array("q", [self.ids[i] for i in order])
            self.states = bytearray(self.states[i] for i in order)
        # Where each value of a key's top 16 bits starts: a lookup bisects a few keys, not
        # a million (a million lookups take a fraction of a second, not two).
        index = self.keys
        self.starts = array("q", [bisect_left(index, top << _SHIFT) for top in range(_BUCKETS)])
        self.starts.append(len(index))

    @staticmethod
    def key(identity: str) -> int:
        """What an identity is looked up by: its first 64 bits."""
        return int(identity[:16], 16)

    def ids_of(self, keys: Iterable[int]) -> list[int]:
        """The node id of each key (:meth:`key`), -1 where the graph has no such node."""
        found, ids = self.positions(keys), self.ids
        return [-1 if at < 0 else ids[at] for at in found]

    def positions(self, keys: Iterable[int]) -> list[int]:
        """Where each key is in the index, -1 where it is not."""
        index, starts = self.keys, self.starts
        out: list[int] = []
        append = out.append
        for key in keys:
            top = key >> _SHIFT
            end = starts[top + 1]
            at = bisect_left(index, key, starts[top], end)
            append(at if at < end and index[at] == key else -1)
        return out

    def lookup(self, identities: Iterable[str]) -> tuple[list[int | None], list[int | None]]:
        """The node id and the node's state of each identity (None, None for an identity
        the graph no longer has)."""
        found = self.positions([int(i[:16], 16) for i in identities])
        ids, states = self.ids, self.states
        return ([None if at < 0 else ids[at] for at in found],
                [None if at < 0 else states[at] for at in found])


#: Columns a store made before schema version 3 lacks: read as NULL there.
_SINCE_V3 = ("cpu_time", "usage_source")


def sql_of(store: Store, name: str) -> str:
    """The SQL of column ``name`` (of :data:`COLUMN_SQL`) in this store: NULL for a column
    a store made before schema version 3 does not have."""
    if name in _SINCE_V3:
        have = {row[1] for row in store.conn.execute("PRAGMA table_info(attempts)")}
        if name not in have:
            return "NULL"
    return COLUMN_SQL[name]


def iter_columns(store: Store, names: Sequence[str], *, where: str = "",
                 args: Sequence[object] = (), batch: int = COLUMN_BATCH,
                 nodes: NodeIndex | None = None) -> Iterator[Columns]:
    """The columns ``names`` (keys of :data:`COLUMN_SQL`) of every attempt, in the order
    they were submitted, ``batch`` rows at a time.

    ``where`` is an SQL condition on the attempt (alias ``a``). ``node`` and
    ``node_state`` come from ``nodes``, or a :class:`NodeIndex` made for the call. The
    requests (``mem``, ``cores``, ``runtime``) are read from each distinct resources
    text once, not from every attempt's JSON: a run repeats a few of them.
    """
    unknown = [n for n in names if n not in COLUMN_SQL]
    if unknown or not names:
        raise ValueError(f"unknown attempt column(s) {unknown}; known: {list(COLUMN_SQL)}")
    if not any(n in NODE_COLUMNS for n in names):
        nodes = None
    elif nodes is None:
        nodes = NodeIndex(store)
    read = [n for n in names if n not in NODE_COLUMNS and n not in REQUEST_COLUMNS]
    if nodes is not None and "identity" not in read:
        read.append("identity")
    requests: Memo[str, tuple[Any, Any, Any]] | None = None
    if any(n in REQUEST_COLUMNS for n in names):
        requests = Memo(lambda text: requests_of(store, text), 4096)
        if "resources" not in read:
            read.append("resources")
    sql = (f"SELECT {', '.join(sql_of(store, n) for n in read)} FROM attempts a"
           + (f" WHERE {where}" if where else "") + " ORDER BY a.rowid")
    cursor = store.conn.cursor()
    cursor.row_factory = None  # plain tuples: a batch is transposed with zip(*rows)
    cursor.execute(sql, args)
    try:
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            columns = dict(zip(read, zip(*rows)))
            if nodes is not None:
                node, state = nodes.lookup(columns["identity"])
                columns["node"], columns["node_state"] = tuple(node), tuple(state)
            if requests is not None:
                columns.update(zip(REQUEST_COLUMNS, zip(*requests.column(columns["resources"]))))
            yield columns
    finally:
        cursor.close()


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(dict[K, V], Generic[K, V]):
    """A value per distinct key, computed once: ``list(map(memo.__getitem__, column))``
    derives a column at the cost of a dict lookup per value (columns repeat a few values:
    states, causes, signals, hosts). ``limit`` bounds the memo where keys do not repeat
    much (timestamps): it is emptied when full."""

    def __init__(self, compute: Callable[[K], V], limit: int = 0) -> None:
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, key: K) -> V:
        if self._limit and len(self) >= self._limit:
            self.clear()
        value = self[key] = self._compute(key)
        return value

    def column(self, values: Iterable[K]) -> list[V]:
        """The value of each of ``values``."""
        return list(map(self.__getitem__, values))


def _cause_of(key: tuple[str | None, int | None, int | None]) -> str:
    return cause(*key)


def _retry_cause_of(previous: str | None) -> str:
    """:attr:`AttemptRow.retry_cause` from the ``previous`` column."""
    if previous is None:
        return ""
    state, exit_code, sig = json.loads(previous)
    return RERUN if state == "SUCCEEDED" else cause(state, exit_code, sig)


def causes(columns: Columns) -> list[str]:
    """:attr:`AttemptRow.cause` of each row of a batch (needs state, exit_code, signal)."""
    return _CAUSES.column(zip(columns["state"], columns["exit_code"], columns["signal"]))


def retry_causes(columns: Columns) -> list[str]:
    """:attr:`AttemptRow.retry_cause` of each row of a batch (needs previous)."""
    return _RETRY_CAUSES.column(columns["previous"])


_CAUSES: Memo[tuple[str | None, int | None, int | None], str] = Memo(_cause_of, 4096)
_RETRY_CAUSES: Memo[str | None, str] = Memo(_retry_cause_of, 4096)


def argv_of(store: Store, key: str) -> list[str]:
    """The command line of attempt ``key`` (kept out of the streamed rows: rarely needed)."""
    row = store.conn.execute("SELECT argv FROM attempts WHERE key = ?", (key,)).fetchone()
    return [] if row is None else list(json.loads(row[0]))
