"""Tests for gristmill.dsl.workflow: the decorator, lazy recording, merges, cycles, identities."""

from __future__ import annotations

import json
from collections.abc import Callable

import click
import pytest
from gm_tasks import fit, forecast, record, validate
from gm_testing import run_python

import gristmill as gm
from gristmill.dsl.context import current_recorder
from gristmill.dsl.nodes import Node, NodeGroup
from gristmill.dsl.workflow import Workflow
from gristmill.errors import GraphError, NotInWorkflowError, TaskArgumentError
from gristmill.resources import Resources

G = 2**30

calls: list[int] = []


@gm.task
@click.option("--x", type=int, required=True)
def side_effect(x: int) -> None:
    calls.append(x)


def record_one(fn: Callable[[], object]) -> Workflow:
    """Record a workflow whose body is ``fn`` (a zero-argument function)."""
    return gm.workflow(fn)()


# --- recording is lazy -----------------------------------------------------------------------


def test_calling_a_workflow_records_and_runs_nothing() -> None:
    @gm.workflow
    def flow(n: int) -> None:
        side_effect.map(x=range(n))
        side_effect(x=-1)

    wf = flow(n=5)
    assert isinstance(wf, Workflow)
    assert calls == []
    assert len(wf) == 6
    assert current_recorder() is None


def test_design_example() -> None:
    @gm.workflow(name="seiir-{version}", fail_fast=True, max_concurrent=50)
    def seiir(version: str, n_draws: int, location_ids: list[int]) -> None:
        fits = fit.map(output_version=version, draw=range(n_draws))
        assert isinstance(fits, NodeGroup)
        assert len(fits) == n_draws
        v = validate(output_version=version, after=fits)
        assert isinstance(v, Node)
        for loc in location_ids:
            forecast(output_version=version, location_id=loc)

    wf = seiir(version="2026_11_29.01", n_draws=1000, location_ids=[1, 2, 3])
    assert wf.name == "seiir-2026_11_29.01"
    assert wf.args == {"version": "2026_11_29.01", "n_draws": 1000, "location_ids": [1, 2, 3]}
    assert wf.fail_fast is True
    assert wf.max_concurrent == 50
    assert wf.function.endswith("test_design_example.<locals>.seiir")
    assert len(wf) == 1004
    assert wf.count_by_task() == {"fit": 1000, "validate": 1, "forecast": 3}
    nodes = list(wf.nodes())
    assert len(nodes) == 1004
    validate_node = next(n for n in nodes if n.task is validate)
    assert len(validate_node.upstream) == 1000
    assert set(validate_node.upstream) == {n.identity for n in nodes if n.task is fit}
    assert [len(g) for g in wf.groups()] == [1000]


def test_workflow_name_defaults_to_the_function_name() -> None:
    @gm.workflow()
    def plain() -> None: ...

    assert plain().name == "plain"

    @gm.workflow(name="{fn}-{n}")
    def named(n: int = 3) -> None: ...

    assert named().name == "named-3"


def test_workflow_call_errors_are_task_argument_errors() -> None:
    @gm.workflow(name="x-{missing}")
    def bad_name(n: int) -> None: ...

    with pytest.raises(TaskArgumentError, match=r"name template 'x-\{missing\}'"):
        bad_name(n=1)
    with pytest.raises(TaskArgumentError, match="workflow 'bad_name'"):
        bad_name(m=1)  # type: ignore[call-arg]


def test_workflow_applied_twice_is_a_type_error() -> None:
    @gm.workflow
    def once() -> None: ...

    with pytest.raises(TypeError, match="applied twice"):
        gm.workflow(once)
    with pytest.raises(TypeError, match="applied twice"):
        gm.workflow(name="x")(once)


def test_an_exception_while_recording_propagates_and_leaves_no_recorder() -> None:
    @gm.workflow
    def failing() -> None:
        fit(output_version="v", draw=1)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        failing()
    assert current_recorder() is None
    with pytest.raises(NotInWorkflowError):
        fit(output_version="v", draw=1)


