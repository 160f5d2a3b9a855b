"""``gristmill spec`` and ``gristmill resources --suggest``: resources as data, both ways.

``spec`` shows what every task of a workflow will ask for after all layers
(decorator < spec default < spec task < per-call) are merged. ``resources
--suggest`` reads what finished attempts really used (peak memory, elapsed
time) and prints a spec that fits them with headroom, so requests follow
measurements instead of guesses.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import click
import yaml
from loguru import logger

from gristmill.cli.common import WF_ARGS, handle_errors
from gristmill.cli.workflow_command import WorkflowCommand, recorded_workflow
from gristmill.report.usage import suggest_entry


@click.command("spec", cls=WorkflowCommand, context_settings=WF_ARGS)
@click.argument("target")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A spec file to layer over the workflow's own.")
@click.option("--defaults", is_flag=True, help="Only what the decorators say.")
@click.pass_context
@handle_errors
def spec_command(ctx: click.Context, target: str, spec_path: Path | None, defaults: bool) -> None:
    """Print the resources and policy each task of TARGET will get, as spec YAML.

    The output is a spec file: give it back with --spec (or to gristmill run) and every
    task gets the same again.
    """
    from gristmill.engine.plan import BASE_RESOURCES, resolve_spec, unit_plans
    from gristmill.spec.load import Spec
    from gristmill.spec.render import task_dict
    from gristmill.spec.settings import TaskSettings, idle_escalations

    wf = recorded_workflow(ctx)
    spec = Spec.empty() if defaults else resolve_spec(wf, spec_path)
    settings: dict[str, TaskSettings] = {}
    if defaults:
        for unit in wf.units:
            task = unit.task
            settings.setdefault(task.name, TaskSettings(
                BASE_RESOURCES.merged_with(task.resources), task.policy))
    else:
        for unit, plan in zip(wf.units, unit_plans(wf, spec, None, None)):
            settings.setdefault(unit.task.name, TaskSettings(plan.resources, plan.policy))
        for warning in idle_escalations((name, s.policy) for name, s in settings.items()):
            logger.warning(warning)
    document: dict[str, Any] = {"tasks": {name: task_dict(s) for name, s in settings.items()}}
    workflow = spec.to_dict().get("workflow")
    if workflow:
        document = {"workflow": workflow, **document}
    click.echo(yaml.safe_dump(document, sort_keys=False), nl=False)


def suggest(rows: list[tuple[str, int | None, float | None]], *, mem_headroom: float,
            time_headroom: float) -> dict[str, dict[str, str]]:
    """Per task: memory and runtime that cover every successful attempt, with headroom."""
    peaks: dict[str, list[int]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    for task, peak, elapsed in rows:
        if peak:
            peaks[task].append(peak)
        if elapsed:
            times[task].append(elapsed)
    return {task: suggest_entry(max(peaks[task], default=None), max(times[task], default=None),
                                mem_headroom=mem_headroom, time_headroom=time_headroom)
            for task in sorted(set(peaks) | set(times))}


@click.command("resources")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--suggest", "do_suggest", is_flag=True, required=True,
              help="Suggest per-task mem and runtime from successful attempts.")
@click.option("--mem-headroom", default=1.25, show_default=True, help="Factor over peak memory.")
@click.option("--time-headroom", default=1.5, show_default=True, help="Factor over longest run.")
@handle_errors
def resources_command(run_dirs: tuple[Path, ...], do_suggest: bool, mem_headroom: float,
                      time_headroom: float) -> None:
    """Suggest a spec from what the tasks of RUN_DIRS really used."""
    from gristmill.cli.status import resolve_run_dir
    from gristmill.store.db import Store

    rows: list[tuple[str, int | None, float | None]] = []
    for run_dir in run_dirs:
        store = Store.open(resolve_run_dir(run_dir), readonly=True)
        try:
            rows += [(a.task, a.peak_rss, a.elapsed) for a in store.attempts()
                     if a.state == "SUCCEEDED"]
        finally:
            store.close()
    if not rows:
        raise click.ClickException("no successful attempts to learn from in the run(s) given")
    table = suggest(rows, mem_headroom=mem_headroom, time_headroom=time_headroom)
    click.echo(f"# from {len(rows)} successful attempt(s); mem = peak x{mem_headroom:g}, "
               f"runtime = longest x{time_headroom:g}")
    click.echo(yaml.safe_dump({"tasks": table}, sort_keys=False), nl=False)
