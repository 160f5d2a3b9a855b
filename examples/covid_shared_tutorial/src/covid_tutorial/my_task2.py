"""Task 2: check that every draw was fitted (runs after all of task 1)."""

import click
from loguru import logger

from covid_tutorial import model
from gristmill.compat.covid_shared import cli_tools


def my_task_main(output_version: str, n_draws: int) -> None:
    betas = []
    for draw in range(n_draws):
        path = model.draw_path(output_version, draw)
        if not path.exists():
            raise FileNotFoundError(f"draw {draw} was not fitted: {path} is missing")
        betas.append(float(path.read_text()))
    summary = model.draw_path(output_version, 0).parent.parent / "validation.txt"
    summary.write_text(f"draws: {len(betas)}\nmean beta: {sum(betas) / len(betas):.4f}\n")
    logger.info(f"validated {len(betas)} draws -> {summary}")


@click.command()
@click.option("--output-version", "output_version", type=click.STRING, required=True)
@click.option("--n-draws", "n_draws", type=click.INT, required=True)
@cli_tools.add_verbose_and_with_debugger
def my_task2(output_version: str, n_draws: int, verbose: int, with_debugger: bool) -> None:
    cli_tools.configure_logging_to_terminal(verbose)
    run_my_task = cli_tools.handle_exceptions(my_task_main, logger, with_debugger)
    run_my_task(output_version, n_draws)
