"""The suite's guard (tests/conftest.py): a unit test cannot reach a real scheduler client."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gristmill.backends.batch.commands import CommandRunner
from gristmill.errors import BackendError


@pytest.mark.parametrize("command", ["sbatch", "qdel", "sacct"])
def test_a_scheduler_client_not_faked_is_a_stub_that_fails_and_is_recorded(command: str) -> None:
    log = Path(os.environ["GM_SCHEDULER_GUARD_LOG"])
    found = shutil.which(command)
    assert found is not None
    assert "scheduler_guard" in found  # ahead of any real client on PATH
    with pytest.raises(BackendError):
        CommandRunner(attempts=1).run([command, "1"])
    done = subprocess.run([command, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 127
    assert "reached the real scheduler command" in done.stderr
    assert log.read_text().split("\n")[:2] == [f"{command} 1", f"{command} --version"]
    log.write_text("")  # this test reached it on purpose; the guard's teardown stays quiet
