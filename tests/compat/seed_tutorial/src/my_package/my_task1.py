from pathlib import Path

import click
from loguru import logger

from gristmill.compat.covid_shared import cli_tools


def my_task_main(output_version: str, draw: int):
    # Your business logic here: fit one draw.
    draws = Path(output_version) / "draws"
    draws.mkdir(exist_ok=True)
    (draws / f"draw_{draw}.txt").write_text(f"{draw}\n")
    logger.info(f"fit draw {draw}")


@click.command()
@click.option("--output-version", "output_version", type=click.STRING)
@click.option("--draw", "draw", type=click.INT)
@cli_tools.add_verbose_and_with_debugger
def my_task1(output_version: str, draw: int, verbose: int, with_debugger: bool):
    cli_tools.configure_logging_to_terminal(verbose)
    run_my_task = cli_tools.handle_exceptions(my_task_main, logger, with_debugger)
    run_my_task(output_version, draw)
