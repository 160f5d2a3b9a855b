"""Tests for gristmill.dsl.exec: ``python -m gristmill.dsl.exec module:task`` runs a task."""

from __future__ import annotations

import json

import pytest
from gm_testing import run_python

from gristmill.dsl.exec import main


def test_runs_the_task_command_with_its_arguments() -> None:
    done = run_python(
        "-m", "gristmill.dsl.exec", "gm_tasks:record", "--text", "a; $(b)\n", "--tag", "x",
        "--loud", "--", "-p",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "text": "a; $(b)\n", "scale": 1.0, "tag": ["x"], "pair": None, "loud": True,
        "fast": False, "paths": ["-p"],
    }


def test_task_failures_exit_1_with_the_traceback_in_stderr() -> None:
    done = run_python("-m", "gristmill.dsl.exec", "gm_tasks:_legacy_command", "--n", "-3")
    assert done.returncode == 1
    assert "ValueError: n must not be negative, got -3" in done.stderr


def test_bad_task_arguments_exit_2_like_any_click_command() -> None:
    done = run_python("-m", "gristmill.dsl.exec", "gm_tasks:fit", "--draw", "x")
    assert done.returncode == 2
    assert "Usage: gm-tasks-fit [OPTIONS]" in done.stderr  # its console script's name
    assert "'x' is not a valid integer" in done.stderr


def test_unknown_task_exits_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gm_tasks:nope"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "gristmill.dsl.exec: 'gm_tasks:nope' is not a registered task; decorate the function "
        "with @gm.task\n"
    )


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "usage: python -m gristmill.dsl.exec module:task" in capsys.readouterr().err


def test_in_process_run_exits_through_click() -> None:
    with pytest.raises(SystemExit) as info:
        main(["gm_tasks:_legacy_command", "--n", "2"])
    assert info.value.code == 0


def test_the_module_path_of_gristmill_0_1_runs_tasks_too() -> None:
    """``python -m gristmill.exec`` is what 0.1 ran for a task without a console script:
    its job scripts and array manifests say so, and ``gristmill status`` of its runs shows
    it as the command to rerun a failed node by hand."""
    done = run_python("-m", "gristmill.exec", "gm_tasks:record", "--text", "x", "--", "-p")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["paths"] == ["-p"]
    failed = run_python("-m", "gristmill.exec", "gm_tasks:_legacy_command", "--n", "-3")
    assert failed.returncode == 1
    assert "ValueError: n must not be negative, got -3" in failed.stderr
    unknown = run_python("-m", "gristmill.exec", "gm_tasks:nope")
    assert unknown.returncode == 2
    assert "'gm_tasks:nope' is not a registered task" in unknown.stderr
