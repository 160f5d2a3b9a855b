"""The ``gristmill`` command.

User errors (bad spec, bad arguments, unknown target) print one clear message
without a traceback (unless ``-v``) and exit 2; a run with failed tasks exits 1.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from loguru import logger

from gristmill.errors import GristmillError

F = TypeVar("F", bound=Callable[..., Any])

_WF_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True}


def handle_errors(fn: F) -> F:
    """Turn a :class:`GristmillError` into a message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GristmillError as exc:
            ctx = click.get_current_context(silent=True)
            verbose = bool(ctx and ctx.find_root().params.get("verbose"))
            if verbose:
                logger.opt(exception=True).info("traceback of the error below")
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more: -v INFO, -vv DEBUG.")
@click.version_option(package_name="gristmill")
def main(verbose: int) -> None:
    """gristmill: batch pipelines from click commands, on a laptop or a cluster."""
    logger.remove()
    level = ("WARNING", "INFO", "DEBUG")[min(verbose, 2)]
    logger.add(sys.stderr, level=level, format="<level>{level: <7}</level> {message}")
    logger.enable("gristmill")
    if "" not in sys.path:
        sys.path.insert(0, "")  # modules in the working directory import, as with python -m


@main.command(context_settings=_WF_ARGS)
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
    from gristmill.render import to_svg
    from gristmill.target import build_workflow

    wf = build_workflow(target, ctx.args, prog=f"gristmill graph {target}")
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


@main.command("entry-points")
@click.argument("package")
@click.option(
    "--write", "write", type=click.Path(dir_okay=False, path_type=Path),
    help="Update the [project.scripts] table of this pyproject.toml in place.",
)
@handle_errors
def entry_points(package: str, write: Path | None) -> None:
    """Print (or --write) the console scripts of every task in PACKAGE."""
    from gristmill.entrypoints import render_table, scripts_table, update_pyproject

    if write is None:
        click.echo(render_table(scripts_table(package)), nl=False)
        return
    added, removed = update_pyproject(write, package)
    click.echo(
        f"{write}: {len(added)} script(s) added or changed, {len(removed)} removed"
        + (f" ({', '.join(added + removed)})" if added or removed else "")
    )
    if added or removed:
        click.echo("reinstall the package (pip install -e .) so the scripts exist")


@main.command()
@click.argument("package")
@handle_errors
def check(package: str) -> None:
    """Fail when the installed console scripts of PACKAGE disagree with its tasks."""
    from gristmill.entrypoints import check_installed

    problems = check_installed(package)
    if problems:
        for line in problems:
            click.echo(line, err=True)
        sys.exit(1)
    click.echo(f"{package}: installed console scripts match the code")


# Commands that run or inspect workflows live in their own modules; importing them
# registers them on ``main``.
from gristmill import cli_run, cli_spec, cli_status  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    # ``python -m gristmill.cli``: the commands above registered on gristmill.cli.main,
    # a different module object from this __main__, so run that one.
    from gristmill.cli import main as registered_main

    registered_main()
