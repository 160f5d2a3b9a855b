"""Attempt results and their result files: round trip, atomic writes, corrupt files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gristmill.backends.base import JobStatus
from gristmill.errors import BackendError
from gristmill.states import JobState
from gristmill.worker.result import AttemptResult, read_result, write_result

MB = 2**20


def test_result_files_round_trip_atomically(tmp_path: Path) -> None:
    result = AttemptResult(JobState.OOM, None, 9, 480 * MB, 1.5, "node1", 100.0, 101.5,
                           "exceeded memory limit 100M (peak 480M)")
    path = tmp_path / "deep" / "r.json"
    assert read_result(path) is None
    write_result(path, result)
    assert read_result(path) == result
    assert os.listdir(path.parent) == ["r.json"]  # no temporary left behind
    assert AttemptResult.from_json(result.to_json()) == result
    assert JobStatus.from_result(result) == JobStatus(JobState.OOM, None, 9, 480 * MB, 1.5, "node1",
                                           "exceeded memory limit 100M (peak 480M)")


def test_a_corrupt_result_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"state": "SUCCEEDED"')
    with pytest.raises(BackendError, match=str(path)):
        read_result(path)
    path.write_text(json.dumps({"state": "RUNNING", "exit_code": 0}))
    with pytest.raises(BackendError, match="corrupt"):
        read_result(path)


def test_only_final_states_make_a_result() -> None:
    with pytest.raises(ValueError, match="state"):
        AttemptResult(JobState.RUNNING, 0, None, None, 0.0, "h", 0.0, 0.0, "")
