"""Commands that take a workflow TARGET, whose parameters become options of the command.

``gristmill run|graph|spec TARGET`` can know the workflow's options only once TARGET
is known. So, before click parses the arguments, :class:`WorkflowCommand` finds TARGET
among them the way click will (:meth:`~WorkflowCommand.parse_args`), imports it, and
adds its options for this invocation (:meth:`~WorkflowCommand.get_params`). ``TARGET
--help``, usage errors and shell completion then see them as any other option, with
their types and defaults.

A TARGET that cannot be imported adds no options; the command still runs, so that
its callback reports the import error as a user error (exit 2), and ``--help`` says
why the workflow's options are missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from loguru import logger

from gristmill.cli.common import SectionedCommand
from gristmill.cli.target import (
    WorkflowOption,
    build_workflow,
    load_target,
    record_workflow,
    workflow_options,
)
from gristmill.dsl.workflow import Workflow, WorkflowFunction
from gristmill.errors import GristmillError

#: The click name of a workflow option is this plus the parameter, so a parameter named
#: like one of the command's own (``target``, ``spec_path``) never takes its value.
_PREFIX = "workflow_param_"
#: The command's argument that names the workflow.
TARGET = "target"


class WorkflowContext(click.Context):
    """A command's context that also holds its workflow, once TARGET is loaded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workflow_target: str | None = None
        self.workflow: WorkflowFunction[Any] | None = None
        self.workflow_error: GristmillError | None = None
        self.workflow_params: list[WorkflowOption] = []
        self.workflow_values: dict[str, Any] = {}

    @property
    def command_path(self) -> str:
        """``gristmill run gm_flows:seiir`` once loaded: usage lines and "Try ... -h for
        help" then lead to the help that lists the workflow's options."""
        path = super().command_path
        return f"{path} {self.workflow_target}" if self.workflow is not None else path


class WorkflowCommand(SectionedCommand):
    """A click command whose ``target`` argument names a ``module:workflow`` function, and
    whose options include that function's parameters."""

    context_class = WorkflowContext

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if isinstance(ctx, WorkflowContext):
            self._load_workflow(ctx, args)
        return super().parse_args(ctx, args)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        if isinstance(ctx, WorkflowContext) and ctx.workflow_params:
            return [*ctx.workflow_params, *params]
        return params

    def invoke(self, ctx: click.Context) -> Any:
        if isinstance(ctx, WorkflowContext):  # the callback takes only the command's own
            ctx.workflow_values = {
                option.parameter: ctx.params.pop(option.name)
                for option in ctx.workflow_params
                if option.name is not None and option.name in ctx.params
            }
        return super().invoke(ctx)

    def help_section(self, ctx: click.Context, param: click.Parameter) -> str:
        if isinstance(param, WorkflowOption) and isinstance(ctx, WorkflowContext):
            return f"Options of workflow {ctx.workflow_target}"
        return super().help_section(ctx, param)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        if isinstance(ctx, WorkflowContext) and ctx.workflow is not None:
            target = next(p for p in self.params if p.name == TARGET)
            shown = target.get_usage_pieces(ctx)  # in the command path already
            pieces = [piece for piece in pieces if piece not in shown]
        return pieces

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        if not isinstance(ctx, WorkflowContext) or ctx.workflow is not None:
            return
        if ctx.workflow_error is not None:
            with formatter.section(f"Options of workflow {ctx.workflow_target}"):
                formatter.write_text(f"not listed: {ctx.workflow_error}")
        else:
            with formatter.section("Options of the workflow"):
                formatter.write_text(
                    f"Give TARGET to list them: {ctx.command_path} MODULE:WORKFLOW --help"
                )

    def _load_workflow(self, ctx: WorkflowContext, args: Sequence[str]) -> None:
        """Find TARGET in ``args``, import it and make its options, for this invocation.

        Once they are known, an option that is neither the command's nor the workflow's
        is a usage error again, as in any click command.
        """
        target = self._find_target(ctx, args)
        if target is None:
            return
        ctx.workflow_target = target
        try:
            wf_fn = load_target(target)
        except GristmillError as exc:
            ctx.workflow_error = exc
            return
        own = {opt for p in self.get_params(ctx) for opt in (*p.opts, *p.secondary_opts)}
        options = []
        for option in workflow_options(wf_fn, name_prefix=_PREFIX):
            taken = sorted(own & {*option.opts, *option.secondary_opts})
            if not taken:
                options.append(option)
                continue
            clash = (f"workflow parameter {option.parameter!r} of {target} would be option "
                     f"{taken[0]}, which {ctx.command_path} has itself")
            if option.required:
                ctx.workflow_error = GristmillError(f"{clash}; rename the parameter")
                return
            logger.warning("{}; it keeps its default {!r} (rename the parameter to set it "
                           "here)", clash, option.default)
        ctx.workflow, ctx.workflow_params = wf_fn, options
        ctx.ignore_unknown_options = False
        ctx.allow_extra_args = False

    def _find_target(self, ctx: click.Context, args: Sequence[str]) -> str | None:
        """TARGET as click will read it from ``args``: the first argument that is not one
        of the command's options or their values. None when there is none yet."""
        parser = self.make_parser(ctx)
        parser.ignore_unknown_options = True  # the workflow's options, unknown so far
        parser.allow_interspersed_args = True
        try:
            opts, _, _ = parser.parse_args(list(args))
        except click.UsageError:  # click reports it again when it parses for real
            return None
        target = opts.get(TARGET)
        return target if isinstance(target, str) else None


def recorded_workflow(ctx: click.Context) -> Workflow:
    """The workflow TARGET names, recorded with the values its options were given.

    An import error found while parsing is raised here, inside the command, so the
    command reports it as a user error.
    """
    if not isinstance(ctx, WorkflowContext):
        raise TypeError(f"{ctx.command.name} is not a WorkflowCommand")
    if ctx.workflow_error is not None:
        raise ctx.workflow_error
    target = str(ctx.params[TARGET])
    if ctx.workflow is None:  # not loaded while parsing: load it now, or say why not
        return build_workflow(target, ctx.args, prog=f"{ctx.command_path} {target}")
    return record_workflow(target, ctx.workflow, ctx.workflow_values)
