"""Tests for gristmill.store.paths: paths from a store are used only inside the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gristmill.store.paths import confined


def test_paths_under_the_run_are_confined_and_others_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "runs" / "2026_12_07.01"
    (run / "logs").mkdir(parents=True)
    assert confined(run, run / "logs" / "a.result.json")
    assert confined(run, str(run / "logs" / "missing" / "x"))  # need not exist yet
    assert not confined(run, "/etc/passwd")
    assert not confined(run, run / "logs" / ".." / ".." / "elsewhere")
    assert not confined(run, tmp_path / "runs" / "2026_12_07.010" / "x")  # a prefix, not a parent
    (run / "logs" / "out").symlink_to("/tmp")
    assert not confined(run, run / "logs" / "out" / "x")  # a link out of the run
    monkeypatch.chdir(tmp_path)
    assert confined(run, os.path.join("runs", "2026_12_07.01", "logs", "b"))  # relative: from cwd
