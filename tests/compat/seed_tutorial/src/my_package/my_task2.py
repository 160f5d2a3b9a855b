from pathlib import Path

import click
from loguru import logger

from gristmill.compat.covid_shared import cli_tools


def my_task_main(output_version: str):
    # Your business logic here: validate the draws once they are all fitted.
    draws = sorted((Path(output_version) / "draws").iterdir())
    if not draws:
        raise ValueError(f"no draws in {output_version}")
    (Path(output_version) / "validation.txt").write_text(f"draws: {len(draws)}\n")
    logger.info(f"validated {len(draws)} draws")


@click.command()
@click.option("--output-version", "output_version", type=click.STRING)
@cli_tools.add_verbose_and_with_debugger
def my_task2(output_version: str, verbose: int, with_debugger: bool):
    cli_tools.configure_logging_to_terminal(verbose)
    run_my_task = cli_tools.handle_exceptions(my_task_main, logger, with_debugger)
    run_my_task(output_version)
