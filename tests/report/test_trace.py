"""``gristmill trace``'s fields and formats: every field documented, every format read back,
and the trace streamed (its memory does not grow with the run)."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from gm_runstore import build_run
from hypothesis import given
from hypothesis import strategies as st

from gristmill.errors import GristmillError
from gristmill.report.attempts import AttemptRow, count_attempts, iter_attempts, signal_name
from gristmill.report.trace import FIELD_NAMES, FIELDS, FORMATS, choose_fields, trace
from gristmill.states import NodeState
from gristmill.store.db import AttemptRecord, Store

DOCS = Path(__file__).resolve().parents[2] / "docs" / "report.md"


def _trace(run_dir: Path, fmt: str, fields: str | None = None) -> str:
    store = Store.open(run_dir, readonly=True)
    try:
        out = io.StringIO()
        trace(store, out, fmt=fmt, fields=choose_fields(fields))
        return out.getvalue()
    finally:
        store.close()


def test_every_field_is_documented_in_docs_report_md() -> None:
    documented = re.findall(r"^\| `(\w+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    assert documented == list(FIELD_NAMES)


def test_the_required_fields_exist() -> None:
    required = {"node", "task", "job_name", "identity", "attempt", "state", "exit_code",
                "signal", "reason", "native_id", "host", "submit", "start", "end",
                "queue_wait", "realtime", "mem_requested", "cores_requested",
                "runtime_requested", "peak_rss", "cpu_time", "pct_cpu", "retry_cause"}
    assert required <= set(FIELD_NAMES)
    assert len(FIELD_NAMES) == len(set(FIELD_NAMES))
    assert all(f.doc.endswith(".") for f in FIELDS)


def test_tsv_has_one_row_per_attempt_with_what_the_store_holds(mixed_run: Path) -> None:
    text = _trace(mixed_run, "tsv")
    header, *lines = text.splitlines()
    assert header.split("\t") == list(FIELD_NAMES)
    rows = [dict(zip(FIELD_NAMES, line.split("\t"))) for line in lines]
    assert len(rows) == 7
    hog = [r for r in rows if r["task"] == "hog"]
    assert [(r["attempt"], r["state"], r["retry_cause"]) for r in hog] == [
        ("1", "OOM", ""), ("2", "SUCCEEDED", "OOM")]
    assert hog[0]["signal"] == "SIGKILL"
    assert hog[0]["mem_requested"] == str(200 * 2**20)
    assert float(hog[0]["pct_mem"]) > 100
    failed = [r for r in rows if r["task"] == "exit_with"]
    assert {r["exit_code"] for r in failed} == {"3"}
    assert failed[-1]["node_state"] == "FAILED"
    for row in rows:
        assert row["submit"] <= row["start"] <= row["end"]  # ISO 8601 sorts as time does
        assert float(row["queue_wait"]) >= 0
        assert float(row["cpu_time"]) >= 0  # the local backend's worker measures it
        assert row["usage_source"] == "worker"


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_every_format_holds_the_same_rows(mixed_run: Path, fmt: str) -> None:
    fields = "node,job_name,attempt,state,exit_code,realtime,reason"
    tsv = [line.split("\t") for line in _trace(mixed_run, "tsv", fields).splitlines()[1:]]
    text = _trace(mixed_run, fmt, fields)
    if fmt == "csv":
        got = list(csv.reader(io.StringIO(text)))[1:]
    else:
        items = json.loads(text) if fmt == "json" else [json.loads(x) for x in text.splitlines()]
        got = [["" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
                for v in item.values()] for item in items]
        assert list(items[0]) == fields.split(",")
    assert got == tsv


def test_unknown_fields_are_named_with_the_known_ones() -> None:
    with pytest.raises(GristmillError, match=r"unknown trace field\(s\) 'nod'; choose among node,"):
        choose_fields("node,nod")
    assert [f.name for f in choose_fields(" task , node ")] == ["task", "node"]


def test_a_value_with_tabs_or_newlines_stays_on_its_line(mixed_run: Path, tmp_path: Path) -> None:
    from gristmill.report.trace import _tsv_cell

    assert _tsv_cell("a\tb\nc") == "a b c"
    assert _tsv_cell(None) == ""
    assert _tsv_cell(1.5) == "1.5"


class _Sink(io.TextIOBase):
    """Counts what is written and keeps nothing."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:  # type: ignore[override]
        self.chars += len(text)
        return len(text)


