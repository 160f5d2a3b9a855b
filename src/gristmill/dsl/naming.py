"""Console-script names and targets of tasks: the one rule, wherever the tasks come from.

Two places declare a package's task scripts: ``gristmill entry-points``, which
imports the package and reads the registry, and the hatchling build hook
(:mod:`gristmill.build`), which reads the source with ``ast`` and imports
nothing. Both must arrive at the same table, or ``gristmill check`` would find
drift in a fresh install, so both name, target and de-duplicate scripts here.
This module imports nothing heavier than the error tree, so that a build backend
process can use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from gristmill.errors import GristmillError


def default_script_name(module: str, name: str) -> str:
    """``<package>-<task>`` with ``_`` as ``-`` (``seiir_like.tasks:fit`` -> ``seiir-like-fit``).

    Every installed package shares ``PATH``: two packages' ``fit`` scripts would
    overwrite each other's ``bin/fit``, so the top-level package names the
    script too. A task name that already starts with the package's is not
    prefixed twice (``seiir.tasks:seiir_fit`` -> ``seiir-fit``).
    """
    base = name.replace("_", "-")
    prefix = "" if module == "__main__" else module.split(".")[0].strip("_").replace("_", "-")
    if not prefix or base == prefix or base.startswith(prefix + "-"):
        return base
    return f"{prefix}-{base}"


def script_target(module: str, qualname: str) -> str:
    """The console-script target of the task ``module:qualname`` (``module:qualname.main``).

    ``Task.main`` runs the task's command line; the script calls it through the
    name the task is bound to in its module.
    """
    return f"{module}:{qualname}.main"


def claim_scripts(claims: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """``{script: target}`` from ``(task key, script, target)`` claims, sorted by script name.

    Two tasks claiming one script name is an error: both would write ``bin/NAME``
    and one task would silently lose its script.
    """
    table: dict[str, str] = {}
    owners: dict[str, str] = {}
    for key, script, target in claims:
        if script in table:
            raise GristmillError(
                f"tasks {owners[script]} and {key} both want the console script "
                f"{script!r}; give one of them @gm.task(..., script='another-name')"
            )
        table[script] = target
        owners[script] = key
    return dict(sorted(table.items()))
