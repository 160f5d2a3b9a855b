"""Tests for ``gristmill spec`` and ``gristmill resources --suggest``."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from gm_spec_docs import documents
from gm_testing import attempts
from hypothesis import HealthCheck, given, settings

from gristmill.cli.app import main
from gristmill.cli.spec import suggest
from gristmill.resources import format_memory, parse_duration, parse_memory
from gristmill.spec.load import Spec

SEIIR = ["gm_flows:seiir", "--version", "v1", "--n-draws", "4", "--location-ids", "1,2"]


def gristmill(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def latest(root: Path) -> Path:
    return (root / "latest").resolve()


def test_spec_shows_decorator_values_merged_with_a_spec_file(tmp_path: Path) -> None:
    spec = tmp_path / "site.yaml"
    spec.write_text("default: {retries: 2}\ntasks:\n  fit: {mem: 12G, queue: long.q}\n")
    defaults = yaml.safe_load(gristmill("spec", *SEIIR, "--defaults").output)
    merged_result = gristmill("spec", *SEIIR, "--spec", str(spec))
    assert merged_result.exit_code == 0, merged_result.output
    merged = yaml.safe_load(merged_result.output)
    assert defaults["tasks"]["fit"]["mem"] == "10G"
    assert merged["tasks"]["fit"]["mem"] == "12G"
    assert merged["tasks"]["fit"]["queue"] == "long.q"
    assert merged["tasks"]["fit"]["retries"] == 2
    assert merged["tasks"]["validate"]["retries"] == 2
    assert "queue" not in merged["tasks"]["validate"]


def test_spec_with_an_unknown_task_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "site.yaml"
    spec.write_text("tasks:\n  fitt: {mem: 1G}\n")
    result = CliRunner().invoke(main, ["spec", *SEIIR, "--spec", str(spec)])
    assert result.exit_code == 2
    assert "fitt" in result.output


def spec_of(spec_file: Path, *args: str) -> Result:
    result = gristmill("spec", *SEIIR, "--spec", str(spec_file), *args)
    assert result.exit_code == 0, result.output
    return result


def test_what_spec_prints_loads_back_unchanged(tmp_path: Path) -> None:
    spec = tmp_path / "site.yaml"
    spec.write_text("default: {retries: 1, runtime: 01:30:00}\ntasks:\n"
                    "  fit: {mem: 2G, on_oom: {mem: x2, max: 1G}, on_timeout: {runtime: 2}}\n")

    printed = spec_of(spec).stdout
    again = tmp_path / "again.yaml"
    again.write_text(printed)

    assert yaml.safe_load(printed)["tasks"]["fit"] == {
        "mem": "2G", "cores": 1, "runtime": "1h30m", "retries": 1,
        "on_oom": {"mem": "x2", "max": "1G"}, "on_timeout": {"runtime": "x2"},
    }
    assert spec_of(again).stdout == printed
    assert Spec.from_dict(yaml.safe_load(printed)).tasks["fit"].policy.on_oom is not None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_spec_output_is_a_fixed_point_for_any_spec(document: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp, "first.yaml"), Path(tmp, "second.yaml")
        first.write_text(yaml.safe_dump(document))
        printed = spec_of(first).stdout
        second.write_text(printed)

        assert spec_of(second).stdout == printed


def test_defaults_output_loads_back_as_a_spec(tmp_path: Path) -> None:
    printed = gristmill("spec", *SEIIR, "--defaults").stdout
    spec = tmp_path / "defaults.yaml"
    spec.write_text(printed)

    assert spec_of(spec).stdout == printed


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("tasks: {fit: {mem: 100}}", "tasks.fit.mem: 100 has no unit"),
        ("tasks: {fit: {m_mem_free: '100'}}", "tasks.fit.m_mem_free: '100' has no unit"),
        ("default: {on_oom: {mem: x2, max: 64}}", "default.on_oom.max: 64 has no unit"),
    ],
)
def test_a_memory_size_without_a_unit_exits_2_naming_its_path(
    tmp_path: Path, text: str, path: str
) -> None:
    spec = tmp_path / "site.yaml"
    spec.write_text(text + "\n")

    result = CliRunner().invoke(main, ["spec", *SEIIR, "--spec", str(spec)])

    assert result.exit_code == 2
    assert f"{spec}: {path}; a bare number would mean" in result.output
    assert "almost never meant" in result.output


@pytest.mark.parametrize("retries", ["", "retries: 0, "])
def test_escalation_without_retries_warns(tmp_path: Path, retries: str) -> None:
    spec = tmp_path / "site.yaml"
    spec.write_text(f"tasks:\n  fit: {{{retries}on_oom: {{mem: x2}}}}\n")

    result = spec_of(spec)

    assert "WARNING" in result.stderr
    assert "task 'fit': on_oom (mem x2) does nothing while retries is 0" in result.stderr
    assert "WARNING" not in result.stdout  # the spec printed stays a clean file
    assert "validate" not in result.stderr


def test_escalation_with_retries_does_not_warn(tmp_path: Path) -> None:
    spec = tmp_path / "site.yaml"
    spec.write_text("tasks:\n  fit: {retries: 1, on_oom: {mem: x2}, on_timeout: {runtime: x2}}\n")

    assert spec_of(spec).stderr == ""


def test_suggest_covers_the_largest_successful_attempt_with_headroom() -> None:
    rows = [("fit", 100 * 2**20, 30.0), ("fit", 200 * 2**20, 100.0), ("validate", None, 5.0)]
    table = suggest(rows, mem_headroom=1.25, time_headroom=1.5)
    assert table["fit"] == {"mem": "250M", "runtime": "00:03:00"}
    assert table["validate"] == {"runtime": "00:01:00"}


def test_resources_suggest_of_a_directory_that_is_no_run_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["resources", str(tmp_path), "--suggest"])
    assert result.exit_code == 2
    assert "not a gristmill run directory" in result.output


def test_resources_suggest_derives_mem_and_runtime_from_what_the_tasks_used(
    et: ModuleType, tmp_path: Path
) -> None:
    """``hog`` holds 100 MiB for 2 s under its 200M limit; ``exit_with`` fails."""
    run = cli("run", "engine_tasks:measured", "--path", str(tmp_path / "out"),
              "--run-dir", str(tmp_path / "runs"))
    assert run.exit_code == 1, run.output  # exit_with failed, the others succeeded
    run_dir = latest(tmp_path / "runs")
    used = {a.task: a for a in attempts(run_dir) if a.state == "SUCCEEDED"}
    assert sorted(used) == ["append_line", "hog"]
    result = cli("resources", str(run_dir), "--suggest", "--time-headroom", "60")
    assert result.exit_code == 0, result.output
    header, _, body = result.stdout.partition("\n")
    assert header == ("# from 2 successful attempt(s); mem = peak x1.25, "
                      "runtime = longest x60")
    tasks = yaml.safe_load(body)["tasks"]
    assert set(tasks) == {"append_line", "hog"}  # nothing from the failed attempt
    hog = tasks["hog"]
    assert 125 * 2**20 <= parse_memory(hog["mem"]) <= 250 * 2**20  # 100M touched..200M limit, x1.25
    assert parse_memory(hog["mem"]) == 2**20 * math.ceil(used["hog"].peak_rss * 1.25 / 2**20)
    assert parse_duration(hog["runtime"]) >= 120  # held 2 s, x60
    assert parse_duration(hog["runtime"]) == 60 * math.ceil(used["hog"].elapsed * 60 / 60)
    small, peak = tasks["append_line"], used["append_line"].peak_rss
    assert parse_duration(small["runtime"]) == 60 * math.ceil(
        used["append_line"].elapsed * 60 / 60)
    # It touched nothing: a peak under the supervisor's own is not measured, and no mem
    # is suggested; one that is measured is ~100 MiB under hog's.
    assert small.get("mem") == (None if peak is None else format_memory(
        2**20 * math.ceil(peak * 1.25 / 2**20)))
    assert peak is None or peak < used["hog"].peak_rss - 90 * 2**20


def test_resources_suggest_without_successful_attempts_is_an_error(
    et: ModuleType, tmp_path: Path
) -> None:
    run = cli("run", "engine_tasks:one_exit", "--code", "3", "--run-dir", str(tmp_path / "runs"))
    assert run.exit_code == 1, run.output
    result = cli("resources", str(latest(tmp_path / "runs")), "--suggest")
    assert result.exit_code == 1, result.output
    assert "no successful attempts to learn from in the run(s) given" in result.output


def test_defaults_show_a_tasks_launch_mode() -> None:
    printed = yaml.safe_load(gristmill("spec", "gm_fork_tasks:acts", "--n", "1",
                                       "--defaults").output)
    assert printed["tasks"]["act"]["launch"] == "fork"
