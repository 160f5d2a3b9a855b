"""Job names (``gristmill.graph.names``): the default and template forms, sanitising,
long names, and uniqueness in a run whatever the values; task directories that no task
name can move out of ``logs/``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import pytest
from gm_hostile_names import HOSTILE_NAMES
from gm_tasks import fit, forecast, record, validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gristmill as gm
from gristmill.dsl.task import Task
from gristmill.dsl.workflow import Workflow
from gristmill.errors import TaskArgumentError
from gristmill.graph.names import MAX_NAME, JobNames, task_dir


def recorded(body: Callable[[], object]) -> Workflow:
    return gm.workflow(body)()


def names_by_args(wf: Workflow) -> dict[tuple[object, ...], str]:
    return {tuple(sorted((k, str(v)) for k, v in n.args.items())): n.name for n in wf.nodes()}


@gm.task
@click.option("--first", required=True)
@click.option("--second", required=True)
def pair(first: str, second: str) -> None:
    """Two text arguments: their default job name joins them with ``_``."""


@gm.task(name="run_{label}")
@click.option("--label", required=True)
def labelled(label: str) -> None:
    """A template whose one value may hold characters that are sanitised away."""


@gm.task(name="{label}")
@click.option("--label", required=True)
def free(label: str) -> None: ...


@gm.task(name="same")
@click.option("--k", type=int, required=True)
def one_name(k: int) -> None: ...


@gm.task(name="same")
@click.option("--k", type=int, required=True)
def other_name(k: int) -> None: ...


def test_default_job_names_are_task_and_node_args() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=range(2))
        validate(output_version="only")
        record.map(text=["a b/c", "x;$(y)"])

    names = [n.name for n in recorded(body).nodes()]
    assert names == ["fit_0", "fit_1", "validate", "record_a-b-c", "record_x-y-"]


def test_template_job_names_get_a_hash_when_they_would_not_be_unique() -> None:
    def body() -> None:
        forecast.map(output_version="v", location_id=[1, 2])
        forecast(output_version="w", location_id=1)

    names = [n.name for n in recorded(body).nodes()]
    assert [n.split("_")[:2] for n in names] == [["forecast", "1"], ["forecast", "2"],
                                                 ["forecast", "1"]]
    assert len(set(names)) == 3


def test_template_job_names_use_the_template_alone_when_it_covers_the_node_args() -> None:
    @gm.task(name="{task}-{location_id:03d}")
    @click.option("--location-id", type=int, required=True)
    def place(location_id: int) -> None: ...

    def body() -> None:
        place.map(location_id=[7, 42])

    assert [n.name for n in recorded(body).nodes()] == ["place-007", "place-042"]


def test_job_name_templates_prefer_an_argument_called_task_and_allow_omitted_options() -> None:
    @gm.task(name="job-{task}-{suffix}")
    @click.option("--task", required=True)
    @click.option("--suffix")
    def named(task: str, suffix: str | None) -> None: ...

    def body() -> None:
        named.map(task=["a", "b"], suffix="s")
        named(task="c")

    names = [n.name for n in recorded(body).nodes()]
    assert names[:2] == ["job-a-s", "job-b-s"]
    assert names[2] == "job-c-"  # suffix omitted


def test_a_template_that_cannot_be_filled_is_a_task_argument_error() -> None:
    @gm.task(name="loc-{location:04d}")
    @click.option("--location", required=True)
    def by_text(location: str) -> None: ...

    def body() -> None:
        by_text(location="x")

    (node,) = recorded(body).nodes()
    with pytest.raises(TaskArgumentError, match=r"'loc-\{location:04d\}' cannot be filled"):
        _ = node.name


def test_job_names_of_lists_and_long_values() -> None:
    def body() -> None:
        record.map(text=["a", "b"], tag=[["x", "y z"], []])
        record(text="long " * 100)

    names = [n.name for n in recorded(body).nodes()]
    assert names[:2] == ["record_a_x,y-z", "record_b_"]
    assert len(names[2]) == 128
    assert names[2].startswith("record_long-long-")
    assert names[2][-9] == "_"


# -- unique in the run ------------------------------------------------------------------------


def test_values_joined_with_underscores_that_clash_get_identity_suffixes() -> None:
    """``x_y``, ``z`` and ``x``, ``y_z`` would both be ``pair_x_y_z``: both get
    ``_<identity[:8]>``, the node that clashes with nothing keeps its own name."""
    wf = recorded(lambda: pair.map(first=["x_y", "x", "q"], second=["z", "y_z", "r"]))
    nodes = list(wf.nodes())
    assert [n.name for n in nodes] == [
        f"pair_x_y_z_{nodes[0].identity[:8]}", f"pair_x_y_z_{nodes[1].identity[:8]}", "pair_q_r"]


def test_values_that_differ_only_in_sanitised_characters_get_identity_suffixes() -> None:
    labels = ["a/b", "a b", "a:b", "c"]
    wf = recorded(lambda: labelled.map(label=labels))
    nodes = list(wf.nodes())
    assert [n.name for n in nodes] == [
        *(f"run_a-b_{n.identity[:8]}" for n in nodes[:3]), "run_c"]


def test_two_tasks_whose_templates_say_the_same_get_identity_suffixes() -> None:
    def body() -> None:
        one_name(k=1)
        other_name(k=1)

    nodes = list(recorded(body).nodes())
    assert [n.name for n in nodes] == [f"same_{n.identity[:8]}" for n in nodes]
    assert nodes[0].identity != nodes[1].identity


def test_a_default_name_equal_to_another_tasks_template_name_gets_a_suffix_too() -> None:
    """``validate`` (no node args: the task's name) beside a node whose template fills in
    ``validate``: both are suffixed; the other nodes keep their names."""
    def body() -> None:
        validate(output_version="v")
        free.map(label=["validate", "other"])

    nodes = list(recorded(body).nodes())
    assert [n.name for n in nodes] == [f"validate_{nodes[0].identity[:8]}",
                                       f"validate_{nodes[1].identity[:8]}", "other"]


def test_the_names_do_not_depend_on_the_order_of_recording() -> None:
    def forwards() -> None:
        labelled.map(label=["a/b", "a b", "c"])
        pair.map(first=["x_y", "x"], second=["z", "y_z"])

    def backwards() -> None:
        pair.map(first=["x", "x_y"], second=["y_z", "z"])
        labelled.map(label=["c", "a b", "a/b"])

    one, two = names_by_args(recorded(forwards)), names_by_args(recorded(backwards))
    assert one == two
    assert len(set(one.values())) == len(one)


def test_a_suffixed_name_that_meets_another_name_makes_both_longer() -> None:
    """``a/b`` and ``a:b`` clash as ``run_a-b``; a third node whose own name is what the
    first would become, ``run_a-b_<its identity[:8]>``, clashes with that: all three
    end with 16 identity characters and every name is unique."""
    first = list(recorded(lambda: labelled.map(label=["a/b", "a:b"])).nodes())
    trap = f"a-b_{first[0].identity[:8]}"
    nodes = list(recorded(lambda: labelled.map(label=["a/b", "a:b", trap])).nodes())
    assert [n.identity for n in nodes[:2]] == [n.identity for n in first]
    names = [n.name for n in nodes]
    assert names == [f"run_a-b_{nodes[0].identity[:16]}", f"run_a-b_{nodes[1].identity[:16]}",
                     f"run_{trap}_{nodes[2].identity[:16]}"]


def test_long_clashing_names_stay_within_128_characters() -> None:
    wf = recorded(lambda: labelled.map(label=["x" * 200 + "/1", "x" * 200 + ":1"]))
    names = [n.name for n in wf.nodes()]
    assert len(set(names)) == 2
    assert all(len(n) <= 128 for n in names)


values = st.one_of(
    st.text(alphabet="ab_/: ", min_size=0, max_size=4),
    st.integers(-3, 3).map(str),
    st.just("z" * 130),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    firsts=st.lists(values, min_size=1, max_size=4),
    seconds=st.lists(values, min_size=1, max_size=3),
    cross=st.booleans(),
)
def test_names_made_for_a_whole_group_are_the_names_made_one_by_one(
    firsts: list[str], seconds: list[str], cross: bool
) -> None:
    """The bulk path (one format string per group) gives each node the name the
    one-by-one path gives it, and every name in the graph is unique."""

    def body() -> None:
        if cross:
            pair.map(gm.product(first=firsts, second=seconds))
        else:
            pair.map(first=firsts, second=(seconds * 4)[: len(firsts)])
        pair.map(first=firsts[0], second=["k", "k_"])  # a constant node arg in a group

    graph = recorded(body).graph()
    names = JobNames.of(graph)
    for start, bulk in names._naturals():
        u = graph.locate(start)[0]
        unit = graph.workflow.units[u]
        positions = graph.owned_positions.get(u) or range(graph.owned[u])
        assert list(bulk) == [names.natural(unit, e) for e in positions]
    every = [graph.job_name(*graph.locate(i)) for i in range(graph.n_nodes)]
    assert len(set(every)) == len(every)
    assert all(len(n) <= 128 for n in every)


# -- names made safe for files -----------------------------------------------------------------


def renamed(name: str, template: str | None = None) -> Task:
    """A task called ``name`` (as a renamed function would be), taking ``--value``."""

    def body(value: str) -> None: ...

    body.__name__ = name
    return gm.task(name=template)(click.option("--value", required=True)(body))


def test_no_job_name_starts_with_a_dot_or_is_empty() -> None:
    """Attempt files begin with the job name: none of them may be hidden or nameless."""
    dots, empty, by_template = renamed(".."), renamed(""), renamed("t", template="{value}")

    def body() -> None:
        dots.map(value=["a", ".b"])
        dots(value="c")  # a unit of its own: its one node arg comes first...
        by_template.map(value=[".hidden", "..", ""])
        empty(value="x")

    names = [n.name for n in recorded(body).nodes()]
    assert names[:2] == ["__a", "__.b"]  # the task's dots, then "_" and the value
    assert names[3:6] == ["_hidden", "_", "job"]
    assert names[6] == "_x"
    assert not any(n.startswith(".") or not n for n in names)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=st.text(alphabet="._-a/", max_size=4), columns=st.lists(values, min_size=1,
                                                                     max_size=4))
def test_the_bulk_names_of_a_task_with_an_odd_name_are_the_names_made_one_by_one(
        task: str, columns: list[str]) -> None:
    odd = renamed(task)
    graph = recorded(lambda: odd.map(value=columns)).graph()
    names = JobNames.of(graph)
    for start, bulk in names._naturals():
        u = graph.locate(start)[0]
        positions = graph.owned_positions.get(u) or range(graph.owned[u])
        made = list(bulk)
        assert made == [names.natural(graph.workflow.units[u], e) for e in positions]
        assert not any(n.startswith(".") or not n for n in made)


@pytest.mark.parametrize("name", ["fit", "fit_2", "Forecast", "seiir-fit", "a.b", "v1,2=3+4",
                                  "_private", "x" * MAX_NAME])
def test_a_plain_task_name_is_its_own_directory(name: str) -> None:
    assert task_dir(name) == name


def _is_safe_dir(made: str) -> bool:
    return (
        made not in ("", ".", "..")
        and not made.startswith((".", "-"))
        and all(c.isascii() and (c.isalnum() or c in "_.,=+-~") for c in made)
        and len(made.encode()) <= 255
    )


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:24])
def test_a_hostile_task_name_becomes_a_plain_directory_with_its_digest(name: str) -> None:
    made = task_dir(name)
    assert made != name
    assert _is_safe_dir(made), made
    assert made == task_dir(name)  # the same on every resume
    stem, mark, digest = made.rpartition("~")
    assert mark
    assert len(digest) == 12
    assert len(stem) <= 64


def test_hostile_task_names_never_share_a_directory_with_each_other_or_a_plain_name() -> None:
    plain = ["a-b", "escape", "hidden", "task", "dash", "a-b-1234567890ab"]
    every: list[Any] = [*HOSTILE_NAMES, *plain]
    dirs = [task_dir(n) for n in every]
    assert len(set(dirs)) == len(dirs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12), unique=True, max_size=8))
def test_any_task_names_make_distinct_safe_directories(names: list[str]) -> None:
    dirs = [task_dir(n) for n in names]
    assert len(set(dirs)) == len(dirs)
    assert all(_is_safe_dir(d) for d in dirs)
