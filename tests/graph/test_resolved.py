"""Tests for gristmill.graph.resolved.

Dense ids, dedupe across units, identities, order (job names: test_names.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from gm_tasks import fit, forecast, record, validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gristmill as gm
from gristmill.dsl.workflow import Workflow
from gristmill.errors import GraphError
from gristmill.graph.identity import digest
from gristmill.graph.resolved import Graph


def recorded(body: Callable[[], object]) -> Workflow:
    return gm.workflow(body)()


def all_args(graph: Graph) -> list[dict[str, object]]:
    return [graph.args(i) for i in range(graph.n_nodes)]


# --- ids, members and dedupe -------------------------------------------------------------


def test_units_without_duplicates_own_contiguous_id_ranges() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=range(5))
        validate(output_version="v")
        forecast.map(output_version="v", location_id=[1, 2])

    graph = recorded(body).graph()
    assert graph.n_nodes == 8
    assert graph.starts == [0, 5, 6]
    assert graph.owned == [5, 1, 2]
    assert graph.members == [range(0, 5), range(5, 6), range(6, 8)]
    assert graph.aliases == {}
    assert graph.locate(4) == (0, 4)
    assert graph.locate(7) == (2, 1)
    with pytest.raises(IndexError):
        graph.locate(8)


def test_duplicates_inside_one_map_are_one_node() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=[1, 1, 2, 1])

    wf = recorded(body)
    graph = wf.graph()
    assert len(wf) == 2
    assert list(graph.members[0]) == [0, 0, 1, 0]
    assert all_args(graph) == [
        {"output_version": "v", "draw": 1}, {"output_version": "v", "draw": 2},
    ]


def test_overlapping_maps_share_their_common_nodes() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=range(0, 6))
        fit.map(output_version="v", draw=range(3, 9))

    graph = recorded(body).graph()
    assert graph.n_nodes == 9
    assert list(graph.members[1]) == [3, 4, 5, 6, 7, 8]
    assert graph.aliases == {3: [1], 4: [1], 5: [1]}
    assert graph.units_of(4) == [0, 1]
    assert graph.units_of(7) == [1]
    assert graph.locate(6) == (1, 3)  # the first id unit 1 owns is its element 3
    assert [a["draw"] for a in all_args(graph)] == list(range(9))


def test_identical_maps_are_merged_at_record_time() -> None:
    def body() -> None:
        a = fit.map(output_version="v", draw=[0, 1, 2])
        b = fit.map(output_version="v", draw=[0, 1, 2])
        assert a.unit == b.unit
        fit.map(output_version="v", draw=range(3))  # same nodes, spelt differently

    wf = recorded(body)
    assert len(wf.units) == 2
    assert len(wf) == 3


def test_maps_of_different_tasks_never_merge() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=range(3))
        forecast.map(output_version="v", location_id=range(3))

    assert len(recorded(body)) == 6


# --- identities ---------------------------------------------------------------------------


def test_identity_is_a_digest_of_entry_point_and_sorted_arguments() -> None:
    def body() -> None:
        fit(draw=3, output_version="v")

    graph = recorded(body).graph()
    assert graph.identity(0) == digest('gm_tasks:fit\0draw=3\x1foutput_version="v"')


def test_a_default_spelled_out_or_left_out_is_one_node() -> None:
    """``record(text="a")`` and ``record(text="a", scale=<its default>)`` run one command."""

    def body() -> None:
        record(text="a")
        record(text="a", scale=1.0)  # scale's default
        record.map(text=["a", "b"], scale=1.0)
        record(text="a", scale=2.0)  # another value: another node

    graph = recorded(body).graph()
    assert graph.n_nodes == 3
    assert sorted((a["text"], a.get("scale", 1.0)) for a in all_args(graph)) == [
        ("a", 1.0), ("a", 2.0), ("b", 1.0)
    ]


def test_bulk_and_single_identities_agree() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=range(4))
        fit.map(output_version=["a", "b", "c"], draw=[1, 2, 3])
        fit(output_version="a", draw=1)
        forecast.map(gm.product(output_version=["x", "y"], location_id=[1, 2]))
        record.map(text=["p", "q"], scale=[0.5, 1e-9], tag=[("a", "b"), ()])
        record(text="{braces} and \"quotes\"", pair=(1, "z"))
        fit.map(output_version="v", draw=[2, 9])

    wf = recorded(body)
    graph = wf.graph()
    singly = [graph.identity(i) for i in range(graph.n_nodes)]
    assert graph.identities() == singly
    assert len(set(singly)) == graph.n_nodes == len(wf)


def test_unit_digests_change_with_any_element_and_come_with_the_identities() -> None:
    def body(last: int) -> Callable[[], None]:
        def record_it() -> None:
            fit.map(output_version="v", draw=[*range(200_000), last])  # several hash chunks
            fit(output_version="v", draw=3)  # an alias: its unit owns no node
            validate(output_version="v")

        return record_it

    graph = recorded(body(-1)).graph()
    assert graph.owned == [200_001, 0, 1]
    identities = graph.identities()
    digests = graph.unit_digests()
    assert graph.identities() is identities  # both made once, in one pass
    fresh = recorded(body(-1)).graph()
    assert fresh.unit_digests() == digests  # without the identities: the same digests
    assert fresh.identities() == identities
    changed = recorded(body(-2)).graph().unit_digests()
    assert changed[0] != digests[0]
    assert changed[1:] == digests[1:]
    assert len(set(digests)) == 3


_DOMAIN = st.tuples(st.sampled_from(["a", "b"]), st.integers(min_value=0, max_value=4))
_CALL = st.one_of(
    st.tuples(st.just("single"), _DOMAIN),
    st.tuples(st.just("map"), st.lists(_DOMAIN, min_size=1, max_size=6)),
    st.tuples(
        st.just("product"),
        st.tuples(
            st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True),
            st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True),
        ),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_CALL, min_size=1, max_size=6))
def test_any_mix_of_calls_dedupes_to_the_distinct_argument_sets(calls: list[tuple]) -> None:  # type: ignore[type-arg]
    def body() -> None:
        for kind, spec in calls:
            if kind == "single":
                fit(output_version=spec[0], draw=spec[1])
            elif kind == "map":
                fit.map(output_version=[v for v, _ in spec], draw=[d for _, d in spec])
            else:
                fit.map(gm.product(output_version=spec[0], draw=spec[1]))

    expected: set[tuple[str, int]] = set()
    for kind, spec in calls:
        if kind == "single":
            expected.add(spec)
        elif kind == "map":
            expected.update(spec)
        else:
            expected.update(itertools.product(*spec))
    wf = recorded(body)
    graph = wf.graph()
    got = [(str(a["output_version"]), int(a["draw"])) for a in all_args(graph)]  # type: ignore[call-overload]
    assert len(got) == len(set(got)) == len(wf)
    assert set(got) == expected
    by_args: dict[tuple[str, int], str] = {}
    for value in expected:

        def alone(value: tuple[str, int] = value) -> None:
            fit(output_version=value[0], draw=value[1])

        by_args[value] = recorded(alone).graph().identity(0)
    assert graph.identities() == [by_args[g] for g in got]
    for unit in wf.units:  # every element of every unit resolves to its node
        for element in range(unit.size):
            node_id = graph.members[unit.index][element]
            assert graph.args(node_id) == unit.element_args(element)


# --- order and edges -----------------------------------------------------------------------


def test_recording_order_is_the_topological_order_without_merges() -> None:
    def body() -> None:
        a = fit.map(output_version="v", draw=range(3))
        b = validate(output_version="v", after=a)
        forecast(output_version="v", location_id=1, after=[b, a[1]])

    graph = recorded(body).graph()
    assert graph.order == [0, 1, 2]
    assert graph.downstream == [[1], [2], []]
    assert graph.element_downstream == {1: [2]}  # forecast waits for draw=1 alone
    assert graph.upstream_count == [0, 3, 2]


def test_element_edges_are_recorded_per_node() -> None:
    def body() -> None:
        a = fit.map(output_version="v", draw=range(3))
        forecast(output_version="v", location_id=1, after=a[2])

    graph = recorded(body).graph()
    assert graph.element_downstream == {2: [1]}
    assert graph.upstream_count == [0, 1]
    assert graph.downstream == [[], []]


def test_a_merge_that_points_forward_is_sorted() -> None:
    def body() -> None:
        a = fit(output_version="v", draw=1)
        v = validate(output_version="v")
        fit(output_version="v", draw=1, after=v)  # merges into unit 0: unit 0 now waits for 1
        forecast(output_version="v", location_id=1, after=a)

    graph = recorded(body).graph()
    order = graph.order
    assert sorted(order) == [0, 1, 2]
    assert order.index(1) < order.index(0) < order.index(2)


def test_upstream_nodes_unite_the_edges_of_every_unit_holding_a_node() -> None:
    def body() -> None:
        x = validate(output_version="x")
        y = validate(output_version="y")
        fit(output_version="v", draw=2, after=x)
        fit.map(output_version="v", draw=range(4), after=[y, x])

    graph = recorded(body).graph()
    shared = graph.members[3][2]
    assert shared == 2  # owned by the single call, recorded first
    assert sorted(graph.upstream_nodes(3, 2)) == [0, 1]
    assert list(graph.upstream_nodes(2, None)) == list(graph.upstream_nodes(3, 2))
    assert sorted(graph.upstream_nodes(3, 0)) == [0, 1]


def test_self_cycle_through_a_merged_group_is_an_error() -> None:
    def body() -> None:
        group = fit.map(output_version="v", draw=range(3))
        fit.map(output_version="v", draw=range(3), after=group[0])

    with pytest.raises(GraphError, match="cycle"):
        recorded(body).graph()


def test_cycle_message_names_shared_nodes_and_groups() -> None:
    def body() -> None:
        fit(output_version="v", draw=3)
        group = fit.map(output_version="v", draw=range(10))
        v = validate(output_version="v", after=group)
        fit(output_version="v", draw=3, after=v)

    with pytest.raises(GraphError) as info:
        recorded(body).graph()
    message = str(info.value)
    assert "fit(output_version='v', draw=3)" in message
    assert "validate(output_version='v')" in message
    assert "remove the edge that closes the loop" in message


# --- node args and job names ----------------------------------------------------------------


def test_node_args_are_the_arguments_that_vary() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=range(3))
        forecast(output_version="v", location_id=1)
        forecast(output_version="w", location_id=1)
        record(text="a")
        record(text="b", scale=2.0)

    graph = recorded(body).graph()
    assert graph.node_args == {
        "gm_tasks:fit": ["draw"],
        "gm_tasks:forecast": ["output_version"],
        "gm_tasks:record": ["text", "scale"],  # given in one call only: it varies
    }


def test_count_by_task_counts_distinct_nodes() -> None:
    def body() -> None:
        fit(output_version="v", draw=3)
        fit.map(output_version="v", draw=range(10))
        validate(output_version="v")

    assert recorded(body).count_by_task() == {"fit": 10, "validate": 1}


def test_an_empty_map_has_no_nodes_and_holds_nothing_back() -> None:
    def body() -> None:
        validate(output_version="v", after=fit.map(output_version="v", draw=range(0)))

    wf = recorded(body)
    assert len(wf) == 1
    assert next(wf.nodes()).upstream == []
