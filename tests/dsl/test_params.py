"""Tests for gristmill.dsl.params: argument checking against click types, argv rendering."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from gristmill.dsl.params import Param, Signature, canonical
from gristmill.errors import TaskArgumentError


@click.command()
@click.option("--output-version", required=True)
@click.option("--draw", type=int, required=True)
@click.option("--scale", type=float, default=1.0)
@click.option("--mode", type=click.Choice(["fast", "slow"]), default="fast")
@click.option("--tag", multiple=True)
@click.option("--pair", type=(int, str))
@click.option("--loud/--quiet", default=False)
@click.option("--fast", is_flag=True)
@click.option("-q", "--quietness", count=True)
@click.option("--root", type=click.Path(path_type=Path))
@click.option("--optional-default", default="here", required=True)
@click.argument("paths", nargs=-1)
@click.option("-v", "--verbose", count=True)
@click.option("--with-debugger", is_flag=True)
def command(**kwargs: object) -> None:
    """Every kind of parameter a task may have."""


SIG = Signature.of("demo", command)


def test_signature_lists_task_arguments_in_declaration_order_without_reserved_ones() -> None:
    assert SIG.names == [
        "output_version", "draw", "scale", "mode", "tag", "pair", "loud", "fast", "quietness",
        "root", "optional_default", "paths",
    ]
    assert SIG.required == {"output_version", "draw"}  # a default makes required moot


def test_param_from_click_reduces_options_flags_and_arguments() -> None:
    by = SIG.by_name
    assert by["output_version"].option == "--output-version"
    assert by["output_version"].required
    assert (by["loud"].is_flag, by["loud"].false_option) == (True, "--quiet")
    assert (by["fast"].is_flag, by["fast"].false_option) == (True, None)
    assert by["quietness"].count
    assert not by["quietness"].is_flag
    assert by["quietness"].option == "--quietness"
    assert by["tag"].multiple
    assert by["paths"].multiple
    assert by["paths"].option is None
    assert by["pair"].tuple_size == 2


def test_convert_checks_and_converts_a_complete_call() -> None:
    args = SIG.convert(
        {"output_version": "v1", "draw": "7", "scale": 2, "tag": ["a", "b"], "pair": ("1", "x"),
         "root": "/tmp/x"}
    )
    assert args == {
        "output_version": "v1", "draw": 7, "scale": 2.0, "tag": ("a", "b"), "pair": (1, "x"),
        "root": Path("/tmp/x"),
    }
    assert type(args["scale"]) is float


def test_none_means_not_given() -> None:
    assert SIG.convert({"output_version": "v", "draw": 1, "scale": None}) == {
        "output_version": "v", "draw": 1,
    }
    with pytest.raises(TaskArgumentError, match=r"missing required argument.*output_version"):
        SIG.convert({"output_version": None, "draw": 1})


def test_unknown_argument_names_the_task_and_the_allowed_set() -> None:
    with pytest.raises(TaskArgumentError) as info:
        SIG.convert({"output_version": "v", "draw": 1, "colour": "red"})
    message = str(info.value)
    assert "task 'demo' has no argument 'colour'" in message
    assert "its arguments are: output_version, draw, scale, mode" in message
    assert "verbose" not in message


def test_missing_required_arguments_are_all_named() -> None:
    with pytest.raises(
        TaskArgumentError, match=r"missing required argument\(s\) output_version, draw"
    ):
        SIG.convert({})
    SIG.check_names([], partial=True)  # a map() checks names before all columns are known


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("draw", "x", r"argument 'draw' = 'x' is not valid: .*'x' is not a valid integer"),
        ("draw", [1, 2], r"'draw' = \[1, 2\] is not valid: expected a value of type integer"),
        ("scale", "big", r"argument 'scale' = 'big' is not valid: .*not a valid float"),
        ("mode", "medium", r"'medium' is not one of 'fast', 'slow'"),
        ("tag", "abc", r"argument 'tag' takes several values \(a list or tuple\), got 'abc'"),
        ("tag", 3, r"argument 'tag' takes several values"),
        ("pair", (1, 2, 3), r"argument 'pair' = \(1, 2, 3\) is not valid"),
    ],
)
def test_ill_typed_values_fail_at_record_time(name: str, value: object, message: str) -> None:
    with pytest.raises(TaskArgumentError, match=message) as info:
        SIG.convert({"output_version": "v", "draw": 1, name: value})
    assert "task 'demo'" in str(info.value)


def test_task_argument_error_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        SIG.convert({"output_version": "v", "draw": "x"})


def test_render_puts_options_in_declaration_order_then_positionals_after_a_separator() -> None:
    args = SIG.convert(
        {"draw": 3, "output_version": "v 1", "tag": ["a", "b"], "pair": (1, "x"), "loud": True,
         "fast": True, "quietness": 2, "scale": 0.1, "paths": ["-weird", "b"]}
    )
    assert SIG.render(args) == [
        "--output-version", "v 1", "--draw", "3", "--scale", "0.1", "--tag", "a", "--tag", "b",
        "--pair", "1", "x", "--loud", "--fast", "--quietness", "--quietness",
        "--", "-weird", "b",
    ]


def test_render_of_false_flags() -> None:
    args = SIG.convert({"output_version": "v", "draw": 1, "loud": False, "fast": False})
    assert SIG.render(args) == ["--output-version", "v", "--draw", "1", "--quiet"]


def test_rendered_argv_parses_back_to_the_same_values() -> None:
    """What render writes, click reads back unchanged (the round trip that matters)."""
    given = {
        "output_version": "it's \"quoted\"; $(rm -rf /)\nnext line", "draw": -4, "scale": 1e-05,
        "mode": "slow", "tag": ("x y", "--tag"), "pair": (2, "two"), "loud": True,
        "fast": False, "quietness": 3, "root": "/a b/c", "paths": ("--", "-p", "p q"),
    }
    args = SIG.convert(given)
    ctx = command.make_context("demo", SIG.render(args))
    parsed = {k: v for k, v in ctx.params.items() if k in args}
    assert parsed == args


def test_param_convert_keeps_already_typed_values() -> None:
    draw = Param.from_click(next(p for p in command.params if p.name == "draw"))
    value = 12345678901234567890
    assert draw.convert("demo", value) is value


def test_canonical_is_stable_text() -> None:
    assert canonical(3) == "3"
    assert canonical("3") == '"3"'
    assert canonical(3.0) == "3.0"
    assert canonical(True) == "true"
    assert canonical((1, "a")) == canonical([1, "a"]) == '[1,"a"]'
    assert canonical(Path("/x")) == canonical("/x")
    assert canonical("{x}") == '"{x}"'
