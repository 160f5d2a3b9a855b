"""Live progress of ``gristmill run``/``resume``: a rich table on a terminal, plain lines in
a batch job's log.

On a terminal the display is redrawn in place twice a second, by the engine's own loop
(per task: a bar, done, running, queued, waiting, failed; elapsed and an ETA from this
run's pace), and log records are printed above it instead of through it. Anywhere else
(stdout is a file or a pipe: a batch job's log) one line every ``--progress-interval``
seconds says where the run is, and one line per node that failed for good says why, so a
log stays short and greppable. ``--quiet`` shows neither.
"""

from __future__ import annotations

from types import TracebackType

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gristmill.engine.progress import Failure, Snapshot, TaskProgress
from gristmill.logs import CLI_FORMAT, configure_logging

#: Default seconds between two plain progress lines.
PLAIN_INTERVAL = 60.0


def clock(seconds: float | None) -> str:
    """``3725`` → ``"1:02:05"``; ``None`` → ``"?"``."""
    if seconds is None:
        return "?"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def line(snapshot: Snapshot) -> str:
    """One plain progress line: the whole run, then each task's done/total."""
    t = snapshot.total
    tasks = " ".join(f"{p.task} {p.done}/{p.total}" for p in snapshot.tasks)
    eta = f", eta {clock(snapshot.eta)}" if snapshot.eta is not None else ""
    return (f"progress {clock(snapshot.elapsed)}: {t.done}/{t.total} done, {t.running} running, "
            f"{t.queued} queued, {t.failed} failed{eta} | {tasks}")


def failure_line(failure: Failure) -> str:
    return f"FAILED {failure.job_name} (task {failure.task}): {failure.reason}"


class PlainProgress:
    """A line every ``interval`` seconds and one per failure, on stdout."""

    def __init__(self, interval: float = PLAIN_INTERVAL) -> None:
        self.interval = interval

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, snapshot: Snapshot) -> None:
        # The first line comes after one interval: a run shorter than that logs none.
        if not snapshot.final and snapshot.elapsed >= self.interval:
            click.echo(line(snapshot))

    def failed(self, failure: Failure) -> None:
        click.echo(failure_line(failure))


class RichProgress:
    """A table redrawn in place on the terminal; log records go above it."""

    interval = 0.5

    def __init__(self, verbose: int = 0, console: Console | None = None) -> None:
        self.console = console or Console()
        self.verbose = verbose
        # Redrawn when the engine hands over a snapshot (every ``interval`` s), not by a
        # refresh thread of its own that would compete with the engine for the GIL.
        self.live = Live(console=self.console, auto_refresh=False, transient=False,
                         redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> RichProgress:
        self.live.start()
        # Records written straight to the terminal would tear the display: print them
        # through the live console, which keeps the table below them.
        configure_logging(self.verbose, sink=self._log, fmt=CLI_FORMAT)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.live.stop()
        configure_logging(self.verbose, fmt=CLI_FORMAT)

    def _log(self, message: object) -> None:
        self.console.print(Text(str(message).rstrip("\n")), highlight=False)

    def update(self, snapshot: Snapshot) -> None:
        self.live.update(table(snapshot), refresh=True)

    def failed(self, failure: Failure) -> None:
        self.console.print(Text(failure_line(failure), style="red"), highlight=False)


def table(snapshot: Snapshot) -> Group:
    """Per task: a bar and its nodes by state; then elapsed and ETA."""
    grid = Table(show_edge=False, pad_edge=False, box=None)
    for name, justify in (("task", "left"), ("progress", "left"), ("done", "right"),
                          ("running", "right"), ("queued", "right"), ("waiting", "right"),
                          ("failed", "right")):
        grid.add_column(name, justify=justify)  # type: ignore[arg-type]
    rows: list[tuple[TaskProgress, str]] = [(p, "") for p in snapshot.tasks]
    if len(rows) > 1:
        rows.append((snapshot.total, "bold"))
    for p, style in rows:
        grid.add_row(
            Text(p.task, style=style),
            ProgressBar(total=max(p.total, 1), completed=p.done, width=28),
            f"{p.done}/{p.total}", str(p.running), str(p.queued), str(p.waiting),
            Text(str(p.failed), style="red" if p.failed else ""),
        )
    eta = "" if snapshot.eta is None else f"  eta {clock(snapshot.eta)}"
    footer = Text(f"elapsed {clock(snapshot.elapsed)}{eta}", style="dim")
    return Group(grid, footer)


def make_progress(quiet: bool, interval: float | None, verbose: int) -> (
        RichProgress | PlainProgress | None):
    """The display for this stdout: rich on a terminal, plain lines every ``interval``
    seconds otherwise, none when ``quiet``."""
    if quiet:
        return None
    if Console().is_terminal:
        return RichProgress(verbose)
    return PlainProgress(PLAIN_INTERVAL if interval is None else interval)
