"""Two engines started on one run directory at once: exactly one proceeds.

The others exit 2 at once, naming the engine that holds the run (pid and host) and
how to stop it, having changed nothing; the winner (held until they are gone, so that
all of them really meet it) finishes the run with each side effect exactly once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from rel_support import latest, once_each, read_store, start, wait_for


def run_args(tmp_path: Path, run_dir: Path) -> list[str]:
    return ["run", "rel_tasks:holders", "--pidfile", str(tmp_path / "pid"), "--release",
            str(tmp_path / "release"), "--path", str(tmp_path / "shared"), "--run-dir",
            str(run_dir)]


def unstarted_run(engines: list[subprocess.Popen[bytes]], tmp_path: Path) -> Path:
    """A run (two holders, then an effect) whose engine died before it submitted anything."""
    proc = start(engines, *run_args(tmp_path, tmp_path / "runs"),
                 env={"GRISTMILL_FAULT": "submit:1"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -9, err.decode()
    return latest(tmp_path / "runs")


def race(engines: list[subprocess.Popen[bytes]], tmp_path: Path, *commands: list[str]) -> None:
    """Start every command at once; exactly one engine proceeds, the others are refused.

    The run holds until every other engine has exited, so they all meet the winner.
    """
    procs = [start(engines, *command) for command in commands]
    wait_for(lambda: sum(p.poll() is None for p in procs) <= 1, 60, "all but one to exit")
    (tmp_path / "release").touch()
    outcomes = [(proc, *proc.communicate(timeout=120)) for proc in procs]
    winners = [proc for proc, _, _ in outcomes if proc.returncode == 0]
    assert len(winners) == 1, [(p.returncode, e.decode()) for p, _, e in outcomes]
    (winner,) = winners
    for proc, out, err in outcomes:
        if proc is winner:
            assert "succeeded (DONE=3)" in out.decode()
            continue
        message = err.decode()
        assert proc.returncode == 2, message
        assert out == b""
        assert "Traceback" not in message
        assert "is in use by another engine" in message
        assert f"(pid {winner.pid} on host {os.uname().nodename}, since " in message
        assert "wait for it to finish or stop it with 'gristmill cancel" in message
    once_each(tmp_path / "shared", ["hold:pid.0", "hold:pid.1", "99"])
    counts, _ = read_store(latest(tmp_path / "runs"))
    assert counts == {("hold", "DONE"): 2, ("effect", "DONE"): 1}


@pytest.mark.parametrize(
    "how", ["resume", pytest.param("run --run-dir", marks=pytest.mark.reliability)]
)
def test_two_engines_at_once_on_one_run_exactly_one_proceeds(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], how: str
) -> None:
    run_dir = unstarted_run(engines, tmp_path)
    command = ["resume", str(run_dir)] if how == "resume" else run_args(tmp_path, run_dir)
    race(engines, tmp_path, command, command)


@pytest.mark.reliability
@pytest.mark.parametrize("trial", range(10))
def test_many_engines_at_once_exactly_one_proceeds(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], trial: int
) -> None:
    run_dir = unstarted_run(engines, tmp_path)
    race(engines, tmp_path, *[["resume", str(run_dir)]] * 4)
