"""The ``gristmill`` command: the click group, with every command added explicitly.

User errors (bad spec, bad arguments, unknown target) print one clear message
without a traceback (unless ``-v``) and exit 2; a run with failed tasks exits 1.
"""

from __future__ import annotations

import sys

import click

from gristmill.cli import graph, logs, run, scripts, spec, status, steer
from gristmill.logs import CLI_FORMAT, configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more: -v INFO, -vv DEBUG.")
@click.version_option(package_name="gristmill")
def main(verbose: int) -> None:
    """gristmill: batch pipelines from click commands, on a laptop or a cluster."""
    configure_logging(verbose, fmt=CLI_FORMAT)
    if "" not in sys.path:
        sys.path.insert(0, "")  # modules in the working directory import, as with python -m


for command in (
    run.run, run.resume, run.cancel, status.status, status.tasks, logs.logs,
    graph.graph, spec.spec_command, spec.resources_command, scripts.entry_points, scripts.check,
    steer.limit, steer.pause, steer.unpause,
):
    main.add_command(command)
