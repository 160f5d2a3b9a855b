"""``gristmill run``, ``resume`` and ``cancel``: the commands that start or stop work."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import click

from gristmill.backends.registry import DEFAULT_BACKEND
from gristmill.cli.backend_flags import BackendFlagsCommand, given_backend_flags, options_for
from gristmill.cli.common import WF_ARGS, handle_errors
from gristmill.cli.progress import make_progress
from gristmill.cli.status import resolve_run_dir
from gristmill.cli.workflow_command import WorkflowCommand, recorded_workflow
from gristmill.dsl.workflow import Workflow
from gristmill.engine.hooks import Hooks
from gristmill.engine.plan import RunOptions, make_plan, resolve_spec
from gristmill.engine.rebuild import rebuild_workflow
from gristmill.engine.runner import RunResult, run_plan
from gristmill.errors import BackendError, GristmillError, RunDirError, SpecError
from gristmill.logs import CLI_FORMAT, configure_logging
from gristmill.resources import Policy, Resources
from gristmill.spec.load import Spec, load_spec, resources_from_cli


def _generic_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs: text for the backend to parse (any backend, any key)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GristmillError(f"--option {pair!r}: write backend options as KEY=VALUE")
        options[key.replace("-", "_")] = value
    return options


def chunk_sizes(pairs: tuple[str, ...]) -> dict[str, int]:
    """``--chunk TASK=N`` pairs: how many nodes of TASK one scheduler job may run."""
    sizes: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.rpartition("=")
        if not sep or not name:
            raise GristmillError(f"--chunk {pair!r}: write it as TASK=N, e.g. --chunk fit=50")
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            raise GristmillError(
                f"--chunk {pair!r}: {value!r} is not a whole number of at least 1; "
                f"write e.g. --chunk {name}=50"
            )
        sizes[name] = size
    return sizes


def backend_options(ctx: click.Context, backend: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    """The options the command line gives ``backend``: ``--option`` pairs, then its flags."""
    return {**_generic_options(pairs), **options_for(backend, given_backend_flags(ctx))}


def run_options(fn: Any) -> Any:
    """Options shared by ``run`` and ``resume``; each backend's own flags come from its
    declared settings (:class:`~gristmill.cli.backend_flags.BackendFlagsCommand`)."""
    decorators = [
        click.option("--mem", help="Memory for every task (overrides everything else)."),
        click.option("--cores", type=int, help="Cores for every task."),
        click.option("--runtime", help="Runtime limit for every task (e.g. 2h)."),
        click.option("--queue", help="Queue/partition for every task."),
        click.option("--project", help="Project/account for every task."),
        click.option("--backend", help="Where tasks run: local, slurm, sge, dask, jobmon or a "
                     "plugin's (default: the spec's, else local)."),
        click.option("--max-concurrent", type=click.IntRange(min=1),
                     help="At most this many jobs at once."),
        click.option("--fail-fast/--no-fail-fast", default=None,
                     help="Stop and cancel everything after the first final failure."),
        click.option("--retries", type=click.IntRange(min=0),
                     help="Retries per task (overrides decorator and spec)."),
        click.option("--chunk", multiple=True, metavar="TASK=N",
                     help="Pack up to N ready nodes of TASK into one scheduler job (Slurm, "
                     "Grid Engine; repeatable; others ignore it)."),
        click.option("--launch", multiple=True, metavar="TASK=fork|exec",
                     help="How TASK's nodes start (repeatable): fork runs them, on the local "
                     "backend, as forks of one interpreter that imported the task "
                     "(docs/launch.md); exec (the default) starts each afresh."),
        click.option("--poll-interval", type=float, help="Longest wait between status polls (s)."),
        click.option("--option", "backend_option", multiple=True, metavar="KEY=VALUE",
                     help="A backend option (repeatable), for any backend; text the backend "
                     "parses."),
        click.option("--rerun", multiple=True, metavar="TASK|NODE",
                     help="Run these nodes again even if DONE, and everything downstream of "
                     "them (repeatable): a task name, a job name or an identity prefix."),
        click.option("--on-success", metavar="CMD",
                     help="Shell command to run when the run succeeds (the run directory, "
                     "status and counts are in GRISTMILL_* variables; docs: engine/hooks)."),
        click.option("--on-failure", metavar="CMD",
                     help="Shell command to run when the run fails or is cancelled."),
        click.option("--quiet", "-q", is_flag=True,
                     help="No live progress (the final line and errors still print)."),
        click.option("--progress-interval", type=click.FloatRange(0.5, 86400),
                     help="Seconds between progress lines when stdout is not a terminal "
                     "(default 60; a terminal gets a live display)."),
        click.option("--dry-run", is_flag=True,
                     help="Say per task how many nodes would run and why; write nothing "
                     "(gristmill -v ... lists the nodes)."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def _run_to_exit(call: Callable[[], RunResult], run_dir: Path) -> None:
    """Run, report and exit; a Ctrl-C once the run's record is complete is dropped.

    A second Ctrl-C, or a terminal's SIGINT to the whole group arriving late, changes
    nothing then and must not turn the exit into a traceback or a death by SIGINT. While
    the engine runs, its own guard handles Ctrl-C.
    """
    ended: list[float] = []

    def late_ctrl_c(signum: int, frame: object) -> None:
        if not ended or time.monotonic() - ended[0] > _LATE:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, late_ctrl_c)
    exiting = True
    try:
        result = _interruptible(call, run_dir, ended)
        ended.append(time.monotonic())
        _exit_for(result)
        exiting = False
    finally:
        if exiting:  # up to the interpreter's end, then ignored (see _ignore_ctrl_c_at_exit)
            atexit.register(_ignore_ctrl_c_at_exit)
        else:
            signal.signal(signal.SIGINT, previous)


#: Seconds after a run ended during which a Ctrl-C is dropped (the process is exiting).
_LATE = 5.0


def _ignore_ctrl_c_at_exit() -> None:
    """At exit Python puts back the default action of SIGINT (death by signal), which a
    late Ctrl-C would then hit: ignore it instead, as the run's record is complete."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interruptible(call: Callable[[], RunResult], run_dir: Path, ended: list[float]) -> RunResult:
    """``call()``, where a Ctrl-C the engine does not handle itself (before it starts, or a
    second one while it finishes) exits 130 saying how to continue, not click's "Aborted!"."""
    started = time.time()
    try:
        return call()
    except KeyboardInterrupt:
        ended.append(time.monotonic())
        from gristmill.store.db import STORE_NAME

        made = run_dir if (run_dir / STORE_NAME).exists() else (run_dir / "latest").resolve()
        store = made / STORE_NAME
        if made == run_dir or (store.exists() and store.stat().st_mtime >= started - 1):
            click.echo(f"interrupted; continue with: gristmill resume {made}", err=True)
        else:
            click.echo("interrupted before the run was recorded; nothing ran", err=True)
        sys.exit(130)


