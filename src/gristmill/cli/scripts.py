"""``gristmill entry-points`` and ``gristmill check``: the console scripts of a package's tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gristmill.cli.common import handle_errors


@click.command("entry-points")
@click.argument("package")
@click.option(
    "--write", "write", type=click.Path(dir_okay=False, path_type=Path),
    help="Update the [project.scripts] table of this pyproject.toml in place.",
)
@handle_errors
def entry_points(package: str, write: Path | None) -> None:
    """Print (or --write) the console scripts of every task in PACKAGE."""
    from gristmill.dsl.scripts import render_table, scripts_table, update_pyproject

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


@click.command()
@click.argument("package")
@handle_errors
def check(package: str) -> None:
    """Fail when the installed console scripts of PACKAGE disagree with its tasks.

    It also names each task decorator that gristmill's build hook cannot read (the
    hook would declare no script for it), unless a script for that task is installed.
    """
    from gristmill.build.scan import scan_importable
    from gristmill.dsl.scripts import check_installed, installed_targets

    problems = check_installed(package)
    covered = installed_targets(package)
    problems[:0] = [
        f"{item}; the gristmill build hook declares no console script for this task"
        for item in scan_importable(package).unreadable if item.target not in covered
    ]
    if problems:
        for line in problems:
            click.echo(line, err=True)
        sys.exit(1)
    click.echo(f"{package}: installed console scripts match the code")
