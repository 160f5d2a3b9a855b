"""Task 1: fit one draw (the workflow runs one of these per draw)."""

import click
from loguru import logger

from covid_tutorial import model
from gristmill.compat.covid_shared import cli_tools


def my_task_main(output_version: str, draw: int) -> None:
    beta = model.fit_beta(draw)
    path = model.draw_path(output_version, draw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{beta}\n")
    logger.info(f"draw {draw}: beta={beta:.4f} -> {path}")


@click.command()
@click.option("--output-version", "output_version", type=click.STRING, required=True)
@click.option("--draw", "draw", type=click.INT, required=True)
@cli_tools.add_verbose_and_with_debugger
def my_task1(output_version: str, draw: int, verbose: int, with_debugger: bool) -> None:
    cli_tools.configure_logging_to_terminal(verbose)
    run_my_task = cli_tools.handle_exceptions(my_task_main, logger, with_debugger)
    run_my_task(output_version, draw)
