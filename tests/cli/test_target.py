"""Tests for gristmill.cli.target: loading module:workflow targets, parameters as click options."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import click
import gm_flows
import pytest

import gristmill as gm
from gristmill.cli.target import (
    CommaList,
    build_workflow,
    load_target,
    parameter_docs,
    parse_workflow_args,
    workflow_options,
)
from gristmill.errors import GristmillError, TaskArgumentError


def test_load_target_returns_the_workflow_function() -> None:
    assert load_target("gm_flows:seiir") is gm_flows.seiir


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("gm_flows", "is not a workflow target; write it as 'package.module:workflow'"),
        (":seiir", "is not a workflow target"),
        ("gm_flows:nope", "module 'gm_flows' has no attribute 'nope'"),
        ("gm_flows:not_a_workflow", r"gm_flows:not_a_workflow is not a @gm\.workflow function"),
        ("gm_flows:fit", r"not a @gm\.workflow function \(got Task\)"),
        ("gm_no_such_module:flow", "no module named 'gm_no_such_module'; is the package installed"),
    ],
)
def test_load_target_errors(target: str, message: str) -> None:
    with pytest.raises(GristmillError, match=message):
        load_target(target)


def test_an_import_error_inside_the_module_shows_its_traceback() -> None:
    with pytest.raises(GristmillError) as info:
        load_target("gm_badimport:flow")
    message = str(info.value)
    assert "cannot import workflow module 'gm_badimport'" in message
    assert "gm_badimport.py\", line 3, in <module>" in message
    assert "No module named 'gm_module_that_does_not_exist'" in message
    assert "importlib" not in message


def test_a_module_in_the_working_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gm_cwd_flow.py").write_text(
        "import gristmill as gm\n\n@gm.workflow\ndef here() -> None: ...\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    assert load_target("gm_cwd_flow:here").fn.__name__ == "here"


def options_of(fn: Callable[..., object]) -> dict[str, click.Option]:
    params = workflow_options(gm.workflow(fn))
    assert all(isinstance(p, click.Option) for p in params)
    return {p.name: p for p in params if isinstance(p, click.Option) and p.name}


def test_parameters_become_options_typed_from_annotations() -> None:
    params = options_of(gm_flows.options.fn)
    assert list(params) == ["n", "scale", "label", "dry", "ids", "limit", "mode"]
    assert params["n"].opts == ["--n"]
    assert params["n"].required
    assert params["n"].type is click.INT
    assert params["scale"].type is click.FLOAT
    assert params["scale"].default == 1.5
    assert not params["scale"].required
    assert params["dry"].is_flag
    assert params["dry"].secondary_opts == ["--no-dry"]
    assert isinstance(params["ids"].type, CommaList)
    assert params["ids"].default == "1,2"
    assert params["limit"].type is click.INT  # Optional[int]
    assert isinstance(params["mode"].type, click.Choice)
    assert list(params["mode"].type.choices) == ["a", "b"]


def test_options_are_named_with_a_prefix_but_keep_their_parameter_and_flag() -> None:
    params = workflow_options(gm_flows.options, name_prefix="wf_")

    assert [(p.name, p.parameter, p.opts) for p in params][:2] == [
        ("wf_n", "n", ["--n"]), ("wf_scale", "scale", ["--scale"]),
    ]


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        ("Summary.\n\n    Args:\n        n: how many,\n            at most 9.\n"
         "        label (str): a label.\n\n    Returns:\n        nothing\n",
         {"n": "how many, at most 9.", "label": "a label."}),
        ("Summary.\n\nParameters:\n    n: how many\nNotes: n is not documented here\n",
         {"n": "how many"}),
        ("Summary.\n\n:param n: how many\n:param str label: a\n    label\n:returns: nothing",
         {"n": "how many", "label": "a label"}),
        ("Summary; n: not a parameter section.", {}),
        ("", {}),
    ],
)
def test_parameter_docs_read_google_and_sphinx_styles(
    docstring: str, expected: dict[str, str]
) -> None:
    assert parameter_docs(docstring) == expected


def test_parse_workflow_args_converts_values() -> None:
    values = parse_workflow_args(
        gm_flows.options, ["--n", "2", "--ids", "4, 5,6", "--dry", "--limit", "3"], prog="t"
    )
    assert values == {
        "n": 2, "scale": 1.5, "label": "x", "dry": True, "ids": [4, 5, 6], "limit": 3,
        "mode": "a",
    }


@pytest.mark.skipif(sys.version_info < (3, 10), reason="int | None needs Python 3.10 at runtime")
def test_pep604_optional_and_lists_of_paths() -> None:
    def flow(root: Path, when: int | None = None, files: list[Path] = [], tags: tuple[str, ...] = ()) -> None:  # noqa: B006, E501
        ...

    params = options_of(flow)
    assert params["when"].type is click.INT
    assert isinstance(params["root"].type, click.Path)
    values = parse_workflow_args(
        gm.workflow(flow), ["--root", "/r", "--files", "a,b", "--tags", ""], prog="t"
    )
    assert values == {"root": Path("/r"), "when": None, "files": [Path("a"), Path("b")], "tags": []}


def test_unannotated_parameters_take_the_type_of_their_default() -> None:
    def flow(n, name="x", count=3, ratio=0.5, on=False):  # type: ignore[no-untyped-def]
        ...

    params = options_of(flow)
    assert params["n"].type is click.STRING
    assert params["count"].type is click.INT
    assert params["ratio"].type is click.FLOAT
    assert params["on"].is_flag


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Missing option '--n'"),
        (["--n", "x"], "Invalid value for '--n': 'x' is not a valid integer"),
        (["--n", "1", "--bogus"], "No such option"),
        (["--n", "1", "--mode", "c"], "'c' is not one of 'a', 'b'"),
    ],
)
def test_parse_errors_are_click_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(click.UsageError) as info:
        parse_workflow_args(gm_flows.options, args, prog="t")
    assert message in info.value.format_message()
    assert info.value.exit_code == 2


def test_build_workflow_records_the_dag() -> None:
    wf = build_workflow("gm_flows:seiir", ["--version", "v", "--n-draws", "4",
                                           "--location-ids", "1,2"])
    assert wf.name == "seiir-v"
    assert wf.count_by_task() == {"fit": 4, "validate": 1, "forecast": 2}


def test_an_exception_in_the_workflow_becomes_a_user_error_with_its_traceback() -> None:
    with pytest.raises(GristmillError) as info:
        build_workflow("gm_flows:broken", ["--n", "5"])
    message = str(info.value)
    assert message.startswith("workflow gm_flows:broken raised while recording its DAG:")
    assert 'gm_flows.py", line' in message
    assert "in broken" in message
    assert "KeyError: 'no such location: 5'" in message
    assert "gristmill/dsl/" not in message  # none of gristmill's own frames
    assert "gristmill/cli/" not in message


def test_gristmill_errors_in_the_workflow_pass_through_unchanged() -> None:
    with pytest.raises(TaskArgumentError, match="has no argument 'colour'"):
        build_workflow("gm_flows:bad_args", [])


def test_optional_annotation_without_default_is_required() -> None:
    def flow(limit: Optional[int]) -> None:  # noqa: UP045
        ...

    assert options_of(flow)["limit"].required
