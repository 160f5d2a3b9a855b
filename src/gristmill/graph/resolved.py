"""Resolve a recorded workflow into a graph of distinct nodes: identities, dedupe, cycles.

Nodes get dense integer ids, allocated unit by unit, so a group of a million
elements is the id range ``[start, start + size)`` and nothing per element is
materialised. A node is identified across runs by a hash of its task's entry
point, its argument values and the identities of the nodes it waits for (not its
resources, so raising memory never makes a finished node run again);
:mod:`gristmill.graph.identity` makes those hashes.

Duplicates across units (``fit(draw=3)`` recorded alone and inside
``fit.map(draw=range(10))``) become one node: the later unit's member list then
points at the earlier node's id (an alias) instead of owning a new one.
"""

from __future__ import annotations

import bisect
import graphlib
from array import array
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from gristmill.dsl.params import canonical
from gristmill.errors import GraphError
from gristmill.graph.cohorts import Cohort, cohorts
from gristmill.graph.identity import (
    IDENTITY_VERSION,
    digest,
    element_text,
    identify,
    unique_within,
    unit_texts,
)
from gristmill.graph.names import JobNames

if TYPE_CHECKING:
    from gristmill.dsl.nodes import Unit
    from gristmill.dsl.workflow import Workflow


@attrs.define(eq=False)
class Graph:
    """Distinct nodes with dense ids, their units, and unit-level dependencies."""

    workflow: Workflow
    n_nodes: int
    order: list[int]  # units in topological order
    starts: list[int]  # first id owned by each unit
    owned: list[int]  # how many ids each unit owns
    members: list[Sequence[int]]  # unit -> node ids of its elements, in element order
    owned_positions: dict[int, array[int]]  # unit -> element index of each owned id (aliases)
    aliases: dict[int, list[int]]  # node id -> other units that contain it
    upstream_count: list[int]  # unit -> number of upstream (node, edge) pairs
    downstream: list[list[int]]  # unit -> units waiting for all of it
    element_downstream: dict[int, list[int]]  # node id -> units waiting for it alone
    node_args: dict[str, list[str]]  # task key -> argument names that vary across its nodes
    #: identity version -> (identities by node id, digests by unit), made on first use
    _identities: dict[int, tuple[list[str], list[str]]] = attrs.field(factory=dict, repr=False)
    _cohorts: list[Cohort] | None = attrs.field(default=None, repr=False)
    _names: JobNames | None = attrs.field(default=None, repr=False)
    #: (first id, end id, unit, owned positions) of the unit :meth:`locate` found last
    _last_located: tuple[int, int, int, array[int] | None] = attrs.field(
        default=(0, 0, 0, None), repr=False
    )

    @classmethod
    def resolve(cls, wf: Workflow) -> Graph:
        units = wf.units
        order = _topological_units(units)
        starts: list[int] = []
        owned: list[int] = []
        members: list[Sequence[int]] = []
        owned_positions: dict[int, array[int]] = {}
        aliases: dict[int, list[int]] = defaultdict(list)
        by_task: dict[str, list[Unit]] = defaultdict(list)
        for unit in units:
            by_task[unit.task.key].append(unit)
        # Singles were already merged while recording; only groups can overlap.
        needs_dedupe = {
            key
            for key, group in by_task.items()
            if any(u.is_group for u in group)
            and (len(group) > 1 or not unique_within(group[0]))
        }
        seen: dict[str, dict[str, int]] = defaultdict(dict)
        next_id = 0
        for unit in units:
            starts.append(next_id)
            if unit.task.key not in needs_dedupe:
                members.append(range(next_id, next_id + unit.size))
                owned.append(unit.size)
                next_id += unit.size
                continue
            known = seen[unit.task.key]
            ids = array("q")
            positions = array("q")
            for i, text in enumerate(unit_texts(unit)):
                node_id = known.get(text)
                if node_id is None:
                    node_id = known[text] = next_id
                    next_id += 1
                    positions.append(i)
                elif node_id < starts[-1] and unit.index not in aliases[node_id]:
                    aliases[node_id].append(unit.index)
                ids.append(node_id)
            owned.append(len(positions))
            if len(positions) == unit.size:
                members.append(range(starts[-1], next_id))
            else:
                members.append(ids)
                owned_positions[unit.index] = positions
        upstream_count = [0] * len(units)
        downstream: list[list[int]] = [[] for _ in units]
        element_downstream: dict[int, list[int]] = defaultdict(list)
        for unit in units:
            for src, element in dict.fromkeys(unit.after):
                if element is None:
                    downstream[src].append(unit.index)
                    src_members = members[src]
                    upstream_count[unit.index] += (
                        len(src_members)
                        if isinstance(src_members, range)
                        else len(set(src_members))
                    )
                else:
                    element_downstream[members[src][element]].append(unit.index)
                    upstream_count[unit.index] += 1
        graph = cls(
            workflow=wf,
            n_nodes=next_id,
            order=order,
            starts=starts,
            owned=owned,
            members=members,
            owned_positions=owned_positions,
            aliases=dict(aliases),
            upstream_count=upstream_count,
            downstream=downstream,
            element_downstream=dict(element_downstream),
            node_args=_node_args(by_task),
        )
        if graph.aliases:
            _check_node_cycles(graph)
        return graph

    def locate(self, node_id: int) -> tuple[int, int]:
        """The (unit, element) that owns a node id.

        The engine asks several times per dispatched node, mostly within one group, so
        the id range of the unit found last is tried first.
        """
        start, stop, unit, positions = self._last_located
        if not start <= node_id < stop:
            if not 0 <= node_id < self.n_nodes:
                raise IndexError(f"no node {node_id} in a graph of {self.n_nodes}")
            unit = bisect.bisect_right(self.starts, node_id) - 1
            while self.owned[unit] == 0 or node_id >= self.starts[unit] + self.owned[unit]:
                unit -= 1  # units that own nothing share a start with the next one
            start = self.starts[unit]
            positions = self.owned_positions.get(unit)
            self._last_located = (start, start + self.owned[unit], unit, positions)
        offset = node_id - start
        return unit, (offset if positions is None else positions[offset])

    def units_of(self, node_id: int) -> list[int]:
        """Every unit containing a node: its owner, then units that alias it."""
        return [self.locate(node_id)[0], *self.aliases.get(node_id, ())]

    def args(self, node_id: int) -> dict[str, Any]:
        unit, element = self.locate(node_id)
        return self.workflow.units[unit].element_args(element)

    def cohorts(self) -> list[Cohort]:
        """Nodes grouped by the units they belong to, upstream first (computed once)."""
        if self._cohorts is None:
            self._cohorts = cohorts(self)
        return self._cohorts

    def identities(self, version: int = IDENTITY_VERSION) -> list[str]:
        """The identity of every node, by id (computed once, in bulk, with the unit digests).

        ``version`` 1 is how stores made before identities covered upstream nodes
        identify them (see :mod:`gristmill.graph.identity`).
        """
        return self._identified(version)[0]

    def unit_digests(self, version: int = IDENTITY_VERSION) -> list[str]:
        """Each unit's digest (see :mod:`gristmill.graph.identity`), by unit index.

        Equal lists mean equal identities node for node: what a resume checks the
        store against. Made along with :meth:`identities`.
        """
        return self._identified(version)[1]

    def _identified(self, version: int) -> tuple[list[str], list[str]]:
        found = self._identities.get(version)
        if found is None:
            found = self._identities[version] = identify(self, version)
        return found

    def identity(self, node_id: int) -> str:
        unit, element = self.locate(node_id)
        return self.identity_of(unit, element)

    def identity_of(self, unit: int, element: int) -> str:
        """The node's identity (current version); a node that waits for others needs
        every identity upstream, so then all are made at once."""
        node_id = self.members[unit][element]
        found = self._identities.get(IDENTITY_VERSION)
        if found is not None:
            return found[0][node_id]
        units = self.workflow.units
        if any(units[u].after for u in self.units_of(node_id)):
            return self.identities()[node_id]
        owner, owner_element = self.locate(node_id)
        u = units[owner]
        if not u.is_group:
            return digest(next(unit_texts(u)))
        return digest(element_text(u.task.identity_key, u.element_args(owner_element),
                                   u.task.signature.defaults))

    def job_name(self, unit: int, element: int) -> str:
        """The job name, unique in the graph: the task's ``name=`` template filled in, or
        ``{task}_{node args}``; where several nodes would get one name, each of them
        carries a short identity suffix (see :mod:`gristmill.graph.names`)."""
        if self._names is None:
            self._names = JobNames.of(self)
        return self._names.name(self.members[unit][element])

    def upstream_nodes(self, unit: int, element: int | None) -> Iterator[int]:
        """Ids of the nodes that element ``element`` of ``unit`` waits for, each once.

        A node that several units contain (``fit(draw=3)`` and ``fit.map(draw=...)``)
        waits for the union of their ``after=`` edges.
        """
        units = self.units_of(self.members[unit][element or 0])
        refs = dict.fromkeys(ref for u in units for ref in self.workflow.units[u].after)
        if len(refs) == 1 and len(units) == 1:
            src, src_element = next(iter(refs))
            yield from (self.members[src] if src_element is None else (
                self.members[src][src_element],
            ))
            return
        seen: set[int] = set()
        for src, src_element in refs:
            ids = self.members[src] if src_element is None else (self.members[src][src_element],)
            for node_id in ids:
                if node_id not in seen:
                    seen.add(node_id)
                    yield node_id

    def count_by_task(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for unit in self.workflow.units:
            counts[unit.task.name] += self.owned[unit.index]
        return dict(counts)


def _topological_units(units: Sequence[Unit]) -> list[int]:
    """Units in an order where every unit comes after the units it waits for.

    A call can only name nodes recorded before it, so recording order is
    topological unless a merged duplicate added an edge to a later unit; only
    then is a sort (and a cycle check) needed.
    """
    if all(src < unit.index for unit in units for src, _ in unit.after):
        return list(range(len(units)))
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for unit in units:
        sorter.add(unit.index, *(src for src, _ in unit.after))
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle: list[int] = exc.args[1]
        _raise_cycle([_describe(units[i]) for i in reversed(cycle)])


def _raise_cycle(shown: list[str]) -> NoReturn:
    raise GraphError(
        f"the workflow has a cycle: {' -> '.join(shown)}. A node recorded twice with the "
        "same arguments is one node, so its after= edges are merged; remove the edge "
        "that closes the loop"
    ) from None


def _check_node_cycles(graph: Graph) -> None:
    """Find cycles that pass through a node shared by several units.

    The unit-level sort cannot see them: ``fit(draw=3)`` waiting for a node that
    waits for ``fit.map(draw=range(10))`` is a cycle through the shared node
    ``draw=3``. The check runs on a compact node-level graph: a vertex pair
    ("in", "out") per unit, one vertex per shared or individually named node,
    and one "bulk" vertex standing for all the other elements of a unit, which
    share every edge. Its size grows with the number of shared nodes, not with
    the number of elements.
    """
    units = graph.workflow.units
    special: set[int] = set(graph.aliases)
    for unit in units:
        for src, element in unit.after:
            if element is not None:
                special.add(graph.members[src][element])
    edges: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)  # -> predecessors
    special_owned = [0] * len(units)
    for node_id in special:
        units_of = graph.units_of(node_id)
        special_owned[units_of[0]] += 1
        for u in units_of:
            edges[("node", node_id)].add(("in", u))
            edges[("out", u)].add(("node", node_id))
    for unit in units:
        index = unit.index
        edges[("in", index)]
        if graph.owned[index] > special_owned[index]:
            edges[("bulk", index)].add(("in", index))
            edges[("out", index)].add(("bulk", index))
        for src, element in unit.after:
            if element is None:
                edges[("in", index)].add(("out", src))
            else:
                edges[("in", index)].add(("node", graph.members[src][element]))
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as exc:
        shown: list[str] = []
        for kind, value in reversed(exc.args[1]):
            if kind == "node":
                text = _describe_node(graph, value)
            elif kind == "bulk":
                text = _describe(units[value])
            else:
                continue
            if not shown or shown[-1] != text:
                shown.append(text)
        _raise_cycle(shown)


