"""``@gm.task``: one decorator turns a click command into a registered pipeline task.

The decorator records facts that pipelines used to write several times over:
the resources, the console-script entry point and the command template. It
also gives every task command ``-v/--verbose`` and ``--with-debugger`` with the
exception handling of ``covid_shared.cli_tools``.
"""

from __future__ import annotations

import copy
import string
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, Union, overload

import attrs
import click
from loguru import logger

from gristmill.dsl.context import current_recorder
from gristmill.dsl.naming import default_script_name, script_target
from gristmill.dsl.params import Signature
from gristmill.dsl.registry import registry
from gristmill.errors import NotInWorkflowError, TaskArgumentError
from gristmill.logs import configure_logging
from gristmill.resources import DurationLike, MemoryLike, Policy, Resources

if TYPE_CHECKING:
    from gristmill.dsl.nodes import Node, NodeGroup, Product

F = TypeVar("F", bound=Callable[..., Any])
After = Union["Node", "NodeGroup", Iterable[Union["Node", "NodeGroup"]], None]

def run_handled(fn: Callable[..., Any], kwargs: Mapping[str, Any], *, with_debugger: bool) -> Any:
    """Run a task body: log an uncaught exception with its traceback and exit 1.

    With ``with_debugger`` the exception opens a post-mortem pdb session instead.
    """
    try:
        return fn(**kwargs)
    except (KeyboardInterrupt, SystemExit, click.exceptions.Exit, click.Abort):
        raise
    except Exception:
        logger.opt(exception=True).error("uncaught exception in {}", getattr(fn, "__name__", fn))
        if with_debugger:
            import pdb  # only here: a task process pays for pdb only when it opens it

            pdb.post_mortem(sys.exc_info()[2])
        _exit(1)


def _exit(code: int) -> NoReturn:
    sys.exit(code)


def _verbose_params() -> list[click.Parameter]:
    """The options every task command gets (fresh objects: click params are per command)."""
    return [
        click.Option(["-v", "--verbose"], count=True, help="Log more: -v for INFO, -vv for DEBUG."),
        click.Option(
            ["--with-debugger"],
            is_flag=True,
            help="Open a post-mortem debugger when the task raises.",
        ),
    ]


def _has_verbose(command: click.Command) -> bool:
    names = {p.name for p in command.params}
    return {"verbose", "with_debugger"} <= names


@attrs.frozen(eq=False)
class Task:
    """A registered pipeline task: a click command plus the facts needed to run it anywhere."""

    name: str
    fn: Callable[..., Any] = attrs.field(repr=False)
    command: click.Command = attrs.field(repr=False)
    module: str
    qualname: str
    script: str
    resources: Resources
    policy: Policy
    job_name: str | None = None
    signature: Signature = attrs.field(repr=False, default=None)
    #: Run this program (argv prefix) instead of the task's console script.
    program: tuple[str, ...] | None = None
    #: Part of every node's identity: change it to rerun finished nodes after a code change.
    version: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.signature is None:
            object.__setattr__(self, "signature", Signature.of(self.name, self.command))
        if self.job_name is not None:
            check_name_template(self.job_name, self.name, self.signature.names)

    @property
    def __click_params__(self) -> list[click.Parameter]:
        """Refuse ``@click.option`` stacked above ``@gm.task`` (it would be lost)."""
        raise TypeError(
            f"a click option or argument was stacked above @gm.task on {self.name!r}; "
            "put @gm.task on top, above every click decorator"
        )

    @property
    def key(self) -> str:
        """``module:qualname``, the registry key and the root of node identities."""
        return f"{self.module}:{self.qualname}"

    @property
    def identity_key(self) -> str:
        """What node identities start with: the key, and ``#<version>`` when one is declared."""
        return self.key if self.version is None else f"{self.key}#{self.version}"

    @property
    def entry_point(self) -> str:
        """The console-script target of this task (``module:qualname.main``)."""
        return script_target(self.module, self.qualname)

    def main(self, args: list[str] | None = None) -> Any:
        """Run the task's command line (the console-script target)."""
        return self.command.main(args=args, prog_name=self.script)

    def __call__(
        self, *args: Any, after: After = None, resources: Resources | None = None, **kwargs: Any
    ) -> Node:
        """Inside a workflow: record one node. Outside: an error (use ``.fn``)."""
        if args:
            raise TaskArgumentError(
                f"task {self.name!r} takes keyword arguments only (they become command-line "
                f"options), got {len(args)} positional; call it as "
                f"{self.name}({', '.join(f'{n}=...' for n in self.signature.names)})"
            )
        recorder = current_recorder()
        if recorder is None:
            raise NotInWorkflowError(self._outside_message())
        return recorder.add_node(self, kwargs, after, resources)

    def map(
        self,
        product: Product | None = None,
        /,
        *,
        after: After = None,
        resources: Resources | None = None,
        **kwargs: Any,
    ) -> NodeGroup:
        """Record one compact group: iterables vary (zipped), scalars stay constant."""
        recorder = current_recorder()
        if recorder is None:
            raise NotInWorkflowError(self._outside_message())
        return recorder.add_group(self, product, kwargs, after, resources)

    def options(
        self, *, resources: Resources | None = None, policy: Policy | None = None
    ) -> Task:
        """A copy of this task with other defaults (not registered)."""
        return attrs.evolve(
            self,
            resources=self.resources.merged_with(resources),
            policy=self.policy.merged_with(policy),
        )

    def _outside_message(self) -> str:
        return (
            f"task {self.name!r} was called outside a workflow; calling it records a node, "
            f"so it must happen inside a @gm.workflow function. To run the code directly "
            f"use {self.name}.fn(...), or its command line {self.script!r}"
        )


