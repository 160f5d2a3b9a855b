"""Tests for gristmill.graph.identity: what a node's identity covers, in bulk and alone.

An identity covers the task (and its ``version=``), the argument values and the
identities of what the node waits for; not resources. Version 1 (stores of older
gristmill versions) is the text alone.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import pytest
from gm_tasks import fit, forecast, validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gristmill as gm
from gristmill.dsl.workflow import Workflow
from gristmill.graph.identity import IDENTITY_VERSION, digest, upstream_suffix
from gristmill.graph.resolved import Graph


def recorded(body: Callable[[], object]) -> Workflow:
    return gm.workflow(body)()


def by_args(graph: Graph, version: int = IDENTITY_VERSION) -> dict[str, str]:
    """Identity of each node, keyed by task and arguments (stable across recordings)."""
    units = graph.workflow.units
    out = {}
    for node, identity in enumerate(graph.identities(version)):
        unit = graph.locate(node)[0]
        out[f"{units[unit].task.name}{sorted(graph.args(node).items())}"] = identity
    return out


def pipeline(prepare_version: str = "v", draws: int = 3, location: int = 1,
             extra_upstream: bool = False) -> Workflow:
    """validate -> fit.map(draws) -> forecast (fan-in); optionally a second validate upstream."""

    def body() -> None:
        ready = validate(output_version=prepare_version)
        waits = [ready, validate(output_version="other")] if extra_upstream else ready
        fits = fit.map(output_version="v", draw=range(draws), after=waits)
        forecast(output_version="v", location_id=location, after=fits)

    return recorded(body)


def test_a_root_node_is_the_digest_of_its_text_as_before() -> None:
    graph = pipeline().graph()
    assert graph.identity(0) == digest('gm_tasks:validate\0output_version="v"')
    assert graph.identities(1)[0] == graph.identities()[0]


def test_a_node_waiting_for_others_covers_their_identities() -> None:
    graph = pipeline(draws=2).graph()
    ids = graph.identities()
    ready = ids[0]
    assert ids[1] == digest('gm_tasks:fit\0draw=0\x1foutput_version="v"' + upstream_suffix([ready]))
    fits_digest = digest_of(ids[1:3])
    assert graph.unit_digests()[1] == fits_digest
    assert ids[3] == digest('gm_tasks:forecast\0location_id=1\x1foutput_version="v"'
                            + upstream_suffix([fits_digest]))


def digest_of(identities: list[str]) -> str:
    import hashlib

    return hashlib.blake2b(("\n".join(identities) + "\n").encode(), digest_size=16).hexdigest()


def test_an_upstream_change_changes_every_node_downstream_and_nothing_else() -> None:
    before = by_args(pipeline().graph())
    after = by_args(pipeline(prepare_version="v2").graph())
    same = {k for k in before if after.get(k) == before[k]}
    assert same == set()  # validate's argument changed: fit and forecast wait for it
    moved = by_args(pipeline(location=2).graph())  # the fan-in changed: nothing upstream does
    assert {k for k in before if moved.get(k) != before[k]} == {
        "forecast[('location_id', 1), ('output_version', 'v')]"
    }


def test_more_upstream_nodes_or_another_group_change_the_identity() -> None:
    base = by_args(pipeline().graph())
    wider = by_args(pipeline(extra_upstream=True).graph())
    fit0 = "fit[('draw', 0), ('output_version', 'v')]"
    assert wider[fit0] != base[fit0]  # it waits for one more node
    larger = by_args(pipeline(draws=4).graph())
    assert larger[fit0] == base[fit0]  # the same fit, waiting for the same validate
    forecast1 = "forecast[('location_id', 1), ('output_version', 'v')]"
    assert larger[forecast1] != base[forecast1]  # waits for four fits now, not three


def test_the_order_of_after_refs_does_not_matter() -> None:
    def body(flip: bool) -> Callable[[], None]:
        def record_it() -> None:
            a = validate(output_version="a")
            b = validate(output_version="b")
            forecast(output_version="v", location_id=1, after=[b, a] if flip else [a, b])

        return record_it

    assert recorded(body(False)).graph().identities() == recorded(body(True)).graph().identities()


def test_identities_do_not_cover_resources() -> None:
    plain = pipeline().graph().identities()

    def body() -> None:
        ready = validate(output_version="v", resources=gm.Resources(mem="64G"))
        fits = fit.map(output_version="v", draw=range(3), after=ready,
                       resources=gm.Resources(runtime="9h"))
        forecast(output_version="v", location_id=1, after=fits)

    assert recorded(body).graph().identities() == plain


def test_a_task_version_enters_the_identity_and_its_downstream() -> None:
    def make(version: str | None) -> Callable[[], None]:
        @gm.task(version=version)
        @click.option("--n", type=int, required=True)
        def step(n: int) -> None:
            """Versioned."""

        def body() -> None:
            first = step(n=1)
            validate(output_version="v", after=first)

        return body

    plain, v2, v2_again = (recorded(make(v)).graph() for v in (None, "2", "2"))
    assert v2.identities() == v2_again.identities()
    assert all(a != b for a, b in zip(plain.identities(), v2.identities()))  # and downstream
    key = plain.workflow.units[0].task.key
    assert plain.identities()[0] == digest(f"{key}\0n=1")
    assert v2.identities()[0] == digest(f"{key}#2\0n=1")


@pytest.mark.parametrize("bad", ["", "two\nlines", True, 2.5])
def test_a_version_must_be_one_printable_line(bad: object) -> None:
    with pytest.raises(TypeError, match="version="):
        gm.task(version=bad)  # type: ignore[call-overload]


def test_version_1_is_the_text_alone_for_stores_made_before() -> None:
    graph = pipeline(draws=2).graph()
    old = graph.identities(1)
    assert old[1] == digest('gm_tasks:fit\0draw=0\x1foutput_version="v"')
    assert old[3] == digest('gm_tasks:forecast\0location_id=1\x1foutput_version="v"')
    assert graph.identities() != old


def test_a_node_in_several_units_waits_for_the_union_of_their_refs() -> None:
    """fit(draw=3) is owned by the first map and merged into a later call that waits for
    a node recorded after the map: its identity covers that node, its siblings' do not."""

    def body(version: str) -> Callable[[], None]:
        def record_it() -> None:
            fit.map(output_version="v", draw=range(5))
            ready = validate(output_version=version)
            fit(output_version="v", draw=3, after=ready)

        return record_it

    graph = recorded(body("a")).graph()
    assert graph.aliases == {3: [2]}
    ids = graph.identities()
    text = 'gm_tasks:fit\0draw=3\x1foutput_version="v"'
    assert ids[3] == digest(text + upstream_suffix([ids[5]]))
    assert ids[2] == digest('gm_tasks:fit\0draw=2\x1foutput_version="v"')
    other = recorded(body("b")).graph().identities()
    assert [i for i, (x, y) in enumerate(zip(ids, other)) if x != y] == [3, 5]
    assert [graph.identity(i) for i in range(graph.n_nodes)] == ids  # one by one: the same


