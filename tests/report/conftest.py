"""Runs the report tests read, made once per session on the local backend (real processes).

``mixed_run``: ``report_flows.mixed`` with one retry per node: hog OOM → retried with
more memory → SUCCEEDED; exit_with exit 3 twice → FAILED; the node after it
UPSTREAM_FAILED; three plain successes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SRC = Path(__file__).resolve().parents[2] / "src"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of a finished ``mixed`` run (see the module docstring)."""
    from report_flows import mixed

    from gristmill.engine.runner import run_workflow
    from gristmill.resources import Policy

    mp = pytest.MonkeyPatch()
    path = [str(FIXTURES), str(SRC), os.environ.get("PYTHONPATH", "")]
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    try:
        root = tmp_path_factory.mktemp("report")
        result = run_workflow(mixed(path=str(root / "lines")), run_dir=root / "runs",
                              policy=Policy(retries=1))
    finally:
        mp.undo()
    assert result.counts == {"DONE": 4, "FAILED": 1, "UPSTREAM_FAILED": 1}, result.counts
    return result.run_dir
