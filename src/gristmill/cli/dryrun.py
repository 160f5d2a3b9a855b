"""Printing what ``gristmill run|resume --dry-run`` found: a table per task, then the nodes."""

from __future__ import annotations

import click

from gristmill.engine.preview import Preview, TaskPreview

#: Characters of an identity shown beside a node (what ``--rerun`` takes as a prefix).
SHOWN_IDENTITY = 12


def echo_preview(preview: Preview) -> None:
    """Per task: nodes, how many are DONE and kept, how many would run and why; totals."""
    what = (f"resume {preview.run_dir}" if preview.existing
            else f"start a new run under {preview.run_dir}")
    click.echo(f"dry run: would {what} (workflow {preview.workflow}, backend "
               f"{preview.backend}); nothing was written")
    rows = [("task", "nodes", "DONE", "to run", "why")]
    for task in (*preview.tasks, preview.total):
        rows.append((task.task, f"{task.nodes:,}", f"{task.kept:,}", f"{task.runs:,}",
                     _why(task)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:4], widths[1:]))]
        click.echo("  ".join([*cells, row[4]]).rstrip())
    if preview.nodes:
        click.echo("nodes that would run (job name, task, identity, why):")
        for node in preview.nodes:
            click.echo(f"  {node.job_name}  {node.task}  {node.identity[:SHOWN_IDENTITY]}  "
                       f"{node.reason.value}")


def _why(task: TaskPreview) -> str:
    return ", ".join(f"{reason.value} {count:,}" for reason, count in sorted(
        task.reasons.items(), key=lambda item: -item[1]))