def test_one_node_alone_agrees_with_the_bulk_identities() -> None:
    for make in (pipeline, lambda: pipeline(extra_upstream=True)):
        wf = make()
        singly = [wf.graph().identity(i) for i in range(len(wf))]
        fresh = make().graph()
        assert fresh.identities() == singly
        assert len(set(singly)) == len(wf)


def test_unit_digests_stand_for_the_identities_of_their_nodes() -> None:
    """Equal digests, equal identities: what lets a resume compare one digest per unit."""
    graph = pipeline().graph()
    ids, digests = graph.identities(), graph.unit_digests()
    assert digests[0] == ids[0]  # one node: its identity
    assert digests[2] == ids[4]
    assert digests[1] == digest_of(ids[1:4])
    changed = pipeline(prepare_version="v2").graph().unit_digests()
    assert all(a != b for a, b in zip(digests, changed))  # the change travels down


_SHAPES = st.lists(
    st.tuples(st.integers(1, 4), st.lists(st.integers(0, 20), max_size=3)), min_size=1,
    max_size=7,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_SHAPES, st.data())
def test_changing_one_unit_changes_exactly_its_nodes_and_all_downstream(
    shape: list[tuple[int, list[int]]], data: st.DataObject
) -> None:
    """Unit i is a map of ``size`` fits, waiting for earlier units picked by index; one unit
    gets another output version: exactly it and the units downstream of it change."""
    changed = data.draw(st.integers(0, len(shape) - 1))

    def record(touch: int | None) -> Workflow:
        def body() -> None:
            groups: list[gm.NodeGroup] = []
            for i, (size, waits) in enumerate(shape):
                after = [groups[w % i] for w in waits] if i else None
                version = f"u{i}" + ("-changed" if i == touch else "")
                groups.append(fit.map(output_version=version, draw=range(size), after=after))

        return recorded(body)

    downstream = {changed}
    for i, (_, waits) in enumerate(shape):
        if i and any(w % i in downstream for w in waits):
            downstream.add(i)
    before, after = record(None).graph(), record(changed).graph()
    for unit in range(len(shape)):
        nodes = before.members[unit]
        differs = [before.identities()[n] != after.identities()[n] for n in nodes]
        assert all(differs) if unit in downstream else not any(differs)
