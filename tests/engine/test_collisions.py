"""Nodes whose job names would clash never share files, and a failed one never passes.

Before gristmill gave each attempt files of its own, two nodes whose job names came
out the same (values joined with ``_``; characters sanitised away) wrote one result
file, and the engine recorded whichever it read for both: a failed task DONE. Each
collision mode (tests/fixtures/gm_collide.py) runs for real through the ``gristmill``
CLI in a subprocess, with one node failing and the others succeeding, and the run must
fail with exactly that node FAILED:

- plainly;
- with the engine stopped (SIGSTOP) while the nodes end, so every result is written
  before the engine reads any (as on a busy login node);
- with the engine killed (``kill -9``) while the nodes run, then ``gristmill resume``.

The third mode, one function name in two modules, is refused when it is recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gm_collide import FAILS
from gm_testing import attempts, subprocess_env, wait_for

from gristmill.store.db import Store

#: ``gristmill`` run as this interpreter (the console-script shim may be another one).
GRISTMILL = [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()"]
NODES = {"underscores": ["x_y|z", "x|y_z"], "sanitised": ["a/b", "a b", "a:b"]}
TASK = {"underscores": "pair", "sanitised": "labelled"}


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Engines a test started: continued and killed if still there at its end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.communicate(timeout=30)


def gristmill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRISTMILL, *args], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(), check=False)


def start(procs: list[subprocess.Popen[str]], flow: str, tmp_path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*GRISTMILL, "run", f"gm_collide:{flow}", "--path", str(tmp_path / "evidence"),
         "--gate", str(tmp_path / "gate"), "--run-dir", str(tmp_path / "runs"),
         "--max-cores", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    procs.append(proc)
    return proc


def evidence(tmp_path: Path, kind: str) -> list[str]:
    path = tmp_path / "evidence"
    words = path.read_text().splitlines() if path.exists() else []
    return sorted(line.split(" ", 1)[1] for line in words if line.startswith(kind + " "))


def run_dir(tmp_path: Path) -> Path:
    return (tmp_path / "runs" / "latest").resolve()


def all_started(tmp_path: Path, flow: str, proc: subprocess.Popen[str]) -> None:
    def started() -> bool:
        assert proc.poll() is None, proc.communicate()
        return evidence(tmp_path, "start") == sorted(NODES[flow])

    wait_for(started, 60, "every node to start")


def all_ended(tmp_path: Path, flow: str, *, files: bool = True) -> None:
    """Open the gate; wait until every node ended and, with ``files`` (the engine is gone:
    its supervisor writes every result), until each has its own result file."""
    (tmp_path / "gate").touch()
    wait_for(lambda: evidence(tmp_path, "end") == sorted(NODES[flow]), 60, "every node to end")
    if files:
        logs = run_dir(tmp_path) / "logs" / TASK[flow]
        wait_for(lambda: len(list(logs.glob("*.result.json"))) == len(NODES[flow]), 30,
                 "a result file per node (one per attempt, never shared)")


def check_failed_exactly(tmp_path: Path, flow: str, code: int, err: str) -> None:
    """The run failed (exit 1) with exactly the failing node FAILED and the rest DONE;
    ``gristmill tasks`` shows the same, and the FAILED node's attempt is that node's."""
    assert code == 1, err
    where = run_dir(tmp_path)
    store = Store.open(where, readonly=True)
    try:
        counts = store.counts()
    finally:
        store.close()
    total = len(NODES[flow])
    assert counts == {(TASK[flow], "DONE"): total - 1, (TASK[flow], "FAILED"): 1}
    failing = FAILS[flow]
    by_state = {a.state: a for a in attempts(where)}
    assert sorted(a.state for a in attempts(where)) == ["FAILED"] + ["SUCCEEDED"] * (total - 1)
    assert failing.split("|")[0] in by_state["FAILED"].argv
    assert by_state["FAILED"].exit_code == 3
    assert f"{failing} fails on purpose" in Path(by_state["FAILED"].stderr).read_text()
    listed = gristmill("tasks", str(where))
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert sorted(row[1] for row in rows) == ["DONE"] * (total - 1) + ["FAILED"]
    assert len({row[0] for row in rows}) == total  # every name once
    (failed_name,) = [row[0] for row in rows if row[1] == "FAILED"]
    assert failed_name == by_state["FAILED"].job_name
    for name, *_ in rows:  # `gristmill logs` finds each listed name's one node
        shown = gristmill("logs", str(where), name, "--err")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"==> {where / 'logs' / TASK[flow] / name}.")
        assert ("fails on purpose" in shown.stdout) == (name == failed_name)


@pytest.mark.parametrize("flow", ["underscores", "sanitised"])
def test_a_plain_run_fails_with_exactly_the_failing_node(
    flow: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "gate").touch()
    proc = start(procs, flow, tmp_path)
    _, err = proc.communicate(timeout=120)
    check_failed_exactly(tmp_path, flow, proc.returncode, err)
    assert evidence(tmp_path, "end") == sorted(NODES[flow])


@pytest.mark.parametrize("flow", ["underscores", "sanitised"])
def test_an_engine_stopped_while_the_nodes_end_reads_each_nodes_own_result(
    flow: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    proc = start(procs, flow, tmp_path)
    all_started(tmp_path, flow, proc)
    os.kill(proc.pid, signal.SIGSTOP)
    try:  # the engine lives: the results wait in its supervisor's pipe, no file is needed
        all_ended(tmp_path, flow, files=False)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    check_failed_exactly(tmp_path, flow, proc.returncode, err)


@pytest.mark.parametrize("flow", ["underscores", "sanitised"])
def test_kill_9_while_the_nodes_run_then_resume_reads_each_nodes_own_result(
    flow: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    proc = start(procs, flow, tmp_path)
    all_started(tmp_path, flow, proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    all_ended(tmp_path, flow)  # the orphaned supervisor runs them to the end
    resumed = gristmill("resume", str(run_dir(tmp_path)))
    check_failed_exactly(tmp_path, flow, resumed.returncode, resumed.stderr)
    assert evidence(tmp_path, "start") == sorted(NODES[flow])  # adopted: none ran twice


def test_one_function_name_in_two_modules_is_refused_before_anything_runs(
    tmp_path: Path
) -> None:
    done = gristmill("run", "gm_collide:same_function_name", "--path", str(tmp_path / "e"),
                     "--gate", str(tmp_path / "g"), "--run-dir", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    assert "two tasks are named 'fit'" in done.stderr
    assert "module gm_collide_a" in done.stderr
    assert "module gm_collide_b" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()