def _exit_for(result: RunResult) -> None:
    counts = ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items()))
    click.echo(f"run {result.run_dir}: {'succeeded' if result.ok else 'not complete'} ({counts})")
    if not result.interrupted:
        _print_summary(result.run_dir)
    if result.interrupted:
        click.echo(f"interrupted; continue with: gristmill resume {result.run_dir}", err=True)
        sys.exit(130)
    if not result.ok:
        click.echo(f"see failures with: gristmill status {result.run_dir}", err=True)
        sys.exit(1)


def _print_summary(run_dir: Path) -> None:
    """The per-task summary of the run that ended; a run's outcome never hangs on it."""
    from gristmill.report.summary import console, render_summary

    try:
        summary = render_summary(run_dir)
    except GristmillError as exc:
        click.echo(f"no summary: {exc}", err=True)
        return
    console().print(summary)


class RunCommand(WorkflowCommand, BackendFlagsCommand):
    """``gristmill run``: the workflow's options and every backend's flags, in --help too."""


@click.command(cls=RunCommand, context_settings=WF_ARGS)
@click.argument("target")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML spec with resources and settings per task.")
@click.option("--run-dir", default="runs", show_default=True, type=click.Path(path_type=Path),
              help="Root for numbered run directories, or an existing run to resume.")