# --- duplicates and cycles ----------------------------------------------------------------------


def test_duplicate_calls_merge_and_unite_their_edges() -> None:
    def body() -> None:
        a = validate(output_version="a")
        b = validate(output_version="b")
        first = fit(output_version="v", draw=1, after=a)
        second = fit(output_version="v", draw=1, after=b)
        assert first.identity == second.identity

    wf = record_one(body)
    assert len(wf) == 3
    fit_node = next(n for n in wf.nodes() if n.task is fit)
    assert len(fit_node.upstream) == 2


def test_a_single_and_a_map_element_are_one_node() -> None:
    """fit(draw=3) + fit.map(draw=range(10)) is 10 fit nodes; edges of either apply."""

    def body() -> None:
        before_single = validate(output_version="before-single")
        before_group = validate(output_version="before-group")
        single = fit(output_version="v", draw=3, after=before_single)
        group = fit.map(output_version="v", draw=range(10), after=before_group)
        validate(output_version="after-single", after=single)
        validate(output_version="after-element", after=group[3])
        validate(output_version="after-group", after=group)

    wf = record_one(body)
    assert wf.count_by_task() == {"validate": 5, "fit": 10}
    assert len(wf) == 15
    fits = [n for n in wf.nodes() if n.task is fit]
    assert sorted(n.args["draw"] for n in fits) == list(range(10))
    node3 = next(n for n in fits if n.args["draw"] == 3)
    validates = {n.args["output_version"]: n for n in wf.nodes() if n.task is validate}
    assert set(node3.upstream) == {
        validates["before-single"].identity, validates["before-group"].identity,
    }
    group = wf.groups()[0]
    assert group[3].identity == node3.identity
    assert set(group[3].upstream) == set(node3.upstream)  # the same node, seen from the group
    assert validates["after-single"].upstream == [node3.identity]
    assert validates["after-element"].upstream == [node3.identity]
    assert set(validates["after-group"].upstream) == {n.identity for n in fits}


def test_cycle_through_a_merged_duplicate_names_the_cycle() -> None:
    def body() -> None:
        a = fit(output_version="v", draw=1)
        b = validate(output_version="v", after=a)
        fit(output_version="v", draw=1, after=b)

    wf = record_one(body)
    with pytest.raises(GraphError) as info:
        len(wf)
    message = str(info.value)
    assert "cycle" in message
    assert "fit(output_version='v', draw=1) -> validate(output_version='v') -> fit(" in message


def test_cycle_through_a_map_element_is_found() -> None:
    def body() -> None:
        group = fit.map(output_version="v", draw=range(10))
        f = forecast(output_version="v", location_id=1, after=group[3])
        fit(output_version="v", draw=3, after=f)

    with pytest.raises(GraphError, match=r"draw=3\) -> forecast\(.*\) -> fit\(.*draw=3"):
        len(record_one(body))


def test_cycle_through_a_whole_group_is_found() -> None:
    def body() -> None:
        fit(output_version="v", draw=3)
        group = fit.map(output_version="v", draw=range(10))
        v = validate(output_version="v", after=group)
        fit(output_version="v", draw=3, after=v)

    with pytest.raises(GraphError, match="cycle"):
        record_one(body).to_dot()


def test_shared_nodes_without_a_cycle_are_fine() -> None:
    def body() -> None:
        fit(output_version="v", draw=3)
        group = fit.map(output_version="v", draw=range(10))
        v = validate(output_version="v", after=group[5])
        fit(output_version="v", draw=3, after=v)

    wf = record_one(body)
    assert len(wf) == 11


def test_per_call_resources_merge_onto_the_decorator() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=range(2), resources=gm.Resources(mem="20G", cores=2))
        fit(output_version="w", draw=0, resources=gm.Resources(runtime="3h"))

    nodes = list(record_one(body).nodes())
    assert nodes[0].resources == Resources(mem="20G", cores=2, runtime=1000)
    assert nodes[2].resources == Resources(mem="10G", cores=1, runtime="3h")


