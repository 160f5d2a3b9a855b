"""Nodes that wait for the same upstream nodes, ordered so that upstream comes first.

A node waits for what the ``after=`` refs of every unit containing it name. Almost
always a node belongs to one unit, so the nodes a unit owns form one *cohort*: they
share their upstream nodes. A node merged into several units (``fit(draw=3)`` recorded
alone and inside ``fit.map(draw=range(10))``) waits for the union of those units' refs;
the nodes that belong to the same set of units form a cohort of their own.

Work done cohort by cohort grows with the number of units, not of nodes or edges: node
identities, which cover the identities of upstream nodes
(:func:`gristmill.graph.identity.identify`), and the closure downstream of changed or
forced nodes (:func:`downstream_of`), which ``resume`` and ``--dry-run`` compute.
"""

from __future__ import annotations

import graphlib
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from gristmill.errors import GraphError

if TYPE_CHECKING:
    from gristmill.dsl.nodes import Ref
    from gristmill.graph.resolved import Graph


@attrs.frozen
class Cohort:
    """Nodes that belong to the same units, hence wait for the same upstream nodes."""

    units: tuple[int, ...]  # the units each node belongs to; one unit: the nodes it owns alone
    nodes: Sequence[int]  # node ids, ascending (a range for a unit without shared nodes)
    refs: tuple[Ref, ...]  # what they wait for: the union of those units' after= refs


def cohorts(graph: Graph) -> list[Cohort]:
    """Every node in exactly one cohort; each cohort after the cohorts it waits for."""
    units = graph.workflow.units
    if not graph.aliases:  # the common case: a cohort per unit, in the units' own order
        return [
            Cohort((u,), range(graph.starts[u], graph.starts[u] + graph.owned[u]),
                   tuple(dict.fromkeys(units[u].after)))
            for u in graph.order
            if graph.owned[u]
        ]
    shared: dict[tuple[int, ...], list[int]] = defaultdict(list)
    shared_of_owner: dict[int, set[int]] = defaultdict(set)
    for node in sorted(graph.aliases):
        belongs = graph.units_of(node)
        shared[tuple(sorted(belongs))].append(node)
        shared_of_owner[belongs[0]].add(node)
    made: list[Cohort] = []
    bulk_of: dict[int, int] = {}  # unit -> index in made of the cohort of its own nodes
    for u in range(len(units)):
        start, stop = graph.starts[u], graph.starts[u] + graph.owned[u]
        taken = shared_of_owner.get(u)
        nodes: Sequence[int] = (
            range(start, stop) if not taken else [n for n in range(start, stop) if n not in taken]
        )
        if nodes:
            bulk_of[u] = len(made)
            made.append(Cohort((u,), nodes, tuple(dict.fromkeys(units[u].after))))
    shared_of_unit: dict[int, list[int]] = defaultdict(list)
    shared_of_node: dict[int, int] = {}
    for belongs_to, shared_nodes in shared.items():
        index = len(made)
        refs = tuple(dict.fromkeys(ref for u in belongs_to for ref in units[u].after))
        made.append(Cohort(belongs_to, shared_nodes, refs))
        for u in belongs_to:
            shared_of_unit[u].append(index)
        for node in shared_nodes:
            shared_of_node[node] = index
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for index, cohort in enumerate(made):
        waits: set[int] = set()
        for src, element in cohort.refs:
            if element is None:
                if src in bulk_of:
                    waits.add(bulk_of[src])
                waits.update(shared_of_unit.get(src, ()))
            else:
                node = graph.members[src][element]
                found = shared_of_node.get(node)
                waits.add(found if found is not None else bulk_of[graph.locate(node)[0]])
        sorter.add(index, *waits)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError:  # the node-level cycle check refuses such graphs first
        raise GraphError("the workflow's nodes wait for each other in a cycle") from None
    return [made[i] for i in order]


def downstream_of(graph: Graph, marked: bytearray) -> bytearray:
    """1 for every node that waits, directly or not, for a node marked 1 in ``marked``.

    ``marked`` holds one byte per node, 0 or 1.
    Marked nodes themselves are 1 only when they also wait for a marked node. Whole
    unit refs are checked as byte ranges, so a fan-in over a million nodes costs one
    ``find``.
    """
    bad = bytearray(marked)
    tainted = bytearray(len(marked))
    if 1 not in bad:
        return tainted
    members = graph.members
    for cohort in graph.cohorts():
        hit = False
        for src, element in cohort.refs:
            ids = members[src]
            if element is not None:
                hit = bad[ids[element]] == 1
            elif isinstance(ids, range):
                hit = bad.find(1, ids.start, ids.stop) != -1
            else:
                hit = any(bad[i] == 1 for i in ids)
            if hit:
                break
        if not hit:
            continue
        nodes = cohort.nodes
        if isinstance(nodes, range):
            ones = b"\x01" * len(nodes)
            tainted[nodes.start:nodes.stop] = ones
            bad[nodes.start:nodes.stop] = ones
        else:
            for node in nodes:
                tainted[node] = bad[node] = 1
    return tainted
