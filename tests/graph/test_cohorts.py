"""Tests for gristmill.graph.cohorts: nodes grouped by what they wait for, and closures."""

from __future__ import annotations

from collections.abc import Callable

from gm_tasks import fit, forecast, validate

import gristmill as gm
from gristmill.dsl.workflow import Workflow
from gristmill.graph.cohorts import downstream_of


def recorded(body: Callable[[], object]) -> Workflow:
    return gm.workflow(body)()


def marks(n: int, *ones: int) -> bytearray:
    out = bytearray(n)
    for i in ones:
        out[i] = 1
    return out


def ones(values: bytearray) -> list[int]:
    return [i for i, v in enumerate(values) if v]


def test_without_shared_nodes_each_unit_is_one_cohort_in_order() -> None:
    def body() -> None:
        a = validate(output_version="v")
        b = fit.map(output_version="v", draw=range(3), after=a)
        forecast(output_version="v", location_id=1, after=[b[1], a])

    graph = recorded(body).graph()
    cohorts = graph.cohorts()
    assert [(c.units, list(c.nodes)) for c in cohorts] == [((0,), [0]), ((1,), [1, 2, 3]),
                                                            ((2,), [4])]
    assert cohorts[2].refs == ((1, 1), (0, None))
    assert graph.cohorts() is cohorts  # made once


def test_a_shared_node_waits_for_the_union_and_comes_after_it() -> None:
    """fit(draw=3) belongs to the first map and to a later call waiting for validate, which
    waits for fit(draw=4): draw=3 is a cohort of its own, after validate."""

    def body() -> None:
        fits = fit.map(output_version="v", draw=range(5))
        ready = validate(output_version="v", after=fits[4])
        fit(output_version="v", draw=3, after=ready)

    graph = recorded(body).graph()
    cohorts = graph.cohorts()
    shared = next(c for c in cohorts if len(c.units) > 1)
    assert (shared.units, list(shared.nodes), shared.refs) == ((0, 2), [3], ((1, None),))
    order = [tuple(c.nodes) for c in cohorts]
    assert order.index((0, 1, 2, 4)) < order.index((5,)) < order.index((3,))
    assert sorted(n for c in cohorts for n in c.nodes) == list(range(graph.n_nodes))


def test_downstream_of_follows_every_path_and_leaves_the_rest() -> None:
    def body() -> None:
        a = validate(output_version="a")
        b = validate(output_version="b")
        fits = fit.map(output_version="v", draw=range(4), after=a)  # 2..5
        forecast(output_version="v", location_id=1, after=fits[2])  # 6: one element
        forecast(output_version="v", location_id=2, after=[fits, b])  # 7: the fan-in
        forecast(output_version="v", location_id=3, after=b)  # 8

    graph = recorded(body).graph()
    n = graph.n_nodes
    assert ones(downstream_of(graph, marks(n, 0))) == [2, 3, 4, 5, 6, 7]
    assert ones(downstream_of(graph, marks(n, 1))) == [7, 8]
    assert ones(downstream_of(graph, marks(n, 4))) == [6, 7]  # fits[2] is node 4
    assert ones(downstream_of(graph, marks(n, 3))) == [7]  # another element: the fan-in only
    assert ones(downstream_of(graph, marks(n, 8))) == []
    assert ones(downstream_of(graph, marks(n))) == []


def test_downstream_of_a_shared_node_reaches_what_its_other_unit_feeds() -> None:
    def body() -> None:
        fit.map(output_version="v", draw=range(3))  # 0..2
        single = fit(output_version="v", draw=1)  # node 1 again
        validate(output_version="v", after=single)  # 3

    graph = recorded(body).graph()
    assert ones(downstream_of(graph, marks(graph.n_nodes, 1))) == [3]
    assert ones(downstream_of(graph, marks(graph.n_nodes, 0))) == []
