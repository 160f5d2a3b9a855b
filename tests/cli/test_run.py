"""``gristmill run``, ``resume`` and ``cancel``: exit codes, messages, and stopping work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result
from gm_testing import pid_gone, wait_for

from gristmill.cli.app import main
from gristmill.store.db import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SRC = Path(__file__).resolve().parents[2] / "src"
GRISTMILL = [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()"]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit 2, the message on stderr, and no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def states(run_dir: Path) -> dict[tuple[str, str], int]:
    store = Store.open(run_dir, readonly=True)
    try:
        return store.counts()
    finally:
        store.close()


def latest(root: Path) -> Path:
    return (root / "latest").resolve()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []




@pytest.fixture
def engine(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``gristmill run`` of two sleepers in a child process, both started when yielded."""
    proc = subprocess.Popen(
        [*GRISTMILL, "run", "engine_tasks:sleepers", "--pidfile", str(tmp_path / "pid"),
         "--n", "2", "--release", str(tmp_path / "release"), "--run-dir", str(tmp_path / "runs"),
         "--max-cores", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: all(_pid_written(tmp_path / f"pid.{i}") for i in (0, 1)), 15,
                 "both sleepers to start")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def _pid_written(path: Path) -> bool:
    """The file exists and holds a whole line (tasks write it while the test polls)."""
    try:
        return path.read_text().endswith("\n")
    except FileNotFoundError:
        return False


def sleeper_pids(tmp_path: Path) -> list[int]:
    return [int((tmp_path / f"pid.{i}").read_text().split()[-1]) for i in (0, 1)]


# -- exit codes ----------------------------------------------------------------------------------


def test_a_successful_run_exits_0(et: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", "engine_tasks:appends", "--path", str(out), "--n", "3", "--pause", "0",
                 "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert "succeeded (DONE=3)" in result.stdout
    assert sorted(lines(out)) == ["0", "1", "2"]
    again = cli("resume", str(latest(tmp_path / "runs")))  # nothing left to do
    assert again.exit_code == 0, again.output
    assert "succeeded (DONE=3)" in again.stdout
    assert sorted(lines(out)) == ["0", "1", "2"]


def test_a_run_with_failed_tasks_exits_1_and_points_to_status(
    et: ModuleType, tmp_path: Path
) -> None:
    result = cli("run", "engine_tasks:one_exit", "--code", "3", "--retries", "1",
                 "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1, result.output
    assert "FAILED=1" in result.stdout
    assert f"gristmill status {latest(tmp_path / 'runs')}" in result.stderr
    store = Store.open(latest(tmp_path / "runs"), readonly=True)
    try:
        assert [a.attempt for a in store.attempts()] == [1, 2]  # --retries 1
    finally:
        store.close()


def test_a_spec_naming_an_unknown_task_exits_2_and_writes_nothing(
    et: ModuleType, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("tasks:\n  nosuch: {mem: 1G}\n")
    root = tmp_path / "runs"
    root.mkdir()
    result = cli("run", "engine_tasks:one_exit", "--spec", str(spec), "--run-dir", str(root))
    assert_user_error(result, "tasks.nosuch: unknown task 'nosuch'", "exit_with")
    assert list(root.iterdir()) == []


def test_an_escalation_rule_without_retries_is_warned_about(et: ModuleType, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("tasks:\n  exit_with: {on_oom: {mem: x2, max: 4G}}\n")
    result = cli("run", "engine_tasks:one_exit", "--code", "0", "--spec", str(spec),
                 "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert ("WARNING task 'exit_with': on_oom (mem x2 up to 4G) does nothing while retries is 0"
            in result.stderr)
    quiet = cli("run", "engine_tasks:one_exit", "--code", "0", "--spec", str(spec),
                "--retries", "1", "--run-dir", str(tmp_path / "runs"))
    assert quiet.exit_code == 0, quiet.output
    assert "retries is 0" not in quiet.stderr


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "no_such_module_xyz:wf"], ["cannot import workflow module 'no_such_module_xyz'"]),
        (["run", "engine_tasks:one_exit", "--mem", "ten gigs"], ["ten gigs"]),
        (["run", "engine_tasks:one_exit", "--backend", "nope"], ["unknown backend 'nope'"]),
        (["run", "engine_tasks:spans", "--stamps", "x"], ["--n"]),  # a required option
        (["run", "engine_tasks:one_exit", "--option", "novalue"], ["KEY=VALUE"]),
    ],
)
def test_bad_input_exits_2_without_a_traceback(
    et: ModuleType, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    root = tmp_path / "runs"
    assert_user_error(cli(*args, "--run-dir", str(root)), *fragments)
    assert not root.exists()


def test_resume_of_a_directory_that_is_no_run_exits_2(et: ModuleType, tmp_path: Path) -> None:
    assert_user_error(cli("resume", str(tmp_path)), "has no run store", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_max_concurrent_from_the_command_line(et: ModuleType, tmp_path: Path) -> None:
    stamps = tmp_path / "stamps"
    result = cli("run", "engine_tasks:spans", "--stamps", str(stamps), "--n", "3",
                 "--pause", "0.3", "--max-concurrent", "1", "--max-cores", "4",
                 "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    spans = [line.split() for line in stamps.read_text().splitlines()]
    kinds = [kind for kind, _, _ in sorted(spans, key=lambda s: float(s[2]))]
    assert kinds == ["start", "end"] * 3  # one at a time


def test_resume_keeps_the_settings_of_the_run(et: ModuleType, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    first = cli("run", "engine_tasks:one_exit", "--code", "5", "--marker", str(marker),
                "--retries", "1", "--run-dir", str(tmp_path / "runs"))
    assert first.exit_code == 1
    again = cli("resume", str(latest(tmp_path / "runs")))
    assert again.exit_code == 1, again.output
    assert len(marker.read_text().splitlines()) == 4  # two attempts per engine: --retries 1 kept


# -- stopping ------------------------------------------------------------------------------------


def test_cancel_stops_the_engine_and_its_jobs_then_resume_finishes(
    et: ModuleType, tmp_path: Path, engine: subprocess.Popen[bytes]
) -> None:
    run_dir = latest(tmp_path / "runs")
    busy = cli("resume", str(run_dir))  # a second engine is refused, naming the first
    assert_user_error(busy, f"pid {engine.pid} on host {os.uname().nodename}")
    result = cli("cancel", str(run_dir), "--timeout", "20")
    assert result.exit_code == 0, result.output
    assert f"engine {engine.pid} stopped" in result.stdout
    assert engine.wait(timeout=10) == 130
    for pid in sleeper_pids(tmp_path):
        assert pid_gone(pid)
    assert states(run_dir) == {("sleeper", "CANCELLED"): 2}
    (tmp_path / "release").touch()
    resumed = cli("resume", str(run_dir))
    assert resumed.exit_code == 0, resumed.output
    assert states(run_dir) == {("sleeper", "DONE"): 2}


def test_cancel_without_an_engine_stops_the_jobs_it_left(
    et: ModuleType, tmp_path: Path, engine: subprocess.Popen[bytes]
) -> None:
    run_dir = latest(tmp_path / "runs")
    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=10)
    pids = sleeper_pids(tmp_path)
    assert not any(pid_gone(pid, timeout=0.2) for pid in pids)  # orphans still run
    result = cli("cancel", str(run_dir))
    assert result.exit_code == 0, result.output
    assert "no engine was running; cancelled 2 job(s)" in result.stdout
    for pid in pids:
        assert pid_gone(pid)
    (tmp_path / "release").touch()
    resumed = cli("resume", str(run_dir))  # the cancelled attempts run again
    assert resumed.exit_code == 0, resumed.output
    assert states(run_dir) == {("sleeper", "DONE"): 2}
    assert len(lines(tmp_path / "pid.0")) == 2  # once before the cancel, once after


def test_a_backend_option_named_like_an_engine_setting_reaches_the_backend(
    et: ModuleType, tmp_path: Path
) -> None:
    result = cli("run", "engine_tasks:appends", "--path", str(tmp_path / "out"), "--n", "1",
                 "--run-dir", str(tmp_path / "runs"), "--option", "max_concurrent=3")
    assert result.exit_code == 2, result.output  # the local backend has no such option
    assert "backend 'local': bad option" in result.output
    assert "max_concurrent" in result.output
