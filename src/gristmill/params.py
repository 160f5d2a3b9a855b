"""A task's click parameters, used to check arguments at record time and to render argv.

Checking at record time is the point: a typo or a wrong type fails when the
workflow is built on a laptop, not at 3 a.m. on the cluster.
"""

from __future__ import annotations

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

    @classmethod
    def from_click(cls, param: click.Parameter) -> Param:
        option = false_option = None
        is_flag = False
        if isinstance(param, click.Option):
            longs = [o for o in param.opts if o.startswith("--")]
            option = longs[0] if longs else param.opts[0]
            is_flag = bool(param.is_flag) and not param.count
            if is_flag and param.secondary_opts:
                false_longs = [o for o in param.secondary_opts if o.startswith("--")]
                false_option = false_longs[0] if false_longs else param.secondary_opts[0]
        required = bool(param.required) and param.default is None
        multiple = bool(param.multiple) or (param.nargs == -1)
        assert param.name is not None
        return cls(param.name, param, option, false_option, is_flag, multiple, required)

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
        try:
            return self.param.type.convert(value, self.param, None)
        except click.BadParameter as exc:
            raise TaskArgumentError(
                f"task {task!r}: argument {self.name!r} = {value!r} is not valid: "
                f"{exc.format_message()}"
            ) from None

    def render(self, value: Any) -> list[str]:
        """The argv words for one value (already converted)."""
        values: Sequence[Any] = value if self.multiple else (value,)
        if self.option is None:
            return [_text(v) for v in values]
        if self.is_flag:
            if value:
                return [self.option]
            return [self.false_option] if self.false_option else []
        words: list[str] = []
        for v in values:
            words += [self.option, _text(v)]
        return words


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

    @classmethod
    def of(cls, task: str, command: click.Command) -> Signature:
        params = tuple(
            Param.from_click(p)
            for p in command.params
            if p.name not in RESERVED and p.expose_value
        )
        return cls(task, params, {p.name: p for p in params})

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def _allowed(self) -> str:
        return ", ".join(self.names) or "(none)"

    def check_names(self, given: Sequence[str], *, partial: bool = False) -> None:
        """Unknown names are errors; missing required ones too unless ``partial``."""
        for name in given:
            if name not in self.by_name:
                raise TaskArgumentError(
                    f"task {self.task!r} has no argument {name!r}; "
                    f"its arguments are: {self._allowed()}"
                )
        if partial:
            return
        missing = [p.name for p in self.params if p.required and p.name not in given]
        if missing:
            raise TaskArgumentError(
                f"task {self.task!r} is missing required argument(s) {', '.join(missing)}; "
                f"its arguments are: {self._allowed()}"
            )

    def convert(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Check and convert a complete set of keyword arguments."""
        self.check_names(list(kwargs))
        by_name = self.by_name
        return {name: by_name[name].convert(self.task, v) for name, v in kwargs.items()}

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
