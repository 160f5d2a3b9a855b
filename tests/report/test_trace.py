"""``gristmill trace``'s fields and formats: every field documented, every format read back,
and the trace streamed (its memory does not grow with the run)."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from pathlib import Path

import pytest
from gm_runstore import build_run

from gristmill.errors import GristmillError
from gristmill.report.trace import FIELD_NAMES, FIELDS, choose_fields, trace
from gristmill.store.db import Store

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
        assert row["cpu_time"] == ""  # no backend records it yet: empty, not made up


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
