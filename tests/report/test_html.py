"""The HTML report as a file: self-contained, and its data says what the store says."""

from __future__ import annotations

import base64
import gzip
import json
import re
import sys
from array import array
from pathlib import Path
from typing import Any

import pytest
from gm_runstore import build_run

from gristmill.errors import GristmillError
from gristmill.report.attempts import AttemptRow, iter_attempts
from gristmill.report.html import MISSING_PLOTLY, Timeline, _when, plotly_js, write_report
from gristmill.report.stats import gather, pattern, quantiles
from gristmill.store.db import Store


def _script(page: str, element_id: str) -> str:
    found = re.search(rf'<script id="{element_id}" type="[^"]+">(.*?)</script>', page, re.S)
    assert found is not None, element_id
    return found.group(1)


def page_data(page: str) -> dict[str, Any]:
    return dict(json.loads(_script(page, "gm-data")))


def table_rows(page: str) -> tuple[dict[str, Any], dict[str, list[int]], list[str]]:
    """The attempt table as the page's script unpacks it, done here in Python."""
    meta = page_data(page)["table"]
    raw = gzip.decompress(base64.b64decode(_script(page, "gm-table")))
    n, offset, cols = meta["rows"], 0, {}
    for name in meta["columns"]:
        col = array("i")
        col.frombytes(raw[offset:offset + 4 * n])
        if sys.byteorder != "little":
            col.byteswap()
        values = list(col)
        if name in meta["delta"]:
            for i in range(1, n):
                values[i] += values[i - 1]
        cols[name] = values
        offset += 4 * n
    names = raw[offset:].decode().split("\n") if n else []
    return meta, cols, names


@pytest.fixture(scope="module")
def report(mixed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("html") / "report.html"
    info = write_report(mixed_run, out)
    assert info.path == out
    assert info.attempts == 7
    assert not info.sampled
    return out.read_text()


def test_the_page_needs_no_network(report: str) -> None:
    assert "<script src" not in report
    assert "<link" not in report
    assert "@import" not in report
    assert plotly_js()[:200] in report  # plotly.js itself is inside


def test_the_page_holds_the_runs_counts_provenance_and_failures(report: str,
                                                                mixed_run: Path) -> None:
    data = page_data(report)
    assert data["title"] == "mixed"
    assert data["counts"] == {"DONE": 4, "FAILED": 1, "UPSTREAM_FAILED": 1}
    assert data["attempts"] == 7
    provenance = dict(data["provenance"])
    assert provenance["workflow"] == "mixed"
    assert provenance["run directory"] == str(mixed_run)
    assert provenance["status"] == "failed"
    assert provenance["user"]
    assert [t["task"] for t in data["tasks"]] == ["hog", "exit_with", "append_line"]
    hog = data["tasks"][0]
    assert hog["retries"]["OOM"] == 1
    assert hog["mem_flag"] == "under"
    assert hog["suggest"]["mem"].endswith("M")
    first = data["failures"][0]
    assert (first["cause"], first["attempts"], first["final"]) == ("exit 3", 2, 1)
    assert first["stderr"] == ["about to exit with code 3"]
    assert "--code 3" in first["rerun"]


def test_the_figures_are_plotly_specs_of_every_task_and_attempt(report: str) -> None:
    figures = page_data(report)["figures"]
    assert {t["name"] for t in figures["mem"]["data"]} == {"hog"}  # the one with a mem limit
    assert {t["name"] for t in figures["runtime"]["data"]} == {"append_line"}  # a limit
    lines = figures["timeline"]["data"]
    ran = [t for t in lines if t["name"] != "queued"]
    segments = sum(t["x"].count(None) for t in ran)
    assert segments == 7  # one bar per attempt
    assert {t["name"] for t in ran} == {"hog", "append_line", "did not succeed"}


def test_the_packed_table_holds_every_attempt(report: str, mixed_run: Path) -> None:
    meta, cols, names = table_rows(report)
    store = Store.open(mixed_run, readonly=True)
    try:
        rows = list(iter_attempts(store))
    finally:
        store.close()
    assert meta["rows"] == len(rows) == len(names)
    assert names == [r.job_name for r in rows]
    assert [meta["tasks"][i] for i in cols["task"]] == [r.task for r in rows]
    assert [meta["states"][i] for i in cols["state"]] == [r.state for r in rows]
    assert [meta["causes"][i] for i in cols["retry"]] == [r.retry_cause for r in rows]
    assert cols["node"] == [r.node for r in rows]
    for value, row in zip(cols["elapsed"], rows):
        assert row.elapsed is not None
        assert value == pytest.approx(row.elapsed * 100, rel=0.01, abs=1)


def test_a_large_run_samples_the_timeline_but_keeps_every_attempt_in_the_table(
    tmp_path: Path,
) -> None:
    counts = build_run(tmp_path / "run", 3_000)
    info = write_report(tmp_path / "run", tmp_path / "big.html", timeline_limit=500)
    page = (tmp_path / "big.html").read_text()
    data = page_data(page)
    assert info.sampled
    assert data["timeline"]["sampled"]
    assert 250 < data["timeline"]["shown"] < 1000  # about the limit: a sample of nodes
    meta, cols, names = table_rows(page)
    assert meta["rows"] == info.attempts == len(names) == len(cols["node"]) > 3_000
    assert data["counts"] == counts
    timeline = data["figures"]["timeline"]["data"]
    shown = sum(t["x"].count(None) for t in timeline if t["name"] != "queued")
    assert shown == data["timeline"]["shown"]


def test_without_plotly_the_message_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                    mixed_run: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "plotly.offline", None)  # import fails
    with pytest.raises(GristmillError, match=re.escape("pip install 'gristmill[report]'")):
        write_report(mixed_run, tmp_path / "r.html")
    assert "plotly" in MISSING_PLOTLY
    assert not (tmp_path / "r.html").exists()


