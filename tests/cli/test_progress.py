"""Live progress of ``gristmill run``: plain lines in a log, a live table on a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from gm_testing import subprocess_env
from rich.console import Console

from gristmill.cli.app import main
from gristmill.cli.progress import PlainProgress, clock, line, table
from gristmill.engine.progress import Failure, Snapshot, TaskProgress

ENGINE = [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()"]


def snap(*tasks: TaskProgress, eta: float | None = 30.0) -> Snapshot:
    return Snapshot(tasks, elapsed=65.0, eta=eta)


def test_clock_and_the_plain_line() -> None:
    assert clock(3725) == "1:02:05"
    assert clock(None) == "?"
    text = line(snap(TaskProgress("fit", 10, 2, 3, 1, 4, 0),
                     TaskProgress("agg", 1, 1, 0, 0, 0, 0)))
    assert text == ("progress 0:01:05: 4/11 done, 1 running, 3 queued, 0 failed, eta 0:00:30 | "
                    "fit 4/10 agg 0/1")


def test_the_table_shows_each_task_and_the_total() -> None:
    console = Console(width=120, record=True, color_system=None)
    console.print(table(snap(TaskProgress("fit", 10, 2, 3, 1, 4, 0),
                             TaskProgress("agg", 1, 0, 0, 0, 0, 1))))
    text = console.export_text()
    assert "fit" in text
    assert "agg" in text
    assert "all" in text
    assert "4/10" in text
    assert "eta 0:00:30" in text


def test_a_run_in_a_log_prints_a_progress_line_every_interval(
    et: ModuleType, tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, [
        "run", "engine_tasks:spans", "--stamps", str(tmp_path / "s"), "--n", "2", "--pause",
        "2", "--max-cores", "2", "--run-dir", str(tmp_path / "runs"),
        "--progress-interval", "0.5"])
    assert result.exit_code == 0, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("progress ")]
    assert len(lines) >= 2
    assert all(" span " in x and "/2" in x for x in lines)
    assert not any(x.startswith("progress 0:00:00:") for x in lines)  # none before 0.5 s


def test_a_run_in_a_log_prints_each_failure(et: ModuleType, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "run", "engine_tasks:one_exit", "--code", "3", "--run-dir", str(tmp_path / "runs"),
        "--progress-interval", "60"])
    assert result.exit_code == 1, result.output
    (failed,) = [x for x in result.output.splitlines() if x.startswith("FAILED ")]
    assert "(task exit_with): FAILED — exit code 3" in failed
    assert not [x for x in result.output.splitlines() if x.startswith("progress ")]


def test_quiet_prints_no_progress(et: ModuleType, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "run", "engine_tasks:one_exit", "--code", "0", "--run-dir", str(tmp_path / "runs"),
        "--progress-interval", "0.5", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not [x for x in result.output.splitlines() if x.startswith("progress ")]
    assert "succeeded" in result.output


def test_a_plain_observer_skips_the_final_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    shown = PlainProgress(1.0)
    shown.update(Snapshot((), 1.0, None, final=True))  # the summary follows instead
    shown.failed(Failure("fit", "fit_1", "OOM"))
    assert capsys.readouterr().out == "FAILED fit_1 (task fit): OOM\n"


def test_a_terminal_gets_a_live_table(et: ModuleType, tmp_path: Path) -> None:
    """Under a pseudo-terminal the display is drawn with cursor movements, not lines."""
    primary, secondary = pty.openpty()
    env = {**subprocess_env(), "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [*ENGINE, "run", "engine_tasks:spans", "--stamps", str(tmp_path / "stamps"), "--n", "4",
         "--pause", "1.2", "--max-cores", "2", "--run-dir", str(tmp_path / "runs")],
        stdin=secondary, stdout=secondary, stderr=secondary, env=env, close_fds=True)
    os.close(secondary)
    out = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the terminal closed: the run ended
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
    finally:
        proc.wait(timeout=60)
        os.close(primary)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "\x1b[" in text  # drawn in place
    assert "running" in text
    assert "queued" in text
    assert "4/4" in text  # the final redraw shows every node done
    assert "elapsed" in text
    assert "progress 0:" not in text  # not the plain lines of a log
    assert "succeeded (DONE=4)" in text
