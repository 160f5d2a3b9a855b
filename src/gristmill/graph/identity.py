"""A node's identity across runs: a digest of its task's entry point and argument values.

The canonical text is ``<task key>\0<name>=<canonical value>\x1f...`` over the
arguments in name order; its BLAKE2b digest is the node's identity. Resources are
not part of it, so raising memory never makes a finished node run again. Texts for a
whole group are made in bulk (one format string per unit, plain ints left to
``str.format``), so a map of a million elements hashes in well under a second.

A unit's *digest* hashes the texts of all its elements at once (one BLAKE2b over
their concatenation, not one per element). Equal unit digests mean equal texts,
hence equal identities, so a resume compares one digest per unit with the store's
instead of reading a million identities back.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

import click

from gristmill.dsl.params import canonical

if TYPE_CHECKING:
    from gristmill.dsl.nodes import Unit


#: Texts hashed per step of :func:`hash_unit`: bounds what is held at once for a huge group.
_CHUNK = 65_536


def digest(text: str) -> str:
    """The identity hash of a node's canonical text."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


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


def unit_texts(unit: Unit) -> Iterator[str]:
    """The canonical text of every element of a unit, in element order."""
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
    template = unit.task.key + "\0" + "\x1f".join(pieces)
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
