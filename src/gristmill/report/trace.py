"""``gristmill trace``: one row per attempt, with named fields, as TSV, CSV or JSON.

The trace is for people who analyse runs with their own tools (pandas, R, a
spreadsheet, ``jq``). Each field is declared once in :data:`FIELDS` with the text that
docs/report.md shows, so the documentation and the output cannot drift apart (a test
checks that every field is documented). Rows are written as they are read from the
store: a million attempts take no more memory than ten.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import IO, Any

import attrs

from gristmill.errors import GristmillError
from gristmill.report.attempts import BATCH, AttemptRow, iter_attempts, signal_name
from gristmill.states import NodeState
from gristmill.store.db import Store

FORMATS = ("tsv", "csv", "json", "jsonl")


def _iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else round(100 * fraction, 1)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _node_state(row: AttemptRow) -> str | None:
    return None if row.node_state is None else NodeState(row.node_state).name


@attrs.frozen
class Field:
    """One trace column: its name, what it means (for the docs) and how to read it."""

    name: str
    doc: str
    get: Callable[[AttemptRow], Any]


FIELDS: tuple[Field, ...] = (
    Field("node", "The node's id in the run's graph (0, 1, ...); empty for an attempt of a "
          "node the workflow no longer has.", lambda r: r.node),
    Field("task", "The task's name.", lambda r: r.task),
    Field("job_name", "The job name (unique in the run), as `gristmill tasks` and "
          "`gristmill logs` know it.", lambda r: r.job_name),
    Field("identity", "The node's identity (a hex digest of its task, arguments and upstream "
          "identities).", lambda r: r.identity),
    Field("key", "The attempt's key, `<identity[:16]>.<attempt>`, which its file names carry.",
          lambda r: r.key),
    Field("attempt", "The attempt's number for its node: 1, 2, ... (it continues across "
          "resumes).", lambda r: r.attempt),
    Field("state", "How the attempt ended: SUCCEEDED, FAILED, OOM, TIMEOUT, CANCELLED, LOST; "
          "QUEUED or RUNNING while it is open.", lambda r: r.state),
    Field("exit_code", "The task's exit code, when it exited.", lambda r: r.exit_code),
    Field("signal", "The signal that ended the task (e.g. SIGKILL), when one did.",
          lambda r: None if r.signal is None else signal_name(r.signal)),
    Field("reason", "Why it ended, for people (`exit code 3`, `exceeded memory limit 256M "
          "(peak 301M)`, a scheduler's reason).", lambda r: r.reason),
    Field("cause", "Why it ended, in a word: empty for a success, else OOM, TIMEOUT, "
          "`exit N`, a signal name, LOST or CANCELLED.", lambda r: r.cause),
    Field("retry_cause", "Why this attempt was made: empty for a node's first attempt, else "
          "the previous attempt's `cause` (`rerun` when the previous attempt succeeded and "
          "the node was asked to run again).", lambda r: r.retry_cause),
    Field("node_state", "The node's state now (DONE, FAILED, ...): the outcome of all its "
          "attempts.", _node_state),
    Field("backend", "The backend that ran it (local, slurm, sge, dask, jobmon, ...).",
          lambda r: r.backend),
    Field("native_id", "The backend's id of the job (a Slurm `<array>_<index>`, a Grid "
          "Engine job, a local supervisor's id), once submitted.", lambda r: r.job_id),
    Field("host", "The host it ran on, as the worker reported it.", lambda r: r.host),
    Field("submit", "When the engine submitted it (ISO 8601, UTC).",
          lambda r: _iso(r.submitted)),
    Field("start", "When it started: `end` less `realtime` (the store keeps the end the "
          "engine saw and the time the worker measured).", lambda r: _iso(r.started)),
    Field("end", "When the engine learnt it had ended (ISO 8601, UTC).",
          lambda r: _iso(r.ended)),
    Field("queue_wait", "Seconds from `submit` to `start`.", lambda r: _round(r.queue_wait)),
    Field("realtime", "Seconds it ran (wall clock), as the worker measured it.",
          lambda r: _round(r.elapsed)),
    Field("mem_requested", "Memory asked for, in bytes (empty if none was).",
          lambda r: r.mem),
    Field("cores_requested", "Cores asked for.", lambda r: r.cores),
    Field("runtime_requested", "Runtime limit asked for, in seconds (empty if none was).",
          lambda r: r.runtime),
    Field("peak_rss", "Peak resident memory of the task and its children, in bytes.",
          lambda r: r.peak_rss),
    Field("pct_mem", "`peak_rss` as a percentage of `mem_requested`.",
          lambda r: _pct(r.mem_fraction)),
    Field("pct_runtime", "`realtime` as a percentage of `runtime_requested`.",
          lambda r: _pct(r.runtime_fraction)),
    Field("cpu_time", "CPU seconds (user + system) the task used, where the backend reports "
          "it; no backend records it in the store yet, so it is empty.", lambda r: None),
    Field("pct_cpu", "`cpu_time` over `realtime`, in percent (100 = one core busy); empty "
          "while `cpu_time` is.", lambda r: None),
    Field("stderr", "The path of the attempt's stderr log.", lambda r: r.stderr),
)

FIELD_NAMES = tuple(f.name for f in FIELDS)
_BY_NAME = {f.name: f for f in FIELDS}


def choose_fields(names: str | Sequence[str] | None) -> tuple[Field, ...]:
    """The fields ``names`` lists (comma-separated text or a sequence), in that order;
    every field when None. An unknown name is an error listing the known ones."""
    if names is None:
        return FIELDS
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names)]
    wanted = [n for n in wanted if n]
    unknown = [n for n in wanted if n not in _BY_NAME]
    if unknown or not wanted:
        what = f"unknown trace field(s) {', '.join(map(repr, unknown))}" if unknown else \
            "no trace field named"
        raise GristmillError(f"--fields: {what}; choose among {', '.join(FIELD_NAMES)}")
    return tuple(_BY_NAME[n] for n in wanted)


def _text(value: Any) -> str:
    """A value as one TSV/CSV cell: empty for None, floats without noise."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:g}" if abs(value) < 1e15 else repr(value)
    return str(value)