def test_the_trace_streams_in_memory_that_does_not_grow_with_the_run(tmp_path: Path) -> None:
    peaks = {}
    for nodes in (2_000, 20_000):
        run_dir = tmp_path / str(nodes)
        build_run(run_dir, nodes)
        store = Store.open(run_dir, readonly=True)
        sink = _Sink()
        tracemalloc.start()
        try:
            rows = trace(store, sink, batch=500)
            peaks[nodes] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            store.close()
        assert rows > nodes  # retries add rows
        assert sink.chars > 200 * rows
    # ten times the rows, not ten times the memory: at most a batch of rows is held
    assert peaks[20_000] < 2 * peaks[2_000] + 2 * 2**20, peaks


# -- the trace is the per-row definition, written a column at a time ---------------------------
#
# The trace derives its fields a column at a time for speed. Here each field is defined one
# attempt at a time, from :class:`AttemptRow` (the plain definition), and both must write
# the very same text, in every format, on runs with the awkward values a store can hold.

def _iso_of(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _p(fraction: float | None) -> float | None:
    return None if fraction is None else round(100 * fraction, 1)


REFERENCE: dict[str, Callable[[AttemptRow], Any]] = {
    "node": lambda r: r.node, "task": lambda r: r.task, "job_name": lambda r: r.job_name,
    "identity": lambda r: r.identity, "key": lambda r: r.key, "attempt": lambda r: r.attempt,
    "state": lambda r: r.state, "exit_code": lambda r: r.exit_code,
    "signal": lambda r: None if r.signal is None else signal_name(r.signal),
    "reason": lambda r: r.reason, "cause": lambda r: r.cause,
    "retry_cause": lambda r: r.retry_cause,
    "node_state": lambda r: None if r.node_state is None else NodeState(r.node_state).name,
    "backend": lambda r: r.backend, "native_id": lambda r: r.job_id, "host": lambda r: r.host,
    "submit": lambda r: _iso_of(r.submitted), "start": lambda r: _iso_of(r.started),
    "end": lambda r: _iso_of(r.ended), "queue_wait": lambda r: _r(r.queue_wait),
    "realtime": lambda r: _r(r.elapsed), "mem_requested": lambda r: r.mem,
    "cores_requested": lambda r: r.cores, "runtime_requested": lambda r: r.runtime,
    "peak_rss": lambda r: r.peak_rss, "pct_mem": lambda r: _p(r.mem_fraction),
    "pct_runtime": lambda r: _p(r.runtime_fraction), "cpu_time": lambda r: _r(r.cpu_time),
    "pct_cpu": lambda r: (None if r.cpu_time is None or not r.elapsed
                          else round(100 * (r.cpu_time / r.elapsed), 1)),
    "usage_source": lambda r: r.usage_source, "stderr": lambda r: r.stderr,
}


def _reference_trace(store: Store, fmt: str, names: list[str]) -> str:
    """The trace written one attempt at a time from the per-row definitions."""
    from gristmill.report.trace import _text, _tsv_cell

    out = io.StringIO()
    rows = list(iter_attempts(store))
    values = [[REFERENCE[n](row) for n in names] for row in rows]
    if fmt == "tsv":
        out.write("\t".join(names) + "\n")
        for v in values:
            out.write("\t".join(_tsv_cell(x) for x in v) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_text(x) for x in v] for v in values)
    else:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        items = [dumps(dict(zip(names, v))) for v in values]
        if fmt == "json":
            out.write("[" + ",".join("\n" + item for item in items) + "\n]\n")
        else:
            out.write("".join(item + "\n" for item in items))
    return out.getvalue()


