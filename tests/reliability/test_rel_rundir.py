"""A run directory deleted or moved under a running engine, or its store alone deleted.

The engine notices within about a second (it looks at the run directory, the store and
its lock file every cycle and every second of a wait), cancels its live jobs through
the backend (their processes are gone), and exits 1 with a message naming the directory
and what happened: never "succeeded", and nothing written where the directory was. A
run that was moved is continued where it is now; a new run started meanwhile in the same
root gets a new number, never the one the moved run (and its engine) still has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from rel_support import (
    gristmill,
    latest,
    lines,
    once_each,
    pid_gone,
    pids,
    read_store,
    start,
    wait_while_running,
)

from gristmill.store.db import STORE_NAME


def held_run(
    engines: list[subprocess.Popen[bytes]], tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path, list[int]]:
    """Two holders running (they wait for ``release``, at most 60 s), then one effect after
    them; (engine, run directory, the holders' pids)."""
    proc = start(engines, "run", "rel_tasks:holders", "--pidfile", str(tmp_path / "pid"),
                 "--release", str(tmp_path / "release"), "--path", str(tmp_path / "shared"),
                 "--run-dir", str(tmp_path / "runs"))
    wait_while_running(proc, lambda: all(pids(tmp_path / f"pid.{i}") for i in (0, 1)), 60,
                       "both holders to run")
    holders = [pid for i in (0, 1) for pid in pids(tmp_path / f"pid.{i}")]
    return proc, latest(tmp_path / "runs"), holders


def stopped_because(proc: subprocess.Popen[bytes], holders: list[int], message: str) -> None:
    """Exit 1 with ``message``; no success reported; the holders killed, not released."""
    out, err = proc.communicate(timeout=45)  # well before the holders would end by themselves
    stderr, stdout = err.decode(), out.decode()
    assert proc.returncode == 1, stderr
    assert message in stderr, stderr
    assert "the engine cancelled its live jobs and stopped" in stderr
    assert "Traceback" not in stderr
    assert "succeeded" not in stdout + stderr
    for pid in holders:
        assert pid_gone(pid), f"holder {pid} still runs"


def _moved(run_dir: Path) -> Path:
    return run_dir.with_name("moved")


CHANGES: dict[str, tuple[Callable[[Path], object], str]] = {
    "deleted": (shutil.rmtree, "error: the run directory {run_dir} was deleted or moved away "
                               "while the engine ran it"),
    "moved": (lambda run_dir: run_dir.rename(_moved(run_dir)),
              "error: the run directory {run_dir} was deleted or moved away while the engine "
              "ran it; the engine cancelled its live jobs and stopped; if it was moved, continue "
              "it where it is now with gristmill resume NEW_PATH"),
    "store deleted": (lambda run_dir: (run_dir / STORE_NAME).unlink(),
                      "error: its run store {run_dir}/gristmill.db was deleted or moved away "
                      "while the engine ran it"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_engine_stops_when_its_run_directory_or_store_goes(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], change: str
) -> None:
    proc, run_dir, holders = held_run(engines, tmp_path)
    act, message = CHANGES[change]
    act(run_dir)
    stopped_because(proc, holders, message.format(run_dir=run_dir))
    assert lines(tmp_path / "shared") == []  # the effect after the holders never ran
    if change != "store deleted":
        assert not run_dir.exists()  # nothing made again where the run was
    if change == "moved":  # the store moved with it, cancellations recorded: it continues
        moved = _moved(run_dir)
        counts, attempts = read_store(moved)
        assert counts == {("hold", "CANCELLED"): 2, ("effect", "PENDING"): 1}
        assert sorted(a.state for a in attempts) == ["CANCELLED", "CANCELLED"]
        (tmp_path / "release").touch()
        resumed = gristmill("resume", str(moved))
        assert resumed.returncode == 0, resumed.stderr
        assert f"run {moved}: succeeded" in resumed.stdout
        once_each(tmp_path / "shared", ["hold:pid.0", "hold:pid.1", "99"])


def test_a_new_run_never_takes_the_number_of_a_run_moved_away_under_its_engine(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    """The moved run's engine may still be alive: the new run gets the next number, and the
    old engine, finding its directory gone, stops without touching the new one."""
    proc, run_dir, holders = held_run(engines, tmp_path)
    run_dir.rename(_moved(run_dir))
    made = gristmill("run", "rel_tasks:stages", "--path", str(tmp_path / "effects"), "--n", "2",
                     "--run-dir", str(tmp_path / "runs"))
    assert made.returncode == 0, made.stderr
    new = latest(tmp_path / "runs")
    assert new.parent == run_dir.parent
    assert new.name != run_dir.name
    number = int(run_dir.name.rpartition(".")[2])
    assert new.name == f"{run_dir.name.rpartition('.')[0]}.{number + 1:02d}"
    stopped_because(proc, holders, f"the run directory {run_dir} was deleted or moved away")
    assert not run_dir.exists()
    counts, _ = read_store(new)
    assert counts == {("quick_effect", "DONE"): 2}
    assert sorted(os.listdir(new / "logs")) == ["quick_effect"]
