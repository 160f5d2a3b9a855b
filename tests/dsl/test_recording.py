"""Tests for gristmill.dsl.recording.

After= edges, map and product, argument checks at record time.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gm_tasks import fit, forecast, validate

import gristmill as gm
from gristmill.dsl.nodes import Node
from gristmill.dsl.workflow import Workflow
from gristmill.errors import GraphError, TaskArgumentError


def record_one(fn: Callable[[], object]) -> Workflow:
    """Record a workflow whose body is ``fn`` (a zero-argument function)."""
    return gm.workflow(fn)()


# --- after= -------------------------------------------------------------------------------------


def test_after_takes_nodes_groups_and_iterables_of_them() -> None:
    def body() -> None:
        a = fit(output_version="v", draw=0)
        g = fit.map(output_version="w", draw=[1, 2])
        h = fit.map(output_version="x", draw=[1, 2])
        validate(output_version="a", after=a)
        validate(output_version="b", after=g)
        validate(output_version="c", after=[a, g])
        validate(output_version="d", after=(n for n in (g[0], h)))
        validate(output_version="e", after=[])

    wf = record_one(body)
    by_version = {n.args["output_version"]: n for n in wf.nodes()}
    ids = {k: n.identity for k, n in by_version.items() if n.task is validate}
    fit_ids = {(n.args["output_version"], n.args["draw"]): n.identity
               for n in wf.nodes() if n.task is fit}
    ups = {k: set(by_version[k].upstream) for k in ids}
    assert ups["a"] == {fit_ids["v", 0]}
    assert ups["b"] == {fit_ids["w", 1], fit_ids["w", 2]}
    assert ups["c"] == {fit_ids["v", 0], fit_ids["w", 1], fit_ids["w", 2]}
    assert ups["d"] == {fit_ids["w", 1], fit_ids["x", 1], fit_ids["x", 2]}
    assert ups["e"] == set()


def test_map_after_applies_to_every_element() -> None:
    def body() -> None:
        v = validate(output_version="v")
        forecast.map(output_version="v", location_id=range(4), after=v)

    wf = record_one(body)
    v, *forecasts = wf.nodes()
    assert all(n.upstream == [v.identity] for n in forecasts)


@pytest.mark.parametrize(
    ("after", "message"),
    [
        (3, "after= takes a Node, a NodeGroup or an iterable of them, got 3"),
        (["x"], "after= takes Nodes and NodeGroups, got 'x'"),
        ([[]], r"after= takes Nodes and NodeGroups, got \[\]"),
    ],
)
def test_after_rejects_other_things(after: object, message: str) -> None:
    def body() -> None:
        fit(output_version="v", draw=1, after=after)  # type: ignore[arg-type]

    with pytest.raises(TaskArgumentError, match=message):
        record_one(body)


def test_after_rejects_nodes_of_another_workflow() -> None:
    def first() -> None:
        kept.append(fit(output_version="v", draw=1))

    kept: list[Node] = []
    record_one(first)

    def second() -> None:
        validate(output_version="v", after=kept)

    with pytest.raises(TaskArgumentError, match="from another workflow"):
        record_one(second)


# --- map and product ---------------------------------------------------------------------------


def test_map_zips_iterables_and_keeps_scalars_constant() -> None:
    def body() -> None:
        forecast.map(output_version="v", location_id=[10, 20, 30])
        fit.map(output_version=("a", "b"), draw=range(2))

    wf = record_one(body)
    assert [n.args for n in wf.nodes()] == [
        {"output_version": "v", "location_id": 10},
        {"output_version": "v", "location_id": 20},
        {"output_version": "v", "location_id": 30},
        {"output_version": "a", "draw": 0},
        {"output_version": "b", "draw": 1},
    ]


def test_strings_and_bytes_are_scalars_in_map() -> None:
    def body() -> None:
        fit.map(output_version="abc", draw=[1, 2])

    wf = record_one(body)
    assert [n.args["output_version"] for n in wf.nodes()] == ["abc", "abc"]


def test_map_with_unequal_lengths_is_an_error() -> None:
    def body() -> None:
        fit.map(output_version=["a", "b"], draw=[1, 2, 3])

    with pytest.raises(TaskArgumentError, match=r"equal lengths; got output_version=2, draw=3"):
        record_one(body)


def test_map_needs_something_to_vary() -> None:
    def body() -> None:
        validate.map(output_version="v")

    with pytest.raises(TaskArgumentError, match="needs at least one iterable"):
        record_one(body)


def test_product_is_a_cross_product() -> None:
    def body() -> None:
        fit.map(gm.product(output_version=["a", "b"], draw=range(3)))
        forecast.map(gm.product(location_id=[1, 2]), output_version="const")

    wf = record_one(body)
    assert [tuple(n.args.values()) for n in wf.nodes()] == [
        ("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2),
        ("const", 1), ("const", 2),
    ]
    assert len(wf) == 8


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (lambda: fit.map(gm.product(output_version=["a"]), draw=[1, 2]),
         r"put it inside gm\.product"),
        (lambda: fit.map(gm.product(output_version="ab", draw=[1])), "must be an iterable"),
        (lambda: fit.map(gm.product(draw=[1]), draw=[2]), "given both in gm.product"),
        (lambda: fit.map({"draw": [1]}),  # type: ignore[arg-type]
         r"takes gm\.product\(\.\.\.\) as its only positional"),
    ],
)
def test_product_misuse(body: Callable[[], object], message: str) -> None:
    with pytest.raises(TaskArgumentError, match=message):
        record_one(body)


def test_a_huge_map_stays_compact() -> None:
    def body() -> None:
        fits = fit.map(output_version="v", draw=range(10**7))
        validate(output_version="v", after=fits)

    wf = record_one(body)
    assert wf.units[0].columns["draw"] == range(10**7)  # the range itself, not a list
    assert len(wf) == 10**7 + 1
    assert wf.count_by_task() == {"fit": 10**7, "validate": 1}
    group = wf.groups()[0]
    assert group[-1].args == {"output_version": "v", "draw": 10**7 - 1}
    with pytest.raises(IndexError):
        group[10**7]


# --- argument checking at record time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (lambda: fit(output_version="v", draw=1, colour="red"),
         "task 'fit' has no argument 'colour'; its arguments are: output_version, draw"),
        (lambda: fit(output_version="v"),
         r"task 'fit' is missing required argument\(s\) draw; its arguments are"),
        (lambda: fit(output_version="v", draw="x"),
         "task 'fit': argument 'draw' = 'x' is not valid: .*not a valid integer"),
        (lambda: fit.map(output_version="v", draw=["1", "x"]),
         "task 'fit': argument 'draw' = 'x' is not valid"),
        (lambda: fit.map(output_version="v", draw=[1], colour=["red"]),
         "task 'fit' has no argument 'colour'"),
        (lambda: fit.map(draw=range(3)),
         r"task 'fit' is missing required argument\(s\) output_version"),
        (lambda: fit.map(gm.product(draw=range(3), output_version=[None])),
         "task 'fit': argument 'output_version' = None is not valid"),
    ],
)
def test_bad_arguments_fail_at_record_time(
    body: Callable[[], object], message: str
) -> None:
    with pytest.raises(TaskArgumentError, match=message):
        record_one(body)


def test_values_are_converted_by_the_click_type() -> None:
    def body() -> None:
        fit(output_version=12, draw="7")
        fit.map(output_version="v", draw=["1", 2.0])

    wf = record_one(body)
    assert [n.args for n in wf.nodes()] == [
        {"output_version": "12", "draw": 7},
        {"output_version": "v", "draw": 1},
        {"output_version": "v", "draw": 2},
    ]


# --- task names ----------------------------------------------------------------------------------


def test_two_tasks_of_one_name_are_refused_naming_both_modules() -> None:
    """``fit`` of two modules in one workflow would share logs/fit/, a row of ``gristmill
    status`` and the spec's ``tasks.fit``: refused when the second is recorded."""
    import gm_collide_a
    import gm_collide_b

    def body() -> None:
        gm_collide_a.fit(draw=1)
        gm_collide_b.fit(draw=2)

    with pytest.raises(GraphError) as caught:
        record_one(body)
    message = str(caught.value)
    assert "two tasks are named 'fit'" in message
    assert "gm_collide_a:fit (module gm_collide_a)" in message
    assert "gm_collide_b:fit (module gm_collide_b)" in message
    assert "Rename one of the two functions" in message

    def maps() -> None:  # a map records the same way
        gm_collide_a.fit.map(draw=[1, 2])
        gm_collide_b.fit.map(draw=[1, 2])

    with pytest.raises(GraphError, match="two tasks are named 'fit'"):
        record_one(maps)


def test_one_task_called_many_times_is_one_name() -> None:
    import gm_collide_a

    def body() -> None:
        gm_collide_a.fit(draw=1)
        gm_collide_a.fit.map(draw=[2, 3])

    assert len(record_one(body)) == 3
