"""A node's identity across runs: its task, its argument values and what it waits for.

The canonical text of a node is ``<task key>\0<name>=<canonical value>\x1f...`` over
the arguments in name order, defaults included; the task key is ``module:qualname``,
followed by ``#<version>`` when the task declares ``@gm.task(version=...)``. A node
that waits for others (``after=``) gets ``\0after=`` and the sorted identities of what
it waits for appended (a whole group it waits for counts by its unit digest, below),
so a node whose upstream changed has another identity, as Nextflow's and redun's
hashes cover their inputs. The BLAKE2b digest of that text is the node's identity.
Resources are not part of it, so raising memory never makes a finished node run
again; nor is the code of the task's body, unless its ``version`` changes.

Texts for a whole group are made in bulk (one format string per unit, plain ints left
to ``str.format``), so a map of a million elements hashes in well under a second.

A unit's *digest* stands for the identities of all its elements, in element order: the
identity itself for a unit of one node, else one BLAKE2b over the identities joined.
Equal unit digests mean equal identities node for node, so a resume compares one
digest per unit with the store's instead of reading a million identities back, and a
node waiting for a whole group hashes the group's digest, not a million identities.

Stores written before identities covered upstream nodes (:data:`IDENTITY_VERSION` 1:
the text alone, and a unit digest over the texts) are resumed with the identities they
were made with: :func:`identify` computes either version.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

import click

from gristmill.dsl.params import canonical

if TYPE_CHECKING:
    from gristmill.dsl.nodes import Unit
    from gristmill.graph.resolved import Graph


#: Texts hashed per step of :func:`hash_unit`: bounds what is held at once for a huge group.
_CHUNK = 65_536
#: How identities are made now: 2 covers upstream identities; 1 was the text alone.
IDENTITY_VERSION = 2


_blake2b = hashlib.blake2b  # looked up once: digest() runs once per node


def digest(text: str) -> str:
    """The identity hash of a node's canonical text."""
    return _blake2b(text.encode(), digest_size=16).hexdigest()