def check_name_template(template: str, task: str, names: Iterable[str]) -> None:
    """Every ``{placeholder}`` of a job-name template must be an argument of the task."""
    allowed = set(names) | {"task"}
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise TaskArgumentError(f"task {task!r}: name template {template!r}: {exc}") from None
    for field in fields:
        base = field.split(".")[0].split("[")[0]
        if base not in allowed:
            raise TaskArgumentError(
                f"task {task!r}: name template {template!r} uses {{{base}}}, which is not an "
                f"argument of the task; use one of: {', '.join(sorted(allowed))}"
            )


def _build_command(
    target: Callable[..., Any] | click.Command, name: str
) -> tuple[click.Command, Callable[..., Any]]:
    """The task's click command (with -v/--with-debugger) and its plain function."""
    if isinstance(target, click.Command):
        fn = target.callback
        if fn is None:
            raise TypeError(f"click command {target.name!r} has no callback to run as a task")
        if _has_verbose(target):
            return target, fn  # it handles -v/--with-debugger itself (cli_tools style)
        command = copy.copy(target)  # the user's command stays as it was
        command.params = [*target.params, *_verbose_params()]
    else:
        fn = target
        # click.option() stacks params on the function in reverse order of declaration.
        declared: list[click.Parameter] = list(reversed(getattr(fn, "__click_params__", [])))
        command = click.Command(
            name=name.replace("_", "-"),
            params=[*declared, *_verbose_params()],
            help=fn.__doc__,
            callback=None,
        )
    inner = fn

    def callback(verbose: int = 0, with_debugger: bool = False, **kwargs: Any) -> Any:
        configure_logging(verbose)
        return run_handled(inner, kwargs, with_debugger=with_debugger)

    command.callback = callback
    return command, fn


@overload
def task(mem: F, /) -> Task: ...


@overload
def task(
    mem: MemoryLike | None = None,
    cores: int | None = 1,
    runtime: DurationLike | None = None,
    *,
    name: str | None = None,
    script: str | None = None,
    queue: str | None = None,
    retries: int | None = None,
    gpus: int | None = 0,
    project: str | None = None,
    max_concurrent: int | None = None,
    chunk: int | None = None,
    program: Sequence[str] | None = None,
    version: str | int | None = None,
    launch: str | None = None,
    **extra: str,
) -> Callable[[Callable[..., Any] | click.Command], Task]: ...