def _tsv_cell(value: Any) -> str:
    """TSV has no quoting: tabs and line breaks inside a value become spaces."""
    return _text(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def write_trace(rows: Iterable[AttemptRow], out: IO[str], *, fmt: str = "tsv",
                fields: Sequence[Field] = FIELDS) -> int:
    """Write ``rows`` to ``out`` in ``fmt`` (:data:`FORMATS`); returns how many rows.

    ``json`` is one array, written element by element; ``jsonl`` one object per line.
    """
    if fmt not in FORMATS:
        raise GristmillError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    getters = [f.get for f in fields]
    names = [f.name for f in fields]
    count = 0
    if fmt == "tsv":
        out.write("\t".join(names) + "\n")
        for row in rows:
            out.write("\t".join([_tsv_cell(get(row)) for get in getters]) + "\n")
            count += 1
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([_text(get(row)) for get in getters])
            count += 1
    else:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        if fmt == "json":
            out.write("[")
        for row in rows:
            item = dumps(dict(zip(names, [get(row) for get in getters])))
            if fmt == "json":
                out.write(("," if count else "") + "\n" + item)
            else:
                out.write(item + "\n")
            count += 1
        if fmt == "json":
            out.write("\n]\n")
    return count


def trace(store: Store, out: IO[str], *, fmt: str = "tsv",
          fields: Sequence[Field] = FIELDS, batch: int = BATCH) -> int:
    """Write the trace of every attempt in ``store`` to ``out``; returns how many rows.

    At most ``batch`` rows are held at once, whatever the run's size.
    """
    return write_trace(iter_attempts(store, batch=batch), out, fmt=fmt, fields=fields)
