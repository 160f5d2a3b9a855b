"""Fixtures of the CLI tests: the engine's fixture tasks, with the CLI's log sink removed after."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from gm_testing import fixtures_importable
from loguru import logger


@pytest.fixture
def et(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The fixture tasks, importable here and in every child; logging reset afterwards."""
    fixtures_importable(monkeypatch)
    import engine_tasks

    yield engine_tasks
    logger.remove()  # `main` added a sink on CliRunner's stderr, which is closed now
    logger.disable("gristmill")
