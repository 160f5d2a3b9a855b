"""One engine per run directory: an flock the kernel drops when the holder dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gristmill.errors import RunDirError
from gristmill.store.lock import LOCK_NAME, RunLock, is_locked, read_holder

HOLD = (
    "import sys; from pathlib import Path; from gristmill.store.lock import RunLock\n"
    "with RunLock(Path(sys.argv[1])):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of ``tmp_path`` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


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
        assert set(data) == {"host", "pid", "since"}
    (tmp_path / LOCK_NAME).write_text("not json")
    assert read_holder(tmp_path) == {}


def test_a_run_dir_that_cannot_hold_a_lock_file_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RunDirError, match=r"cannot lock the run directory .*writable"), \
            RunLock(blocker / "run"):
        pass