@run_options
@click.pass_context
@handle_errors
def run(
    ctx: click.Context, /, target: str, spec_path: Path | None, run_dir: Path, **given: Any
) -> None:
    """Run the workflow TARGET (module:workflow); its parameters follow as options.

    Example: gristmill run seiir.pipeline:seiir --version v1 --n-draws 1000 --backend slurm
    """
    wf = recorded_workflow(ctx)
    flags = _Flags(**given)
    backend = flags.backend
    if backend is None and given_backend_flags(ctx):  # which backend the flags must be for
        backend = resolve_spec(wf, spec_path).workflow.backend or DEFAULT_BACKEND
    spec: Spec | Path | None = spec_path
    if flags.launch:
        spec = (load_spec(spec_path) if spec_path else Spec()).merged_with(flags.launch_spec())
    options = RunOptions(
        backend=backend,
        spec=spec,
        resources=flags.resources(),
        policy=Policy(retries=flags.retries),
        max_concurrent=flags.max_concurrent,
        fail_fast=flags.fail_fast,
        poll_interval=flags.poll_interval,
        backend_options=backend_options(ctx, backend or DEFAULT_BACKEND, flags.backend_option),
        rerun=flags.rerun,
        hooks=flags.hooks(),
        chunks=chunk_sizes(flags.chunk),
    )
    _run_or_preview(ctx, wf, options, run_dir, flags)


@click.command(cls=BackendFlagsCommand)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML spec layered over the run's own, for the nodes not yet DONE.")
@click.option("-v", "--verbose", count=True,
              help="With --dry-run: list every node that would run; else log more.")
@run_options
@click.pass_context
@handle_errors
def resume(ctx: click.Context, /, run_dir: Path, spec_path: Path | None, **given: Any) -> None:
    """Continue RUN_DIR: skip DONE nodes, re-adopt live jobs, run the rest.

    The run keeps its backend and settings; flags given here (resources, retries, a spec
    layered over the run's) apply to every node not yet DONE, so a node that ran out of
    memory at its cap can run again with more: gristmill resume RUN_DIR --mem 16G.
    """
    if "" not in sys.path:
        sys.path.insert(0, "")
    flags = _Flags(**given)
    run_dir = resolve_run_dir(run_dir)
    wf, meta = rebuild_workflow(run_dir)
    # A run directory is data, never code: the stored spec's hooks are not run again.
    spec = Spec.from_dict(meta.get("spec") or {}, source=f"{run_dir} (stored spec)").without_hooks()
    if spec_path is not None:
        spec = spec.merged_with(load_spec(spec_path))
    if flags.launch:
        spec = spec.merged_with(flags.launch_spec())
    stored_backend = str(meta.get("backend") or DEFAULT_BACKEND)
    backend = flags.backend or (spec.workflow.backend if spec_path else None) or stored_backend
    stored_options = (meta.get("backend_options") or {}) if backend == stored_backend else {}
    settings = meta.get("settings") or {}
    options = RunOptions(
        backend=backend,
        spec=spec,
        resources=_stored_resources(settings).merged_with(flags.resources()),
        policy=Policy(retries=flags.retries if flags.retries is not None
                      else settings.get("retries")),
        max_concurrent=flags.max_concurrent or settings.get("max_concurrent"),
        fail_fast=flags.fail_fast if flags.fail_fast is not None else settings.get("fail_fast"),
        poll_interval=flags.poll_interval,
        backend_options={**stored_options,
                         **backend_options(ctx, backend, flags.backend_option)},
        rerun=flags.rerun,
        hooks=flags.hooks(),
        chunks={**(settings.get("chunk") or {}), **chunk_sizes(flags.chunk)},
    )
    _run_or_preview(ctx, wf, options, run_dir, flags)


@attrs.frozen
class _Flags:
    """The options :func:`run_options` gives ``run`` and ``resume``, as click parsed them."""

    mem: str | None
    cores: int | None
    runtime: str | None
    queue: str | None
    project: str | None
    backend: str | None
    max_concurrent: int | None
    fail_fast: bool | None
    retries: int | None
    chunk: tuple[str, ...]
    launch: tuple[str, ...]
    poll_interval: float | None
    backend_option: tuple[str, ...]
    rerun: tuple[str, ...]
    on_success: str | None
    on_failure: str | None
    quiet: bool
    progress_interval: float | None
    dry_run: bool
    #: ``resume -v`` (``run`` has none: a ``-v`` after a workflow option is its value)
    verbose: int = 0

    def hooks(self) -> Hooks:
        return Hooks(self.on_success, self.on_failure)

    def launch_spec(self) -> Spec:
        """``--launch TASK=MODE`` as a spec layer (``tasks: {TASK: {launch: MODE}}``): it
        beats the spec files, and the runner refuses a task the workflow does not have."""
        tasks: dict[str, dict[str, str]] = {}
        for pair in self.launch:
            name, equals, mode = pair.partition("=")
            if not equals or not name.strip():
                raise SpecError(f"--launch {pair!r}: write TASK=MODE, e.g. --launch fit=fork")
            tasks[name.strip()] = {"launch": mode.strip()}
        return Spec.from_dict({"tasks": tasks}, source="--launch")

    def resources(self) -> Resources:
        return resources_from_cli(mem=self.mem, cores=self.cores, runtime=self.runtime,
                                  queue=self.queue, project=self.project)


