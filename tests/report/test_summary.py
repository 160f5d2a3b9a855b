"""The end-of-run summary: per-task table, first failures, where to look next."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console

from gristmill.report.summary import human_bytes, human_seconds, render_summary


def _text(run_dir: Path, **kwargs: int) -> str:
    console = Console(width=250, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render_summary(run_dir, **kwargs))
    console.file.close()
    return console.export_text()


def test_the_summary_counts_nodes_attempts_and_retries_per_task(mixed_run: Path) -> None:
    out = _text(mixed_run)
    header = out.splitlines()[0]
    for column in ("DONE", "FAILED", "UPSTREAM_FAILED", "attempts", "retry OOM",
                   "retry exit code", "wall min / median / max", "peak mem / asked"):
        assert column in header
    rows = {line.split("│")[0].strip(): [c.strip() for c in line.split("│")[1:]]
            for line in out.splitlines() if "│" in line}
    assert rows["hog"][:5] == ["1", "", "", "2", "1"]  # DONE, -, -, attempts, OOM retry
    assert rows["exit_with"][:6] == ["", "1", "", "2", "", "1"]
    assert rows["append_line"][:4] == ["3", "", "1", "3"]
    assert "under" in " ".join(rows["hog"])  # it ran out of memory
    assert rows["all"][:4] == ["4", "1", "1", "7"]


def test_the_summary_explains_the_first_failures_and_names_the_next_commands(
    mixed_run: Path,
) -> None:
    out = _text(mixed_run)
    assert "1 node(s) failed; the first:" in out
    assert "exit_with (task exit_with, attempt 2): FAILED — exit code 3" in out
    assert "| about to exit with code 3" in out
    assert "rerun by hand: " in out
    assert f"report: gristmill report {mixed_run}" in out
    assert f"trace: gristmill trace {mixed_run}" in out


def test_failures_zero_shows_none_but_says_how_many(mixed_run: Path) -> None:
    out = _text(mixed_run, failures=0)
    assert "rerun by hand" not in out
    assert f"... and 1 more: gristmill status {mixed_run} --failures 1" in out


@pytest.mark.parametrize(("value", "text"), [
    (None, "—"), (0.314, "0.31s"), (42, "42s"), (75, "1m15s"), (7322, "2h02m"),
    (3 * 86400 + 3600, "3d01h"),
])
def test_human_seconds(value: float | None, text: str) -> None:
    assert human_seconds(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (None, "—"), (512, "512B"), (1536 * 2**20, "1.5G"), (300 * 2**20, "300M"),
])
def test_human_bytes(value: float | None, text: str) -> None:
    assert human_bytes(value) == text


def test_the_summary_shows_cpu_efficiency_where_cpu_time_is_known(mixed_run: Path) -> None:
    """Every task of the run records CPU time (the local worker measures it): each row
    ends with its efficiency, a whole percentage."""
    lines = _text(mixed_run).splitlines()
    header = next(i for i, line in enumerate(lines) if "CPU eff" in line)
    rows = [line for line in lines[header + 2:] if line.strip() and "│" in line]
    tasks = [row for row in rows if not row.startswith("all")]
    assert tasks
    assert all(re.search(r"│\s*\d+%\s*$", row) for row in tasks), tasks
