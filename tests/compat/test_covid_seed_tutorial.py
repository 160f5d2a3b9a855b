"""covid_shared's workflow tutorial, imports changed only, run through its own command line.

tests/compat/seed_tutorial is the tutorial's package as its document builds it (steps
1-7: ``setup.py`` with four console scripts, three click tasks, ``workflow.py``,
``main.py``, ``cli.py``), its typos fixed and ``covid_shared`` imported from
``gristmill.compat.covid_shared``. It is pip-installed into a private prefix, so the
templates' ``shutil.which`` finds its real scripts, and runs on the local backend
against a site root of its own (``GRISTMILL_COVID_SHARED_ROOT``), with the location
hierarchy served from a file (``GRISTMILL_COVID_SHARED_HIERARCHIES``). The run goes to
success, then to a failure (an input missing), then through ``gristmill resume``, and
the links and ``metadata.yaml`` are checked at each step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

import gristmill
from gristmill import runs
from gristmill.store.db import Store

PACKAGE = Path(__file__).resolve().parent / "seed_tutorial"
SRC = Path(gristmill.__file__).resolve().parents[1]
HIERARCHY = "location_id,parent_id,most_detailed,location_name\n1,1,0,Global\n6,1,1,China\n" \
            "102,1,1,United States\n"
#: covid_shared's metadata.yaml of an application run by the tutorial's cli, key for key.
METADATA_KEYS = ["app_metadata", "output_root", "provenance", "run_arguments", "run_time",
                 "start_time", "tool_name"]
APP_KEYS = ["main_function", "run_arguments", "success"]


@attrs.frozen
class Installed:
    bin_dir: Path
    pythonpath: str


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    prefix = tmp_path_factory.mktemp("seed_prefix")
    source = tmp_path_factory.mktemp("seed_src") / "seed_tutorial"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--no-warn-script-location", "--prefix", str(prefix),
         str(source)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"pip could not install the tutorial package:\n{done.stdout}\n{done.stderr}")
    found = {p.name: p for p in prefix.rglob("*") if p.name in ("my_cli", "my_package")}
    return Installed(found["my_cli"].parent, str(found["my_package"].parent))


@attrs.frozen
class Site:
    share: Path
    env: dict[str, str]
    bin_dir: Path

    @property
    def output_root(self) -> Path:
        return self.share / "seir-fit"  # paths.SEIR_FIT_ROOT, the cli's default

    def inputs(self, location_id: int) -> Path:
        return self.share / "model-inputs" / "best" / f"location_{location_id}.csv"

    def run(self, *args: str, program: str = "my_cli") -> subprocess.CompletedProcess[str]:
        command = ([str(self.bin_dir / program)] if program == "my_cli"
                   else [sys.executable, "-m", "gristmill.cli"])
        return subprocess.run([*command, *args], cwd=self.share, env=self.env,
                              capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def site(installed: Installed, tmp_path: Path) -> Site:
    share = tmp_path / "share"
    inputs = share / "model-inputs" / "2026_01_01.01"
    inputs.mkdir(parents=True)
    (share / "model-inputs" / "best").symlink_to(inputs.name)
    for location_id in (6, 102):
        (inputs / f"location_{location_id}.csv").write_text(f"location,{location_id}\n")
    hierarchies = tmp_path / "hierarchies"
    hierarchies.mkdir()
    (hierarchies / "35.csv").write_text(HIERARCHY)
    env = dict(os.environ)
    env.update({
        "PATH": os.pathsep.join([str(installed.bin_dir), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [installed.pythonpath, str(SRC), env.get("PYTHONPATH")])),
        "GRISTMILL_COVID_SHARED_ROOT": str(share),
        "GRISTMILL_COVID_SHARED_HIERARCHIES": str(hierarchies),
    })
    return Site(share, env, installed.bin_dir)


def metadata(run_dir: Path) -> dict[str, Any]:
    data = yaml.safe_load((run_dir / "metadata.yaml").read_text())
    assert isinstance(data, dict)
    return data


def links(root: Path) -> dict[str, str]:
    """Each link under the output root and the run it names."""
    found = {name: root / name for name in ("latest", "best")}
    production = root / "production-runs"
    found.update({f"production-runs/{p.name}": p for p in production.iterdir()})
    return {name: os.path.realpath(path) for name, path in found.items() if path.is_symlink()}


def attempts(run_dir: Path) -> dict[str, int]:
    store = Store.open(run_dir, readonly=True)
    try:
        out: dict[str, int] = {}
        for a in store.attempts():
            out[a.job_name] = out.get(a.job_name, 0) + 1
        return out
    finally:
        store.close()


def test_the_tutorial_succeeds_fails_and_is_finished_by_gristmill_resume(site: Site) -> None:
    # 1. Success: outputs, links, and covid_shared's metadata with a finished provenance.
    done = site.run("--location-set-version-id", "35", "--n_draws", "3", "-b", "-p",
                    "2026_01_02", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    root = site.output_root
    (first,) = runs.list_runs(root)
    assert sorted(p.name for p in (first / "draws").iterdir()) == [
        "draw_0.txt", "draw_1.txt", "draw_2.txt"]
    assert (first / "validation.txt").read_text() == "draws: 3\n"
    # Only the most detailed locations of the hierarchy file are forecast.
    assert sorted(p.name for p in (first / "forecasts").iterdir()) == [
        "location_102.csv", "location_6.csv"]
    assert links(root) == {"latest": str(first), "best": str(first),
                           "production-runs/2026_01_02": str(first)}
    good = metadata(first)
    assert list(good) == METADATA_KEYS
    assert sorted(good["app_metadata"]) == APP_KEYS
    assert good["app_metadata"]["success"] is True
    assert good["tool_name"] == "my_package.cli:my_main_entry_point"
    assert good["output_root"] == str(first)
    assert good["app_metadata"]["run_arguments"]["location_set_version_id"] == "35"
    assert good["provenance"]["status"] == "succeeded"
    assert good["provenance"]["ended_at"] is not None
    assert good["provenance"]["extra"]["covid_shared"] == {
        "mark_best": True, "production_tag": "2026_01_02", "quick": None}
    assert (first / "gristmill").is_dir()

    # 2. Failure: location 102's input is missing. Nothing moves; the request is recorded.
    site.inputs(102).rename(site.inputs(102).with_suffix(".away"))
    failed = site.run("--location-set-version-id", "35", "--n_draws", "3", "-b", "-p",
                      "2026_01_03")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "WorkflowRunError" in failed.stderr
    first_, second = runs.list_runs(root)
    assert first_ == first
    assert links(root) == {"latest": str(first), "best": str(first),
                           "production-runs/2026_01_02": str(first)}
    bad = metadata(second)
    assert list(bad) == METADATA_KEYS
    assert sorted(bad["app_metadata"]) == sorted([*APP_KEYS, "error_info"])
    assert bad["app_metadata"]["success"] is False
    error = bad["app_metadata"]["error_info"]
    assert error["exception_type"] == "gristmill.compat.covid_shared.errors.WorkflowRunError"
    assert "status FAILED" in error["exception_value"]
    assert bad["provenance"]["status"] == "failed"
    assert bad["provenance"]["ended_at"] is not None
    (wf_run,) = runs.list_runs(second / "gristmill")
    assert bad["provenance"]["extra"]["covid_shared"] == {
        "mark_best": True, "production_tag": "2026_01_03", "quick": None,
        "resumable_run": str(wf_run)}
    assert runs.load_run_metadata(second).status == "failed"

    # gristmill status finds the run inside the version directory, and says which.
    status = site.run("status", str(second), program="gristmill")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"its latest gristmill run is {wf_run}" in status.stderr
    assert "my_task3_location_102" in status.stdout

    # 3. The input is back: gristmill resume of the version directory finishes the run,
    #    then the application's metadata, then its links, as a first-time success would.
    site.inputs(102).with_suffix(".away").rename(site.inputs(102))
    resumed = site.run("resume", str(second), program="gristmill")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"its latest gristmill run is {wf_run}" in resumed.stderr
    assert attempts(wf_run) == {"my_task1_draw_0": 1, "my_task1_draw_1": 1, "my_task1_draw_2": 1,
                                "my_task2": 1, "my_task3_location_6": 1,
                                "my_task3_location_102": 2}
    assert (second / "forecasts" / "location_102.csv").read_text() == "location,102\n"
    assert links(root) == {"latest": str(second), "best": str(second),
                           "production-runs/2026_01_02": str(first),
                           "production-runs/2026_01_03": str(second)}
    fixed = metadata(second)
    assert list(fixed) == METADATA_KEYS
    assert sorted(fixed["app_metadata"]) == APP_KEYS
    assert fixed["app_metadata"]["success"] is True
    assert fixed["start_time"] == bad["start_time"]
    provenance = fixed["provenance"]
    assert (provenance["status"], provenance["started_at"]) == (
        "succeeded", bad["provenance"]["started_at"])
    assert provenance["ended_at"] >= bad["provenance"]["ended_at"]
    assert len(provenance["history"]) == 1
    assert "resume" in provenance["history"][0]["argv"]
    assert provenance["extra"]["covid_shared"] == {
        "mark_best": True, "production_tag": "2026_01_03", "quick": None,
        "completed_by_resume": str(wf_run)}
    assert runs.load_run_metadata(second).to_dict() == provenance

    # Resuming again changes nothing: the application is finished once.
    (root / "latest").unlink()
    (root / "latest").symlink_to(first.name)  # as if a later application had moved it
    again = site.run("resume", str(second), program="gristmill")
    assert again.returncode == 0, again.stdout + again.stderr
    assert os.path.realpath(root / "latest") == str(first)
    assert metadata(second)["provenance"] == provenance
