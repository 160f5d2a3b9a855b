"""The run store under faults: a disk that fills or turns read-only mid-run, damaged stores.

Mid-run faults: the engine stops with exit 2 and a message that says what failed, where,
why (full or read-only) and how to continue; the store passes SQLite's integrity check
and keeps every change made before the fault; once the disk is fixed, ``resume``
finishes the run. Work that finished before the fault is not run again; an attempt that
ended *while* nothing could be recorded (its result file could not be written either)
runs once more. A damaged store, or one from a newer gristmill, is refused by every
command and left byte for byte as it was.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from rel_support import (
    Mounts,
    assert_user_error,
    digest,
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

from gristmill.cli.app import main
from gristmill.store.db import STORE_NAME, Store
from gristmill.store.schema import SCHEMA_VERSION


def fill(folder: Path) -> Path:
    """Write a ballast file until the disk is full; return it."""
    ballast = folder / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
    return ballast


def started_run(
    engines: list[subprocess.Popen[bytes]], tmp_path: Path, root: Path,
    workflow: str = "effects_and_holders", cores: int = 4,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Six effects done and synced to disk, two holders running; (engine, run dir)."""
    shared = tmp_path / "shared"
    proc = start(engines, "run", f"rel_tasks:{workflow}", "--path", str(shared),
                 "--pidfile", str(tmp_path / "pid"), "--release", str(tmp_path / "release"),
                 "--run-dir", str(root), "--max-cores", str(cores))
    wait_while_running(
        proc, lambda: len(lines(shared)) == 6 and all(
            (tmp_path / f"pid.{i}").exists() for i in (0, 1)), 30, "six effects and two holders")
    time.sleep(1.5)  # the engine records the effects, and syncs them within a second
    return proc, latest(root)


def stopped_by_the_fault(proc: subprocess.Popen[bytes], run_dir: Path, why: str) -> None:
    _, err = proc.communicate(timeout=30)
    message = err.decode()
    assert proc.returncode == 2, message
    assert "Traceback" not in message
    assert f"error: cannot write the run store {run_dir / STORE_NAME}" in message
    assert why in message
    assert f"can be resumed once that is fixed: gristmill resume {run_dir}" in message


def intact_with_effects_done(run_dir: Path) -> None:
    counts, attempts = read_store(run_dir)  # opening runs SQLite's integrity check
    assert counts[("effect", "DONE")] == 6
    assert counts.get(("hold", "DONE"), 0) == 0
    assert sum(a.state == "SUCCEEDED" for a in attempts) == 6


def resumed_exactly(tmp_path: Path, run_dir: Path) -> None:
    """Resume completes; effects ran once; each holder twice (its end was never recorded)."""
    for pid in (pid for i in (0, 1) for pid in pids(tmp_path / f"pid.{i}")):
        assert pid_gone(pid)
    resumed = gristmill("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    seen = lines(tmp_path / "shared")
    assert sorted(seen) == sorted([*map(str, range(6)), *["hold:pid.0", "hold:pid.1"] * 2])
    counts, attempts = read_store(run_dir)
    assert counts == {("effect", "DONE"): 6, ("hold", "DONE"): 2}
    holds = sorted((a.attempt, a.state) for a in attempts if a.task == "hold")
    assert holds == [(1, "LOST"), (1, "LOST"), (2, "SUCCEEDED"), (2, "SUCCEEDED")]


def test_a_disk_that_fills_mid_run_stops_the_engine_cleanly(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], mounts: Mounts
) -> None:
    """The holders' end still fits the store's log (SQLite reuses it once synced); recording
    the 400 nodes they release, in one batch (``--max-cores 128`` lets 512 be in flight),
    does not: that write fails, before any of them could start."""
    disk = mounts.tmpfs("disk", "16m")
    proc, run_dir = started_run(engines, tmp_path, disk / "runs", "gate_and_fan", cores=128)
    ballast = fill(disk)
    (tmp_path / "release").touch()
    stopped_by_the_fault(proc, run_dir, "its disk is full")
    counts, attempts = read_store(run_dir)  # opening runs SQLite's integrity check
    assert counts == {("effect", "DONE"): 6, ("hold", "DONE"): 2, ("quick_effect", "READY"): 400}
    assert sorted({a.task for a in attempts}) == ["effect", "hold"]
    ballast.unlink()
    resumed = gristmill("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    once_each(tmp_path / "shared",
              [*map(str, range(6)), "hold:pid.0", "hold:pid.1", *map(str, range(1000, 1400))])
    counts, attempts = read_store(run_dir)
    assert counts == {("effect", "DONE"): 6, ("hold", "DONE"): 2, ("quick_effect", "DONE"): 400}
    assert {a.state for a in attempts} == {"SUCCEEDED"}


