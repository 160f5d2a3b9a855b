"""The backend flags of ``run`` and ``resume``, made from what each backend declares.

Every registered backend (the entry-point group ``gristmill.backends``, site plugins
included) lists its options as :class:`~gristmill.backends.base.BackendSetting`\\ s;
each becomes a flag (``--max-cores``, ``--dask-scheduler``, ``--slurm-partition``), so
no backend option is hard-coded here. The flags are made when a command first parses
or prints its help, not when the CLI is imported, so ``gristmill status`` imports no
backend. A flag records its value in the click context; the command then checks that
every flag given belongs to the backend the run uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import click
from loguru import logger

from gristmill.backends.base import BackendSetting
from gristmill.backends.registry import BACKENDS, DEFAULT_BACKEND, backend_settings
from gristmill.cli.common import SectionedCommand
from gristmill.errors import BackendError, GristmillError

_GIVEN = "gristmill.backend_flags"  # ctx.meta key: the flags given, in order


class BackendOption(click.Option):
    """The flag of one setting of one backend; it records the value it was given."""

    def __init__(self, backend: str, setting: BackendSetting, decls: list[str],
                 **kwargs: Any) -> None:
        super().__init__(decls, default=None, expose_value=False, callback=self._record,
                         **kwargs)
        self.backend = backend
        self.setting = setting

    def _record(self, ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.meta.setdefault(_GIVEN, []).append((self.backend, self.setting, value))


class BackendFlagsCommand(SectionedCommand):
    """A click command that also takes every registered backend's settings as flags.

    The flags are remade when the set of registered backends changed (a plugin put on
    ``sys.path`` by a test), and listed in the help under one heading per backend.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._own: list[click.Parameter] = list(self.params)
        self._made_for: tuple[tuple[str, str], ...] | None = None

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        registered = tuple(BACKENDS.items())
        if registered != self._made_for:
            taken = {opt for p in self._own for opt in (*p.opts, *p.secondary_opts)}
            self.params = [*self._own, *backend_options(taken)]
            self._made_for = registered
        return super().get_params(ctx)

    def help_section(self, ctx: click.Context, param: click.Parameter) -> str:
        if isinstance(param, BackendOption):
            return f"Options of backend {param.backend}"
        return super().help_section(ctx, param)


def backend_options(taken: set[str]) -> list[BackendOption]:
    """One click option per setting of every registered backend whose class loads.

    A backend that cannot be imported here (a dependency missing) offers no flags; it
    says what to install once chosen. A flag already taken is left out, with a warning
    saying how to pass that setting instead.
    """
    options: list[BackendOption] = []
    for name in sorted(BACKENDS, key=lambda n: (n != DEFAULT_BACKEND, n)):  # the default first
        try:
            settings = backend_settings(name)
        except BackendError as exc:
            logger.debug("no flags for backend {}: {}", name, exc)
            continue
        for setting in settings:
            flag = setting.flag_for(name)
            if {flag, f"--no-{flag[2:]}"} & taken:
                logger.warning("backend {}: flag {} of setting {} is taken; pass it as "
                               "--option {}=VALUE", name, flag, setting.name, setting.name)
                continue
            option = _option(name, setting, flag)
            taken.update((*option.opts, *option.secondary_opts))
            options.append(option)
    return options


def _option(backend: str, setting: BackendSetting, flag: str) -> BackendOption:
    ident = re.sub(r"\W", "_", f"backend_{backend}_{setting.name}")
    extra: dict[str, Any] = {}
    if setting.kind == "bool":
        decls = [f"{flag}/--no-{flag[2:]}", ident]
    else:
        decls = [flag, ident]
        extra["type"] = _click_type(setting)
        extra["metavar"] = {"memory": "SIZE", "int": "N", "float": "NUMBER"}.get(
            setting.kind, "TEXT")
    shown = setting.default
    help_text = setting.help if shown is None or setting.kind == "bool" else (
        f"{setting.help} [default: {shown}]")
    return BackendOption(backend, setting, decls, help=help_text, **extra)


def _click_type(setting: BackendSetting) -> click.IntRange | click.FloatRange | type[str]:
    if setting.kind == "int":
        return click.IntRange(min=None if setting.minimum is None else int(setting.minimum))
    if setting.kind == "float":
        return click.FloatRange(min=setting.minimum)
    return str  # memory sizes are parsed by the command, naming the flag


def given_backend_flags(ctx: click.Context) -> list[tuple[str, BackendSetting, Any]]:
    """The backend flags given on the command line: (backend, setting, value)."""
    given: list[tuple[str, BackendSetting, Any]] = ctx.meta.get(_GIVEN, [])
    return given


def options_for(backend: str, given: Sequence[tuple[str, BackendSetting, Any]]) -> dict[str, Any]:
    """The backend options the flags give, refusing a flag of another backend."""
    for owner, setting, _ in given:
        if owner != backend:
            raise GristmillError(
                f"{setting.flag_for(owner)} is an option of backend {owner}, but this run "
                f"uses backend {backend}; drop the flag or choose --backend {owner}"
            )
    return {setting.name: setting.convert(value, owner) for owner, setting, value in given}
