"""One pass from a recorded workflow to a plan: what the store persists and the engine runs.

:func:`make_plan` visits each layer once, in the order the data flows: the spec (the
workflow's own, then the caller's), the resolved graph (ids, edges; identities and
unit digests on first use, cached by the graph), the settings of each unit (decorator
< spec default < spec task < per-call ``resources=`` < CLI flags), and the engine's
and backend's settings. Everything that can be wrong with the user's input surfaces
here, before a run directory exists. The :class:`Plan` is then handed to the store
(:meth:`Plan.meta`, :meth:`Plan.unit_rows`) and to the engine, neither of which goes
back to the workflow, the spec or the graph builder.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from gristmill.engine.faults import FAULT
from gristmill.engine.hooks import Hooks
from gristmill.engine.preflight import preflight
from gristmill.errors import SpecError
from gristmill.graph.identity import IDENTITY_VERSION
from gristmill.graph.resolved import Graph
from gristmill.resources import MAX_DURATION, Policy, Resources
from gristmill.spec.load import Spec, load_spec

if TYPE_CHECKING:
    from gristmill.dsl.workflow import Workflow

#: The floor under every task's resources: one core, nothing else assumed.
BASE_RESOURCES = Resources(cores=1)
#: The shortest poll interval a user may ask for, in seconds.
POLL_FLOOR = 0.1


@attrs.frozen
class EngineConfig:
    """How the engine loop behaves for this run (not per task)."""

    fail_fast: bool = False
    max_concurrent: int | None = None
    poll_min: float = 0.2
    #: ``--poll-interval`` or the spec's ``workflow.poll_interval``; None: the backend's
    #: ``Capabilities.poll_max``, else :data:`~.polling.POLL_MAX` (see :mod:`.polling`).
    poll_max: float | None = None
    batch_size: int = 5000


@attrs.frozen
class UnitPlan:
    """Resolved per-unit settings: resources before escalation, and the retry policy."""

    resources: Resources
    policy: Policy


@attrs.frozen
class RunOptions:
    """What the caller asked for on top of the workflow and its spec (API or CLI)."""

    backend: str | None = None
    spec: Spec | str | os.PathLike[str] | None = None
    resources: Resources | None = None
    policy: Policy | None = None
    max_concurrent: int | None = None
    fail_fast: bool | None = None
    poll_interval: float | None = None
    #: Backend options; an option named like an engine setting (``max_concurrent``:
    #: the Slurm array throttle) cannot collide with it, living in its own mapping.
    backend_options: Mapping[str, Any] = attrs.field(factory=dict)
    #: ``--rerun``: task names, job names or identity prefixes of nodes to run again even
    #: if DONE, with everything downstream of them (this run only; not stored).
    rerun: tuple[str, ...] = ()
    #: ``--on-success`` / ``--on-failure`` (this run only; never stored: see hooks.py).
    hooks: Hooks = attrs.field(factory=Hooks)
    #: ``--chunk TASK=N``: per task, how many nodes one scheduler job may run (over the
    #: decorator and the spec; stored, so ``resume`` applies it again).
    chunks: Mapping[str, int] = attrs.field(factory=dict)

    def requested(self) -> dict[str, Any]:
        """The overrides as the store keeps them, so ``resume`` applies them again."""
        return {
            "resources": self.resources.as_dict() if self.resources else None,
            "retries": self.policy.retries if self.policy else None,
            "max_concurrent": self.max_concurrent,
            "fail_fast": self.fail_fast,
            "chunk": dict(self.chunks) or None,
        }


@attrs.frozen(eq=False)
class Plan:
    """A workflow resolved for one run: graph, per-unit settings, engine and backend settings."""

    workflow: Workflow
    graph: Graph
    spec: Spec
    units: tuple[UnitPlan, ...]
    config: EngineConfig
    backend: str
    backend_options: Mapping[str, Any]
    requested: Mapping[str, Any]
    rerun: tuple[str, ...] = ()
    hooks: Hooks = attrs.field(factory=Hooks)
    #: How this run identifies nodes: the current version for a new run, the store's when
    #: resuming (stores of older gristmill versions keep the identities they were made with).
    identity_version: int = IDENTITY_VERSION

    @property
    def identities(self) -> list[str]:
        """One identity per node (hashed once, by the graph, on first use)."""
        return self.graph.identities(self.identity_version)

    @property
    def digests(self) -> list[str]:
        """One digest per unit, made in the same pass as the identities (never hashed twice)."""
        return self.graph.unit_digests(self.identity_version)

    def layout(self) -> list[tuple[int, int, str | None]]:
        """(first node, nodes owned, digest) per unit: equal layouts mean equal identities."""
        graph = self.graph
        return [(graph.starts[u], graph.owned[u], d) for u, d in enumerate(self.digests)]

    def meta(self, backend_name: str) -> dict[str, Any]:
        """What the store keeps about the run, enough for ``gristmill resume`` to rebuild it."""
        wf = self.workflow
        return {
            "workflow": wf.name,
            "function": wf.function,
            "args": wf.args,
            "backend": backend_name,
            "backend_options": dict(self.backend_options),
            "spec": self.spec.to_dict(),
            "settings": dict(self.requested),
            "nodes": self.graph.n_nodes,
            "identity_version": self.identity_version,
        }

    def unit_rows(self) -> list[tuple[int, str, str, bool, int, int, int, str]]:
        """The store's ``units`` rows: each unit's definition, digest and node id range."""
        graph = self.graph
        digests = self.digests
        rows = []
        for unit in self.workflow.units:
            columns = {
                name: ({"range": [col.start, col.stop, col.step]} if isinstance(col, range)
                       else list(col))
                for name, col in unit.columns.items()
            }
            definition = json.dumps(
                {
                    "const": unit.const,
                    "columns": columns,
                    "product": unit.is_product,
                    "after": unit.after,
                    "resources": unit.resources.as_dict() if unit.resources else None,
                    "digest": digests[unit.index],
                },
                default=str,
            )
            rows.append((unit.index, unit.task.name, unit.task.key, unit.is_group, unit.size,
                         graph.starts[unit.index], graph.owned[unit.index], definition))
        return rows

    def unit_of_nodes(self) -> Iterator[int]:
        """The unit of every node, in node order (the store's ``nodes.unit`` column)."""
        graph = self.graph
        nodes = itertools.chain.from_iterable(
            itertools.repeat(u, graph.owned[u]) for u in range(len(graph.members))
        )
        return _faulty(nodes) if FAULT else nodes


def _faulty(nodes: Iterator[int]) -> Iterator[int]:
    """The test hook of a DAG write: it fires once the transaction has begun."""
    assert FAULT is not None
    FAULT.reached("persist")
    yield from nodes


def make_plan(wf: Workflow, options: RunOptions) -> Plan:
    """Resolve ``wf`` for a run; raises for bad input before anything is written."""
    spec = resolve_spec(wf, options.spec)
    graph = wf.graph()  # cycle and argument errors surface here
    preflight(wf)
    units = tuple(unit_plans(wf, spec, options.resources, options.policy,
                             check_chunks(wf, options.chunks)))
    settings = spec.workflow
    for where, value in (("--poll-interval", options.poll_interval),
                         ("the spec's workflow.poll_interval", settings.poll_interval)):
        check_poll_interval(where, value)
    backend = options.backend or settings.backend or "local"
    check_launches(wf, units, backend)
    fail_fast = options.fail_fast if options.fail_fast is not None else settings.fail_fast
    config = EngineConfig(
        fail_fast=wf.fail_fast if fail_fast is None else bool(fail_fast),
        max_concurrent=options.max_concurrent or settings.max_concurrent or wf.max_concurrent,
        poll_max=options.poll_interval or settings.poll_interval,
    )
    return Plan(
        workflow=wf, graph=graph, spec=spec, units=units, config=config,
        backend=backend,
        backend_options={**dict(settings.backend_options), **options.backend_options},
        requested=options.requested(),
        rerun=options.rerun,
        hooks=Hooks(options.hooks.on_success or settings.on_success,
                    options.hooks.on_failure or settings.on_failure),
    )


def check_launches(wf: Workflow, units: Sequence[UnitPlan], backend: str) -> None:
    """``launch: fork`` forks a Python task's own command: a ``program=`` task cannot be
    forked (SpecError naming it); a backend other than the local one runs ``exec``, but
    for chunks on Slurm and Grid Engine (one warm interpreter per array element)."""
    forked = {unit.task.name: unit.task for unit, plan in zip(wf.units, units)
              if plan.policy.launch == "fork"}
    for name, task in forked.items():
        if task.program is not None:
            raise SpecError(
                f"task {name!r}: launch: fork runs a Python task's own command, but it runs "
                f"the program {list(task.program)!r}; drop launch: fork for it")
    if forked and backend != "local":
        logger.debug("launch: fork is for the local backend and for chunks on Slurm and "
                     "Grid Engine; elsewhere the {} backend starts the nodes of {} as usual "
                     "(exec)", backend, ", ".join(sorted(forked)))


def check_poll_interval(where: str, value: float | None) -> None:
    """Refuse a poll interval the engine would spin on, or overflow a wait with."""
    if value is None:
        return
    if not (math.isfinite(value) and POLL_FLOOR <= value <= MAX_DURATION):
        raise SpecError(
            f"{where} = {value!r}: give seconds between {POLL_FLOOR:g} (shorter makes the "
            f"engine spin) and {MAX_DURATION} (a year), e.g. 30"
        )


def resolve_spec(wf: Workflow, spec: Spec | str | os.PathLike[str] | None) -> Spec:
    """The workflow's own spec with the given one layered on top; task names checked."""
    merged = wf.spec or Spec.empty()
    if spec is not None:
        merged = merged.merged_with(spec if isinstance(spec, Spec) else load_spec(spec))
    merged.check_tasks({u.task.name for u in wf.units})
    return merged


def check_chunks(wf: Workflow, chunks: Mapping[str, int]) -> dict[str, Policy]:
    """``--chunk TASK=N`` as a policy per task; a task the workflow lacks is refused."""
    names = {u.task.name for u in wf.units}
    out: dict[str, Policy] = {}
    for name, size in chunks.items():
        if name not in names:
            raise SpecError(
                f"--chunk {name}={size}: the workflow has no task {name!r}; "
                f"its tasks are {', '.join(sorted(names)) or '(none)'}"
            )
        out[name] = Policy(chunk=size)
    return out


def unit_plans(
    wf: Workflow, spec: Spec, cli_resources: Resources | None, cli_policy: Policy | None,
    cli_tasks: Mapping[str, Policy] | None = None,
) -> list[UnitPlan]:
    """decorator < spec default < spec task < per-call resources= < CLI flags."""
    plans = []
    cache: dict[str, tuple[Resources, Policy]] = {}
    for unit in wf.units:
        task = unit.task
        if task.key not in cache:
            settings = spec.settings_for(task.name)
            cache[task.key] = (
                BASE_RESOURCES.merged_with(task.resources).merged_with(settings.resources),
                task.policy.merged_with(settings.policy).merged_with(cli_policy)
                .merged_with((cli_tasks or {}).get(task.name)),
            )
        resources, policy = cache[task.key]
        resources = resources.merged_with(unit.resources).merged_with(cli_resources)
        plans.append(UnitPlan(resources, policy))
    return plans
