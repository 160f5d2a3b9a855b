"""What the ``covid-shared`` extra installs, imported on first use with an error that says so.

covid_shared depended on pandas, tqdm and pathos outright. gristmill does not, so
``import gristmill`` stays light; the modules of this layer that need them
(``ihme_deps`` for a hierarchy file, ``parallel``) import them here, when called.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from gristmill.errors import GristmillError

EXTRA = "covid-shared"


class MissingExtraError(GristmillError, ImportError):
    """A module of the ``covid-shared`` extra is not installed."""


def require(module: str, needed_for: str) -> ModuleType:
    """Import ``module``, or say which call needed it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{needed_for} needs {module.partition('.')[0]}, which is not installed ({exc}); "
            f"install it with: pip install 'gristmill[{EXTRA}]'"
        ) from exc
