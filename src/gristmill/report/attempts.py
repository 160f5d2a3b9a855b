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
from collections.abc import Iterator
from typing import NamedTuple

from gristmill.store.db import Store

#: How many rows one ``fetchmany`` brings in: large enough to amortise the call, small
#: enough that memory stays flat.
BATCH = 20_000

# The attempt's own columns, the requested resources pulled out of their JSON, then the
# previous and the next attempt of the same node (primary-key lookups) and the node.
_SELECT = """
SELECT n.id, a.identity, a.attempt, a.key, a.task, a.job_name, a.backend, a.job_id,
       a.state, a.exit_code, a.signal, a.peak_rss, a.elapsed, a.host, a.reason,
       a.submitted, a.ended,
       json_extract(a.resources, '$.mem'), json_extract(a.resources, '$.cores'),
       json_extract(a.resources, '$.runtime'),
       p.state, p.exit_code, p.signal, x.attempt IS NULL, n.state, a.stderr
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
CAUSE_ORDER = (OOM, TIMEOUT, "exit code", "signal", LOST, CANCELLED, RERUN)


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
    sql = _SELECT + (f" WHERE {where}" if where else "") + " ORDER BY a.rowid"
    cursor = store.conn.execute(sql, args)
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


def argv_of(store: Store, key: str) -> list[str]:
    """The command line of attempt ``key`` (kept out of the streamed rows: rarely needed)."""
    row = store.conn.execute("SELECT argv FROM attempts WHERE key = ?", (key,)).fetchone()
    return [] if row is None else list(json.loads(row[0]))
