"""Tests for the ``graph``, ``entry-points`` and ``check`` commands of ``gristmill``."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner, Result
from gm_testing import InstalledPackage, graphviz_dot, run_python

from gristmill.cli.app import main

SVG = "{http://www.w3.org/2000/svg}"
CLI = "import sys; from gristmill.cli.app import main; main(prog_name='gristmill')"


def gristmill(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="gristmill", catch_exceptions=False)


SEIIR = ["gm_flows:seiir", "--version", "v1", "--n-draws", "1000", "--location-ids", "1,2,3"]


# --- graph ---------------------------------------------------------------------------------


def test_graph_prints_dot_with_groups_collapsed() -> None:
    result = gristmill("graph", *SEIIR)
    assert result.exit_code == 0, result.output
    assert result.output.startswith('digraph "seiir-v1" {\n')
    assert 'u0 [label="fit x1000 (by draw)"' in result.output
    assert "u0 -> u1;" in result.output
    assert result.output.count("[label=") == 5  # fit group, validate, three forecasts


def test_graph_prints_mermaid_and_summary() -> None:
    mermaid = gristmill("graph", "--format", "mermaid", *SEIIR)
    assert mermaid.exit_code == 0, mermaid.output
    assert mermaid.output.splitlines()[:2] == ["flowchart LR", '  u0[["fit x1000 (by draw)"]]']
    summary = gristmill("graph", *SEIIR, "--format", "summary")
    assert summary.exit_code == 0, summary.output
    assert summary.output == "seiir-v1: 1004 nodes\n  fit: 1000\n  validate: 1\n  forecast: 3\n"


def test_graph_draws_svg_with_graphviz_one_box_per_unit() -> None:
    """``--format svg`` pipes the dot drawing through Graphviz: the same boxes and edges."""
    graphviz_dot()
    result = gristmill("graph", "--format", "svg", *SEIIR)
    assert result.exit_code == 0, result.output
    svg = ElementTree.fromstring(result.output.encode())  # well-formed XML, or this raises
    assert svg.tag == f"{SVG}svg"

    def titles(kind: str) -> dict[str, list[str]]:
        return {str(g.findtext(f"{SVG}title")): [str(t.text) for t in g.iter(f"{SVG}text")]
                for g in svg.iter(f"{SVG}g") if g.get("class") == kind}

    assert titles("node") == {
        "u0": ["fit x1000 (by draw)"], "u1": ["validate"], "u2": ["forecast(location_id=1)"],
        "u3": ["forecast(location_id=2)"], "u4": ["forecast(location_id=3)"]}
    dot = gristmill("graph", *SEIIR).output
    edges = sorted(line.strip().rstrip(";").replace(" -> ", "->") for line in dot.splitlines()
                   if " -> " in line)
    assert sorted(titles("edge")) == edges == ["u0->u1"]


def test_graph_svg_without_graphviz_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    result = gristmill("graph", "--format", "svg", *SEIIR)
    assert result.exit_code == 2
    assert "needs Graphviz's 'dot' program" in result.output


def test_missing_workflow_option_exits_2_with_clicks_message() -> None:
    result = gristmill("graph", "gm_flows:seiir", "--version", "v1")
    assert result.exit_code == 2
    assert "Usage: gristmill graph gm_flows:seiir [OPTIONS]" in result.output
    assert "Missing option '--n-draws'" in result.output


def test_bad_workflow_option_value_exits_2() -> None:
    result = gristmill("graph", *SEIIR[:3], "--n-draws", "many")
    assert result.exit_code == 2
    assert "'many' is not a valid integer" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gm_flows:bad_args"], "error: task 'fit' has no argument 'colour'"),
        (["gm_flows:cyclic"], "error: the workflow has a cycle: fit("),
        (["gm_flows:missing"], "error: module 'gm_flows' has no attribute 'missing'"),
        (["gm_nowhere:flow"], "error: cannot import workflow module 'gm_nowhere'"),
        (["gm_flows"], "is not a workflow target"),
    ],
)
def test_user_errors_exit_2_with_one_message(args: list[str], message: str) -> None:
    result = gristmill("graph", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_import_error_in_the_workflow_module_is_shown() -> None:
    done = run_python("-c", CLI, "graph", "gm_badimport:flow")
    assert done.returncode == 2, done.stderr
    assert "error: cannot import workflow module 'gm_badimport'" in done.stderr
    assert "gm_badimport.py\", line 3" in done.stderr
    assert "No module named 'gm_module_that_does_not_exist'" in done.stderr
    assert done.stdout == ""


def test_an_exception_in_the_workflow_function_shows_its_traceback_and_exits_2() -> None:
    done = run_python("-c", CLI, "graph", "gm_flows:broken", "--n", "7")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "error: workflow gm_flows:broken raised while recording its DAG:"
    assert lines[1] == "Traceback (most recent call last):"
    assert 'raise KeyError(f"no such location: {n}")' in done.stderr
    assert lines[-1] == "KeyError: 'no such location: 7'"


def test_verbose_shows_the_traceback_of_a_user_error() -> None:
    quiet = run_python("-c", CLI, "graph", "gm_flows:bad_args")
    loud = run_python("-c", CLI, "-v", "graph", "gm_flows:bad_args")
    assert quiet.returncode == loud.returncode == 2
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert "has no argument 'colour'" in loud.stderr


# --- entry-points and check ---------------------------------------------------------------------


def test_entry_points_prints_the_scripts_table(installed_pkg: InstalledPackage) -> None:
    result = gristmill("entry-points", "gm_fixture_pkg")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "[project.scripts]\n"
        'fx-renamed = "gm_fixture_pkg.tasks:fx_words.main"\n'
        'gm-fixture-pkg-fx-echo = "gm_fixture_pkg.tasks:fx_echo.main"\n'
        'gm-fixture-pkg-fx-legacy = "gm_fixture_pkg.tasks:fx_legacy.main"\n'
    )


def test_entry_points_write_reports_what_changed(
    installed_pkg: InstalledPackage, tmp_path: Path
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(
        '[project]\nname = "x"\n\n[project.scripts]\nold = "gm_fixture_pkg.tasks:old.main"\n'
    )
    result = gristmill("entry-points", "gm_fixture_pkg", "--write", str(path))
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{path}: 3 script(s) added or changed, 1 removed (fx-renamed, gm-fixture-pkg-fx-echo, "
        "gm-fixture-pkg-fx-legacy, old)\n"
        "reinstall the package (pip install -e .) so the scripts exist\n"
    )
    again = gristmill("entry-points", "gm_fixture_pkg", "--write", str(path))
    assert again.output == f"{path}: 0 script(s) added or changed, 0 removed\n"


def test_entry_points_of_a_missing_package_exits_2() -> None:
    result = gristmill("entry-points", "gm_nope_pkg")
    assert result.exit_code == 2
    assert "error: cannot import package 'gm_nope_pkg'" in result.output


def test_check_exits_0_when_in_sync(installed_pkg: InstalledPackage) -> None:
    result = gristmill("check", "gm_fixture_pkg")
    assert result.exit_code == 0, result.output
    assert result.output == "gm_fixture_pkg: installed console scripts match the code\n"


def test_check_exits_1_for_a_package_that_is_not_installed() -> None:
    result = gristmill("check", "gm_flows")
    assert result.exit_code == 1
    assert "is not installed as a distribution" in result.output
