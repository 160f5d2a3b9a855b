"""``@gm.workflow``: calling tasks inside a function records a lazy DAG.

Calling a :class:`WorkflowFunction` runs its function with a recorder in place
(:mod:`gristmill.dsl.recording`), so each task call adds a unit to a :class:`Workflow`
and runs nothing. Recording is cheap on purpose: a ``task.map`` over a million draws
is one :class:`Unit`, and :class:`Node`/:class:`NodeGroup` are thin views over it
(:mod:`gristmill.dsl.nodes`).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import attrs

from gristmill.dsl.nodes import Node, NodeGroup, Unit
from gristmill.dsl.recording import recorder_for
from gristmill.errors import TaskArgumentError

if TYPE_CHECKING:
    from gristmill.engine.runner import RunResult
    from gristmill.graph.resolved import Graph
    from gristmill.spec.load import Spec

if sys.version_info >= (3, 10):
    from typing import ParamSpec
else:  # pragma: no cover - Python 3.9
    from typing_extensions import ParamSpec

P = ParamSpec("P")

#: The attribute that marks a callable other than a :class:`WorkflowFunction` which
#: ``gristmill resume`` may call to record a run's workflow again (covid_shared's
#: ``WorkflowTemplate.from_recorded``): anything else a store names is refused.
REBUILDS_WORKFLOW = "__gristmill_rebuilds_workflow__"
_F = TypeVar("_F", bound=Callable[..., Any])


def rebuilds_workflow(fn: _F) -> _F:
    """Mark ``fn`` as one that records a workflow from what a run's store kept (see
    :data:`REBUILDS_WORKFLOW`)."""
    setattr(fn, REBUILDS_WORKFLOW, True)
    return fn


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
    #: Called with the :class:`RunResult` when a run or resume of this workflow ends, while
    #: the run's lock is still held. Not stored with the run: whatever records the workflow
    #: again for ``gristmill resume`` attaches its own (covid_shared's layer finishes an
    #: application's links and metadata this way).
    on_finish: list[Callable[[RunResult], None]] = attrs.field(factory=list, repr=False)

    def graph(self) -> Graph:
        """The resolved graph (identities, dedupe, cycle check), built once."""
        if self._graph is None:
            from gristmill.graph.resolved import Graph

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
        from gristmill.graph.render import to_dot

        return to_dot(self)

    def to_mermaid(self) -> str:
        from gristmill.graph.render import to_mermaid

        return to_mermaid(self)

    def run(
        self,
        backend: str | None = None,
        *,
        run_dir: str | os.PathLike[str] = "runs",
        spec: Spec | str | os.PathLike[str] | None = None,
        resume: bool = True,
        rerun: Sequence[str] = (),
        **backend_options: Any,
    ) -> RunResult:
        """Run to completion in a (new or reused) run directory; task failures are in the result.

        ``rerun`` names tasks, job names or identity prefixes whose nodes run again even
        if DONE, with everything downstream of them.
        The engine is imported here, on first use: recording a workflow (what every task
        process and ``gristmill graph`` do) never loads it.
        """
        from gristmill.engine.runner import run_workflow

        return run_workflow(
            self, backend=backend, run_dir=run_dir, spec=spec, resume=resume, rerun=rerun,
            **backend_options,
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
            from gristmill.spec.load import Spec, load_spec

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
        with recorder_for(wf):
            self.fn(*bound.args, **bound.kwargs)
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