# --- identity ---------------------------------------------------------------------------------


IDENTITY_SCRIPT = """
import json, gm_flows
wf = gm_flows.seiir(version="v1", n_draws=3, location_ids=[4, 5])
print(json.dumps([[n.task.name, n.args, n.identity] for n in wf.nodes()]))
"""


def test_identity_is_stable_across_processes() -> None:
    import gm_flows

    here = [[n.task.name, n.args, n.identity]
            for n in gm_flows.seiir(version="v1", n_draws=3, location_ids=[4, 5]).nodes()]
    done = run_python("-c", IDENTITY_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == here
    assert len({i for _, _, i in here}) == 6


def test_identity_ignores_resources_but_not_arguments() -> None:
    def plain() -> None:
        fit(output_version="v", draw=1)

    def bigger() -> None:
        fit(output_version="v", draw=1, resources=gm.Resources(mem="64G"))

    def other() -> None:
        fit(output_version="v", draw=2)
        fit(output_version="w", draw=1)
        forecast(output_version="v", location_id=1)

    (a,) = record_one(plain).nodes()
    (b,) = record_one(bigger).nodes()
    assert a.identity == b.identity
    others = [n.identity for n in record_one(other).nodes()]
    assert a.identity not in others
    assert len(set(others)) == 3


def test_identity_is_the_same_alone_and_inside_a_map() -> None:
    def alone() -> None:
        fit(output_version="v", draw=7)
        forecast(output_version="v", location_id=2)
        record(text="t", tag=("a",))

    def mapped() -> None:
        fit.map(output_version="v", draw=range(10))
        forecast.map(gm.product(output_version=["v"], location_id=[1, 2]))
        record.map(text=["t"], tag=[("a",)])

    ids = [n.identity for n in record_one(alone).nodes()]
    mapped_ids = {n.identity for n in record_one(mapped).nodes()}
    assert set(ids) <= mapped_ids


def test_identity_does_not_depend_on_argument_order() -> None:
    def one() -> None:
        fit(output_version="v", draw=1)

    def two() -> None:
        fit(draw=1, output_version="v")

    assert next(record_one(one).nodes()).identity == next(record_one(two).nodes()).identity


def test_positional_task_arguments_are_refused_with_the_keyword_spelling() -> None:
    def body() -> None:
        fit("v", 1)

    with pytest.raises(TaskArgumentError, match=r"as fit\(output_version=\.\.\., draw=\.\.\.\)"):
        record_one(body)


def test_recording_the_same_node_after_itself_is_a_cycle() -> None:
    def body() -> None:
        a = fit(output_version="v", draw=1)
        fit(output_version="v", draw=1, after=a)

    with pytest.raises(GraphError, match="cycle"):
        len(record_one(body))


def test_tasks_defined_in_a_script_cannot_be_dispatched() -> None:
    script = (
        "import click, gristmill as gm\n"
        "@gm.task\n@click.option('--x', type=int)\ndef local(x): ...\n"
        "@gm.workflow\ndef flow():\n    local(x=1)\n"
        "try:\n    next(flow().nodes()).argv\nexcept gm.GristmillError as exc:\n    print(exc)\n"
    )
    done = run_python("-c", script)
    assert done.returncode == 0, done.stderr
    assert "task 'local' is defined in the script being run (__main__)" in done.stdout
    assert "Move the task into a module" in done.stdout


def test_a_flat_list_for_a_multiple_option_is_one_constant_value_in_map() -> None:
    def body() -> None:
        record.map(text=["a", "b"], tag=["x", "y"])
        record.map(text=["c", "d"], tag=[["x"], ["y", "z"]])

    assert [n.args["tag"] for n in record_one(body).nodes()] == [
        ("x", "y"), ("x", "y"), ("x",), ("y", "z"),
    ]


def test_workflow_name_template_may_use_a_parameter_called_fn() -> None:
    @gm.workflow(name="run-{fn}")
    def flow(fn: str) -> None: ...

    assert flow(fn="x").name == "run-x"
