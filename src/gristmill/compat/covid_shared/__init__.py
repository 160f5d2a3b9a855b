"""``covid_shared.workflow`` and ``covid_shared.cli_tools`` on top of gristmill.

A pipeline written in the SEIIR tutorial style moves over by changing its imports::

    from gristmill.compat.covid_shared import cli_tools, workflow

Templates become gristmill tasks and workflows (:mod:`.workflow`); run directories,
links and metadata come from :mod:`gristmill.runs.directory` (:mod:`.cli_tools`). The two
namespaces are imported on first use, so a task process that only needs
``cli_tools`` does not import the workflow machinery.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gristmill.compat.covid_shared import cli_tools, workflow

__all__ = ["cli_tools", "workflow"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