def test_an_unwritable_place_is_a_clear_error(mixed_run: Path, tmp_path: Path) -> None:
    with pytest.raises(GristmillError, match=r"cannot write the report to .*; choose another"):
        write_report(mixed_run, tmp_path / "no" / "such" / "dir" / "r.html")


# -- the report's figures and table are the per-row definitions ---------------------------------


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 6,000-node run (OOM and TIMEOUT retries, failures) and its report, sampled."""
    root = tmp_path_factory.mktemp("large")
    build_run(root / "run", 6_000)
    write_report(root / "run", root / "report.html", timeline_limit=1_000)
    return root / "run", (root / "report.html").read_text()


def _expected_table(rows: list[AttemptRow], origin: float, reasons_kept: int
                    ) -> dict[str, list[Any]]:
    """The attempt table's columns, one attempt at a time (as the page shows them)."""
    from gristmill.report.html import _cs, _significant

    reasons: list[str] = []
    out: dict[str, list[Any]] = {name: [] for name in (
        "node", "task", "attempt", "state", "cause", "retry", "exit", "host", "reason",
        "submit", "wait", "elapsed", "peak", "mem", "runtime")}
    for r in rows:
        reason = r.reason
        if len(reasons) >= reasons_kept and reason not in reasons:
            reason = pattern(reason)
        if reason not in reasons:
            reasons.append(reason)
        started = r.started
        for name, value in (
            ("node", -1 if r.node is None else r.node), ("task", r.task),
            ("attempt", r.attempt), ("state", r.state), ("cause", r.cause),
            ("retry", r.retry_cause), ("exit", -1 if r.exit_code is None else r.exit_code),
            ("host", r.host or ""), ("reason", reason),
            ("submit", round((r.submitted - origin) * 10) * 10),
            ("wait", -1 if started is None else _cs(started - r.submitted)),
            ("elapsed", _cs(r.elapsed)),
            ("peak", -1 if not r.peak_rss else int(_significant(r.peak_rss * 10 / 2**20))),
            ("mem", -1 if not r.mem else round(r.mem / 2**20)),
            ("runtime", -1 if not r.runtime else round(r.runtime)),
        ):
            out[name].append(value)
    return out


