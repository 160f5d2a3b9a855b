"""Tests for gristmill.cli.workflow_command: a workflow's parameters as real options of
``gristmill run|graph|spec TARGET`` -- in ``--help``, in usage errors, in shell completion."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from gm_testing import FIXTURES, SRC

from gristmill.cli.app import main

COMMANDS = ["run", "graph", "spec"]
#: What each command's own help lists besides the workflow's options.
OWN = {"run": ["--spec FILE", "--run-dir PATH", "--max-cores N"],
       "graph": ["--format [dot|mermaid|svg|summary]"],
       "spec": ["--spec FILE", "--defaults"]}


def gristmill(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="gristmill")


def section(text: str, heading: str) -> str:
    """The lines of one section of a help page (up to the next heading)."""
    found = re.search(rf"^{re.escape(heading)}:\n((?:  .*\n|\n(?=  ))*)", text, re.MULTILINE)
    assert found, f"no section {heading!r} in:\n{text}"
    return found.group(1)


def complete(*words: str) -> list[str]:
    """What bash completion offers after ``gristmill WORDS`` (the last word incomplete)."""
    env = {**os.environ, "COMP_WORDS": " ".join(("gristmill", *words)),
           "COMP_CWORD": str(len(words)), "_GRISTMILL_COMPLETE": "bash_complete",
           "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(SRC)])}
    done = subprocess.run(
        [sys.executable, "-c", "from gristmill.cli.app import main; main(prog_name='gristmill')"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line.partition(",")[2] for line in done.stdout.splitlines()]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_the_workflows_options_with_types_and_defaults(command: str) -> None:
    result = gristmill(command, "gm_flows:options", "--help")

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: gristmill {command} gm_flows:options [OPTIONS]\n")
    options = section(result.output, "Options of workflow gm_flows:options")
    rows = [line.split() for line in options.splitlines() if line.strip()]
    assert rows == [
        ["--n", "INTEGER", "[required]"],
        ["--scale", "FLOAT", "[default:", "1.5]"],
        ["--label", "TEXT", "[default:", "x]"],
        ["--dry", "/", "--no-dry", "[default:", "no-dry]"],
        ["--ids", "INTEGER[,...]", "[default:", "1,2]"],
        ["--limit", "INTEGER"],
        ["--mode", "[a|b]", "[default:", "a]"],
    ]
    generic = section(result.output, "Options")
    for own in OWN[command]:
        assert own in result.output
    assert "--n " not in generic


def test_help_shows_what_the_docstring_says_of_each_parameter() -> None:
    result = gristmill("graph", "gm_flows:documented", "-h")

    options = section(result.output, "Options of workflow gm_flows:documented")
    assert re.search(r"--n-draws INTEGER\s+how many draws to fit, each one job\.\s+\[required\]",
                     options), options
    assert re.search(r"--version TEXT\s+the output version\.\s+\[default: v1\]", options)
    assert re.search(r"--locations INTEGER\[,\.\.\.\]\s+\[default: 6,102\]", options)


def test_help_before_the_target_and_workflow_values_given_still_list_them() -> None:
    result = gristmill("graph", "--help", "gm_flows:seiir", "--n-draws", "3")

    assert result.exit_code == 0, result.output
    assert "--location-ids INTEGER[,...]" in section(result.output,
                                                     "Options of workflow gm_flows:seiir")


def test_help_without_a_target_says_how_to_list_the_workflows_options() -> None:
    result = gristmill("run", "--help")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: gristmill run [OPTIONS] TARGET\n")
    assert re.search(r"Give TARGET to list them:\s+gristmill run MODULE:WORKFLOW\s+--help",
                     section(result.output, "Options of the workflow"))


def test_help_for_a_target_that_does_not_load_says_why() -> None:
    result = gristmill("spec", "gm_nowhere:flow", "--help")

    assert result.exit_code == 0, result.output
    assert "cannot import workflow module 'gm_nowhere'" in section(
        result.output, "Options of workflow gm_nowhere:flow")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_target_is_still_one_clear_error(command: str) -> None:
    result = gristmill(command, "gm_nowhere:flow", "--n-draws", "3")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot import workflow module 'gm_nowhere': no "
                                    "module named 'gm_nowhere'")
    assert "No such option" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gm_flows:seiir", "--version", "v1"], "Error: Missing option '--n-draws'."),
        (["gm_flows:options", "--n", "1", "--bogus"], "--bogus"),
        (["gm_flows:options", "--n", "x"], "Invalid value for '--n': 'x' is not a valid integer"),
        (["gm_flows:options", "--n", "1", "stray"], "Got unexpected extra argument (stray)"),
    ],
)
def test_usage_errors_point_at_the_help_that_lists_the_workflows_options(
    args: list[str], message: str
) -> None:
    result = gristmill("graph", *args)

    assert result.exit_code == 2
    assert re.search(rf"Try 'gristmill graph {args[0]} (-h|--help)' for help\.", result.output)
    assert message in result.output


def test_values_reach_the_workflow_beside_the_commands_own_options() -> None:
    result = gristmill("graph", "--format", "summary", "gm_flows:seiir", "--version", "v2",
                       "--n-draws", "3", "--location-ids", "1,2")

    assert result.exit_code == 0, result.output
    assert result.output == "seiir-v2: 6 nodes\n  fit: 3\n  validate: 1\n  forecast: 2\n"


def test_a_parameter_named_like_a_commands_own_takes_its_own_value() -> None:
    result = gristmill("spec", "gm_flows:named_like_options", "--target", "t", "--queue", "q")

    assert result.exit_code == 0, result.output  # `target` is also the argument's name
    assert "WARNING" not in result.output  # spec has no --queue of its own


def test_a_parameter_whose_flag_the_command_has_keeps_its_default_with_a_warning(
    tmp_path: Path,
) -> None:
    result = gristmill("run", "gm_flows:named_like_options", "--target", "t", "--queue", "q",
                       "--run-dir", str(tmp_path / "runs"), "--backend", "nope")

    assert result.exit_code == 2  # the unknown backend stops it before anything runs
    assert ("workflow parameter 'queue' of gm_flows:named_like_options would be option "
            "--queue, which gristmill run has itself; it keeps its default 'all.q'"
            in result.stderr)
    assert "unknown backend 'nope'" in result.stderr


def test_a_required_parameter_whose_flag_the_command_has_is_a_user_error() -> None:
    result = gristmill("spec", "gm_flows:needs_spec", "--spec", "x.yaml")

    assert result.exit_code == 2
    assert result.stderr == (
        "error: workflow parameter 'spec' of gm_flows:needs_spec would be option --spec, "
        "which gristmill spec has itself; rename the parameter\n"
    )


def test_completion_offers_the_workflows_options() -> None:
    assert complete("run", "gm_flows:seiir", "--n") == [
        "--n-draws", "--no-fail-fast", "--no-strict-resources", "--no-jobmon-fail-fast",
        "--no-slurm-accounting", "--no-slurm-requeue", "--no-slurm-fail-on-unschedulable",
    ]
    assert complete("graph", "gm_flows:seiir", "--version", "v1", "--") == [
        "--n-draws", "--location-ids", "--format", "--help",
    ]
    assert complete("spec", "gm_flows:options", "--mode", "") == ["a", "b"]


def test_completion_without_a_loadable_target_offers_the_commands_own_options() -> None:
    assert complete("graph", "gm_nowhere:flow", "--") == ["--format", "--help"]
    assert complete("graph", "--") == ["--format", "--help"]
