"""The hatchling metadata hook that declares every task's console script at build time.

A package enables it in its ``pyproject.toml``::

    [build-system]
    requires = ["hatchling", "gristmill"]
    build-backend = "hatchling.build"

    [project]
    dynamic = ["scripts"]

    [tool.hatch.metadata.hooks.gristmill]

Each build (wheel, sdist, editable install) then computes ``[project.scripts]``
from the source, so adding a task and reinstalling adds its script, with the
names ``gristmill entry-points`` would write. PEP 621 forbids a static
``[project.scripts]`` next to ``dynamic = ["scripts"]``, so scripts written by
hand (the package's own CLI) go in ``[tool.hatch.metadata.hooks.gristmill.scripts]``;
they are kept, and win over a task script of the same name.

hatchling finds this module through the ``hatch`` entry-point group of
gristmill's distribution; it is the only gristmill module that imports hatchling.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface
from hatchling.plugin import hookimpl

from gristmill.build.layout import HOOK_TABLE, package_paths
from gristmill.build.scan import Scan, Unreadable, scan_package
from gristmill.errors import GristmillError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - hatchling depends on tomli before Python 3.11
    import tomli as tomllib

SCRIPTS_TABLE = "[tool.hatch.metadata.hooks.gristmill.scripts]"
_OPTIONS = ("packages", "scripts")


class TaskScriptWarning(UserWarning):
    """The build declares a task's console script other than the code asks, or none at all:
    a decorator the hook cannot read, or a script written by hand under a task's name."""


class ScriptsHook(MetadataHookInterface):
    """Sets ``[project.scripts]``: the tasks' scripts, then those written by hand."""

    PLUGIN_NAME = "gristmill"

    def __init__(self, root: str, config: dict[str, Any]) -> None:
        super().__init__(root, config)
        self.pyproject_path = Path(root) / "pyproject.toml"
        try:
            self.pyproject = tomllib.loads(self.pyproject_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GristmillError(f"the gristmill build hook cannot read "
                                 f"{self.pyproject_path}: {exc}") from exc
        unknown = sorted(set(config) - set(_OPTIONS))
        if unknown:
            raise GristmillError(
                f"{HOOK_TABLE} has unknown option(s) {', '.join(unknown)}; it takes "
                f"{' and '.join(_OPTIONS)}"
            )
        # hatchling calls no metadata hook at all when nothing is dynamic: check here,
        # or a forgotten `dynamic` would silently build a package without its scripts.
        project = self.pyproject.get("project", {})
        if "scripts" not in project.get("dynamic", []):
            moved = (f"; move the [project.scripts] entries into {SCRIPTS_TABLE}"
                     if "scripts" in project else "")
            raise GristmillError(
                f"{self.pyproject_path}: the gristmill build hook writes [project.scripts], "
                f"so [project] must list it as dynamic: dynamic = [\"scripts\"]{moved}"
            )

    def update(self, metadata: dict[str, Any]) -> None:
        """Set ``metadata["scripts"]`` from the tasks found in the shipped packages."""
        by_hand = self._by_hand()
        paths = package_paths(Path(self.root), self.pyproject, self.config.get("packages"))
        scan = Scan()
        for path in paths:
            scan += scan_package(path)
        for item in scan.unreadable:
            if item.target is None or item.target not in by_hand.values():
                _warn(item)
        table = scan.table()
        for name, target in sorted(by_hand.items()):
            if name in table and table[name] != target:
                warnings.warn_explicit(
                    f"{SCRIPTS_TABLE} declares {name} = \"{target}\", which replaces the "
                    f"script of the task {table[name]}; name the task's script with "
                    f"@gm.task(script=...) or rename this one", TaskScriptWarning,
                    str(self.pyproject_path), self._line_of(SCRIPTS_TABLE),
                )
        metadata["scripts"] = dict(sorted({**table, **by_hand}.items()))

    def _by_hand(self) -> dict[str, str]:
        scripts = self.config.get("scripts", {})
        if not isinstance(scripts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in scripts.items()
        ):
            raise GristmillError(
                f"{SCRIPTS_TABLE} must map script names to targets, e.g. "
                f"mytool = \"mypkg.cli:main\"; got {scripts!r}"
            )
        return scripts

    def _line_of(self, header: str) -> int:
        try:
            lines = self.pyproject_path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return 1
        return next((i for i, line in enumerate(lines, 1) if line.strip() == header), 1)


def _warn(item: Unreadable) -> None:
    """A warning located at the decorator itself (``path:line: TaskScriptWarning: ...``)."""
    warnings.warn_explicit(
        f"{item.reason}. The build declares no console script for this task (its jobs "
        f"will run through python -m gristmill.dsl.exec) unless one is declared by hand "
        f"in {SCRIPTS_TABLE}",
        TaskScriptWarning, str(item.path), item.line,
    )


@hookimpl
def hatch_register_metadata_hook() -> type[MetadataHookInterface]:
    """The hook hatchling selects as ``[tool.hatch.metadata.hooks.gristmill]``."""
    return ScriptsHook
