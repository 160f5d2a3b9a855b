"""Recording a workflow: the :class:`Recorder` that task calls reach while its function runs.

A task call inside ``@gm.workflow`` finds the recorder of the workflow being built
(:func:`gristmill.dsl.context.current_recorder`, held in a context variable). It
checks the arguments against the task's click parameters, merges a call recorded
twice into one unit, refuses a second task of the same name (two modules each with
a ``fit``: names key the spec, the logs and the status table), and hands back a
:class:`~gristmill.dsl.nodes.Node` or :class:`~gristmill.dsl.nodes.NodeGroup`.
Argument columns are checked without copying where that is safe, so recording a
huge map stays cheap.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import click

from gristmill.dsl.context import RECORDER
from gristmill.dsl.nodes import Node, NodeGroup, Product, Ref, Unit
from gristmill.dsl.params import FAST_TYPES, Param, canonical
from gristmill.errors import GraphError, TaskArgumentError
from gristmill.resources import Resources

if TYPE_CHECKING:
    from gristmill.dsl.task import After, Task
    from gristmill.dsl.workflow import Workflow


def _column(task: Task, name: str, values: Any) -> Sequence[Any]:
    """Check a varying column against the click type without copying when it is safe."""
    param = task.signature.by_name[name]
    if isinstance(values, range) and not param.multiple and param.param.type is click.INT:
        return values
    seq = values if isinstance(values, (list, tuple)) else list(values)
    return [param.convert(task.name, v) for v in seq] if _needs_convert(param, seq) else seq


def _needs_convert(param: Param, seq: Sequence[Any]) -> bool:
    fast = FAST_TYPES.get(id(param.param.type))
    if fast is None or param.multiple:
        return True
    return not all(type(v) is fast for v in seq)


def _is_vector(value: Any) -> bool:
    return not isinstance(value, (str, bytes, Mapping)) and isinstance(value, Iterable)


def _is_multiple_constant(task: Task, name: str, value: Any) -> bool:
    """A flat list for a ``multiple=True`` option is one value; a list of lists varies."""
    param = task.signature.by_name.get(name)
    return (
        param is not None
        and param.multiple
        and isinstance(value, (list, tuple))
        and not any(_is_vector(v) for v in value)
    )


@attrs.define(eq=False)
class Recorder:
    """Collects the units of one workflow while its function runs."""

    workflow: Workflow
    _singles: dict[tuple[Any, ...], int] = attrs.field(factory=dict)
    _groups: dict[tuple[Any, ...], int] = attrs.field(factory=dict)
    _tasks: dict[str, Task] = attrs.field(factory=dict)  # by name: one task per name

    def _refs(self, task: Task, after: After) -> list[Ref]:
        if after is None:
            return []
        items: Iterable[Any] = [after] if isinstance(after, (Node, NodeGroup)) else after
        refs: list[Ref] = []
        try:
            iterator = iter(items)
        except TypeError:
            raise TaskArgumentError(
                f"task {task.name!r}: after= takes a Node, a NodeGroup or an iterable of them, "
                f"got {after!r}"
            ) from None
        for item in iterator:
            if not isinstance(item, (Node, NodeGroup)):
                raise TaskArgumentError(
                    f"task {task.name!r}: after= takes Nodes and NodeGroups, got {item!r}"
                )
            if item.workflow is not self.workflow:
                raise TaskArgumentError(
                    f"task {task.name!r}: after= names {item!r} from another workflow"
                )
            refs.append(item.ref)
        return refs

    def _new_unit(self, unit: Unit) -> int:
        task = self._tasks.setdefault(unit.task.name, unit.task)
        if task.key != unit.task.key:
            raise GraphError(
                f"two tasks are named {task.name!r} in this workflow: {task.key} (module "
                f"{task.module}) and {unit.task.key} (module {unit.task.module}). A task's "
                f"name is its function's, and a workflow's tasks need distinct names: "
                f"gristmill status, logs/<task>/ and the spec's tasks.<name> section go by "
                f"them. Rename one of the two functions"
            )
        self.workflow.units.append(unit)
        self.workflow._graph = None
        return unit.index

    def add_node(
        self, task: Task, kwargs: dict[str, Any], after: After, resources: Resources | None
    ) -> Node:
        args = task.signature.convert(kwargs)
        refs = self._refs(task, after)
        try:
            key: tuple[Any, ...] = (task.key, tuple(sorted(args.items())))
            hash(key)
        except TypeError:
            key = (task.key, tuple(sorted((k, canonical(v)) for k, v in args.items())))
        existing = self._singles.get(key)
        if existing is not None:
            self._merge(existing, refs, resources)
            return Node(self.workflow, existing)
        index = len(self.workflow.units)
        unit = Unit(index, task, args, {}, False, 1, False, resources, refs)
        self._singles[key] = self._new_unit(unit)
        return Node(self.workflow, index)

    def add_group(
        self,
        task: Task,
        prod: Product | None,
        kwargs: dict[str, Any],
        after: After,
        resources: Resources | None,
    ) -> NodeGroup:
        signature = task.signature
        if prod is not None and not isinstance(prod, Product):
            raise TaskArgumentError(
                f"task {task.name!r}: map() takes gm.product(...) as its only positional "
                f"argument, got {prod!r}"
            )
        vectors = dict(prod.columns) if prod is not None else {}
        overlap = set(vectors) & set(kwargs)
        if overlap:
            raise TaskArgumentError(
                f"task {task.name!r}: {', '.join(sorted(overlap))} given both in gm.product() "
                "and as keyword arguments"
            )
        const: dict[str, Any] = {}
        for name, value in kwargs.items():
            if value is None:
                continue  # not given, as in a single call
            if prod is None and _is_vector(value) and not _is_multiple_constant(task, name, value):
                vectors[name] = value
            else:
                const[name] = value
                param = signature.by_name.get(name)
                if prod is not None and param and not param.multiple and _is_vector(value):
                    raise TaskArgumentError(
                        f"task {task.name!r}: with gm.product(...), keyword arguments of map() "
                        f"are constants, but {name}={value!r} is an iterable; put it inside "
                        "gm.product(...) to vary it"
                    )
        signature.check_names(list(const) + list(vectors))
        if not vectors:
            raise TaskArgumentError(
                f"task {task.name!r}: map() needs at least one iterable argument to vary; "
                "call the task directly for a single node"
            )
        for name, value in vectors.items():
            if not _is_vector(value):
                raise TaskArgumentError(
                    f"task {task.name!r}: gm.product() argument {name!r} must be an iterable, "
                    f"got {value!r}"
                )
        const = {name: signature.by_name[name].convert(task.name, v) for name, v in const.items()}
        columns = {name: _column(task, name, v) for name, v in vectors.items()}
        ordered = {p.name: columns[p.name] for p in signature.params if p.name in columns}
        lengths = {name: len(col) for name, col in ordered.items()}
        if prod is not None:
            size = math.prod(lengths.values())
        else:
            if len(set(lengths.values())) > 1:
                shown = ", ".join(f"{n}={k}" for n, k in lengths.items())
                raise TaskArgumentError(
                    f"task {task.name!r}: map() zips its iterables, which must have equal "
                    f"lengths; got {shown}. Use gm.product(...) for a cross product"
                )
            size = next(iter(lengths.values()))
        refs = self._refs(task, after)
        key: tuple[Any, ...] = (
            task.key,
            prod is not None,
            tuple(sorted((k, canonical(v)) for k, v in const.items())),
            tuple((n, c if isinstance(c, range) else tuple(c)) for n, c in ordered.items()),
        )
        try:
            hash(key)
        except TypeError:
            key = (*key[:3], tuple((n, tuple(map(canonical, c))) for n, c in ordered.items()))
        existing = self._groups.get(key)
        if existing is not None:
            self._merge(existing, refs, resources)
            return NodeGroup(self.workflow, existing)
        index = len(self.workflow.units)
        unit = Unit(index, task, const, ordered, prod is not None, size, True, resources, refs)
        self._groups[key] = self._new_unit(unit)
        return NodeGroup(self.workflow, index)

    def _merge(self, index: int, refs: list[Ref], resources: Resources | None) -> None:
        unit = self.workflow.units[index]
        for ref in refs:
            if ref not in unit.after:
                unit.after.append(ref)
        if resources is not None:
            unit.resources = (unit.resources or Resources()).merged_with(resources)
        self.workflow._graph = None


@contextlib.contextmanager
def recorder_for(workflow: Workflow) -> Iterator[Recorder]:
    """Make task calls in this context record into ``workflow``; the previous recorder after.

    The cyclic garbage collector is paused meanwhile: recording allocates many small
    objects and no cycles, and the collector's passes over them took ~40% of the time
    of 100,000 individual calls.
    """
    recorder = Recorder(workflow)
    token = RECORDER.set(recorder)
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield recorder
    finally:
        if collecting:
            gc.enable()
        RECORDER.reset(token)
