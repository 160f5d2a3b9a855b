"""``get_jobmon_tool`` and ``make_log_dirs``: what covid_shared's workflow utilities did.

A jobmon ``Tool`` named the package and its registered tool version. gristmill needs
no registration, so :class:`Tool` is a plain record of the package's name,
``__version__`` and ``__jobmon_tool_version__``; ``WorkflowTemplate.run`` writes it
into the run's ``run_metadata.yaml``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import attrs

from gristmill.errors import GristmillError


@attrs.frozen
class Tool:
    """The package a workflow belongs to, as covid_shared's jobmon tool named it."""

    name: str
    version: str | None = None
    jobmon_tool_version: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return attrs.asdict(self)


def _attribute(module: ModuleType, name: str) -> str | None:
    value = vars(module).get(name)
    return None if value is None else str(value)


def get_jobmon_tool(package: ModuleType | str) -> Tool:
    """The :class:`Tool` of ``package`` (a module or an importable name).

    covid_shared refused a package without ``__jobmon_tool_version__`` because jobmon
    needed it; here it is only recorded, so a package without it is accepted.
    """
    if isinstance(package, str):
        try:
            package = importlib.import_module(package)
        except ImportError as exc:
            raise GristmillError(
                f"get_jobmon_tool: cannot import package {package!r}: {exc}; pass the "
                "package module itself (import mypkg; get_jobmon_tool(mypkg))"
            ) from exc
    if not isinstance(package, ModuleType):
        raise TypeError(f"get_jobmon_tool takes a package module, got {package!r}")
    return Tool(
        name=package.__name__,
        version=_attribute(package, "__version__"),
        jobmon_tool_version=_attribute(package, "__jobmon_tool_version__"),
    )


def make_log_dirs(log_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """Create ``log_dir/output`` and ``log_dir/error``; return their paths.

    Kept for code that calls it directly: gristmill itself writes each attempt's
    output under ``RUN_DIR/logs/<task>/``.
    """
    root = Path(log_dir)
    out, err = root / "output", root / "error"
    for path in (out, err):
        path.mkdir(parents=True, exist_ok=True)
    return str(out), str(err)
