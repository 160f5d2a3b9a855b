"""Tests for gristmill.dsl.nodes: the Node views a workflow hands back (args, identity, argv)."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable

from gm_tasks import fit, forecast, record
from gm_testing import run_python

import gristmill as gm
from gristmill.dsl.workflow import Workflow
from gristmill.resources import Resources


def record_one(fn: Callable[[], object]) -> Workflow:
    """Record a workflow whose body is ``fn`` (a zero-argument function)."""
    return gm.workflow(fn)()


# --- node views -------------------------------------------------------------------------------


def test_node_view() -> None:
    def body() -> None:
        a = fit(output_version="v1", draw=3, resources=gm.Resources(mem="20G"))
        forecast(output_version="v1", location_id=7, after=a)

    wf = record_one(body)
    a, b = wf.nodes()
    assert a.task is fit
    assert a.args == {"output_version": "v1", "draw": 3}
    assert a.resources == Resources(mem="20G", cores=1, runtime=1000)  # per-call over decorator
    assert b.resources == forecast.resources
    assert a.upstream == []
    assert b.upstream == [a.identity]
    assert b.name == "forecast_7"
    assert a.name == "fit"  # the only fit node: no node args to tell it apart
    assert len(a.identity) == 32
    int(a.identity, 16)
    assert b.argv[-4:] == ["--output-version", "v1", "--location-id", "7"]
    assert b.command_line == shlex.join(b.argv)
    assert repr(a) == "<Node fit {'output_version': 'v1', 'draw': 3}>"


def test_argv_falls_back_to_gristmill_exec_when_no_script_is_installed() -> None:
    def body() -> None:
        fit(output_version="v", draw=1)

    (node,) = record_one(body).nodes()
    assert node.argv == [
        sys.executable, "-m", "gristmill.dsl.exec", "gm_tasks:fit", "-v",
        "--output-version", "v", "--draw", "1",
    ]


def test_rendered_argv_runs_and_the_task_receives_exact_values() -> None:
    """Values a shell would interpret reach the task unchanged: nothing ever reads argv as shell."""
    nasty = "it's \"q\" ; echo pwned $(touch /tmp/gm-pwned) `id` \\ \n second line  "

    def body() -> None:
        record(text=nasty, scale=0.25, tag=["a b", "--tag", "$HOME"], pair=(3, "x y"),
               loud=True, fast=False, paths=["-p", "* ?", ""])

    (node,) = record_one(body).nodes()
    done = run_python(*node.argv[1:])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "text": nasty, "scale": 0.25, "tag": ["a b", "--tag", "$HOME"], "pair": [3, "x y"],
        "loud": True, "fast": False, "paths": ["-p", "* ?", ""],
    }
    assert shlex.split(node.command_line) == node.argv  # what a job script gets back