def element_text(
    task_key: str, args: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> str:
    """The canonical text of one node of task ``task_key`` with these arguments.

    ``defaults`` (the task's :attr:`Signature.defaults`) fill in what was left out, so a
    node has one text whether a defaulted argument was spelled out or not.
    """
    if defaults:
        args = {**defaults, **args}
    return task_key + "\0" + "\x1f".join(f"{n}={canonical(args[n])}" for n in sorted(args))


def _column_encoder(task_param: Any, column: Sequence[Any]) -> Callable[[Any], str] | None:
    """None when ``str.format`` already renders the column canonically (plain ints)."""
    if isinstance(column, range) or (
        task_param.param.type is click.INT and not task_param.multiple
    ):
        return None
    return canonical


def unit_texts(unit: Unit, suffix: str = "") -> Iterator[str]:
    """The canonical text of every element of a unit, in element order, ``suffix`` appended."""
    signature = unit.task.signature
    const = {
        **{n: v for n, v in signature.defaults.items() if n not in unit.columns},
        **unit.const,
    }
    names = sorted(list(const) + list(unit.columns))
    by_name = signature.by_name
    pieces: list[str] = []
    varying: list[str] = []
    for name in names:
        if name in const:
            pieces.append(f"{name}={canonical(const[name])}".replace("{", "{{").replace(
                "}", "}}"
            ))
        else:
            pieces.append(f"{name}={{}}")
            varying.append(name)
    template = (unit.task.identity_key + "\0" + "\x1f".join(pieces)
                + suffix.replace("{", "{{").replace("}", "}}"))
    if not unit.is_group:
        yield template.format()
        return
    columns = [unit.columns[n] for n in varying]
    encoders = [_column_encoder(by_name[n], unit.columns[n]) for n in varying]
    fmt = template.format
    if unit.is_product:
        for i in range(unit.size):
            element = unit.element_args(i)
            yield fmt(*(canonical(element[n]) for n in varying))
        return
    if all(e is None for e in encoders):
        if len(columns) == 1:
            yield from map(fmt, columns[0])
        else:
            for values in zip(*columns):
                yield fmt(*values)
        return
    for values in zip(*columns):
        yield fmt(*(v if e is None else e(v) for v, e in zip(values, encoders)))


def unique_within(unit: Unit) -> bool:
    """Cheap check that a group's elements are pairwise distinct."""
    if not unit.is_group:
        return True
    columns = list(unit.columns.values())
    if unit.is_product:
        return all(isinstance(c, range) or len(set(map(canonical, c))) == len(c) for c in columns)
    if any(isinstance(c, range) for c in columns):
        return True
    if len(columns) == 1:
        try:
            return len(set(columns[0])) == len(columns[0])
        except TypeError:
            return len(set(map(canonical, columns[0]))) == len(columns[0])
    try:
        return len(set(zip(*columns))) == unit.size
    except TypeError:
        return len(set(unit_texts(unit))) == unit.size


def hash_unit(
    unit: Unit, owned: Sequence[int] | None = None, out: list[str] | None = None
) -> str:
    """The unit's digest; with ``out``, also append the identities of its elements on the way.

    ``owned`` lists (ascending) the element indices whose identities go to ``out``; None
    means every element. Making both in one pass makes each element's text once.
    """
    whole = hashlib.blake2b(digest_size=16)
    wanted = None if owned is None else set(owned)
    texts = unit_texts(unit)
    start = 0
    while True:
        chunk = list(itertools.islice(texts, _CHUNK))
        if not chunk:
            return whole.hexdigest()
        # Texts hold no newline (values are JSON-escaped), so the joined form is unambiguous.
        whole.update(("\n".join(chunk) + "\n").encode())
        if out is not None:
            if wanted is None:
                out.extend(map(digest, chunk))
            else:
                out.extend(digest(t) for i, t in enumerate(chunk, start) if i in wanted)
        start += len(chunk)


def _digest_lines(texts: Iterable[str]) -> str:
    """One digest over texts joined by newlines, taken a chunk at a time."""
    whole = hashlib.blake2b(digest_size=16)
    texts = iter(texts)
    while True:
        chunk = list(itertools.islice(texts, _CHUNK))
        if not chunk:
            return whole.hexdigest()
        whole.update(("\n".join(chunk) + "\n").encode())


def upstream_suffix(waited: Iterable[str]) -> str:
    """What a node's text gets for the identities (or group digests) it waits for."""
    names = sorted(set(waited))
    return "\0after=" + ",".join(names) if names else ""


def identify(graph: Graph, version: int = IDENTITY_VERSION) -> tuple[list[str], list[str]]:
    """(identity of every node by id, digest of every unit by index), made in one pass.

    Version 2 visits the nodes cohort by cohort (:mod:`gristmill.graph.cohorts`), upstream
    first, so the identities a node's text needs are known when it is hashed. Version 1
    is the text alone, for stores made before identities covered upstream nodes.
    """
    units = graph.workflow.units
    if version == 1:
        out: list[str] = []
        digests = []
        for unit in units:
            owned = None if graph.owned[unit.index] == 0 else out
            digests.append(hash_unit(unit, graph.owned_positions.get(unit.index), owned))
        return out, digests
    if version != IDENTITY_VERSION:
        raise ValueError(f"unknown identity version {version}")
    identities = [""] * graph.n_nodes
    unit_digests: list[str | None] = [None] * len(units)
    members = graph.members

    def unit_digest(u: int) -> str:
        found = unit_digests[u]
        if found is None:
            ids = members[u]
            if len(ids) == 1:
                found = identities[ids[0]]
            elif isinstance(ids, range):
                found = _digest_lines(identities[ids.start:ids.stop])
            else:
                found = _digest_lines(identities[i] for i in ids)
            unit_digests[u] = found
        return found

    for cohort in graph.cohorts():
        suffix = upstream_suffix(
            unit_digest(src) if element is None else identities[members[src][element]]
            for src, element in cohort.refs
        )
        if len(cohort.units) == 1:
            u = cohort.units[0]
            made = _identify_owned(graph, u, cohort.nodes, suffix, identities)
            if made is not None:
                unit_digests[u] = made
            continue
        for node in cohort.nodes:  # shared by several units: rare, one text each
            owner, element = graph.locate(node)
            unit = units[owner]
            identities[node] = digest(element_text(
                unit.task.identity_key, unit.element_args(element), unit.task.signature.defaults
            ) + suffix)
    return identities, [unit_digest(u) for u in range(len(units))]


def _identify_owned(
    graph: Graph, u: int, nodes: Sequence[int], suffix: str, identities: list[str]
) -> str | None:
    """Hash the nodes unit ``u`` owns (all of them, or those in ``nodes``) into ``identities``.

    When the unit owns every element, its digest is made in the same pass and returned.
    """
    unit = graph.workflow.units[u]
    start = graph.starts[u]
    positions = graph.owned_positions.get(u)
    texts = unit_texts(unit, suffix)
    if positions is None and len(nodes) == unit.size:
        stop = start + unit.size
        whole = _blake2b(digest_size=16)
        made: list[str] = []
        for offset in range(start, stop, _CHUNK):  # bounded: the texts of one chunk at a time
            size = min(_CHUNK, stop - offset)
            made = list(map(digest, itertools.islice(texts, size)))
            identities[offset:offset + size] = made
            whole.update(("\n".join(made) + "\n").encode())
        return made[0] if unit.size == 1 else whole.hexdigest()
    wanted = {
        (node - start if positions is None else positions[node - start]): node for node in nodes
    }
    for element, text in enumerate(texts):
        node = wanted.get(element)
        if node is not None:
            identities[node] = digest(text)
    return None
