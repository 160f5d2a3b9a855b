"""The reliability suite: faults and bad input, each case asserting its exact outcome.

Cases marked ``@pytest.mark.reliability`` are slow (many seeded trials, real
processes); they run only when the marker expression names them (``nox -s
reliability``, i.e. ``pytest -m reliability tests/reliability``). The rest run with
every ``pytest``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
SRC = HERE.parents[1] / "src"
for _path in (HERE, FIXTURES):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from rel_support import Mounts  # noqa: E402 -- needs HERE on sys.path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the slow cases unless ``-m`` asks for them."""
    if "reliability" in (config.getoption("markexpr", "") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("reliability") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("reliability") is None]


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The reliability tasks, importable here and (through PYTHONPATH) in every child."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    path = [str(FIXTURES), str(SRC), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    monkeypatch.delenv("GRISTMILL_FAULT", raising=False)
    import rel_tasks

    return rel_tasks


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Mounts]:
    made = Mounts(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()
