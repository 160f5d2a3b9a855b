"""``gristmill trace``: one row per attempt, with named fields, as TSV, CSV or JSON.

The trace is for people who analyse runs with their own tools (pandas, R, a
spreadsheet, ``jq``). Each field is declared once in :data:`FIELDS` with the text that
docs/report.md shows, so the documentation and the output cannot drift apart (a test
checks that every field is documented). Rows are written as they are read from the
store, a batch at a time, so memory does not grow with the number of attempts.

A trace of a million attempts must take seconds, so nothing is done per row in Python:
each field is derived a column at a time (:attr:`Field.values`: the column as read, a
comprehension, a ``map`` through a memo of its few distinct values), each column
turned to text at once (a comprehension chosen by the types the column holds), and a
batch written as one string. The tests hold the output to the plain per-row definition
of every field, byte for byte.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from json.encoder import encode_basestring
from typing import IO, Any

import attrs

from gristmill.errors import GristmillError
from gristmill.report.attempts import (
    COLUMN_BATCH,
    Columns,
    Memo,
    causes,
    iter_columns,
    retry_causes,
    signal_name,
)
from gristmill.states import NodeState
from gristmill.store.db import Store

FORMATS = ("tsv", "csv", "json", "jsonl")


def _iso_seconds(whole: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole number of epoch seconds, in UTC."""
    return datetime.fromtimestamp(whole, timezone.utc).isoformat(timespec="seconds")[:19]


_ISO_SECONDS: Memo[float, str] = Memo(_iso_seconds, 4096)


