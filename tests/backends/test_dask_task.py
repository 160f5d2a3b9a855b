"""What a dask worker runs for one attempt (``backends/dask/task.py``), without a cluster:
dask may run a task twice, and only the attempt's own result stands in for a second run."""

from __future__ import annotations

from pathlib import Path

from gristmill.backends.dask.task import AttemptSpec, run_attempt
from gristmill.states import JobState
from gristmill.worker.result import AttemptResult, read_result, write_result


def spec(tmp_path: Path, attempt: str) -> AttemptSpec:
    return AttemptSpec(
        key=f"t-{attempt}-x", attempt=attempt,
        argv=("sh", "-c", f"echo ran >> {tmp_path / 'ran'}"),
        stdout=str(tmp_path / "out"), stderr=str(tmp_path / "err"),
        result=str(tmp_path / "r.json"), mem=None, runtime=None, env=(), cwd=None, grace=1.0,
    )


def test_a_rerun_returns_the_attempts_own_result_without_running_again(tmp_path: Path) -> None:
    first = run_attempt(spec(tmp_path, "0123456789abcdef.1"))
    assert (first["state"], first["key"]) == ("SUCCEEDED", "0123456789abcdef.1")
    assert run_attempt(spec(tmp_path, "0123456789abcdef.1")) == first
    assert (tmp_path / "ran").read_text() == "ran\n"  # once


def test_a_result_of_another_attempt_does_not_stand_in_for_this_one(tmp_path: Path) -> None:
    """A file naming another attempt (its FAILED no less than a SUCCEEDED) is not this
    attempt's: it runs, and its own result replaces the file."""
    other = AttemptResult(JobState.SUCCEEDED, 0, None, None, 0.1, "h", 1.0, 1.1, "exit code 0")
    write_result(tmp_path / "r.json", other, key="fedcba9876543210.1")
    done = run_attempt(spec(tmp_path, "0123456789abcdef.1"))
    assert done["key"] == "0123456789abcdef.1"
    assert (tmp_path / "ran").read_text() == "ran\n"
    result = read_result(tmp_path / "r.json", key="0123456789abcdef.1")
    assert result is not None
    assert result.key == "0123456789abcdef.1"
