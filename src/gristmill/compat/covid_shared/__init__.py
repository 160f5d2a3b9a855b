"""covid_shared 2.2 on top of gristmill: every module a pipeline imports, under the same names.

A pipeline written in the style of covid_shared's workflow tutorial moves over by
changing its imports and nothing else::

    from gristmill.compat.covid_shared import cli_tools, ihme_deps, paths, workflow

Templates become gristmill tasks and workflows (:mod:`.workflow`); run directories,
links and metadata come from :mod:`gristmill.runs` (:mod:`.cli_tools`); :mod:`.paths`,
:mod:`.ihme_deps`, :mod:`.shell_tools` and :mod:`.parallel` keep covid_shared's names.
Each module is imported on first use, so a task process that only needs ``cli_tools``
does not import the workflow machinery, and nothing here imports pandas until a call
needs it (``pip install 'gristmill[covid-shared]'``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gristmill.compat.covid_shared import (
        cli_tools,
        ihme_deps,
        parallel,
        paths,
        shell_tools,
        workflow,
    )

__all__ = ["cli_tools", "ihme_deps", "parallel", "paths", "shell_tools", "workflow"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
