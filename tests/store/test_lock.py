"""One engine per run directory: an flock the kernel drops when the holder dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from gristmill.errors import RunDirError
from gristmill.store.lock import LOCK_NAME, RunLock, is_locked, read_holder, verified_engine
from gristmill.worker.procfs import start_time


def test_a_second_engine_is_refused_with_the_holders_host_and_pid(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert is_locked(tmp_path)
    with pytest.raises(RunDirError) as info, RunLock(tmp_path):
        pass
    message = str(info.value)
    assert f"pid {holder.pid} on host {socket.gethostname()}" in message
    assert str(tmp_path) in message
    assert f"gristmill cancel {tmp_path}" in message  # what to do about it
    assert read_holder(tmp_path)["pid"] == holder.pid


def test_the_lock_is_free_once_the_holder_is_killed(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert not is_locked(tmp_path)
    assert read_holder(tmp_path)["pid"] == holder.pid  # stale, and harmless
    with RunLock(tmp_path):
        assert is_locked(tmp_path)
        info = read_holder(tmp_path)
        assert info["pid"] == os.getpid()
        assert info["host"] == socket.gethostname()
    assert not is_locked(tmp_path)


def test_a_task_process_never_keeps_the_run_locked(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        assert not is_locked(tmp_path)  # the lock fd is close-on-exec
    finally:
        child.kill()
        child.wait(timeout=10)


def test_the_lock_file_names_the_holder(tmp_path: Path) -> None:
    assert read_holder(tmp_path) == {}
    assert not is_locked(tmp_path)
    with RunLock(tmp_path):
        data = json.loads((tmp_path / LOCK_NAME).read_text())
        assert set(data) == {"host", "pid", "start", "since"}
    (tmp_path / LOCK_NAME).write_text("not json")
    assert read_holder(tmp_path) == {}


def test_a_run_dir_that_cannot_hold_a_lock_file_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RunDirError, match=r"cannot lock the run directory .*writable"), \
            RunLock(blocker / "run"):
        pass


# -- who holds it: what `gristmill cancel` may signal -------------------------------------------


def test_the_engine_holding_the_lock_is_verified(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        assert verified_engine(tmp_path) == (os.getpid(), "")
        assert read_holder(tmp_path)["start"] == start_time(os.getpid())


def forge(run_dir: Path, **fields: object) -> None:
    holder = read_holder(run_dir)
    holder.update(fields)
    (run_dir / LOCK_NAME).write_text(json.dumps(holder))


@pytest.mark.parametrize("lie", ["pid", "pid and start", "host", "no start", "pid 1"])
def test_a_forged_lock_file_names_no_verified_engine(
    tmp_path: Path, holder: subprocess.Popen[str], victim: subprocess.Popen[bytes], lie: str
) -> None:
    fields: dict[str, object] = {
        "pid": {"pid": victim.pid},
        "pid and start": {"pid": victim.pid, "start": start_time(victim.pid)},
        "host": {"host": "elsewhere"},
        "no start": {"start": None},
        "pid 1": {"pid": 1},
    }[lie]
    assert verified_engine(tmp_path) == (holder.pid, "")
    forge(tmp_path, **fields)
    pid, why = verified_engine(tmp_path)
    assert pid is None
    assert why
    assert victim.poll() is None
