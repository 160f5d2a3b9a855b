"""Attempt results and their result files: round trip, atomic writes, corrupt files, and
the attempt each result names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gristmill.backends.base import JobStatus
from gristmill.errors import BackendError
from gristmill.states import JobState
from gristmill.worker.result import (
    AttemptResult,
    ResultMismatchError,
    read_result,
    write_result,
)

MB = 2**20


def test_result_files_round_trip_atomically(tmp_path: Path) -> None:
    result = AttemptResult(JobState.OOM, None, 9, 480 * MB, 1.5, "node1", 100.0, 101.5,
                           "exceeded memory limit 100M (peak 480M)", cpu_time=0.75)
    path = tmp_path / "deep" / "r.json"
    assert read_result(path, key="abc.1") is None
    write_result(path, result, key="abc.1")
    assert read_result(path, key="abc.1") == result.evolve(key="abc.1")
    assert os.listdir(path.parent) == ["r.json"]  # no temporary left behind
    assert AttemptResult.from_json(result.to_json()) == result
    assert JobStatus.from_result(result) == JobStatus(JobState.OOM, None, 9, 480 * MB, 1.5, "node1",
                                           "exceeded memory limit 100M (peak 480M)", 0.75,
                                           "worker")


def test_a_result_without_cpu_time_reads_as_unmeasured() -> None:
    """Results written before CPU time was measured still read; a bad value is refused."""
    old = {"state": "SUCCEEDED", "exit_code": 0, "signal": None, "peak_rss": None,
           "elapsed": 1.0, "host": "n", "started": 1.0, "ended": 2.0, "reason": "exit code 0"}
    result = AttemptResult.from_dict(old)
    assert result.cpu_time is None
    assert "cpu_time" not in result.to_dict()
    assert JobStatus.from_result(result).usage_source is None  # nothing measured
    assert AttemptResult.from_dict({**old, "cpu_time": 2}).cpu_time == 2.0
    with pytest.raises(ValueError, match="cpu_time"):
        AttemptResult.from_dict({**old, "cpu_time": "2s"})


def test_a_corrupt_result_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"state": "SUCCEEDED"')
    with pytest.raises(BackendError, match=str(path)):
        read_result(path, key=None)
    path.write_text(json.dumps({"state": "RUNNING", "exit_code": 0}))
    with pytest.raises(BackendError, match="corrupt"):
        read_result(path, key=None)
    good = AttemptResult(JobState.SUCCEEDED, 0, None, None, 1.0, "h", 1.0, 2.0, "", "k.1")
    path.write_text(json.dumps({**good.to_dict(), "key": 7}))
    with pytest.raises(BackendError, match="key"):
        read_result(path, key="k.1")


def test_a_result_names_its_attempt_and_is_refused_for_another(tmp_path: Path) -> None:
    """Written with the attempt's key, read back only for that attempt: a reader expecting
    another attempt gets ResultMismatchError (a BackendError), never the outcome."""
    path = tmp_path / "r.json"
    done = AttemptResult(JobState.SUCCEEDED, 0, None, None, 1.0, "h", 1.0, 2.0, "exit code 0")
    write_result(path, done, key="0123456789abcdef.2")
    assert json.loads(path.read_text())["key"] == "0123456789abcdef.2"
    assert read_result(path, key="0123456789abcdef.2") == done.evolve(
        key="0123456789abcdef.2")
    for other in ("0123456789abcdef.1", "fedcba9876543210.2"):
        with pytest.raises(ResultMismatchError, match=f"of attempt {other}") as caught:
            read_result(path, key=other)
        assert isinstance(caught.value, BackendError)
        assert "0123456789abcdef.2" in str(caught.value)
    assert read_result(path, key=None) is not None  # a reader that knows no attempt


def test_a_result_of_gristmill_0_1_names_no_attempt_and_is_read(tmp_path: Path) -> None:
    """0.1 wrote no key: the result comes back with ``key=None`` for the caller to judge."""
    path = tmp_path / "r.json"
    old = {"state": "FAILED", "exit_code": 3, "signal": None, "peak_rss": None,
           "elapsed": 0.5, "host": "h", "started": 1.0, "ended": 1.5, "reason": "exit code 3"}
    path.write_text(json.dumps(old))
    result = read_result(path, key="0123456789abcdef.1")
    assert result is not None
    assert (result.state, result.key) == (JobState.FAILED, None)
    assert "key" not in result.to_dict()  # what 0.1 wrote, 0.1 can read back


def test_only_final_states_make_a_result() -> None:
    with pytest.raises(ValueError, match="state"):
        AttemptResult(JobState.RUNNING, 0, None, None, 0.0, "h", 0.0, 0.0, "")


def test_a_start_the_machine_had_no_resources_for_is_a_lost_result(tmp_path: Path) -> None:
    """LOST is a result a wrapper may write (its node lacked descriptors or processes):
    the engine then runs the attempt again without spending the task's retries."""
    lost = AttemptResult(JobState.LOST, None, None, None, 0.0, "node1", 1.0, 1.0,
                         "cannot start fit: [Errno 11] Resource temporarily unavailable")
    write_result(tmp_path / "r.json", lost, key="abc.1")
    back = read_result(tmp_path / "r.json", key="abc.1")
    assert back is not None
    assert JobStatus.from_result(back).state is JobState.LOST


def test_a_result_is_a_frozen_value() -> None:
    import pickle

    result = AttemptResult(JobState.FAILED, 3, None, None, 1.0, "h", 1.0, 2.0, "exit code 3",
                           key="k.1")
    same = AttemptResult(JobState.FAILED, 3, None, None, 1.0, "h", 1.0, 2.0, "exit code 3",
                         key="k.1")
    assert result == same
    assert hash(result) == hash(same)
    assert result != result.evolve(key="k.2")
    assert pickle.loads(pickle.dumps(result)) == result
    assert repr(result).startswith("AttemptResult(state=<JobState.FAILED")
    with pytest.raises(AttributeError, match="frozen"):
        result.state = JobState.SUCCEEDED  # type: ignore[misc]
    with pytest.raises(ValueError, match="an attempt ends"):
        result.evolve(state=JobState.RUNNING)
    with pytest.raises(TypeError, match="no field colour"):
        result.evolve(colour="red")
