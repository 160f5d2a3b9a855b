"""Tests for ``gristmill spec`` and ``gristmill resources --suggest``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from gm_spec_docs import documents
from hypothesis import HealthCheck, given, settings

from gristmill.cli.app import main
from gristmill.cli.spec import suggest
from gristmill.spec.load import Spec

SEIIR = ["gm_flows:seiir", "--version", "v1", "--n-draws", "4", "--location-ids", "1,2"]


def gristmill(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


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


def test_resources_suggest_without_successful_attempts_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["resources", str(tmp_path), "--suggest"])
    assert result.exit_code == 2
    assert "not a gristmill run directory" in result.output
