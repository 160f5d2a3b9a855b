"""examples/covid_shared_tutorial end to end: installed with its console scripts, run by its CLI.

The example is pip-installed once into a private prefix (as tests/conftest.py does
for its fixture package), so ``shutil.which`` in its templates finds the real
scripts and the local backend runs them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import yaml

import gristmill
from gristmill import runs
from gristmill.store.db import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "covid_shared_tutorial"
SRC = Path(gristmill.__file__).resolve().parents[1]
G = 2**30


@attrs.frozen
class Installed:
    bin_dir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    prefix = tmp_path_factory.mktemp("covid_tutorial_prefix")
    source = tmp_path_factory.mktemp("covid_tutorial_src") / "covid_shared_tutorial"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--disable-pip-version-check", "--no-warn-script-location", "--prefix",
               str(prefix), str(source)]
    if importlib.util.find_spec("hatchling") is not None:
        command.insert(-1, "--no-build-isolation")  # offline and fast
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"pip could not install the tutorial example:\n{done.stdout}\n{done.stderr}")
    found = {p.name: p for p in prefix.rglob("*") if p.name in ("covid-tutorial", "covid_tutorial")}
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(found["covid-tutorial"].parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(found["covid_tutorial"].parent), str(SRC), env.get("PYTHONPATH")])
    )
    return Installed(found["covid-tutorial"].parent, env)


def run_cli(tutorial: Installed, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tutorial.bin_dir / "covid-tutorial"), *args], cwd=cwd, env=tutorial.env,
        capture_output=True, text=True, timeout=120, check=False,
    )


def attempts(run_dir: Path) -> dict[str, list[dict[str, object]]]:
    """Per task name: what each attempt ran and asked for."""
    store = Store.open(run_dir, readonly=True)
    try:
        out: dict[str, list[dict[str, object]]] = {}
        for a in store.attempts():
            out.setdefault(a.task, []).append({"argv": list(a.argv), **dict(a.resources)})
        return out
    finally:
        store.close()


def test_the_tutorial_runs_end_to_end_with_a_yaml_override(
    tutorial: Installed, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("tasks:\n  my_task1: {m_mem_free: 20G, max_runtime_seconds: 3000}\n")
    root = tmp_path / "out"
    done = run_cli(tutorial, tmp_path, "--output-root", str(root), "--n-draws", "3",
                   "--location-id", "6", "--location-id", "102", "--specification", str(spec),
                   "--mark-best", "--production-tag", "2026_01_02", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = runs.list_runs(root)
    # Business outputs: every draw, the fan-in validation, every location.
    assert sorted(p.name for p in (run_dir / "draws").iterdir()) == [
        "draw_0.txt", "draw_1.txt", "draw_2.txt"]
    assert (run_dir / "validation.txt").read_text().startswith("draws: 3\n")
    assert sorted(p.name for p in (run_dir / "forecasts").iterdir()) == [
        "location_102.csv", "location_6.csv"]
    # covid_shared's links and metadata.
    for link in ("latest", "best", "production-runs/2026_01_02"):
        assert (root / link).resolve() == run_dir.resolve()
    old = yaml.safe_load((run_dir / "metadata.yaml").read_text())
    assert old["app_metadata"]["success"] is True
    assert old["app_metadata"]["workflow_specification"]["tasks"]["my_task1"]["memory"] == "20G"
    assert old["provenance"]["jobmon_tool_version"] == "15"
    # The workflow ran through gristmill, with the override and the installed scripts.
    (wf_run,) = runs.list_runs(run_dir / "gristmill")
    meta = runs.load_run_metadata(wf_run)
    assert (meta.status, meta.counts) == ("succeeded", {"DONE": 6})
    assert meta.extra["jobmon_tool"] == {
        "name": "covid_tutorial", "version": "0.1.0", "jobmon_tool_version": "15"}
    ran = attempts(wf_run)
    assert {task: len(a) for task, a in ran.items()} == {"my_task1": 3, "my_task2": 1,
                                                          "my_task3": 2}
    assert {a["mem"] for a in ran["my_task1"]} == {20 * G}
    assert {a["runtime"] for a in ran["my_task1"]} == {3000}
    assert {a["mem"] for a in ran["my_task3"]} == {25 * G}
    fit_argv = ran["my_task1"][0]["argv"]
    assert isinstance(fit_argv, list)
    assert fit_argv[0] == str(tutorial.bin_dir / "covid-tutorial-fit")
    assert fit_argv[1:] == ["--output-version", str(run_dir), "--draw", "0", "-vv"]


def test_a_failing_task_fails_the_application_and_keeps_best(
    tutorial: Installed, tmp_path: Path
) -> None:
    root = tmp_path / "out"
    done = run_cli(tutorial, tmp_path, "--output-root", str(root), "--n-draws", "1",
                   "--location-id", "-1", "--mark-best")
    assert done.returncode == 1
    assert "WorkflowRunError" in done.stderr
    assert "status FAILED" in done.stderr
    (run_dir,) = runs.list_runs(root)
    assert not (root / "best").exists()
    old = yaml.safe_load((run_dir / "metadata.yaml").read_text())
    assert old["app_metadata"]["success"] is False
    assert runs.load_run_metadata(run_dir).status == "failed"
    (wf_run,) = runs.list_runs(run_dir / "gristmill")
    (path,) = (wf_run / "logs" / "my_task3").glob("my_task3_location_-1.*.1.out")
    log = path.read_text()
    assert "location_id must be a location, got -1" in log
