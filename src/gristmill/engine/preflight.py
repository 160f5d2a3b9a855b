"""Refuse, before anything is written, what would only fail once jobs run.

A task defined in ``__main__`` cannot be imported by a new process; a NUL byte cannot
travel in a command line; an argument longer than the kernel takes for one argv word
(``MAX_ARG_STRLEN``, 128 KiB on Linux), or a command line longer than ``ARG_MAX`` with
the environment, makes ``exec`` fail on the cluster, after the retries. Each is an
error here naming the task and the argument, with the fix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gristmill.dsl.scripts import script_prefix
from gristmill.errors import TaskArgumentError, shown

if TYPE_CHECKING:
    from gristmill.dsl.nodes import Unit
    from gristmill.dsl.workflow import Workflow

#: The longest single argv word Linux takes (32 pages): longer ones fail ``exec`` (E2BIG).
MAX_ARG_WORD = 32 * 4096
#: Room kept for the program's path, option names and what the backend adds to a command.
_SLACK = 8192


def arg_max() -> int:
    """How many bytes a command line may use here: ``ARG_MAX`` minus this environment."""
    try:
        limit = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        limit = 2**21
    environment = sum(len(k) + len(v) + 2 + 8 for k, v in os.environ.items())
    return max(limit - environment - _SLACK, MAX_ARG_WORD)


def preflight(wf: Workflow) -> None:
    """Every check of this module over ``wf``; raises the first problem found."""
    for task in {unit.task.key: unit.task for unit in wf.units}.values():
        if task.program is None:
            script_prefix(task)
    budget = arg_max()
    for unit in wf.units:
        columns: list[tuple[str, Sequence[Any]]] = [(n, [v]) for n, v in unit.const.items()]
        columns += [(n, c) for n, c in unit.columns.items() if not isinstance(c, range)]
        sizes: list[tuple[str, list[int]]] = []
        for name, column in columns:
            if any(map(_has_nul, column)):  # about 60 ns a value
                value = next(v for v in column if _has_nul(v))
                raise TaskArgumentError(
                    f"task {unit.task.name!r}: argument {name!r} = {shown(value, 120)} is not "
                    "valid: it holds a NUL byte, which no command line can carry; remove it "
                    "(pass binary data in a file)"
                )
            column_sizes = list(map(_size, column))
            if max(column_sizes, default=0) > MAX_ARG_WORD:  # a word may be this long: look
                value = max(column, key=_word_size)
                if _word_size(value) > MAX_ARG_WORD:
                    raise TaskArgumentError(
                        f"task {unit.task.name!r}: argument {name!r} = {shown(value, 120)} is "
                        f"{_word_size(value):,} bytes, more than one command-line word may "
                        f"hold ({MAX_ARG_WORD:,}); pass long data in a file and give the task "
                        "its path"
                    )
            sizes.append((name, column_sizes))
        _check_command_length(unit, sizes, budget)


def _check_command_length(unit: Unit, sizes: Sequence[tuple[str, list[int]]],
                          budget: int) -> None:
    """The whole command of every node of ``unit`` fits in ``budget`` bytes."""
    options = sum(len(name) + 4 for name, _ in sizes)
    if options + sum(max(s, default=0) for _, s in sizes) <= budget:
        return  # the usual case: no node can be too long
    count = max((len(s) for _, s in sizes), default=1)
    for element in range(count):
        parts = [(s[element] if len(s) > 1 else s[0], name) for name, s in sizes if s]
        total = options + sum(size for size, _ in parts)
        if total > budget:
            raise TaskArgumentError(
                f"task {unit.task.name!r}: the command of its node {element} would be "
                f"{total:,} bytes, more than this system's command-line limit allows "
                f"({budget:,} with the environment); argument {max(parts)[1]!r} is the largest "
                "part: pass long data in a file and give the task its path"
            )


def _size(value: Any) -> int:
    """Bytes ``value`` takes in argv (each list element is a word of its own)."""
    if isinstance(value, (list, tuple)):
        return sum(_size(v) + 8 for v in value)
    return _word_size(value) + 1


def _word_size(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return max(map(_word_size, value), default=0)
    if type(value) is str:
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    return len(str(value))


def _has_nul(value: Any) -> bool:
    if type(value) is str:
        return "\0" in value
    if isinstance(value, (tuple, list)):
        return any(map(_has_nul, value))
    return False