def _describe(unit: Unit) -> str:
    if unit.is_group:
        return f"{unit.task.name}.map(x{unit.size})"
    args = ", ".join(f"{k}={v!r}" for k, v in unit.const.items())
    return f"{unit.task.name}({args})"


def _describe_node(graph: Graph, node_id: int) -> str:
    unit, element = graph.locate(node_id)
    u = graph.workflow.units[unit]
    args = ", ".join(f"{k}={v!r}" for k, v in u.element_args(element).items())
    return f"{u.task.name}({args})"


def _node_args(by_task: dict[str, list[Unit]]) -> dict[str, list[str]]:
    """Arguments that vary across a task's nodes (node args); the rest are task args."""
    out: dict[str, list[str]] = {}
    for key, units in by_task.items():
        varying: set[str] = set()
        constants: dict[str, str | None] = {}
        for unit in units:
            varying.update(unit.columns)
            for name, value in unit.const.items():
                if name in varying:
                    continue
                text = canonical(value)
                if constants.setdefault(name, text) != text:
                    varying.add(name)
        all_names: set[str] = set()
        for unit in units:
            all_names.update(unit.const)
            all_names.update(unit.columns)
        for name in all_names:
            if any(name not in u.const and name not in u.columns for u in units):
                varying.add(name)
        if len(units) > 1 and not varying:
            varying.update(all_names)
        order = units[0].task.signature.names
        out[key] = [n for n in order if n in varying]
    return out
