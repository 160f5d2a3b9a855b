"""Tests for ``gristmill spec`` and ``gristmill resources --suggest``."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from gristmill.cli.app import main
from gristmill.cli.spec import suggest

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


def test_suggest_covers_the_largest_successful_attempt_with_headroom() -> None:
    rows = [("fit", 100 * 2**20, 30.0), ("fit", 200 * 2**20, 100.0), ("validate", None, 5.0)]
    table = suggest(rows, mem_headroom=1.25, time_headroom=1.5)
    assert table["fit"] == {"mem": "250M", "runtime": "00:03:00"}
    assert table["validate"] == {"runtime": "00:01:00"}


def test_resources_suggest_without_successful_attempts_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["resources", str(tmp_path), "--suggest"])
    assert result.exit_code == 2
    assert "not a gristmill run directory" in result.output
