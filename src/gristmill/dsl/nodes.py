"""What a workflow records: one :class:`Unit` per call, and the views handed back.

A ``task.map`` over a million draws is one unit holding the argument columns as
given (a ``range`` stays a ``range``), never a million objects; :class:`Node` and
:class:`NodeGroup` are thin views over a unit that expand elements only when asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from gristmill.dsl.task import Task
    from gristmill.dsl.workflow import Workflow
    from gristmill.resources import Resources

Ref = tuple[int, "int | None"]  # (unit, element) — element None: the whole unit


@attrs.frozen
class Product:
    """Arguments to combine as a cross product in ``task.map(gm.product(...))``."""

    columns: Mapping[str, Any]


def product(**columns: Any) -> Product:
    """Cross product of iterables, for ``task.map(gm.product(a=..., b=...))``."""
    return Product(columns)


@attrs.define(eq=False)
class Unit:
    """One recorded call: a single node, or a compact group from ``task.map``."""

    index: int
    task: Task
    const: dict[str, Any]
    columns: dict[str, Sequence[Any]]
    is_product: bool
    size: int
    is_group: bool
    resources: Resources | None
    after: list[Ref]

    def element_args(self, i: int) -> dict[str, Any]:
        """The arguments of element ``i`` (0 for a single node)."""
        if not 0 <= i < self.size:
            raise IndexError(f"element {i} of a group of {self.size}")
        args = dict(self.const)
        if self.is_product:  # the last column varies fastest, as in itertools.product
            picked = []
            for name, column in reversed(list(self.columns.items())):
                i, j = divmod(i, len(column))
                picked.append((name, column[j]))
            args.update(reversed(picked))
        else:
            for name, column in self.columns.items():
                args[name] = column[i]
        return args


@attrs.frozen(eq=False)
class Node:
    """A view of one recorded node; what a task call returns inside a workflow."""

    workflow: Workflow = attrs.field(repr=False)
    unit: int
    element: int | None = None

    @property
    def _unit(self) -> Unit:
        return self.workflow.units[self.unit]

    @property
    def task(self) -> Task:
        return self._unit.task

    @property
    def args(self) -> dict[str, Any]:
        return self._unit.element_args(self.element or 0)

    @property
    def ref(self) -> Ref:
        return (self.unit, self.element)

    @property
    def resources(self) -> Resources:
        """The decorator's resources with this call's ``resources=`` applied (no spec)."""
        return self.task.resources.merged_with(self._unit.resources)

    @property
    def identity(self) -> str:
        return self.workflow.graph().identity_of(self.unit, self.element or 0)

    @property
    def name(self) -> str:
        """The job name."""
        return self.workflow.graph().job_name(self.unit, self.element or 0)

    @property
    def argv(self) -> list[str]:
        """The command that runs this node, as an argv list (never shell-interpreted)."""
        from gristmill.dsl.scripts import render_argv

        return render_argv(self.task, self.args)

    @property
    def command_line(self) -> str:
        import shlex

        return shlex.join(self.argv)

    @property
    def upstream(self) -> list[str]:
        """Identities of the nodes this one waits for (each once, in recording order)."""
        graph = self.workflow.graph()
        ids = list(graph.upstream_nodes(self.unit, self.element))
        if len(ids) > 64:  # a fan-in: hashing every node at once is cheaper
            identities = graph.identities()
            return [identities[i] for i in ids]
        return [graph.identity(i) for i in ids]

    def __repr__(self) -> str:
        where = "" if self.element is None else f"[{self.element}]"
        return f"<Node {self.task.name}{where} {self.args!r}>"


@attrs.frozen(eq=False)
class NodeGroup:
    """A compact fan-out: ``len(group)`` nodes of one task, expanded only on demand."""

    workflow: Workflow = attrs.field(repr=False)
    unit: int

    @property
    def task(self) -> Task:
        return self.workflow.units[self.unit].task

    @property
    def ref(self) -> Ref:
        return (self.unit, None)

    def __len__(self) -> int:
        return self.workflow.units[self.unit].size

    def __getitem__(self, i: int) -> Node:
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError(f"group of {size} {self.task.name!r} nodes has no element {i}")
        return Node(self.workflow, self.unit, i)

    def __iter__(self) -> Iterator[Node]:
        for i in range(len(self)):
            yield Node(self.workflow, self.unit, i)

    def __repr__(self) -> str:
        return f"<NodeGroup {self.task.name} x{len(self)}>"