@pytest.mark.reliability
def test_a_disk_that_turns_read_only_mid_run_stops_the_engine_cleanly(
    rt: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], mounts: Mounts
) -> None:
    """ext4 with errors=remount-ro, made to fail: it turns read-only under open files."""
    disk = mounts.ext4("disk", 32)
    proc, run_dir = started_run(engines, tmp_path, disk / "runs")
    device = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(disk)], capture_output=True,
                            text=True, check=True).stdout.strip()
    trigger = Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"
    if not trigger.exists():
        pytest.skip("this kernel cannot inject ext4 errors")
    trigger.write_text("reliability test")
    (tmp_path / "release").touch()
    stopped_by_the_fault(proc, run_dir, "its file system is read-only")
    # Reads of a failed file system are erratic: status may show the run or refuse, but
    # must never call the store empty and advise deleting it (its content is in the WAL).
    status = CliRunner().invoke(main, ["status", str(run_dir)])
    assert status.exit_code in (0, 2), status.output
    assert "delete it" not in status.output
    if status.exit_code == 0:
        assert "effect │         │    6 │     6" in status.stdout
    image = disk.with_suffix(".img")
    mounts.unmount(disk)
    subprocess.run(["e2fsck", "-f", "-y", str(image)], capture_output=True, timeout=60)
    mounts.mount(disk, "-o", "loop", str(image))
    intact_with_effects_done(run_dir)
    resumed_exactly(tmp_path, run_dir)


def test_a_read_only_run_dir_is_refused_and_left_as_it_was(
    rt: ModuleType, tmp_path: Path, mounts: Mounts
) -> None:
    disk = mounts.tmpfs("disk", "8m")
    done = gristmill("run", "rel_tasks:stages", "--path", str(tmp_path / "shared"), "--n", "3",
                     "--run-dir", str(disk / "runs"))
    assert done.returncode == 0, done.stderr
    run_dir = latest(disk / "runs")
    before = {p: digest(p) for p in run_dir.rglob("*") if p.is_file()}
    mounts.remount(disk, "ro")
    for command in (["resume", str(run_dir)], ["run", "rel_tasks:stages", "--path", "x",
                                                 "--n", "3", "--run-dir", str(run_dir)]):
        assert_user_error(CliRunner().invoke(main, command),
                          f"the run directory {run_dir} (owned by root) is on a read-only file "
                          "system, so the run cannot continue there; nothing was changed")
    status = CliRunner().invoke(main, ["status", str(run_dir)])  # an archived run reads fine
    assert status.exit_code == 0, status.output
    assert "quick_effect │    3 │     3" in status.stdout
    assert {p: digest(p) for p in run_dir.rglob("*") if p.is_file()} == before


# -- damaged stores ----------------------------------------------------------------------------


def _truncate_to(size: int) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with open(path, "r+b") as handle:
            handle.truncate(size if size >= 0 else path.stat().st_size + size)

    damage.__name__ = f"truncated to {size}"
    return damage


def _newer(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
    conn.close()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate_to(0), "is empty"),
        pytest.param(_truncate_to(100), "is corrupt or not a gristmill store",
                     marks=pytest.mark.reliability),
        pytest.param(_truncate_to(4096), "is corrupt", marks=pytest.mark.reliability),
        (_truncate_to(-4096), "is corrupt"),
        (_newer, f"has schema version {SCHEMA_VERSION + 1}, newer than this gristmill"),
    ],
    ids=["empty", "header", "first-page", "last-page-cut", "future-schema"],
)
def test_a_damaged_or_newer_store_is_refused_by_every_command_and_never_written(
    rt: ModuleType, tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    shared = tmp_path / "shared"
    done = gristmill("run", "rel_tasks:stages", "--path", str(shared), "--n", "40",
                     "--pause", "0", "--run-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    run_dir = latest(tmp_path / "runs")
    path = run_dir / STORE_NAME
    assert not path.with_name(STORE_NAME + "-wal").exists()  # closed cleanly: one file
    damage(path)
    before = {p: digest(p) for p in run_dir.rglob("*") if p.is_file()}
    commands = [
        ["resume", str(run_dir)],
        ["run", "rel_tasks:stages", "--path", str(shared), "--n", "40", "--pause", "0",
         "--run-dir", str(run_dir)],
        ["status", str(run_dir)],
        ["tasks", str(run_dir)],
        ["cancel", str(run_dir)],
    ]
    for command in commands:
        result = CliRunner().invoke(main, command)
        text = assert_user_error(result, f"the run store {path}", message)
        assert "upgrade gristmill" in text or "left untouched" in text
    after = {p: digest(p) for p in run_dir.rglob("*") if p.is_file()}
    # A SQLite reader may add the (empty) -wal and the -shm index beside the store.
    wal, shm = path.with_name(STORE_NAME + "-wal"), path.with_name(STORE_NAME + "-shm")
    assert set(after) - set(before) <= {wal, shm}
    assert not wal.exists() or wal.stat().st_size == 0
    assert {p: after[p] for p in before} == before
    once_each(shared, [str(i) for i in range(40)])  # nothing ran again
    with pytest.raises(Exception, match="store"):
        Store.open(run_dir, readonly=True)
