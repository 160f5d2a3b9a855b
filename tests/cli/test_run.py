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


# -- dry runs, reruns, resume flags, the run directory's workflow ----------------------------------


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``directory`` (hidden ones too): (size, mtime_ns, content)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_run_dry_run_says_what_would_run_and_writes_nothing(
    et: ModuleType, tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    result = cli("run", "engine_tasks:staged", "--path", str(tmp_path / "out"), "--run-dir",
                 str(root), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would start a new run under {root}" in result.stdout
    assert "nothing was written" in result.stdout
    table = [line.split() for line in result.stdout.splitlines()[1:]]
    assert table == [["task", "nodes", "DONE", "to", "run", "why"],
                     ["append_line", "5", "0", "5", "new", "5"],
                     ["total", "5", "0", "5", "new", "5"]]
    assert not root.exists()
    assert not (tmp_path / "out").exists()
    listed = cli("-v", "run", "engine_tasks:staged", "--path", str(tmp_path / "out"),
                 "--run-dir", str(root), "--dry-run")
    assert listed.exit_code == 0, listed.output
    assert "append_line_30  append_line" in listed.stdout
    assert not root.exists()


def test_resume_dry_run_gives_reasons_and_lists_nodes_with_v(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = cli("run", "engine_tasks:diamond_with_failure", "--path", str(out),
                "--retries", "0", "--run-dir", str(tmp_path / "runs"))
    assert first.exit_code == 1, first.output
    run_dir = latest(tmp_path / "runs")
    before = snapshot(run_dir)
    result = cli("resume", str(run_dir), "--dry-run", "-v")
    assert result.exit_code == 0, result.output
    assert f"would resume {run_dir}" in result.stdout
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:5]}
    assert rows["exit_with"] == ["1", "0", "1", "failed", "before", "1"]
    assert rows["append_line"] == ["6", "4", "2", "not", "finished", "2"]
    assert rows["total"][:3] == ["7", "4", "3"]
    listed = result.stdout.split("nodes that would run")[1].splitlines()[1:]
    assert sorted(line.split()[0] for line in listed) == [
        "append_line_1_0.0", "append_line_2_0.0", "exit_with"]
    assert snapshot(run_dir) == before  # not even -wal, -shm or the lock file


def test_rerun_on_run_and_resume_forces_nodes_and_downstream(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = cli("run", "engine_tasks:staged", "--path", str(out), "--run-dir",
                str(tmp_path / "runs"))
    assert first.exit_code == 0, first.output
    run_dir = latest(tmp_path / "runs")
    again = cli("run", "engine_tasks:staged", "--path", str(out), "--run-dir", str(run_dir),
                "--rerun", "append_line_10", "--rerun", "append_line_30")
    assert again.exit_code == 0, again.output
    assert sorted(lines(out)) == sorted(["0", "10", "11", "20", "30", "10", "20", "30"])
    resumed = cli("resume", str(run_dir), "--rerun", "append_line_11")
    assert resumed.exit_code == 0, resumed.output
    assert lines(out).count("11") == 2
    assert lines(out).count("20") == 3
    before = snapshot(run_dir)
    assert_user_error(cli("resume", str(run_dir), "--rerun", "nosuch"),
                      "--rerun nosuch", "its tasks are append_line")
    assert snapshot(run_dir) == before


def test_resume_raises_memory_for_a_node_out_of_memory_at_its_cap(
    et: ModuleType, tmp_path: Path
) -> None:
    spec = tmp_path / "cap.yaml"
    spec.write_text("tasks:\n  hog: {on_oom: {mem: x1.5, max: 200M}}\n")
    first = cli("run", "engine_tasks:one_hog", "--spec", str(spec), "--run-dir",
                str(tmp_path / "runs"))
    assert first.exit_code == 1, first.output
    run_dir = latest(tmp_path / "runs")
    dry = cli("resume", str(run_dir), "--mem", "1G", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "resources raised 1" in dry.stdout
    resumed = cli("resume", str(run_dir), "--mem", "1G")
    assert resumed.exit_code == 0, resumed.output
    store = Store.open(run_dir, readonly=True)
    try:
        assert [(a.state, a.resources["mem"]) for a in store.attempts()] == [
            ("OOM", 200 * 2**20), ("SUCCEEDED", 2**30)]
        assert store.meta()["settings"]["resources"] == {"mem": 2**30}  # kept for later
    finally:
        store.close()


def test_resume_takes_a_spec_layered_over_the_runs_own(et: ModuleType, tmp_path: Path) -> None:
    cap = tmp_path / "cap.yaml"
    cap.write_text("tasks:\n  hog: {on_oom: {mem: x1.5, max: 200M}}\n")
    first = cli("run", "engine_tasks:one_hog", "--spec", str(cap), "--run-dir",
                str(tmp_path / "runs"))
    assert first.exit_code == 1, first.output
    run_dir = latest(tmp_path / "runs")
    typo = tmp_path / "typo.yaml"
    typo.write_text("tasks:\n  hgo: {mem: 1G}\n")
    assert_user_error(cli("resume", str(run_dir), "--spec", str(typo)), "unknown task 'hgo'")
    higher = tmp_path / "higher.yaml"
    higher.write_text("tasks:\n  hog: {on_oom: {mem: x2, max: 800M}}\n")
    resumed = cli("resume", str(run_dir), "--spec", str(higher))
    assert resumed.exit_code == 0, resumed.output
    store = Store.open(run_dir, readonly=True)
    try:
        assert [(a.state, a.resources["mem"]) for a in store.attempts()] == [
            ("OOM", 200 * 2**20), ("OOM", 200 * 2**20), ("SUCCEEDED", 400 * 2**20)]
    finally:
        store.close()


def test_run_of_another_workflow_on_a_run_directory_exits_2_and_changes_nothing(
    et: ModuleType, tmp_path: Path
) -> None:
    first = cli("run", "engine_tasks:staged", "--path", str(tmp_path / "out"), "--run-dir",
                str(tmp_path / "runs"))
    assert first.exit_code == 0, first.output
    run_dir = latest(tmp_path / "runs")
    before = snapshot(run_dir)
    result = cli("run", "engine_tasks:one_exit", "--run-dir", str(run_dir))
    assert_user_error(result, "engine_tasks:staged", "engine_tasks:one_exit",
                      "nothing was changed", f"--run-dir {run_dir.parent}")
    assert snapshot(run_dir) == before


WORKFLOW = """
import gristmill as gm
from engine_tasks import append_line


@gm.workflow
def {name}(path: str) -> None:
    append_line(path=path, ident=1, pause=0.0)
"""


@pytest.mark.parametrize(
    ("replacement", "fragments"),
    [
        (WORKFLOW.format(name="renamed"), ["no 'pipeline' any more", "renamed or removed"]),
        ("", ["no 'pipeline' any more"]),
        ("def pipeline(path):\n    pass\n", ["no longer a @gm.workflow function",
                                               "it is a function"]),
        ("pipeline = 3\n", ["no longer a @gm.workflow function", "it is a int"]),
    ],
)
def test_resume_of_a_workflow_renamed_removed_or_replaced_exits_2(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replacement: str,
    fragments: list[str],
) -> None:
    module = tmp_path / "gm_changing_flow.py"
    module.write_text(WORKFLOW.format(name="pipeline"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # the rewrite is read, not a cache
    monkeypatch.delitem(sys.modules, "gm_changing_flow", raising=False)
    first = cli("run", "gm_changing_flow:pipeline", "--path", str(tmp_path / "out"),
                "--run-dir", str(tmp_path / "runs"))
    assert first.exit_code == 0, first.output
    module.write_text(replacement)
    del sys.modules["gm_changing_flow"]
    result = cli("resume", str(latest(tmp_path / "runs")))
    assert_user_error(result, "'gm_changing_flow'", *fragments)


# -- stopping ------------------------------------------------------------------------------------


def test_cancel_stops_the_engine_and_its_jobs_then_resume_finishes(
    et: ModuleType, tmp_path: Path, engine: subprocess.Popen[bytes]
) -> None:
    run_dir = latest(tmp_path / "runs")
    busy = cli("resume", str(run_dir))  # a second engine is refused, naming the first
    assert_user_error(busy, f"pid {engine.pid} on host {os.uname().nodename}")
    dry = cli("resume", str(run_dir), "--dry-run")  # so is a dry run: the store is moving
    assert_user_error(dry, f"pid {engine.pid} on host {os.uname().nodename}")
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
