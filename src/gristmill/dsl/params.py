"""A task's click parameters, used to check arguments at record time and to render argv.

Checking at record time is the point: a typo or a wrong type fails when the
workflow is built on a laptop, not at 3 a.m. on the cluster.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import click

from gristmill.errors import TaskArgumentError

#: Parameters every task command gets; they are not task arguments.
RESERVED = frozenset({"verbose", "with_debugger"})

FAST_TYPES: dict[int, type] = {
    id(click.INT): int,
    id(click.STRING): str,
    id(click.FLOAT): float,
}


@attrs.frozen
class Param:
    """One click parameter of a task, reduced to what checking and rendering need."""

    name: str
    param: click.Parameter = attrs.field(eq=False, repr=False)
    option: str | None  # the long option ("--draw"); None for a positional argument
    false_option: str | None  # "--no-flag" for a boolean flag pair
    is_flag: bool
    multiple: bool
    required: bool
    count: bool = False  # a counting option (``-v -v``): rendered as the option repeated
    tuple_size: int = 1  # nargs of an option taking a fixed tuple (``type=(int, str)``)

    @classmethod
    def from_click(cls, param: click.Parameter) -> Param:
        option = false_option = None
        is_flag = count = False
        if isinstance(param, click.Option):
            longs = [o for o in param.opts if o.startswith("--")]
            option = longs[0] if longs else param.opts[0]
            count = bool(param.count)
            is_flag = bool(param.is_flag) and not count
            if is_flag and param.secondary_opts:
                false_longs = [o for o in param.secondary_opts if o.startswith("--")]
                false_option = false_longs[0] if false_longs else param.secondary_opts[0]
        required = bool(param.required) and _no_default(param)
        multiple = bool(param.multiple) or (param.nargs == -1)
        tuple_size = param.nargs if param.nargs > 1 else 1
        assert param.name is not None
        return cls(
            param.name, param, option, false_option, is_flag, multiple, required, count,
            tuple_size,
        )

    def convert(self, task: str, value: Any) -> Any:
        """Check one value against the click type; return the converted value."""
        if self.multiple:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TaskArgumentError(
                    f"task {task!r}: argument {self.name!r} takes several values "
                    f"(a list or tuple), got {value!r}"
                )
            return tuple(self._convert_one(task, v) for v in value)
        return self._convert_one(task, value)

    def _convert_one(self, task: str, value: Any) -> Any:
        fast = FAST_TYPES.get(id(self.param.type))
        if fast is not None and type(value) is fast:
            return value
        if self.is_flag and isinstance(value, bool):
            return value
        if value is None:  # only reachable inside a map column or a multiple value
            raise TaskArgumentError(
                f"task {task!r}: argument {self.name!r} = None is not valid: a command line "
                "cannot say None; leave the argument out, or give a value"
            )
        try:
            return self.param.type.convert(value, self.param, None)
        except click.BadParameter as exc:
            detail = exc.format_message()
        except (TypeError, ValueError):  # click's int() on a list, a dict...
            detail = f"expected a value of type {self.param.type.name}"
        raise TaskArgumentError(
            f"task {task!r}: argument {self.name!r} = {value!r} is not valid: {detail}"
        )

    def render(self, value: Any) -> list[str]:
        """The argv words for one value (already converted)."""
        values: Sequence[Any] = value if self.multiple else (value,)
        if self.option is None:
            return [_text(w) for v in values for w in self._parts(v)]
        if self.is_flag:
            if value:
                return [self.option]
            return [self.false_option] if self.false_option else []
        if self.count:
            return [self.option] * int(value)
        words: list[str] = []
        for v in values:
            words += [self.option, *(_text(w) for w in self._parts(v))]
        return words

    def _parts(self, value: Any) -> Sequence[Any]:
        return tuple(value) if self.tuple_size > 1 else (value,)


def _no_default(param: click.Parameter) -> bool:
    """True when click has no default for ``param`` (``None``, or click 8.2's ``UNSET``)."""
    default = param.default
    return default is None or (isinstance(default, enum.Enum) and default.name == "UNSET")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def canonical(value: Any) -> str:
    """A stable text form of one argument value, for identity hashes."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str:
        return json.dumps(value)
    if kind is tuple or kind is list:
        return "[" + ",".join(canonical(v) for v in value) + "]"
    return json.dumps(value, default=str)


@attrs.frozen
class Signature:
    """Every task argument of one task, in declaration order."""

    task: str
    params: tuple[Param, ...]
    by_name: Mapping[str, Param] = attrs.field(eq=False, repr=False)
    required: frozenset[str] = attrs.field(eq=False, repr=False, default=frozenset())
    #: The converted default of every optional argument that has a plain one. A node's
    #: identity counts them, so ``fit(draw=1)`` and ``fit(draw=1, seed=<its default>)``
    #: are one node, as they are one command.
    defaults: Mapping[str, Any] = attrs.field(eq=False, repr=False, factory=dict)

    @classmethod
    def of(cls, task: str, command: click.Command) -> Signature:
        params = tuple(
            Param.from_click(p)
            for p in command.params
            if p.name not in RESERVED and p.expose_value
        )
        required = frozenset(p.name for p in params if p.required)
        defaults: dict[str, Any] = {}
        for p in params:
            default = p.param.default
            if p.required or _no_default(p.param) or callable(default):
                continue
            try:
                defaults[p.name] = p.convert(task, default)
            except TaskArgumentError:  # a default click itself would reject: leave it out
                continue
        return cls(task, params, {p.name: p for p in params}, required, defaults)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def _allowed(self) -> str:
        return ", ".join(self.names) or "(none)"

    def check_names(self, given: Sequence[str], *, partial: bool = False) -> None:
        """Unknown names are errors; missing required ones too unless ``partial``."""
        by_name = self.by_name
        for name in given:
            if name not in by_name:
                raise TaskArgumentError(
                    f"task {self.task!r} has no argument {name!r}; "
                    f"its arguments are: {self._allowed()}"
                )
        if partial or not self.required.difference(given):
            return
        missing = [p.name for p in self.params if p.required and p.name not in given]
        raise TaskArgumentError(
            f"task {self.task!r} is missing required argument(s) {', '.join(missing)}; "
            f"its arguments are: {self._allowed()}"
        )

    def convert(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Check and convert a complete set of keyword arguments.

        ``None`` means "not given" (the command line omits the option), so it is
        dropped, and is an error for a required argument.
        """
        for value in kwargs.values():
            if value is None:
                kwargs = {name: v for name, v in kwargs.items() if v is not None}
                break
        self.check_names(list(kwargs))
        by_name = self.by_name
        task = self.task
        return {name: by_name[name].convert(task, v) for name, v in kwargs.items()}

    def render(self, args: Mapping[str, Any]) -> list[str]:
        """Options first in declaration order, then positional arguments."""
        options: list[str] = []
        positional: list[str] = []
        for p in self.params:
            if p.name in args:
                (options if p.option is not None else positional).extend(p.render(args[p.name]))
        if positional:
            options.append("--")
        return options + positional
