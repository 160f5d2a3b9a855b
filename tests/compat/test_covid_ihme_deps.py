"""ihme_deps: hierarchies from files work; database and jobmon calls fail clearly, when called."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from gristmill.compat.covid_shared import ihme_deps

HIERARCHY = "location_id,most_detailed\n1,0\n6,1\n102,1\n"


def test_importing_it_needs_neither_pandas_nor_ihme_packages() -> None:
    code = ("import sys; from gristmill.compat.covid_shared import ihme_deps; "
            "print(sorted(m for m in ('pandas', 'db_queries', 'jobmon') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_a_hierarchy_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "hierarchy.csv"
    path.write_text(HIERARCHY)
    hierarchy = ihme_deps.load_location_hierarchy(location_file=path)
    assert hierarchy[hierarchy.most_detailed == 1].location_id.unique().tolist() == [6, 102]
    with pytest.raises(FileNotFoundError, match="no location hierarchy file"):
        ihme_deps.load_location_hierarchy(location_file=tmp_path / "missing.csv")


def test_a_location_set_version_from_the_exported_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "35.csv").write_text(HIERARCHY)
    monkeypatch.setenv(ihme_deps.HIERARCHIES_ENV, str(tmp_path))
    assert len(ihme_deps.load_location_hierarchy(35)) == 3


def test_a_location_set_version_without_the_database_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ihme_deps.HIERARCHIES_ENV, str(tmp_path))
    with pytest.raises(ihme_deps.IhmeDependencyError) as caught:
        ihme_deps.load_location_hierarchy(771)
    message = str(caught.value)
    assert "needs db_queries" in message
    assert "location_file=" in message
    assert f"$GRISTMILL_COVID_SHARED_HIERARCHIES/771.csv (not found in {tmp_path})" in message
    assert isinstance(caught.value, ModuleNotFoundError)  # what covid_shared raised
    with pytest.raises(ValueError, match="exactly one"):
        ihme_deps.load_location_hierarchy(35, tmp_path / "h.csv")


@pytest.mark.skipif(importlib.util.find_spec("jobmon") is not None, reason="jobmon is installed")
def test_jobmon_names_resolve_on_use_and_fail_only_when_called() -> None:
    from gristmill.compat.covid_shared.ihme_deps import Tool, WorkflowRunStatus

    for stand_in, package in ((Tool, "jobmon"), (WorkflowRunStatus, "jobmon")):
        with pytest.raises(ihme_deps.IhmeDependencyError, match=f"needs {package}"):
            stand_in()
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ihme_deps.Nope  # noqa: B018
