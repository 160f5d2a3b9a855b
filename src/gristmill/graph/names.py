"""Job names: readable, safe for every scheduler, and unique within a run.

A node's *natural* name is its task's ``name=`` template filled in with its arguments,
or ``{task}_{node args}`` (the arguments that vary across the task's nodes, joined with
``_``), with every run of characters outside ``[A-Za-z0-9_.,=+-]`` replaced by ``-``, a
leading run of ``.`` by ``_`` (attempt files begin with the job name: none is hidden),
``job`` for an empty one, and at most 128 characters. Natural names can clash:
``x_y``, ``z`` joined is ``x``, ``y_z`` joined; ``a/b``, ``a b`` and ``a:b`` are all
``a-b`` once sanitised; two tasks' templates may say the same. Every node of a clash
then gets ``_<identity[:8]>`` appended, all of them, so no name depends on the order in
which calls were recorded.

Names are for people (``gristmill tasks``, ``gristmill logs RUN NAME``, scheduler
queues); nothing depends on them for correctness: attempt files are unique by the
attempt's key (:mod:`gristmill.engine.loop`), and a workflow changed between runs may
give an old name to another node.

A task's files go to ``logs/<task dir>/`` (:func:`task_dir`): its name when that is a
plain directory name, else a name made safe the same way plus a digest of the task's
name, so no task name can reach outside ``logs/``, hide its directory or clash with
another task's.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import string
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from gristmill.errors import GraphError, TaskArgumentError

if TYPE_CHECKING:
    from gristmill.dsl.nodes import Unit
    from gristmill.graph.resolved import Graph

_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+-]+")
_LEADING_DOTS = re.compile(r"^\.+")
MAX_NAME = 128
#: A task name used as it is for its log directory: safe characters, not starting with
#: ``.`` (hidden, or ``..``) or ``-`` (read as an option by ``cd``, ``rm``), not too long.
_PLAIN_DIR = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.,=+-]{{0,{MAX_NAME - 1}}}")
#: Joins a made-safe task name to its digest; outside the safe characters, so a task
#: directory made this way is never another task's own name.
DIR_DIGEST_MARK = "~"
#: Identity characters that tell apart nodes whose names would clash (then 16, 32, ...).
SUFFIX = 8


def safe_name(text: str) -> str:
    """``text`` as a job name may spell it: runs of other characters than
    ``[A-Za-z0-9_.,=+-]`` become ``-`` and leading dots ``_``."""
    text = _UNSAFE.sub("-", text)
    return _LEADING_DOTS.sub("_", text) if text.startswith(".") else text


def task_dir(task: str) -> str:
    """The directory under a run's ``logs/`` that holds the files of task ``task``.

    A plain name (safe characters, not starting with ``.`` or ``-``, at most 128
    characters; every Python identifier) is used as it is. Any other (``../x``, ``a/b``,
    ``..``, a NUL or control character, 5,000 characters) is made safe as job names are,
    stripped of leading dots and dashes, cut to 64 characters and followed by ``~`` and
    12 hex characters of the name's BLAKE2b digest: the same directory on every resume,
    whatever the other tasks are called, and never another task's (a plain name holds
    no ``~``; two made ones differ by their digests).
    """
    if _PLAIN_DIR.fullmatch(task):
        return task
    stem = _UNSAFE.sub("-", task).lstrip(".-")[:64] or "task"
    digest = hashlib.blake2b(task.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"{stem}{DIR_DIGEST_MARK}{digest}"


def name_part(value: Any) -> str:
    """An argument value as it appears in a default job name (``a,b`` for a list)."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(name_part, value))
    return str(value)


def _safe_texts(column: Sequence[Any]) -> Sequence[str]:
    """Each value of a column as it appears in a default job name, sanitised."""
    if isinstance(column, range):  # digits and "-": safe, and made one at a time
        return _RangeTexts(column)
    texts = [name_part(v) for v in column]
    if _UNSAFE.search("_".join(texts)) is None:  # the usual case: one search, not one each
        return texts
    return [_UNSAFE.sub("-", t) for t in texts]


@attrs.frozen
class _RangeTexts(Sequence[str]):
    """The texts of a ``range`` column, without a list of a million strings."""

    numbers: range

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, i: Any) -> Any:
        return str(self.numbers[i])

    def __iter__(self) -> Iterator[str]:
        return map(str, self.numbers)


def suffixed(name: str, identity: str, length: int = SUFFIX) -> str:
    """``name`` ending ``_<identity[:length]>``, within the longest name allowed."""
    return f"{name[: MAX_NAME - length - 1]}_{identity[:length]}"