@pytest.fixture(scope="module")
def awkward_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 400 nodes (retries, failures) and attempts holding awkward values: tabs,
    line breaks, quotes and non-ASCII text, a node no longer in the graph, an open attempt,
    float requests, a signal no name is known for, times on a millisecond's edge."""
    run_dir = tmp_path_factory.mktemp("trace") / "run"
    build_run(run_dir, 400)
    store = Store.open(run_dir)
    t0 = 1_796_000_000.0
    odd = [
        AttemptRecord("f" * 32, 1, "f" * 16 + ".1", "gone", "gone_1", "slurm", None, "r", "o",
                      "e\tx", ("x",), {"mem": 1.5 * 2**30, "runtime": 90.5}, "FAILED", None,
                      250, 10, 0.1239999, "h\t1", 'tab\there, "quoted"\nnext line; naïve ✓',
                      t0 + 0.0005, t0 + 1.9995),
        AttemptRecord("f" * 32, 2, "f" * 16 + ".2", "gone", "gone_1", "slurm", "7", "r", "o",
                      "e", ("x",), {"cores": 2}, "RUNNING", submitted=t0 + 0.0078125),
        AttemptRecord("e" * 32, 1, "e" * 16 + ".1", "gone", "gone_2", "local", "1", "r", "o",
                      "e", ("x",), {"mem": 0, "runtime": 0}, "SUCCEEDED", 0, None, 0, 2.0,
                      "", "", t0 - 0.4999995, t0 + 999.9999995),
    ]
    with store.transaction() as cur:
        store.add_attempts(cur, odd)
    store.close()
    return run_dir


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("which", ["mixed", "awkward"])
def test_the_trace_is_the_per_row_definition_exactly(fmt: str, which: str, mixed_run: Path,
                                                     awkward_run: Path) -> None:
    run_dir = mixed_run if which == "mixed" else awkward_run
    store = Store.open(run_dir, readonly=True)
    try:
        assert set(REFERENCE) == set(FIELD_NAMES)
        for names in (list(FIELD_NAMES), ["reason", "node", "pct_mem", "node"]):
            out = io.StringIO()
            rows = trace(store, out, fmt=fmt, fields=choose_fields(names), batch=97)
            assert out.getvalue() == _reference_trace(store, fmt, names)
            assert rows == count_attempts(store)
    finally:
        store.close()


@given(st.floats(min_value=-2e9, max_value=2e11, allow_nan=False)
       | st.sampled_from([0.0, 0.0005, 0.9995, 0.0078125, 1_796_000_000.9999995,
                          1_796_000_000.0005, -0.4999995, 1.0 - 2**-40]))
def test_times_are_written_as_datetime_writes_them(ts: float) -> None:
    from gristmill.report.trace import _iso, _isos

    assert _iso(ts) == _iso_of(ts) == _isos([ts])[0]


def test_a_store_made_before_cpu_time_was_kept_traces_it_empty(
    mixed_run: Path, tmp_path: Path
) -> None:
    """A run recorded before schema 3 has no cpu_time column: its trace (and every other
    reader) shows the field empty instead of failing."""
    import shutil
    import sqlite3

    old = tmp_path / "old"
    shutil.copytree(mixed_run, old)
    with sqlite3.connect(old / "gristmill.db") as db:
        db.execute("ALTER TABLE attempts DROP COLUMN cpu_time")
        db.execute("ALTER TABLE attempts DROP COLUMN usage_source")
    rows = list(csv.DictReader(io.StringIO(_trace(old, "tsv", "key,cpu_time,pct_cpu")),
                               delimiter="\t"))
    assert rows
    assert {(r["cpu_time"], r["pct_cpu"]) for r in rows} == {("", "")}
    store = Store.open(old, readonly=True)
    try:
        assert {r.cpu_time for r in iter_attempts(store)} == {None}
        from gristmill.report.aggregate import task_figures

        assert {f.cpu_eff for f in task_figures(store).values()} == {None}
    finally:
        store.close()
