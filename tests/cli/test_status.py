"""``gristmill status`` and ``tasks``: read a run, explain its failures, write nothing; and
the names ``logs`` takes for a node (``find_node``)."""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from gm_testing import attempts
from gm_users import as_nobody, shared_tmp
from loguru import logger

from gristmill.cli.app import main
from gristmill.cli.status import waiting_line
from gristmill.engine.runner import run_workflow
from gristmill.resources import Policy
from gristmill.states import NodeState
from gristmill.store.db import STORE_NAME, Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SRC = Path(__file__).resolve().parents[2] / "src"
GRISTMILL = [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()"]


@pytest.fixture(scope="module")
def env() -> Iterator[None]:
    """engine_tasks importable here and in children, for the whole module (runs are shared)."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(FIXTURES))
    path = [str(FIXTURES), str(SRC), os.environ.get("PYTHONPATH", "")]
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    yield
    mp.undo()
    logger.remove()  # `main` added a sink on CliRunner's stderr, which is closed now
    logger.disable("gristmill")


@pytest.fixture(scope="module")
def failed_run(env: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run with three failures: exit code 3, OOM, TIMEOUT."""
    import engine_tasks

    root = tmp_path_factory.mktemp("status") / "runs"
    result = run_workflow(engine_tasks.three_failures(), run_dir=root, policy=Policy(retries=0))
    assert result.counts == {"FAILED": 3}
    return result.run_dir


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_status_counts_tasks_by_state_and_explains_each_failure(failed_run: Path) -> None:
    result = cli("status", str(failed_run))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "three_failures" in out
    assert "no engine running" in out
    for task in ("exit_with", "hog", "slow"):
        assert any(line.startswith(task) and "│      1 │" in line for line in out.splitlines())
    assert "3 failed node(s)" in out
    assert "exit_with (task exit_with, attempt 1): FAILED — exit code 3" in out
    assert "| about to exit with code 3" in out  # the last lines of its log
    assert "hog (task hog, attempt 1): OOM — exceeded memory limit 200M" in out
    assert "peak memory" in out
    assert "slow (task slow, attempt 1): TIMEOUT — exceeded runtime 00:00:01" in out
    assert out.count("rerun by hand: ") == 3


def test_the_printed_rerun_command_reproduces_the_failure(failed_run: Path) -> None:
    out = cli("status", str(failed_run)).stdout
    commands = [line.split("rerun by hand: ", 1)[1] for line in out.splitlines()
                if "rerun by hand: " in line]
    (command,) = [c for c in commands if "engine_tasks:exit_with" in c]
    done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
    assert done.returncode == 3
    assert "about to exit with code 3" in done.stderr


def test_tasks_lists_nodes_filtered_by_state(failed_run: Path) -> None:
    failed = cli("tasks", str(failed_run), "--state", "failed")
    assert failed.exit_code == 0, failed.output
    rows = sorted(line.split("\t") for line in failed.stdout.splitlines())
    assert [row[:3] for row in rows] == [
        ["exit_with", "FAILED", "attempts=1"], ["hog", "FAILED", "attempts=1"],
        ["slow", "FAILED", "attempts=1"],
    ]  # fmt: skip
    assert rows[0][3] == "exit code 3"
    assert cli("tasks", str(failed_run), "--state", "DONE").stdout == ""
    bad = cli("tasks", str(failed_run), "--state", "BROKEN")
    assert bad.exit_code == 2
    assert "UPSTREAM_FAILED" in bad.stderr  # the message lists the states
    assert "Traceback" not in bad.output


def test_logs_finds_one_node_for_every_name_tasks_prints(env: None, tmp_path: Path) -> None:
    """Nodes that ran are listed by job name, nodes that never ran (below a failure) as
    ``TASK#ID``: ``logs`` takes each and finds that one node."""
    import engine_tasks

    result = run_workflow(engine_tasks.diamond_with_failure(path=str(tmp_path / "out")),
                          run_dir=tmp_path / "runs")
    assert result.counts == {"DONE": 4, "FAILED": 1, "UPSTREAM_FAILED": 2}
    listed = cli("tasks", str(result.run_dir))
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    names = [row[0] for row in rows]
    assert len(set(names)) == len(names) == 7
    never = [row[0] for row in rows if row[1] == "UPSTREAM_FAILED"]
    assert [n.split("#")[0] for n in never] == ["append_line", "append_line"]
    for name, state, *_ in rows:
        shown = cli("logs", str(result.run_dir), name)
        assert shown.exit_code == 0, (name, shown.output)
        if state == "UPSTREAM_FAILED":
            assert shown.stdout == f"{name} has not run yet (UPSTREAM_FAILED): it has no logs\n"
        else:
            (out,) = [line for line in shown.stdout.splitlines() if line.endswith(".out <==")]
            assert f"/{name}." in out  # that node's own files
    for wrong in ("append_line#99", "exit_with#2", "append_line#x"):
        missing = cli("logs", str(result.run_dir), wrong)
        assert missing.exit_code == 2, wrong
        assert "Traceback" not in missing.output


def test_logs_takes_an_attempt_key_or_identity_prefix(failed_run: Path) -> None:
    (record,) = [a for a in attempts(failed_run) if a.task == "hog"]
    for name in (record.key, record.identity[:10]):
        shown = cli("logs", str(failed_run), name, "--err")
        assert shown.exit_code == 0, shown.output
        assert f"==> {record.stderr} <==" in shown.stdout


def test_reading_a_run_changes_nothing_and_works_from_its_root(failed_run: Path) -> None:
    store = failed_run / STORE_NAME
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    from_root = cli("status", str(failed_run.parent))  # through the `latest` link
    assert from_root.exit_code == 0, from_root.output
    assert "3 failed node(s)" in from_root.stdout
    cli("tasks", str(failed_run))
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before


def test_status_of_a_directory_that_is_no_run_exits_2(tmp_path: Path) -> None:
    result = cli("status", str(tmp_path))
    assert result.exit_code == 2
    assert "not a gristmill run directory" in result.stderr
    assert "Traceback" not in result.output


def test_status_reads_a_run_while_its_engine_runs(env: None, tmp_path: Path) -> None:
    release = tmp_path / "release"
    proc = subprocess.Popen(
        [*GRISTMILL, "run", "engine_tasks:sleepers", "--pidfile", str(tmp_path / "pid"),
         "--pause", "20", "--release", str(release), "--run-dir", str(tmp_path / "runs")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "pid.0").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        run_dir = (tmp_path / "runs" / "latest").resolve()
        deadline = time.monotonic() + 5
        while True:  # the engine records RUNNING at its next poll
            out = cli("status", str(run_dir)).stdout
            if "RUNNING" in out or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert f"engine running (pid {proc.pid}" in out
        assert "RUNNING" in out
        release.touch()
        watch = cli("status", str(run_dir), "--watch", "--interval", "0.2")  # ends with the run
        assert watch.exit_code == 0, watch.output
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# -- runs the reader cannot write: another user's (here: root's, read as nobody) -------------

shared = pytest.fixture(name="shared")(shared_tmp)


def _outcome(*args: str) -> tuple[int, str, str]:
    result = cli(*args)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def roots_run(env: None, shared: Path) -> Path:
    """A finished run of root's, which nobody may read but not write (directories 755)."""
    import engine_tasks

    result = run_workflow(engine_tasks.three_failures(), run_dir=shared / "runs",
                          policy=Policy(retries=0))
    assert result.counts == {"FAILED": 3}
    return result.run_dir


def test_status_tasks_and_logs_read_another_users_run(roots_run: Path) -> None:
    files = sorted(p.name for p in roots_run.iterdir())
    for args in (["status", str(roots_run)], ["tasks", str(roots_run)],
                 ["logs", str(roots_run), "exit_with"], ["status", str(roots_run.parent)]):
        as_root = _outcome(*args)  # also loads what the command needs, as root
        assert as_root[0] == 0, as_root
        assert as_nobody(functools.partial(_outcome, *args)) == as_root
    assert "3 failed node(s)" in as_root[1]
    assert sorted(p.name for p in roots_run.iterdir()) == files  # no -wal or -shm left


def test_resuming_another_users_run_says_it_is_not_writable(roots_run: Path) -> None:
    code, out, err = as_nobody(lambda: _outcome("resume", str(roots_run)))
    assert (code, out) == (2, ""), err
    assert err == (
        f"error: the run directory {roots_run} is not writable by you (nobody): it belongs to "
        f"root (mode drwxr-xr-x); nothing was changed; continue it as root, or copy it to "
        f"storage you can write (cp -a {roots_run} NEW_PATH) and continue the copy: gristmill "
        "resume NEW_PATH\n"
    )


def test_status_reads_another_users_run_while_its_engine_runs(
    env: None, tmp_path: Path, shared: Path
) -> None:
    """The engine's -shm is root's: SQLite reads through it without writing it."""
    release = tmp_path / "release"
    proc = subprocess.Popen(
        [*GRISTMILL, "run", "engine_tasks:sleepers", "--pidfile", str(tmp_path / "pid"),
         "--pause", "20", "--release", str(release), "--run-dir", str(shared / "runs")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the engine records RUNNING at its next poll
            out = _outcome("status", str(shared / "runs"))[1]
            if "RUNNING" in out or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert "RUNNING" in out, out
        code, seen, err = as_nobody(lambda: _outcome("status", str(shared / "runs")))
        assert code == 0, err
        assert f"engine running (pid {proc.pid}" in seen
        assert "RUNNING" in seen
        release.touch()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_waiting_line_names_each_reason_most_first() -> None:
    assert waiting_line(37, {"Resources": 30, "Priority": 7}) == (
        "waiting: 37 (Resources 30, Priority 7)")
    assert waiting_line(3, {}) == "waiting: 3"


def test_status_shows_how_many_nodes_wait_and_why(env: None, tmp_path: Path) -> None:
    """The run's four appenders as a scheduler would hold them: queued, each with the
    reason the engine recorded (as it does when a poll brings a new one)."""
    import engine_tasks

    result = run_workflow(engine_tasks.appends(path=str(tmp_path / "out"), n=4, pause=0.0),
                          run_dir=tmp_path / "runs")
    assert result.ok
    store = Store.open(result.run_dir)
    try:
        keys = sorted(a.key for a in attempts(result.run_dir))
        with store.transaction() as cur:
            cur.execute("UPDATE attempts SET ended = NULL, state = 'QUEUED', reason = ''")
            store.set_states(cur, [(n, NodeState.SUBMITTED) for n in range(4)], [])
            store.set_pending_reasons(cur, [(keys[0], "Priority"), (keys[1], "Resources"),
                                            (keys[2], "Resources")])
    finally:
        store.close()
    out = cli("status", str(result.run_dir)).stdout
    assert "append_line  waiting: 4 (Resources 2, Priority 1)" in out
