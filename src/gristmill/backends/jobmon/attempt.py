"""One jobmon try of one gristmill attempt: ``python -I -c <boot> ARGS -- argv``.

What every jobmon task runs (:func:`gristmill.backends.jobmon.translate.wrapper_argv`):
gristmill's worker wrapper (:func:`gristmill.worker.wrapper.main`) records exit code,
peak RSS, OOM and TIMEOUT in the result file as on every backend, and the attempt's key
(``--key``, passed through to the wrapper) so the engine knows the result for this
attempt's. A try that fails while jobmon will try again moves its files aside
(``<file>.try<n>``), so the result file only ever describes the attempt's final try.

Apart from :mod:`.driver` (loguru, jobmon, the plan's attrs classes) so that a try starts
as light as an array element: standard library and the worker only.
"""

from __future__ import annotations

import contextlib
import os
import sys

from gristmill.worker import wrapper as worker

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from collections.abc import Sequence


def attempt(words: Sequence[str]) -> int:
    """One jobmon try of one attempt through gristmill's worker wrapper.

    ``--max-attempts N [--env K=V]... [--cwd DIR] [--node NODE]`` are taken here, the
    rest goes to :func:`gristmill.worker.wrapper.main`. A failed try that jobmon will
    repeat moves its result and logs to ``<file>.try<n>``.
    """
    words = list(words)
    split = words.index("--") if "--" in words else len(words)
    head, tail = words[:split], words[split:]
    rest: list[str] = []
    max_attempts, env, cwd = 1, {}, None
    it = iter(head)
    for word in it:
        if word == "--max-attempts":
            max_attempts = int(next(it))
        elif word == "--env":
            key, _, value = next(it).partition("=")
            env[key] = value
        elif word == "--cwd":
            cwd = next(it)
        elif word == "--node":  # names the node to jobmon only
            next(it)
        else:
            rest.append(word)
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    files = {opt: rest[i + 1] for i, opt in enumerate(rest[:-1])
             if opt in ("--result", "--stdout", "--stderr")}
    result = files.get("--result", "")
    tries = 1
    folder, name = os.path.split(result)
    with contextlib.suppress(OSError):
        tries = 1 + sum(1 for f in os.listdir(folder or ".") if f.startswith(name + ".try"))
    code = worker.main([*rest, *tail])
    if code != 0 and tries < max_attempts:
        for path in files.values():
            with contextlib.suppress(OSError):
                os.replace(path, f"{path}.try{tries}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``ARGS -- argv`` as :func:`attempt` reads them (from ``sys.argv[1:]`` by default)."""
    return attempt(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
