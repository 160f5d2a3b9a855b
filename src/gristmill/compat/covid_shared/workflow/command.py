"""A template's command line, checked against its declared args and rendered word by word.

covid_shared handed ``command_template.format(**args)`` to bash. Here the template
is split into words first (``shlex.split``) and each word is filled on its own, so a
value holding a space stays one argument and no value is ever read by a shell. The
words become a gristmill :class:`~gristmill.dsl.task.Task` whose argv is the filled
template (:func:`gristmill_task`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import string
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from gristmill.dsl.params import Param, Signature
from gristmill.dsl.task import Task
from gristmill.errors import TaskArgumentError
from gristmill.resources import Policy, Resources

if TYPE_CHECKING:
    _AnyType = click.ParamType[Any]
else:  # click < 8.2 has no generic ParamType
    _AnyType = click.ParamType

#: Words that only mean something to a shell; gristmill runs commands without one.
_SHELL_WORDS = frozenset({"|", "||", "&", "&&", ";", "(", ")"})
_REDIRECT = re.compile(r"^(\d*>>?|<<?|&>)")
_EXPANSION = re.compile(r"\$[A-Za-z_({]|`")


def placeholders(template: str, where: str) -> list[str]:
    """The argument names a format string uses (``{draw}``, ``{x.y}``, ``{v:{width}}``)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TaskArgumentError(f"{where} {template!r} is not a valid template: {exc}") from None
    names: list[str] = []
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not base or base.isdigit():
            raise TaskArgumentError(
                f"{where} {template!r} has a positional placeholder {{{field}}}; name every "
                "placeholder after an argument, e.g. {draw}"
            )
        names.append(base)
        if spec and "{" in spec:
            names += placeholders(spec, where)
    return names


def fill(template: str, args: Mapping[str, Any], where: str) -> str:
    """``template.format_map(args)``, with an error that says which template and values failed."""
    try:
        return template.format_map(args)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
        raise TaskArgumentError(
            f"{where} {template!r} cannot be filled with {dict(args)!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _resolve_program(word: str, where: str) -> str:
    """The absolute path of the program a template starts with, found now rather than on a node."""
    if word == "None":
        raise TaskArgumentError(
            f"{where} starts with 'None': the shutil.which(...) that built it found no such "
            "script on PATH. Install the package that provides the script (pip install -e .) "
            "in the environment that builds the workflow, or fix the script name"
        )
    if os.sep in word or (os.altsep and os.altsep in word):
        path = Path(word)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TaskArgumentError(
                f"{where} starts with {word!r}, which is not an executable file; check the "
                "path, or resolve the script with shutil.which('script-name')"
            )
        return word
    found = shutil.which(word)
    if found is None:
        raise TaskArgumentError(
            f"{where} starts with {word!r}, which is not on PATH; install the package that "
            "provides it, or give the program's full path"
        )
    return str(Path(found).absolute())


@attrs.frozen
class CommandTemplate:
    """A command template split into words, each one a format string."""

    where: str  # e.g. "MyTaskTemplate.command_template", for messages
    words: tuple[str, ...]
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: object, where: str) -> CommandTemplate:
        """Split and check ``text``; the program (first word) is resolved to an absolute path."""
        if not isinstance(text, str) or not text.strip():
            raise TaskArgumentError(f"{where} must be a non-empty string, got {text!r}")
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise TaskArgumentError(f"{where} {text!r} cannot be split into words: {exc}") from None
        for word in words:
            if word in _SHELL_WORDS or _REDIRECT.match(word) or _EXPANSION.search(word):
                raise TaskArgumentError(
                    f"{where} {text!r} uses shell syntax ({word!r}); gristmill runs each command "
                    "as a plain argument list, without a shell. Move pipes, redirections and "
                    "$VARIABLES into the task's own code"
                )
        fields = [name for word in words for name in placeholders(word, where)]
        if not placeholders(words[0], where):
            words[0] = _resolve_program(words[0], where)
        return cls(where, tuple(words), tuple(dict.fromkeys(fields)))

    def render(self, args: Mapping[str, Any]) -> list[str]:
        """The argv: every word filled on its own (never re-split, never given to a shell)."""
        return [fill(word, args, self.where) for word in self.words]


class _Verbatim(_AnyType):
    """Any value, unchanged: templates format the caller's values exactly as covid_shared did."""

    name = "value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


_VERBATIM = _Verbatim()


@attrs.frozen
class _TemplateSignature(Signature):
    """A signature whose argv is the filled command template instead of ``--option value``."""

    command: CommandTemplate | None = attrs.field(default=None, eq=False, repr=False)

    def render(self, args: Mapping[str, Any]) -> list[str]:
        assert self.command is not None
        return self.command.render(args)


def _signature(name: str, command: click.Command, template: CommandTemplate) -> Signature:
    params = tuple(Param.from_click(p) for p in command.params)
    return _TemplateSignature(
        name, params, {p.name: p for p in params}, frozenset(p.name for p in params),
        command=template,
    )


def gristmill_task(
    *,
    name: str,
    module: str,
    qualname: str,
    args: Sequence[str],
    command: CommandTemplate,
    name_template: str,
    resources: Resources,
    policy: Policy | None = None,
) -> Task:
    """A gristmill task whose nodes run ``command`` filled with their arguments.

    Every declared argument is a required click option, so gristmill checks calls at
    record time; identities are the task key, the argument values and the upstream
    identities, so the same arguments after the same upstream tasks give the same node in
    every run (and a resumed run skips it).
    """

    def run(**kwargs: Any) -> None:
        """Run one node's command here, without a shell (for trying a task by hand)."""
        subprocess.run(command.render(kwargs), check=True)

    click_command = click.Command(
        name=name,
        params=[click.Option([f"--{arg}", arg], type=_VERBATIM, required=True) for arg in args],
        callback=run,
        help=f"Runs {shlex.join(command.words)}",
    )
    return Task(
        name=name,
        fn=run,
        command=click_command,
        module=module,
        qualname=qualname,
        script=name,
        resources=resources,
        policy=policy or Policy(),
        job_name=name_template,
        signature=_signature(name, click_command, command),
        program=(),  # the whole argv comes from the signature's render
    )


def check_declared(where: str, declared: Iterable[str], used: Mapping[str, list[str]]) -> None:
    """Every placeholder must be a declared arg, and every declared arg used by the command."""
    declared = list(declared)
    shown = ", ".join(declared) or "(none)"
    for what, names in used.items():
        for field in names:
            if field not in declared:
                raise TaskArgumentError(
                    f"{where}: {what} uses {{{field}}}, which is not among its declared args "
                    f"(task_args + node_args: {shown}); add {field!r} to task_args or node_args, "
                    "or fix the placeholder"
                )
    command_fields = set(used.get("command_template", ()))
    unused = [arg for arg in declared if arg not in command_fields]
    if unused:
        raise TaskArgumentError(
            f"{where}: declared arg(s) {', '.join(unused)} never appear in command_template, so "
            f"they could not change the command; use them as {{{unused[0]}}} in the template or "
            f"remove them from task_args/node_args (declared: {shown})"
        )
