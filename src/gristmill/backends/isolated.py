"""Start a gristmill module in a Python that nothing in the job's directory can shadow.

Every process gristmill starts on a user's behalf (an array element, a jobmon attempt or
driver) runs with ``python -I``: neither the working directory nor ``PYTHONPATH`` nor the
user's site directory is on ``sys.path``, so a project file named ``types.py`` or
``logging.py`` cannot replace the standard library inside gristmill's own wrapper. The
task itself still gets the user's environment; only the wrapper is isolated. gristmill is
then found by the directory it was started from, appended after the standard library and
site-packages so it cannot shadow them either.

The program also skips ``gristmill/__init__.py``: it installs a bare ``gristmill`` package
module whose ``__path__`` is the package's directory, so importing the wrapper loads only
the wrapper and the few modules it needs (standard library, no click, loguru or attrs:
~10 ms of CPU above the interpreter's own start, where the package's ``__init__`` and its
imports cost ~100 ms in every attempt). The local backend's supervisor boots the same way.
"""

from __future__ import annotations

from pathlib import Path

#: The directory that holds the ``gristmill`` package in use (``src`` or site-packages).
GRISTMILL_PARENT = Path(__file__).resolve().parents[2]


def boot(module: str, function: str = "main") -> str:
    """The ``python -I -c`` program that runs ``module.function()`` and exits with it.

    ``function`` reads its arguments from ``sys.argv[1:]`` as it would under ``-m``.
    ``module`` must not need ``gristmill/__init__.py`` (it does not run; see the module doc).
    """
    package = str(GRISTMILL_PARENT / "gristmill")
    return (f"import sys, types; sys.path.append({str(GRISTMILL_PARENT)!r}); "
            f"pkg = types.ModuleType('gristmill'); pkg.__path__ = [{package!r}]; "
            f"sys.modules['gristmill'] = pkg; "
            f"from {module} import {function}; sys.exit({function}())")


def isolated_argv(python: str, module: str) -> list[str]:
    """``[python, "-I", "-c", boot(module)]``: put the module's arguments after it."""
    return [python, "-I", "-c", boot(module)]
