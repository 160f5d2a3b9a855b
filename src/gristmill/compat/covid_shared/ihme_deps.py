"""``covid_shared.ihme_deps``: IHME's internal clients, reached only when a call needs them.

Importing this module never fails and never imports a database client or jobmon.
What reads a file works anywhere: ``load_location_hierarchy(location_file=...)``, or a
location set version served from a directory of exported hierarchies
(``GRISTMILL_COVID_SHARED_HIERARCHIES=/dir`` holding ``<version id>.csv``). What needs
IHME's database (``db_queries``) or jobmon is looked up when first used; when it is not
installed, calling it raises :class:`IhmeDependencyError` naming the package, the call,
and the file-based alternative.

covid_shared also aliased ``structlog`` to the standard ``logging`` module in
``sys.modules`` at import, to quiet jobmon; that changed every other user of structlog
in the process and is not done here.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

from gristmill.compat.covid_shared.extra import require
from gristmill.errors import GristmillError

#: A directory of location hierarchies exported to files, one ``<version id>.csv`` each.
HIERARCHIES_ENV = "GRISTMILL_COVID_SHARED_HIERARCHIES"

_INDEX_HINT = (
    "IHME's packages come from its internal package index (pip install {package} with that "
    "index configured in ~/.pip/pip.conf)"
)


class IhmeDependencyError(GristmillError, ModuleNotFoundError):
    """A call needs one of IHME's internal packages, which is not installed here."""


def _lazy_import_callable(module_path: str, object_name: str) -> Any:
    """``module_path.object_name``, or a stand-in that raises a clear error when called."""
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        package = module_path.partition(".")[0]
        message = (
            f"{object_name} needs {package} ({module_path} cannot be imported: {exc}). "
            + _INDEX_HINT.format(package=package)
        )

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise IhmeDependencyError(message)

        unavailable.__name__ = object_name
        unavailable.__qualname__ = object_name
        return unavailable
    return getattr(module, object_name)


#: Name -> (module, attribute) of what is resolved on first access (module ``__getattr__``).
_LAZY: dict[str, tuple[str, str]] = {
    "get_location_hierarchy_by_version": (
        "db_queries.api.internal", "get_location_hierarchy_by_version"),
    "Tool": ("jobmon.client.api", "Tool"),
    "Task": ("jobmon.client.task", "Task"),
    "WorkflowRunStatus": ("jobmon.client.workflow", "WorkflowRunStatus"),
    "WorkflowAlreadyComplete": ("jobmon.exceptions", "WorkflowAlreadyComplete"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = _lazy_import_callable(*_LAZY[name])
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_location_hierarchy(
    location_set_version_id: int | None = None, location_file: str | os.PathLike[str] | None = None
) -> Any:
    """The location hierarchy as a pandas DataFrame: from a file, or by location set version.

    Give exactly one. A version is read from ``$GRISTMILL_COVID_SHARED_HIERARCHIES/<id>.csv``
    when that file exists, else from IHME's database through ``db_queries``.
    """
    if (location_set_version_id is None) == (location_file is None):
        raise ValueError(
            "load_location_hierarchy takes exactly one of location_set_version_id and "
            f"location_file (got {location_set_version_id!r} and {location_file!r})"
        )
    if location_file is not None:
        return _read_csv(Path(location_file), "load_location_hierarchy(location_file=...)")
    exported = _exported_hierarchy(location_set_version_id)
    if exported is not None:
        return _read_csv(exported, "load_location_hierarchy")
    fetch: Callable[..., Any] = _lazy_import_callable(*_LAZY["get_location_hierarchy_by_version"])
    try:
        return fetch(location_set_version_id=location_set_version_id)
    except IhmeDependencyError as exc:
        where = os.environ.get(HIERARCHIES_ENV)
        looked = f" (not found in {where})" if where else ""
        raise IhmeDependencyError(
            f"load_location_hierarchy({location_set_version_id}) reads location set version "
            f"{location_set_version_id} from IHME's database: {exc}. Without the database, "
            f"export the hierarchy to a CSV file and pass location_file=..., or put it at "
            f"$GRISTMILL_COVID_SHARED_HIERARCHIES/{location_set_version_id}.csv{looked}"
        ) from None


def _exported_hierarchy(location_set_version_id: object) -> Path | None:
    directory = os.environ.get(HIERARCHIES_ENV, "").strip()
    if not directory:
        return None
    path = Path(directory) / f"{location_set_version_id}.csv"
    return path if path.is_file() else None


def _read_csv(path: Path, needed_for: str) -> Any:
    pandas = require("pandas", needed_for)
    if not path.is_file():
        raise FileNotFoundError(f"{needed_for}: no location hierarchy file at {path}")
    return pandas.read_csv(path)
