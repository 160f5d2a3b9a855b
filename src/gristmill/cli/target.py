"""Load a ``module:workflow`` target and turn its parameters into click options.

``gristmill run seiir.pipeline:seiir --n-draws 1000`` needs no hand-written CLI:
``n_draws: int`` becomes ``--n-draws INTEGER``, ``bool`` a ``--flag/--no-flag``
pair, ``list[int]`` a comma-separated value, and a parameter without a default
a required option.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import traceback
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gristmill.dsl.workflow import Workflow, WorkflowFunction
from gristmill.errors import GristmillError

if TYPE_CHECKING:
    AnyType = click.ParamType[Any]
    _ListTypeBase = click.ParamType[list[Any]]
else:  # click < 8.2 has no generic ParamType
    AnyType = click.ParamType
    _ListTypeBase = click.ParamType

#: ``int | None`` (PEP 604) on Python 3.10+; ``typing.Union`` covers ``Optional[int]``.
_UNION_TYPES: tuple[Any, ...] = (typing.Union, getattr(types, "UnionType", typing.Union))


class CommaList(_ListTypeBase):
    """A comma-separated list of one scalar type (``1,2,3``)."""

    name = "list"

    def __init__(self, item: AnyType) -> None:
        self.item = item
        self.name = f"{item.name}[,...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (list, tuple)):
            return [self.item.convert(v, param, ctx) for v in value]
        text = str(value).strip()
        if not text:
            return []
        return [self.item.convert(v.strip(), param, ctx) for v in text.split(",")]


_SCALARS: dict[Any, AnyType] = {
    int: click.INT,
    float: click.FLOAT,
    str: click.STRING,
    Path: click.Path(path_type=Path),
}


def load_target(target: str) -> WorkflowFunction[Any]:
    """Import ``module:name`` and return the ``@gm.workflow`` function it names."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise GristmillError(
            f"{target!r} is not a workflow target; write it as 'package.module:workflow'"
        )
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`, a module in the working directory is found
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise GristmillError(
                f"cannot import workflow module {module_name!r}:\n{_user_traceback(exc)}"
            ) from exc
        raise GristmillError(
            f"cannot import workflow module {module_name!r}: no module named {missing!r}; "
            "is the package installed (pip install -e .), or are you in the directory "
            "that holds the module?"
        ) from exc
    except Exception as exc:
        raise GristmillError(
            f"cannot import workflow module {module_name!r}:\n{_user_traceback(exc)}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise GristmillError(f"module {module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, WorkflowFunction):
        raise GristmillError(
            f"{target} is not a @gm.workflow function (got {type(obj).__name__}); "
            "decorate it with @gm.workflow"
        )
    return obj


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without importlib's and gristmill's own frames."""
    frames = _user_frames(exc)
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip("\n")


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``exc``'s traceback in the user's code: not gristmill's, importlib's,
    nor generated code's (``<frozen ...>``, ``<attrs generated ...>``)."""
    return [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<") and not _is_own_file(frame.filename)
    ]


_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_IMPORTLIB_DIR = Path(importlib.__file__).parent


def _is_own_file(filename: str) -> bool:
    """Frames of gristmill and importlib, which say nothing about the user's error."""
    path = Path(filename)
    return path.parent == _IMPORTLIB_DIR or _PACKAGE_DIR in path.resolve().parents


def _param_type(annotation: Any) -> tuple[AnyType | None, bool]:
    """(click type, is_bool) for an annotation; (None, False) when unsupported."""
    origin = typing.get_origin(annotation)
    if origin in _UNION_TYPES:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _param_type(members[0])
        return None, False
    if origin is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)]), False
    if annotation is bool:
        return click.BOOL, True
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    if origin in (list, tuple, Sequence, typing.Sequence):
        items = typing.get_args(annotation)
        item = _SCALARS.get(items[0] if items else str, click.STRING)
        return CommaList(item), False
    return None, False


class WorkflowOption(click.Option):
    """The option of one parameter of a workflow function (``n_draws`` -> ``--n-draws``).

    ``parameter`` is the function's parameter; the click name may carry a prefix, so that
    it never collides with a command's own parameter of the same name.
    """

    def __init__(self, parameter: str, decls: list[str], **kwargs: Any) -> None:
        super().__init__(decls, **kwargs)
        self.parameter = parameter


def workflow_options(
    wf_fn: WorkflowFunction[Any], *, name_prefix: str = ""
) -> list[WorkflowOption]:
    """Click options for every parameter of a workflow function.

    Each is named ``name_prefix + parameter`` in click's values (its flag is unchanged).
    """
    try:
        hints = typing.get_type_hints(wf_fn.fn)
    except Exception:
        hints = {}
    docs = parameter_docs(wf_fn.fn.__doc__ or "")
    params: list[WorkflowOption] = []
    for name, p in wf_fn.signature.parameters.items():
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        no_default = p.default is inspect.Parameter.empty or p.default is None
        default_type = str if no_default else type(p.default)
        annotation = hints.get(name, default_type)
        ptype, is_bool = _param_type(annotation)
        if ptype is None:
            ptype = click.STRING
        flag = "--" + name.replace("_", "-")
        required = p.default is inspect.Parameter.empty
        extra: dict[str, Any] = {"required": required, "help": docs.get(name, "")}
        if not required:  # click tells "no default" from an explicit None default
            default = p.default
            if isinstance(ptype, CommaList) and isinstance(default, (list, tuple)):
                default = ",".join(map(str, default))
            extra.update(default=default, show_default=True)
        ident = name_prefix + name
        if is_bool:
            flags = f"{flag}/--no-{name.replace('_', '-')}"
            params.append(WorkflowOption(name, [flags, ident], **extra))
        else:
            params.append(WorkflowOption(name, [flag, ident], type=ptype, **extra))
    return params


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params)\s*:\s*$")
_GOOGLE_ITEM = re.compile(r"^(\s*)(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_ITEM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parameter_docs(docstring: str) -> dict[str, str]:
    """What a docstring says of each parameter, for ``--help``.

    Reads a Google-style ``Args:`` section (``n_draws: how many draws``, continuation
    lines indented further) and Sphinx ``:param n_draws: how many draws`` lines.
    """
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(docstring).splitlines()
    current: str | None = None
    indent: int | None = None
    in_section = False
    for line in lines:
        width = len(line) - len(line.lstrip())
        sphinx = _SPHINX_ITEM.match(line)
        if sphinx:
            current, indent, in_section = sphinx.group(1), width, False
            docs[current] = sphinx.group(2).strip()
            continue
        if _SECTION.match(line):
            in_section, current, indent = True, None, None
            continue
        if not line.strip():
            current = None
            continue
        item = _GOOGLE_ITEM.match(line) if in_section else None
        if item and (indent is None or width == indent):
            indent, current = width, item.group(2)
            docs[current] = item.group(3).strip()
        elif current is not None and (indent is None or width > indent):
            docs[current] = f"{docs[current]} {line.strip()}".strip()
        else:
            in_section, current = in_section and width > 0, None
    return docs


def parse_workflow_args(
    wf_fn: WorkflowFunction[Any], args: Sequence[str], *, prog: str
) -> dict[str, Any]:
    """Parse the workflow's own options from ``args`` (click errors raise UsageError)."""
    params: list[click.Parameter] = [*workflow_options(wf_fn)]
    command = click.Command(prog, params=params, callback=lambda **kw: kw)
    ctx = command.make_context(prog, list(args))
    return dict(ctx.params)


def build_workflow(target: str, args: Sequence[str], *, prog: str = "gristmill") -> Workflow:
    """Import the target, parse its options from ``args`` and record the workflow."""
    wf_fn = load_target(target)
    return record_workflow(target, wf_fn, parse_workflow_args(wf_fn, args, prog=prog))


def record_workflow(target: str, wf_fn: WorkflowFunction[Any], values: dict[str, Any]) -> Workflow:
    """Call the workflow function with its parameters' values: record its DAG.

    An exception from the user's workflow function (not a gristmill error) is a
    user error too: it becomes a :class:`GristmillError` carrying its traceback.
    """
    try:
        return wf_fn(**values)
    except GristmillError as exc:
        frames = _user_frames(exc)
        if frames and exc.args and isinstance(exc.args[0], str):  # say where, in their code
            where = frames[-1]
            exc.args = (f"{exc.args[0]}\n  (recording {target}: {where.filename}, line "
                        f"{where.lineno}, in {where.name})", *exc.args[1:])
        raise
    except Exception as exc:
        raise GristmillError(
            f"workflow {target} raised while recording its DAG:\n{_user_traceback(exc)}"
        ) from exc
