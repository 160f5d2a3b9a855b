"""``@gm.workflow``: calling tasks inside a function records a lazy DAG.

Recording is cheap on purpose. A ``task.map`` over a million draws records one
:class:`Unit` holding the argument columns as given (a ``range`` stays a
``range``), never a million objects; :class:`Node` and :class:`NodeGroup` are
thin views over a unit that expand elements only when asked.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, overload

import attrs
import click

from gristmill.errors import TaskArgumentError
from gristmill.params import FAST_TYPES, Param, canonical
from gristmill.resources import Resources

if TYPE_CHECKING:
    from gristmill.graph import Graph
    from gristmill.spec import Spec
    from gristmill.task import After, Task

if sys.version_info >= (3, 10):
    from typing import ParamSpec
else:  # pragma: no cover - Python 3.9
    from typing_extensions import ParamSpec

P = ParamSpec("P")
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
        from gristmill.entrypoints import render_argv

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


_RECORDER: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "gristmill_recorder", default=None
)


def current_recorder() -> Recorder | None:
    """The recorder of the workflow being built in this context, if any."""
    return _RECORDER.get()


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


@attrs.define(eq=False)
class Workflow:
    """A recorded DAG: units of nodes, their edges, and the workflow's settings."""

    name: str
    function: str  # "module:qualname" of the workflow function
    args: dict[str, Any]
    fail_fast: bool = False
    max_concurrent: int | None = None
    spec: Spec | None = None
    units: list[Unit] = attrs.field(factory=list)
    _graph: Graph | None = attrs.field(default=None, repr=False)

    def graph(self) -> Graph:
        """The resolved graph (identities, dedupe, cycle check), built once."""
        if self._graph is None:
            from gristmill.graph import Graph

            self._graph = Graph.resolve(self)
        return self._graph

    def __len__(self) -> int:
        return self.graph().n_nodes

    def count_by_task(self) -> dict[str, int]:
        return self.graph().count_by_task()

    def nodes(self) -> Iterator[Node]:
        """Every distinct node, groups expanded lazily."""
        graph = self.graph()
        for node_id in range(graph.n_nodes):
            unit, element = graph.locate(node_id)
            yield Node(self, unit, element if self.units[unit].is_group else None)

    def groups(self) -> list[NodeGroup]:
        return [NodeGroup(self, u.index) for u in self.units if u.is_group]

    def to_dot(self) -> str:
        from gristmill.render import to_dot

        return to_dot(self)

    def to_mermaid(self) -> str:
        from gristmill.render import to_mermaid

        return to_mermaid(self)

    def run(
        self,
        backend: Any = None,
        *,
        run_dir: Any = "runs",
        spec: Any = None,
        resume: bool = True,
        **backend_options: Any,
    ) -> Any:
        """Run to completion in a (new or reused) run directory; return a ``RunResult``."""
        from gristmill.runner import run_workflow

        return run_workflow(
            self, backend=backend, run_dir=run_dir, spec=spec, resume=resume, **backend_options
        )


class WorkflowFunction(Generic[P]):
    """What ``@gm.workflow`` returns: calling it records a :class:`Workflow`."""

    def __init__(
        self,
        fn: Callable[P, object],
        *,
        name: str | None,
        fail_fast: bool,
        max_concurrent: int | None,
        spec: Any,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name_template = name or fn.__name__
        self.fail_fast = fail_fast
        self.max_concurrent = max_concurrent
        self.spec_source = spec
        self.signature = inspect.signature(fn)

    @property
    def key(self) -> str:
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Workflow:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentError(f"workflow {self.fn.__name__!r}: {exc}") from None
        bound.apply_defaults()
        values = dict(bound.arguments)
        try:
            name = self.name_template.format_map({"fn": self.fn.__name__, **values})
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            raise TaskArgumentError(
                f"workflow {self.fn.__name__!r}: name template {self.name_template!r} cannot "
                f"be filled ({type(exc).__name__}: {exc}); its placeholders must be parameters: "
                f"fn, {', '.join(values)}"
            ) from None
        spec = None
        if self.spec_source is not None:
            from gristmill.spec import Spec, load_spec

            spec = self.spec_source if isinstance(self.spec_source, Spec) else load_spec(
                self.spec_source
            )
        wf = Workflow(
            name=name,
            function=self.key,
            args=values,
            fail_fast=self.fail_fast,
            max_concurrent=self.max_concurrent,
            spec=spec,
        )
        token = _RECORDER.set(Recorder(wf))
        try:
            self.fn(*bound.args, **bound.kwargs)
        finally:
            _RECORDER.reset(token)
        return wf


@overload
def workflow(fn: Callable[P, object], /) -> WorkflowFunction[P]: ...


@overload
def workflow(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    fail_fast: bool = False,
    max_concurrent: int | None = None,
    spec: Any = None,
) -> Callable[[Callable[P, object]], WorkflowFunction[P]]: ...


def workflow(
    fn: Callable[..., object] | None = None,
    /,
    *,
    name: str | None = None,
    fail_fast: bool = False,
    max_concurrent: int | None = None,
    spec: Any = None,
) -> WorkflowFunction[Any] | Callable[[Callable[..., object]], WorkflowFunction[Any]]:
    """Mark a function whose task calls record a DAG; works bare or called.

    ``name`` is a template filled from the workflow's arguments (``"seiir-{version}"``,
    ``{fn}`` is the function's name); ``spec`` is a spec file path or a ``Spec``.
    """

    def decorate(f: Callable[..., object]) -> WorkflowFunction[Any]:
        if isinstance(f, WorkflowFunction):
            raise TypeError(f"@gm.workflow applied twice to {f.fn.__name__!r}")
        return WorkflowFunction(
            f, name=name, fail_fast=fail_fast, max_concurrent=max_concurrent, spec=spec
        )

    return decorate if fn is None else decorate(fn)


__all__ = [
    "Node",
    "NodeGroup",
    "Product",
    "Recorder",
    "Unit",
    "Workflow",
    "WorkflowFunction",
    "current_recorder",
    "product",
    "workflow",
]
