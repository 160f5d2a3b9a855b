"""``gristmill status`` and ``tasks``: read a run directory, never write it.

They read the store with a read-only connection, so they work while the
engine runs (SQLite WAL readers do not block the writer) and on a finished
run with no backend at all. :func:`find_node` turns a name given on the command line
(a job name, ``TASK#ID``, an attempt key, an identity prefix) into one node's
attempts, for ``logs`` and any other command that takes a node.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gristmill.cli.common import handle_errors
from gristmill.engine.steering import META_KEY as STEERING_KEY
from gristmill.engine.steering import Steering
from gristmill.errors import RunDirError
from gristmill.report.failures import failure_report
from gristmill.report.summary import console as wide_console
from gristmill.report.summary import human_bytes, human_seconds
from gristmill.report.usage import TaskUsage, task_usage
from gristmill.states import NodeState
from gristmill.store.db import AttemptRecord, Store
from gristmill.store.lock import is_locked, read_holder

_STATE_STYLE = {
    "PENDING": "dim", "READY": "cyan", "SUBMITTED": "blue", "RUNNING": "yellow",
    "DONE": "green", "FAILED": "bold red", "UPSTREAM_FAILED": "red", "CANCELLED": "magenta",
}
_FAILED = (NodeState.FAILED,)


def _open(run_dir: Path) -> Store:
    if (run_dir / "latest").is_symlink() and not (run_dir / "gristmill.db").exists():
        run_dir = run_dir / "latest"
    return Store.open(run_dir.resolve() if run_dir.is_symlink() else run_dir, readonly=True)


def _used_cells(usage: TaskUsage | None) -> tuple[Text, Text]:
    """Largest peak memory and longest run of a task's ended attempts, against the largest
    request, with the share used; red where an attempt ran out of either."""
    if usage is None:
        return Text("—"), Text("—")
    mem = Text(f"{human_bytes(usage.peak_rss)} / {human_bytes(usage.mem_requested)}")
    if usage.mem_pct is not None:
        mem.append(f" ({usage.mem_pct:.0f}%)")
    if usage.ooms:
        mem.append(f" {usage.ooms} OOM", style="bold red")
    run = Text(f"{human_seconds(usage.elapsed)} / {human_seconds(usage.runtime_requested)}")
    if usage.runtime_pct is not None:
        run.append(f" ({usage.runtime_pct:.0f}%)")
    if usage.timeouts:
        run.append(f" {usage.timeouts} TIMEOUT", style="bold red")
    return mem, run


def waiting_line(waiting: int, reasons: dict[str, int]) -> str:
    """``waiting: 37 (Resources 30, Priority 7)``: nodes a scheduler holds queued, and
    why, as it last said (jobs it gave no reason for yet are in the total only)."""
    why = ", ".join(f"{reason} {n}" for reason, n in reasons.items())
    return f"waiting: {waiting}" + (f" ({why})" if why else "")


def _waiting_lines(tasks: dict[str, dict[str, int]],
                   reasons: dict[str, dict[str, int]]) -> list[Text]:
    """One line per task with queued jobs a scheduler gave a reason for."""
    lines = []
    for task, by_state in tasks.items():
        if reasons.get(task):
            waiting = max(by_state.get("SUBMITTED", 0), sum(reasons[task].values()))
            lines.append(Text.assemble((task, "bold"), "  ",
                                       waiting_line(waiting, reasons[task])))
    return lines


def _render(run_dir: Path, store: Store, *, failures: int) -> Group:
    meta = store.meta()
    counts = store.counts()
    tasks: dict[str, dict[str, int]] = defaultdict(dict)
    for (task, state), n in counts.items():
        tasks[task][state] = n
    states = [s.name for s in NodeState if any(s.name in c for c in tasks.values())]
    holder = read_holder(run_dir)
    engine = (
        f"engine running (pid {holder.get('pid')} on {holder.get('host')})"
        if is_locked(run_dir)
        else "no engine running"
    )
    header = Text.assemble(
        (f"{meta.get('workflow', '?')}", "bold"), f"  {run_dir}  backend {meta.get('backend')}  ",
        (engine, "italic"),
    )
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("task")
    for state in states:
        table.add_column(state, justify="right", style=_STATE_STYLE.get(state, ""))
    table.add_column("total", justify="right")
    table.add_column("progress", width=32)
    table.add_column("peak mem / asked", justify="right")
    table.add_column("longest / limit", justify="right")
    usage = task_usage(store)
    total_all: dict[str, int] = defaultdict(int)
    for task, by_state in tasks.items():
        total = sum(by_state.values())
        done = by_state.get("DONE", 0)
        for state, n in by_state.items():
            total_all[state] += n
        table.add_row(
            task, *(str(by_state.get(s, "")) for s in states), str(total),
            ProgressBar(total=max(total, 1), completed=done, width=30),
            *_used_cells(usage.get(task)),
        )
    if len(tasks) > 1:
        table.add_row(
            Text("all", style="bold"), *(str(total_all.get(s, "")) for s in states),
            str(sum(total_all.values())), "", "", "",
        )
    parts: list[object] = [header]
    parts.extend(Text(line, style="yellow")
                 for line in Steering.from_json(meta.get(STEERING_KEY)).describe())
    parts.append(table)
    parts.extend(_waiting_lines(tasks, store.waiting_reasons()))
    failed = [a for _, _, _, a in store.last_attempts(_FAILED) if a is not None]
    if failed:
        parts.append(Text(f"\n{len(failed)} failed node(s):", style="bold red"))
        for attempt in failed[:failures]:
            # Never wrapped: the rerun command must survive a copy and paste.
            parts.append(Text("\n".join(failure_report(attempt)), no_wrap=True, overflow="ignore"))
        if len(failed) > failures:
            parts.append(Text(f"... and {len(failed) - failures} more "
                              f"(gristmill tasks {run_dir} --state FAILED)"))
    return Group(*parts)  # type: ignore[arg-type]


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--watch", is_flag=True, help="Refresh until the engine stops.")
@click.option("--interval", default=2.0, show_default=True, help="Refresh period for --watch.")
@click.option("--failures", default=5, show_default=True, help="How many failures to detail.")
@handle_errors
def status(run_dir: Path, watch: bool, interval: float, failures: int) -> None:
    """Counts per task and state, progress, and why each failure failed."""
    run_dir = resolve_run_dir(run_dir)
    console = wide_console()
    store = _open(run_dir)
    try:
        if not watch:
            console.print(_render(run_dir, store, failures=failures), soft_wrap=True)
            return
        with Live(_render(run_dir, store, failures=failures), console=console,
                  refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                live.update(_render(run_dir, store, failures=failures))
                if not is_locked(run_dir):
                    break
    finally:
        store.close()


def resolve_run_dir(run_dir: Path) -> Path:
    """A run, the run a root's ``latest`` names, or the latest run a covid_shared version
    directory holds under ``gristmill/`` (said on stderr)."""
    if not (run_dir / "gristmill.db").exists() and (run_dir / "latest").exists():
        run_dir = (run_dir / "latest").resolve()
    nested = run_dir / "gristmill" / "latest"
    if not (run_dir / "gristmill.db").exists() and (nested / "gristmill.db").exists():
        click.echo(f"{run_dir}: its latest gristmill run is {nested.resolve()}", err=True)
        run_dir = nested.resolve()
    if not (run_dir / "gristmill.db").exists():
        raise RunDirError(f"{run_dir} is not a gristmill run directory: it has no run store "
                          "(gristmill.db), nor a latest run in it or in its gristmill/")
    return run_dir


def _node_rows(
    store: Store, state: str | None
) -> Iterator[tuple[int, str, str, AttemptRecord | None]]:
    states = None
    if state is not None:
        try:
            states = [NodeState[state.upper()]]
        except KeyError:
            raise click.BadParameter(
                f"{state!r}; use one of {', '.join(s.name for s in NodeState)}",
                param_hint="--state",
            ) from None
    for node_id, task, node_state, attempt in store.last_attempts(states):
        yield node_id, task, NodeState(node_state).name, attempt


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--state", help="Only nodes in this state (e.g. FAILED).")
@click.option("--limit", default=200, show_default=True, help="At most this many rows.")
@handle_errors
def tasks(run_dir: Path, state: str | None, limit: int) -> None:
    """One line per node: job name, state, attempts, last reason."""
    run_dir = resolve_run_dir(run_dir)
    store = _open(run_dir)
    try:
        for shown, (node_id, task, node_state, attempt) in enumerate(_node_rows(store, state)):
            if shown >= limit:
                click.echo("... (more; raise --limit)")
                break
            name = attempt.job_name if attempt else f"{task}#{node_id}"
            tries = attempt.attempt if attempt else 0
            reason = attempt.reason if attempt and node_state != "DONE" else ""
            click.echo(f"{name}\t{node_state}\tattempts={tries}\t{reason}".rstrip())
    finally:
        store.close()


def find_node(store: Store, name: str) -> list[AttemptRecord] | str:
    """The attempts of the one node ``name`` names, or a note when it has none yet.

    Tried in turn, the first that names anything wins: ``TASK#ID`` (what ``tasks``
    prints for a node that never ran), the job name of a node's latest attempt (what
    ``tasks`` prints for the others; unique in a run), a job name of an earlier attempt
    (a changed workflow may have renamed the node), an attempt key, an identity prefix.
    Several nodes for the one that wins is an error listing them.
    """
    task, hash_, number = name.rpartition("#")
    if hash_ and number.isdigit():
        row = store.node(int(number))
        if row is None or row[1] != task:
            raise RunDirError(f"no node {name!r} in {store.path.parent}; list them with: "
                              f"gristmill tasks {store.path.parent}")
        identity, _, state = row
        tried = store.attempts(identity=identity)
        if tried:
            return tried
        return f"{name} has not run yet ({NodeState(state).name}): it has no logs"
    named = store.attempts(job_name=name)
    latest = {a.identity: a for a in named if a.attempt == max(
        b.attempt for b in store.attempts(identity=a.identity))}
    for candidates in (list(latest.values()), named):
        if candidates:
            return _one_node(store, name, candidates)
    by_key = [a for a in store.attempts() if a.key == name or a.identity.startswith(name)]
    by_key.sort(key=lambda a: a.key != name)  # an exact key before identity prefixes
    if by_key and by_key[0].key == name:
        by_key = [a for a in by_key if a.identity == by_key[0].identity]
    if not by_key:
        raise RunDirError(f"no attempt of a node named {name!r} in {store.path.parent}; "
                          f"list them with: gristmill tasks {store.path.parent}")
    return _one_node(store, name, by_key)


def _one_node(store: Store, name: str, matches: list[AttemptRecord]) -> list[AttemptRecord]:
    """Every attempt of the one node ``matches`` belong to; an error when they are several."""
    identities = sorted({a.identity for a in matches})
    if len(identities) > 1:
        shown = ", ".join(f"{a.job_name} ({a.identity[:16]})" for a in
                          {a.identity: a for a in matches}.values())
        raise RunDirError(f"{name!r} matches {len(identities)} nodes: {shown}; give the "
                          "identity prefix in brackets instead")
    return store.attempts(identity=identities[0])