def _table_as_values(page: str) -> dict[str, list[Any]]:
    meta, cols, _ = table_rows(page)
    lists = {"task": "tasks", "state": "states", "cause": "causes", "retry": "causes",
             "host": "hosts", "reason": "reasons"}
    return {name: [meta[lists[name]][i] for i in col] if name in lists else col
            for name, col in cols.items()}


def test_every_column_of_the_table_is_the_attempts_value(large: tuple[Path, str]) -> None:
    run_dir, page = large
    store = Store.open(run_dir, readonly=True)
    try:
        rows = list(iter_attempts(store))
    finally:
        store.close()
    origin = page_data(page)["table"]["origin"]
    assert _table_as_values(page) == _expected_table(rows, origin, 50_000)
    assert table_rows(page)[2] == [r.job_name for r in rows]


def test_past_so_many_distinct_reasons_the_table_keeps_their_pattern(
    mixed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gristmill.report import html

    monkeypatch.setattr(html, "_REASONS", 1)
    write_report(mixed_run, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    store = Store.open(mixed_run, readonly=True)
    try:
        rows = list(iter_attempts(store))
    finally:
        store.close()
    expected = _expected_table(rows, page_data(page)["table"]["origin"], 1)
    assert _table_as_values(page)["reason"] == expected["reason"]
    assert "exit code N" in expected["reason"]  # a pattern, past the first reason


def test_the_figures_are_the_one_pass_definitions(large: tuple[Path, str]) -> None:
    run_dir, page = large
    store = Store.open(run_dir, readonly=True)
    try:
        stats = gather(iter_attempts(store))
        clusters = stats.ordered_clusters()
    finally:
        store.close()
    data = page_data(page)
    fit = stats.tasks["fit"]
    row = next(t for t in data["tasks"] if t["task"] == "fit")
    wall, peak = quantiles(fit.elapsed), quantiles(fit.peak)
    assert wall is not None
    assert peak is not None
    assert row["wall"] == [wall.low, wall.median, wall.high]
    assert row["peak"] == [peak.median, peak.high]
    assert (row["attempts"], row["mem"], row["runtime"], row["cores"]) == (
        fit.attempts, fit.mem_requested, fit.runtime_requested, fit.cores_requested)
    assert (row["mem_pct"], row["runtime_pct"]) == (max(fit.mem_pct), max(fit.runtime_pct))
    assert row["retries"] == {c: fit.retries.get(c, 0) for c in data["causes"]}
    for which, values in (("mem", fit.mem_pct), ("runtime", fit.runtime_pct)):
        box = data["figures"][which]["data"][0]
        q = quantiles(values)
        assert q is not None
        assert [box[k][0] for k in ("lowerfence", "q1", "median", "q3", "upperfence")] == [
            q.low, q.q1, q.median, q.q3, q.high]
        assert box["mean"] == [q.mean]
    assert [(f["cause"], f["reason"], f["line"], f["attempts"], f["final"], f["job"])
            for f in data["failures"]] == [
        (c.cause, c.reason, c.line, c.attempts, c.final, c.sample_job) for c in clusters]
    assert (data["failed_attempts"], data["unread"]) == (stats.failed_attempts, stats.unread)
    provenance = dict(data["provenance"])
    assert provenance["hosts"] == f"{len(stats.hosts):,}"
    assert provenance["first submission"] == _when(stats.first_submit)
    assert provenance["last attempt ended"] == _when(stats.last_end)


def test_the_timeline_samples_whole_nodes_by_identity(large: tuple[Path, str]) -> None:
    run_dir, page = large
    data = page_data(page)
    store = Store.open(run_dir, readonly=True)
    try:
        rows = list(iter_attempts(store))
        timeline = Timeline(len(rows), 1_000)
        timeline.read(store)
    finally:
        store.close()
    cut = int(1_000 / len(rows) * 16**8)
    expected = [r for r in rows if int(r.identity[:8], 16) < cut]
    assert [(r[0], r[2]) for r in timeline.rows] == [(r.identity, r.attempt) for r in expected]
    assert data["timeline"]["shown"] == len(expected)
    assert any(r.attempt > 1 for r in expected)  # retries are drawn beside their first try


def test_a_directory_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GristmillError, match="has no run store"):
        write_report(tmp_path, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
