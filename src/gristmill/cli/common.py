"""What every ``gristmill`` command shares: error handling, workflow-argument settings, and
help that lists options in sections."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from loguru import logger

from gristmill.errors import GristmillError

F = TypeVar("F", bound=Callable[..., Any])

#: Commands that take a workflow target pass its parameters through as extra options.
WF_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True}


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


class SectionedCommand(click.Command):
    """A command whose help lists its options in sections: its own first, then one section
    per source of options (the workflow's, each backend's); see :meth:`help_section`."""

    def help_section(self, ctx: click.Context, param: click.Parameter) -> str:
        """The heading ``param`` is listed under in the help."""
        return "Options"

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or isinstance(param, click.Argument):
                continue
            sections.setdefault(self.help_section(ctx, param), []).append(record)
        for heading, records in sections.items():
            if records:
                with formatter.section(heading):
                    formatter.write_dl(records)
