"""Requested vs used in one query (status), and ``--suggest``'s sizing rule."""

from __future__ import annotations

from pathlib import Path

from gristmill.report.attempts import iter_attempts
from gristmill.report.usage import suggest_entry, task_usage
from gristmill.store.db import Store


def test_task_usage_agrees_with_the_attempts(mixed_run: Path) -> None:
    store = Store.open(mixed_run, readonly=True)
    try:
        usage = task_usage(store)
        rows = list(iter_attempts(store))
    finally:
        store.close()
    assert set(usage) == {"hog", "exit_with", "append_line"}
    for task, found in usage.items():
        mine = [r for r in rows if r.task == task]
        assert found.ended == len(mine)
        assert found.peak_rss == max((r.peak_rss for r in mine if r.peak_rss), default=None)
        assert found.elapsed == max(r.elapsed for r in mine if r.elapsed is not None)
    hog = usage["hog"]
    assert (hog.ooms, hog.timeouts, hog.mem_requested) == (1, 0, 300 * 2**20)
    assert hog.mem_pct is not None
    assert hog.mem_pct > 200 / 3  # its OOM peak went past 200M, of the 300M asked at most
    assert usage["append_line"].mem_requested is None  # asked for no memory
    assert usage["append_line"].mem_pct is None


def test_suggest_entry_rounds_up_with_headroom() -> None:
    assert suggest_entry(100 * 2**20, 100.0) == {"mem": "125M", "runtime": "00:03:00"}
    assert suggest_entry(1, 1.0) == {"mem": "1M", "runtime": "00:01:00"}  # at least a minute
    assert suggest_entry(None, None) == {}