def task(
    mem: Any = None,
    cores: int | None = 1,
    runtime: DurationLike | None = None,
    *,
    name: str | None = None,
    script: str | None = None,
    queue: str | None = None,
    retries: int | None = None,
    gpus: int | None = 0,
    project: str | None = None,
    max_concurrent: int | None = None,
    chunk: int | None = None,
    program: Sequence[str] | None = None,
    version: str | int | None = None,
    launch: str | None = None,
    **extra: str,
) -> Task | Callable[[Callable[..., Any] | click.Command], Task]:
    """Register a click command (or a function carrying click params) as a task.

    ``name`` is the job-name template (``"forecast_{location_id}"``); the task's
    own name is the function's. Works bare (``@gm.task``) or called.
    ``script`` names the task's console script (default: the package, then the
    task, ``seiir-like-fit``; see ``default_script_name``). ``program`` makes a
    task that runs an external program (``["Rscript", "fit.R"]``) with the task's
    options appended, instead of its console script: the click params still check
    arguments at record time.
    ``version`` enters every node's identity: a node's identity covers its task, its
    arguments and its upstream nodes but not the code of the task's body, so bump the
    version (``version="2"``) to make a resume rerun nodes that finished with old code.
    ``chunk`` lets a scheduler backend (Slurm, Grid Engine) pack up to that many ready
    nodes of the task into one array element, for tasks too short to be worth a job
    each (docs/chunks.md); other backends ignore it.

    ``launch="fork"`` runs the task's nodes, on the local backend, as forks of one warm
    interpreter that imported the task's module once (a few ms a node instead of an
    interpreter's start and its imports); ``"exec"`` (the default) starts each node
    afresh. Each fork is still a process of its own (logs, limits, exit status), but it
    shares what the module did at import: do not fork a task whose imports start
    threads (a lock held at the fork stays locked: the node fails, naming ``launch:
    exec``) or open fork-unsafe state (database or network connections, CUDA, MPI);
    module-level state one node changes is not seen by the next; the warm interpreter's
    memory counts in each node's RSS until written. Other backends run ``exec``. See
    docs/launch.md.
    """
    if callable(mem) or isinstance(mem, click.Command):
        return task()(mem)
    resources = Resources(
        mem=mem, cores=cores, runtime=runtime, queue=queue, gpus=gpus or None,
        project=project, extra=extra,
    )
    policy = Policy(retries=retries, max_concurrent=max_concurrent, chunk=chunk,
                    launch=launch)
    if launch == "fork" and program is not None:
        raise TypeError(f"launch='fork' runs a Python task's own command; a program= task "
                        f"({list(program)!r}) runs with launch='exec'")
    if program is not None and (isinstance(program, str) or not program):
        raise TypeError(
            f"program= takes a non-empty argv list, e.g. ['Rscript', 'fit.R']; got {program!r}"
        )
    version_text = _check_version(version)

    def decorate(target: Callable[..., Any] | click.Command) -> Task:
        if isinstance(target, Task):
            raise TypeError(f"@gm.task applied twice to task {target.name!r}")
        fn_for_name = target.callback if isinstance(target, click.Command) else target
        if fn_for_name is None:
            raise TypeError("@gm.task needs a function or a click command with a callback")
        task_name = fn_for_name.__name__
        command, fn = _build_command(target, task_name)
        made = Task(
            name=task_name,
            fn=fn,
            command=command,
            module=fn_for_name.__module__,
            qualname=fn_for_name.__qualname__,
            script=script or default_script_name(fn_for_name.__module__, task_name),
            resources=resources,
            policy=policy,
            job_name=name,
            program=tuple(program) if program is not None else None,
            version=version_text,
        )
        registry().register(made)
        return made

    return decorate


def _check_version(version: object) -> str | None:
    """``version=`` as the text identities carry: a non-empty str or int, one printable line."""
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, (str, int)):
        raise TypeError(f"version= takes a str or an int, e.g. version=\"2\"; got {version!r}")
    text = str(version)
    if not text or not text.isprintable():
        raise TypeError(
            f"version= must be a non-empty printable text on one line, e.g. \"2\"; got {text!r}"
        )
    return text


def get_task(key: str) -> Task:
    """The registered task for ``module:qualname`` (importing the module if needed)."""
    return registry().get(key)
