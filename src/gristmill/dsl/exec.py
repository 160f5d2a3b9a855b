"""``python -m gristmill.dsl.exec module:task [args...]``: run a task without its console script.

The engine falls back to this when a task's generated console script is not
installed, so a pipeline still runs straight from a source checkout.
"""

from __future__ import annotations

import sys

from gristmill.dsl.task import Task, get_task
from gristmill.errors import GristmillError
from gristmill.logs import configure_logging


def warm_up(task: Task) -> None:
    """Do in a warm interpreter (``launch: fork``, :mod:`gristmill.worker.warm`) what each
    node of ``task`` would otherwise do first, so that its forks inherit it.

    gristmill's logging as ``-v`` sets it up (a node's own call then keeps it, see
    :func:`gristmill.logs.configure_logging`: loguru's ``add`` costs a fork ~5 ms), and
    ``difflib``, which click imports while it parses a command line (~5 ms).
    """
    import difflib  # noqa: F401 - imported for the forks

    configure_logging(1)
    del task


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m gristmill.dsl.exec module:task [task arguments...]\n")
        return 0 if args else 2
    try:
        task = get_task(args[0])
    except GristmillError as exc:
        sys.stderr.write(f"gristmill.dsl.exec: {exc}\n")
        return 2
    task.command.main(args=args[1:], prog_name=task.script, standalone_mode=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
