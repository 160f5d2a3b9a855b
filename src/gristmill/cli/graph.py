"""``gristmill graph``: draw a workflow's DAG without running it."""

from __future__ import annotations

import click

from gristmill.cli.common import WF_ARGS, handle_errors
from gristmill.cli.workflow_command import WorkflowCommand, recorded_workflow


@click.command(cls=WorkflowCommand, context_settings=WF_ARGS)
@click.argument("target")
@click.option(
    "--format", "fmt", type=click.Choice(["dot", "mermaid", "svg", "summary"]), default="dot",
    show_default=True, help="Graphviz dot, Mermaid, SVG (needs Graphviz), or counts per task.",
)
@click.pass_context
@handle_errors
def graph(ctx: click.Context, target: str, fmt: str) -> None:
    """Print the DAG of TARGET (module:workflow); workflow parameters follow as options.

    Map groups are drawn as one box with their count.
    """
    from gristmill.graph.render import to_svg

    wf = recorded_workflow(ctx)
    if fmt == "dot":
        click.echo(wf.to_dot(), nl=False)
    elif fmt == "mermaid":
        click.echo(wf.to_mermaid(), nl=False)
    elif fmt == "svg":
        click.echo(to_svg(wf), nl=False)
    else:
        click.echo(f"{wf.name}: {len(wf)} nodes")
        for name, count in wf.count_by_task().items():
            click.echo(f"  {name}: {count}")