@attrs.define(eq=False)
class JobNames:
    """The job names of one graph's nodes; :meth:`of` finds the clashes once."""

    graph: Graph
    #: node id -> job name, for the nodes whose natural names clash
    renamed: dict[int, str]

    @classmethod
    def of(cls, graph: Graph) -> JobNames:
        names = cls(graph, {})
        names.renamed = names._resolve_clashes()
        return names

    def name(self, node_id: int) -> str:
        renamed = self.renamed.get(node_id)
        if renamed is not None:
            return renamed
        owner, element = self.graph.locate(node_id)
        return self.natural(self.graph.workflow.units[owner], element)

    def natural(self, u: Unit, element: int) -> str:
        """The name a node's own task and arguments give it, before clashes are resolved."""
        task = u.task
        node_args = self.graph.node_args.get(task.key, [])
        if task.job_name is None and not node_args:
            name = task.name
        else:
            args = u.element_args(element)
            if task.job_name is None:
                name = "_".join([task.name, *(name_part(args.get(n, "")) for n in node_args)])
            else:
                name = self._from_template(u, element, args, node_args)
        name = safe_name(name) or "job"  # a task or a template may spell nothing
        if len(name) > MAX_NAME:  # schedulers truncate or refuse long names: keep them unique
            name = suffixed(name, self.graph.identity_of(u.index, element))
        return name

    def _from_template(
        self, u: Unit, element: int, args: dict[str, Any], node_args: list[str]
    ) -> str:
        template = u.task.job_name
        assert template is not None
        values = {"task": u.task.name, **dict.fromkeys(u.task.signature.names, ""), **args}
        try:
            name = template.format_map(values)
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            raise TaskArgumentError(
                f"task {u.task.name!r}: name template {template!r} cannot be filled "
                f"with {args!r} ({type(exc).__name__}: {exc}); fix the template"
            ) from None
        used = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        if not set(node_args) <= used:
            name += "_" + self.graph.identity_of(u.index, element)[:SUFFIX]
        return name

    def _naturals(self) -> Iterator[tuple[int, Iterable[str]]]:
        """(first node id, natural names of the nodes it owns in id order) of every unit."""
        graph = self.graph
        for u in graph.workflow.units:
            if graph.owned[u.index]:
                yield graph.starts[u.index], self._unit_naturals(u)

    def _unit_naturals(self, u: Unit) -> Iterable[str]:
        """The natural names of the nodes a unit owns, in id order, as :meth:`natural`
        gives them one by one.

        Default names of a group are made without a Python loop per node: each value is
        turned to text and sanitised once per column (sanitising the parts is sanitising
        the name: ``_`` is safe, so no run of unsafe characters spans two parts, and only
        the first part, the task's name, can begin with dots) and the names come out of
        one format string, about ten times faster.
        """
        graph = self.graph
        positions = graph.owned_positions.get(u.index)
        node_args = graph.node_args.get(u.task.key, [])
        if u.task.job_name is not None or not u.is_group or not node_args or (
                positions is not None):
            elements = range(graph.owned[u.index]) if positions is None else positions
            return (self.natural(u, e) for e in elements)
        # Every column varies, so every column is a node arg, in signature order in both.
        parts = [_safe_texts(column) for column in u.columns.values()]
        # Sanitised text holds no "%": the constant node args go into the format as they are.
        form = "_".join([safe_name(u.task.name), *(
            "%s" if n in u.columns else _UNSAFE.sub("-", name_part(u.const.get(n, "")))
            for n in node_args)])
        rows = itertools.product(*parts) if u.is_product else zip(*parts)
        names = map(form.__mod__, rows)
        longest = len(form) - 2 * len(parts) + sum(max(map(len, p), default=0) for p in parts)
        if longest <= MAX_NAME:
            return names
        return (n if len(n) <= MAX_NAME else suffixed(n, graph.identity_of(u.index, e))
                for e, n in enumerate(names))

    def _resolve_clashes(self) -> dict[int, str]:
        """Names for the nodes whose natural names clash; every other node keeps its own.

        *Every* node of a clash gets ``_<identity[:8]>``; a suffixed name that meets
        another name again makes both longer (16, 32 characters), so the outcome depends
        on the set of names only.

        The common case, no clash, costs one pass that keeps only the names' hashes
        (a million nodes: under a second and tens of megabytes, briefly): as many
        distinct hashes as nodes means as many distinct names. Otherwise the names whose
        hashes repeat are compared as text.
        """
        seen: set[int] = set()
        for _, names in self._naturals():
            seen.update(map(hash, names))
        if len(seen) == sum(self.graph.owned):
            return {}
        once: set[int] = set()
        twice: set[int] = set()
        for _, names in self._naturals():
            for h in map(hash, names):
                (twice if h in once else once).add(h)
        del once
        groups: dict[str, list[int]] = defaultdict(list)
        for start, names in self._naturals():
            for node_id, name in enumerate(names, start):
                if hash(name) in twice:
                    groups[name].append(node_id)
        natural = {i: name for name, ids in groups.items() if len(ids) > 1 for i in ids}
        identities = self.graph.identities()
        length = SUFFIX
        while True:
            renamed = {i: suffixed(natural[i], identities[i], length) for i in natural}
            taken: dict[str, int] = {}
            again: set[int] = set()
            for i, name in renamed.items():
                other = taken.setdefault(name, i)
                if other != i:
                    again.update((i, other))
            if any(hash(name) in seen for name in taken):  # maybe another node's own name
                for start, names in self._naturals():
                    for node_id, name in enumerate(names, start):
                        if name in taken and node_id not in natural:
                            again.update((node_id, taken[name]))
                            natural[node_id] = name
            if not again:
                return renamed
            if length >= len(identities[0]):
                raise GraphError(
                    f"job names still clash after identity suffixes: {renamed[min(again)]!r}; "
                    "give the tasks name= templates that tell their nodes apart"
                )
            length *= 2