def _run_or_preview(
    ctx: click.Context, wf: Workflow, options: RunOptions, run_dir: Path, flags: _Flags
) -> None:
    """Run the plan to its exit code, or with ``--dry-run`` say what it would do.

    ``gristmill -v`` (and ``resume -v``) lists the nodes a dry run would run; ``resume
    -v`` otherwise logs more, as ``gristmill -v`` does.
    """
    verbose = flags.verbose + int(ctx.find_root().params.get("verbose") or 0)
    if flags.dry_run:
        from gristmill.cli.dryrun import echo_preview
        from gristmill.engine.preview import preview_plan

        echo_preview(preview_plan(make_plan(wf, options), run_dir, list_nodes=verbose > 0))
        return
    if flags.verbose:
        configure_logging(verbose, fmt=CLI_FORMAT)
    progress = make_progress(flags.quiet, flags.progress_interval, verbose)

    def call() -> RunResult:
        plan = make_plan(wf, options)
        if progress is None:
            return run_plan(plan, run_dir, argv=sys.argv)
        with progress:
            return run_plan(plan, run_dir, argv=sys.argv, observer=progress)

    _run_to_exit(call, run_dir)


def _stored_resources(settings: dict[str, Any]) -> Resources:
    """The resource flags the run was started (or last resumed) with."""
    data = settings.get("resources") or {}
    return Resources(**data)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the engine.")
@handle_errors
def cancel(run_dir: Path, timeout: float) -> None:
    """Stop RUN_DIR: its engine cancels every live job, or (no engine) cancel them directly."""
    from gristmill.store.lock import is_locked, verified_engine

    if is_locked(run_dir):
        pid, why = verified_engine(run_dir)
        if pid is None:
            raise RunDirError(
                f"an engine holds {run_dir}, but gristmill cannot verify which process it is: "
                f"{why}; nothing was signalled"
            )
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_locked(run_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        if is_locked(run_dir):
            raise RunDirError(f"the engine (pid {pid}) did not stop within {timeout:g} s")
        click.echo(f"engine {pid} stopped; live jobs were cancelled")
        return
    cancelled = cancel_orphans(run_dir)
    click.echo(f"no engine was running; cancelled {cancelled} job(s) it left behind")


def cancel_orphans(run_dir: Path) -> int:
    """Cancel the jobs an engine that died left open (read-only on the store).

    Only a backend that can re-adopt jobs (``Capabilities.reattach``) knows them again;
    for any other, this says so rather than pretend to have cancelled them.
    """
    from gristmill.backends.base import JobHandle
    from gristmill.backends.registry import make_backend
    from gristmill.store.db import Store
    from gristmill.store.paths import confined

    store = Store.open(run_dir, readonly=True)
    try:
        meta = store.meta()
        open_attempts = [a for a in store.attempts(open_only=True) if a.job_id]
    finally:
        store.close()
    foreign = [a for a in open_attempts if not confined(run_dir, a.result_path)]
    if foreign:
        click.echo(f"warning: {len(foreign)} open attempt(s) in the store name files outside "
                   f"{run_dir} (e.g. {foreign[0].result_path}); they are left alone", err=True)
        open_attempts = [a for a in open_attempts if a not in foreign]
    if not open_attempts:
        return 0
    name = str(meta.get("backend") or DEFAULT_BACKEND)
    backend = make_backend(name, **(meta.get("backend_options") or {}))
    try:
        if not backend.capabilities.reattach:
            raise BackendError(
                f"backend {name} cannot re-adopt the {len(open_attempts)} job(s) the engine of "
                f"{run_dir} left open, so it cannot cancel them; stop them with the "
                "scheduler's own tools"
            )
        handles = [JobHandle(a.backend, a.job_id or "", a.key, a.result_path)
                   for a in open_attempts]
        backend.attach(handles)
        backend.cancel(handles)
    finally:
        backend.close()
    return len(open_attempts)
