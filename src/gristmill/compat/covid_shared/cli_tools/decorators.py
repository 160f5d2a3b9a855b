"""click decorators of covid_shared's applications: verbosity, debugger, output options, metadata.

``add_verbose_and_with_debugger`` gives ``verbose`` and ``with_debugger`` parameters,
the names ``@gm.task`` recognises, so an old-style command can also be wrapped as a
gristmill task without getting the options twice.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from gristmill.compat.covid_shared.cli_tools.metadata import (
    RunMetadata,
    get_function_full_argument_mapping,
)
from gristmill.compat.covid_shared.paths import BEST_LINK, R_SINGULARITY_IMAGE_PATH

F = TypeVar("F", bound=Callable[..., Any])

add_verbose = click.option(
    "-v", "--verbose", "verbose", count=True, help="Log more: -v for INFO, -vv for DEBUG."
)
add_with_debugger = click.option(
    "--pdb",
    "--with-debugger",
    "with_debugger",
    is_flag=True,
    help="Open a post-mortem debugger if an error occurs.",
)
with_production_tag = click.option(
    "-p", "--production-tag", type=click.STRING, help="Tag this run as a production run."
)
with_mark_best = click.option("-b", "--mark-best", is_flag=True, help='Mark this run as "best".')


def add_verbose_and_with_debugger(func: F) -> F:
    """Add ``-v/--verbose`` (counted) and ``--pdb/--with-debugger``."""
    return add_with_debugger(add_verbose(func))


def with_output_root(default_output_root: str | os.PathLike[str]) -> Callable[[F], F]:
    """Add ``-o/--output-root`` with a default."""

    def wrapper(entry_point: F) -> F:
        return click.option(
            "-o",
            "--output-root",
            type=click.Path(file_okay=False),
            default=os.fspath(default_output_root),
            show_default=True,
            help="Directory of the runs; each run is ROOT/YYYY_MM_DD.VV (the next free number).",
        )(entry_point)

    return wrapper


def add_output_options(default_output_root: str | os.PathLike[str]) -> Callable[[F], F]:
    """Add ``--output-root``, ``--production-tag`` and ``--mark-best``."""

    def wrapper(entry_point: F) -> F:
        entry_point = with_output_root(default_output_root)(entry_point)
        entry_point = with_production_tag(entry_point)
        return with_mark_best(entry_point)

    return wrapper


def pass_run_metadata(run_metadata: RunMetadata | None = None) -> Callable[[F], F]:
    """Call the entry point with a :class:`RunMetadata` first, holding its tool name and arguments.

    Without ``run_metadata`` each call gets a fresh one (covid_shared shared one default
    object between calls, so a second call in one process failed on a set-once key).
    """

    def decorate(app_entry_point: F) -> F:
        @functools.wraps(app_entry_point)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            metadata = run_metadata
            if metadata is None:
                metadata = RunMetadata(package=app_entry_point.__module__)
            metadata["tool_name"] = f"{app_entry_point.__module__}:{app_entry_point.__name__}"
            metadata["run_arguments"] = get_function_full_argument_mapping(
                app_entry_point, metadata, *args, **kwargs
            )
            return app_entry_point(metadata, *args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def add_r_singularity_option() -> Callable[[F], F]:
    """Add ``--r-singularity-image`` (default: ``paths.R_SINGULARITY_IMAGE_PATH``)."""

    def wrapper(entry_point: F) -> F:
        return click.option(
            "--r-singularity-image",
            "r_singularity_image",
            type=click.Path(file_okay=True),
            default=os.fspath(R_SINGULARITY_IMAGE_PATH),
            show_default=True,
            help="Path to an R singularity image; 'None' uses the active conda environment.",
        )(entry_point)

    return wrapper


def _create_dependency_option(
    data_source: str, default: str | os.PathLike[str] | None = BEST_LINK
) -> Callable[[F], F]:
    """Add ``--<data-source>-version``: which run of an upstream stage to read.

    ``default`` (``best`` unless given) is a version name or path; with ``None`` the option
    is required.
    """
    words = data_source.replace("-", " ")

    def wrapper(entry_point: F) -> F:
        if default is None:
            option = click.option(f"--{data_source}-version", type=click.Path(file_okay=False),
                                  required=True, help=f"Version of the {words} to use. Required.")
        else:
            option = click.option(
                f"--{data_source}-version", type=click.Path(file_okay=False),
                default=os.fspath(default),
                help=f'Version of the {words} to use. Defaults to "{os.fspath(default)}".',
            )
        return option(entry_point)

    return wrapper


def add_mobility_gpr_dependency_option() -> Callable[[F], F]:
    """``--mobility-gpr-version``, required."""
    return _create_dependency_option("mobility-gpr", None)


def add_model_inputs_dependency_option() -> Callable[[F], F]:
    """``--model-inputs-version``, default ``best``."""
    return _create_dependency_option("model-inputs")


def add_seir_covariates_dependency_option() -> Callable[[F], F]:
    """``--seir-covariates-version``, default ``best``."""
    return _create_dependency_option("seir-covariates")


def add_snapshot_dependency_option() -> Callable[[F], F]:
    """``--snapshot-version``, default ``best``."""
    return _create_dependency_option("snapshot")
