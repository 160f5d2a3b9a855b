"""Per-task aggregates and failure clusters: exact, and right about a real run."""

from __future__ import annotations

import statistics
from array import array
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gristmill.report.attempts import iter_attempts
from gristmill.report.stats import (
    OVER,
    UNDER,
    RunStats,
    TaskStats,
    _flag,
    error_line,
    gather,
    pattern,
    quantiles,
    retry_columns,
)
from gristmill.store.db import Store


@pytest.fixture(scope="module")
def stats(mixed_run: Path) -> RunStats:
    store = Store.open(mixed_run, readonly=True)
    try:
        return gather(iter_attempts(store))
    finally:
        store.close()


@given(st.lists(st.floats(min_value=0, max_value=1e9, allow_nan=False), min_size=1,
                max_size=200))
def test_quartiles_are_exact(values: list[float]) -> None:
    q = quantiles(array("d", values))
    assert q is not None
    expected = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 \
        else [values[0]] * 3
    assert q.q1 == pytest.approx(expected[0])
    assert q.median == pytest.approx(statistics.median(values))
    assert q.q3 == pytest.approx(expected[2])
    assert (q.low, q.high, q.n) == (min(values), max(values), len(values))


def test_no_values_no_quartiles() -> None:
    assert quantiles([]) is None


def test_counts_retries_and_requests_per_task(stats: RunStats) -> None:
    assert stats.attempts == 7
    hog = stats.tasks["hog"]
    assert (hog.attempts, dict(hog.by_state), dict(hog.retries)) == (
        2, {"OOM": 1, "SUCCEEDED": 1}, {"OOM": 1})
    assert hog.mem_requested == 300 * 2**20  # the largest request
    assert hog.mem_flag() == "under"  # it ran out of memory once
    assert hog.ok_peak is not None
    assert 200 * 2**20 < hog.ok_peak < 300 * 2**20
    assert dict(stats.tasks["exit_with"].retries) == {"exit code": 1}
    assert stats.tasks["append_line"].attempts == 3
    assert retry_columns(stats.tasks.values()) == ["OOM", "exit code"]
    assert stats.first_submit is not None
    assert stats.last_end is not None
    assert stats.first_submit < stats.last_end


def test_failures_cluster_by_cause_reason_and_stderr_line(stats: RunStats) -> None:
    clusters = stats.ordered_clusters()
    assert [(c.cause, c.attempts, c.final) for c in clusters] == [("exit 3", 2, 1), ("OOM", 1, 0)]
    exit3 = clusters[0]
    assert exit3.line == "about to exit with code N"
    assert exit3.reason == "exit code N"
    assert exit3.sample_job == "exit_with"
    assert exit3.sample_key.endswith(".2")  # the sample is the attempt that failed for good
    assert stats.failed_attempts == 3
    assert stats.unread == 0


def test_patterns_blank_numbers_and_ids() -> None:
    assert pattern("draw 17 failed after 2.5 s") == "draw N failed after N s"
    assert pattern("job 4f2a9c0e1b7d3e55 lost") == "job X lost"
    assert pattern("ValueError: draw 17 has no observations") == \
        pattern("ValueError: draw 18 has no observations")
    assert error_line(["Traceback", "  File x", "ValueError: boom", "", "  "]) == \
        "ValueError: boom"
    assert error_line([]) == ""


@pytest.mark.parametrize(("exceeded", "pct", "flag"), [
    (1, [10.0], "under"),
    (0, [100 * UNDER + 1], "under"),
    (0, [100 * OVER - 1, 10.0], "over"),
    (0, [60.0], ""),
    (0, [], ""),
])
def test_flags(exceeded: int, pct: list[float], flag: str) -> None:
    assert _flag(exceeded, array("d", pct)) == flag


def test_a_task_without_attempts_has_empty_figures() -> None:
    empty = TaskStats("never")
    assert (empty.attempts, empty.retries_total(), empty.mem_flag()) == (0, 0, "")