def _iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond (what ``datetime``'s
    ``isoformat(timespec="milliseconds")`` gives: microseconds rounded half to even, then
    cut to milliseconds), the date and time of each second formatted once."""
    if ts is None:
        return None
    frac, whole = math.modf(ts)
    micro = round(frac * 1e6)
    if micro >= 1_000_000:
        whole += 1.0
        micro -= 1_000_000
    elif micro < 0:
        whole -= 1.0
        micro += 1_000_000
    return f"{_ISO_SECONDS[whole]}.{micro // 1000:03d}+00:00"


def _isos(values: Sequence[float | None]) -> list[str | None]:
    """:func:`_iso` of each value, a comprehension at a time (three of these columns are
    much of a trace's time); the rare value whose microseconds round up to the next
    second, or that is before 1970, is written by :func:`_iso` itself."""
    modf, seconds = math.modf, _ISO_SECONDS
    parts = [None if v is None else modf(v) for v in values]
    micros = [0 if p is None else round(p[0] * 1e6) for p in parts]
    return [None if p is None else _iso(v) if not 0 <= m < 1_000_000
            else seconds[p[1]] + _MILLIS[m // 1000]
            for v, p, m in zip(values, parts, micros)]


#: ``.mmm+00:00`` for each millisecond, made once.
_MILLIS = [f".{ms:03d}+00:00" for ms in range(1000)]


def _rounded(values: Sequence[float | None], digits: int = 3) -> list[float | None]:
    return [None if v is None else round(v, digits) for v in values]


def _signal_of(number: int | None) -> str | None:
    return None if number is None else signal_name(number)


def _state_of(value: int | None) -> str | None:
    return None if value is None else NodeState(value).name


_SIGNALS: Memo[int | None, str | None] = Memo(_signal_of, 4096)
_NODE_STATES: Memo[int | None, str | None] = Memo(_state_of, 4096)


def _pct_mem(c: Columns) -> list[float | None]:
    return [None if not p or not m else round(100 * (p / m), 1)
            for p, m in zip(c["peak_rss"], c["mem"])]


def _pct_runtime(c: Columns) -> list[float | None]:
    return [None if e is None or not r else round(100 * (e / r), 1)
            for e, r in zip(c["elapsed"], c["runtime"])]


def _pct_cpu(c: Columns) -> list[float | None]:
    return [None if t is None or not e else round(100 * (t / e), 1)
            for t, e in zip(c["cpu_time"], c["elapsed"])]


def _column(name: str) -> Callable[[Columns], Sequence[Any]]:
    return lambda c: c[name]


def _rows(c: Columns) -> int:
    return len(next(iter(c.values())))


@attrs.frozen
class Field:
    """One trace column: its name, what it means (for the docs), the attempt columns it
    is derived from (:data:`~gristmill.report.attempts.COLUMN_SQL`) and how, a batch of
    rows at a time."""

    name: str
    doc: str
    needs: tuple[str, ...]
    values: Callable[[Columns], Sequence[Any]]


def _plain(name: str, doc: str, column: str | None = None) -> Field:
    """A field that is an attempt column as it is."""
    return Field(name, doc, (column or name,), _column(column or name))


FIELDS: tuple[Field, ...] = (
    _plain("node", "The node's id in the run's graph (0, 1, ...); empty for an attempt of a "
           "node the workflow no longer has."),
    _plain("task", "The task's name."),
    _plain("job_name", "The job name (unique in the run), as `gristmill tasks` and "
           "`gristmill logs` know it."),
    _plain("identity", "The node's identity (a hex digest of its task, arguments and upstream "
           "identities)."),
    _plain("key", "The attempt's key, `<identity[:16]>.<attempt>`, which its file names carry."),
    _plain("attempt", "The attempt's number for its node: 1, 2, ... (it continues across "
           "resumes)."),
    _plain("state", "How the attempt ended: SUCCEEDED, FAILED, OOM, TIMEOUT, CANCELLED, LOST, "
           "PREEMPTED, NODE_FAIL; "
           "QUEUED or RUNNING while it is open."),
    _plain("exit_code", "The task's exit code, when it exited."),
    Field("signal", "The signal that ended the task (e.g. SIGKILL), when one did.",
          ("signal",), lambda c: _SIGNALS.column(c["signal"])),
    _plain("reason", "Why it ended, for people (`exit code 3`, `exceeded memory limit 256M "
           "(peak 301M)`, a scheduler's reason)."),
    Field("cause", "Why it ended, in a word: empty for a success, else OOM, TIMEOUT, "
          "`exit N`, a signal name, LOST or CANCELLED.", ("state", "exit_code", "signal"),
          causes),
    Field("retry_cause", "Why this attempt was made: empty for a node's first attempt, else "
          "the previous attempt's `cause` (`rerun` when the previous attempt succeeded and "
          "the node was asked to run again).", ("previous",), retry_causes),
    Field("node_state", "The node's state now (DONE, FAILED, ...): the outcome of all its "
          "attempts.", ("node_state",), lambda c: _NODE_STATES.column(c["node_state"])),
    _plain("backend", "The backend that ran it (local, slurm, sge, dask, jobmon, ...)."),
    _plain("native_id", "The backend's id of the job (a Slurm `<array>_<index>`, a Grid "
           "Engine job, a local supervisor's id), once submitted.", "job_id"),
    _plain("host", "The host it ran on, as the worker reported it."),
    Field("submit", "When the engine submitted it (ISO 8601, UTC).", ("submitted",),
          lambda c: _isos(c["submitted"])),
    Field("start", "When it started: `end` less `realtime` (the store keeps the end the "
          "engine saw and the time the worker measured).", ("started",),
          lambda c: _isos(c["started"])),
    Field("end", "When the engine learnt it had ended (ISO 8601, UTC).", ("ended",),
          lambda c: _isos(c["ended"])),
    Field("queue_wait", "Seconds from `submit` to `start`.", ("queue_wait",),
          lambda c: _rounded(c["queue_wait"])),
    Field("realtime", "Seconds it ran (wall clock), as the worker measured it.", ("elapsed",),
          lambda c: _rounded(c["elapsed"])),
    _plain("mem_requested", "Memory asked for, in bytes (empty if none was).", "mem"),
    _plain("cores_requested", "Cores asked for.", "cores"),
    _plain("runtime_requested", "Runtime limit asked for, in seconds (empty if none was).",
           "runtime"),
    _plain("peak_rss", "Peak resident memory of the task and its children, in bytes."),
    Field("pct_mem", "`peak_rss` as a percentage of `mem_requested`.", ("peak_rss", "mem"),
          _pct_mem),
    Field("pct_runtime", "`realtime` as a percentage of `runtime_requested`.",
          ("elapsed", "runtime"), _pct_runtime),
    Field("cpu_time", "CPU seconds (user + system) of the attempt's whole process tree, "
          "children included: the scheduler's accounting where it has it (Slurm `TotalCPU`, "
          "Grid Engine `cpu`), else the worker's own measurement; empty where neither was "
          "taken (an attempt that never started, a store made before gristmill recorded it).",
          ("cpu_time",), lambda c: _rounded(c["cpu_time"])),
    Field("pct_cpu", "`cpu_time` over `realtime`, in percent (100 = one core busy, as "
          "Nextflow counts); empty while either is.", ("cpu_time", "elapsed"), _pct_cpu),
    _plain("usage_source", "Who measured `cpu_time` and `peak_rss`: `worker` (gristmill's "
           "wrapper), `scheduler` (its accounting) or `scheduler+worker` (one each)."),
    _plain("stderr", "The path of the attempt's stderr log."),
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


_BREAKS = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


def _tsv_cell(value: Any) -> str:
    """TSV has no quoting: tabs and line breaks inside a value become spaces."""
    return _text(value).translate(_BREAKS)


_NONE = type(None)


def _kinds(values: Sequence[Any]) -> set[type]:
    """The types of ``values`` other than None's."""
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    return kinds


def _texts(values: Sequence[Any], *, tsv: bool) -> Sequence[str]:
    """:func:`_text` (TSV: :func:`_tsv_cell`) of each value, a column at a time: text and
    whole numbers, most columns, take a comprehension and no call per value."""
    kinds = _kinds(values)
    if kinds <= {str}:
        cells = ["" if v is None else v for v in values]
        if tsv:
            joined = "".join(cells)  # one scan finds whether any cell needs a change
            if "\t" in joined or "\n" in joined or "\r" in joined:
                cells = [v.translate(_BREAKS) for v in cells]
        return cells
    if kinds <= {int}:
        return ["" if v is None else str(v) for v in values]
    if kinds <= {float}:
        return ["" if v is None or v != v else f"{v:g}" if -1e15 < v < 1e15 else repr(v)
                for v in values]
    if kinds <= {int, float}:  # numbers hold no tab or line break
        return [_text(v) for v in values]
    return [_tsv_cell(v) for v in values] if tsv else [_text(v) for v in values]


def _json_float(value: float) -> str:
    """A float as the json module writes it."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_JSON_OF: dict[type, Callable[[Any], str]] = {
    str: encode_basestring, int: int.__repr__, float: _json_float, _NONE: lambda _: "null",
    bool: lambda v: "true" if v else "false"}


def _jsons(values: Sequence[Any]) -> Sequence[str]:
    """Each value as JSON text, as ``json.dumps`` writes it, a column at a time."""
    kinds = _kinds(values)
    if kinds <= {str}:
        return ["null" if v is None else encode_basestring(v) for v in values]
    if kinds <= {int}:
        return ["null" if v is None else str(v) for v in values]
    of = _JSON_OF
    return [of[type(v)](v) if type(v) in of else _ENCODE(v) for v in values]


def write_columns(batches: Iterable[Columns], out: IO[str], *, fmt: str = "tsv",
                  fields: Sequence[Field] = FIELDS) -> int:
    """Write ``fields`` of each batch of attempt columns to ``out`` in ``fmt``
    (:data:`FORMATS`); returns how many rows.

    ``json`` is one array, written element by element; ``jsonl`` one object per line.
    Each field is derived a column at a time and each batch written at once: a row costs
    no Python call of its own.
    """
    if fmt not in FORMATS:
        raise GristmillError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt in ("json", "jsonl"):  # an object has each name once (as a dict would)
        fields = list({f.name: f for f in fields}.values())
    names = [f.name for f in fields]
    count = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    # One object's text, its values as %s: every name escaped once, here.
    template = "{" + ",".join(encode_basestring(n).replace("%", "%%") + ":%s"
                              for n in names) + "}"
    if writer is not None:
        writer.writerow(names)
    elif fmt == "tsv":
        out.write("\t".join(names) + "\n")
    elif fmt == "json":
        out.write("[")
    for columns in batches:
        values = [f.values(columns) for f in fields]
        if fmt == "tsv":
            cells = [_texts(v, tsv=True) for v in values]
            out.write("\n".join(map("\t".join, zip(*cells))) + "\n")
        elif writer is not None:
            writer.writerows(zip(*[_texts(v, tsv=False) for v in values]))
        else:
            items = [template % row for row in zip(*[_jsons(v) for v in values])]
            if fmt == "json":
                out.write(("," if count else "") + "\n" + ",\n".join(items))
            else:
                out.write("".join([item + "\n" for item in items]))
        count += _rows(columns)
    if fmt == "json":
        out.write("\n]\n")
    return count


def trace(store: Store, out: IO[str], *, fmt: str = "tsv",
          fields: Sequence[Field] = FIELDS, batch: int = COLUMN_BATCH) -> int:
    """Write the trace of every attempt in ``store`` to ``out``; returns how many rows.

    Only the columns the chosen fields need are read (the node table is joined only for
    ``node`` and ``node_state``), and at most ``batch`` rows are held at once, whatever
    the run's size.
    """
    needs = list(dict.fromkeys(n for f in fields for n in f.needs)) or ["attempt"]
    return write_columns(iter_columns(store, needs, batch=batch), out, fmt=fmt, fields=fields)
