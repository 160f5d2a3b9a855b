"""Fixtures of the backend tests that run work on a real cluster."""

from __future__ import annotations

from typing import Any

import pytest
from gm_testing import fixtures_importable


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch jobs inherit this environment: they must import gristmill and the fixtures."""
    fixtures_importable(monkeypatch)


@pytest.fixture
def tasks(job_env: None) -> Any:
    """The cluster tests' tasks (tests/fixtures/slurm_tasks.py; nothing Slurm-specific)."""
    import slurm_tasks

    return slurm_tasks
