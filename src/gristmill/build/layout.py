"""Which source paths a hatchling project ships as packages, so the hook scans those.

The hook must read the same packages that the wheel will hold, without asking
the wheel builder (a metadata hook runs before any builder exists). So it
follows the settings hatchling itself reads, in hatchling's order: the hook's
own ``packages``, then ``[tool.hatch.build.targets.wheel] packages``, then
``[tool.hatch.build] packages``, then hatchling's default discovery from the
project name (``<name>/``, ``src/<name>/``, ``<name>.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gristmill.errors import GristmillError

HOOK_TABLE = "[tool.hatch.metadata.hooks.gristmill]"


def package_paths(root: Path, pyproject: Mapping[str, Any], configured: object = None
                  ) -> list[Path]:
    """The package directories (or single modules) to scan, each checked to exist."""
    if configured is not None:
        return _existing(root, configured, f"{HOOK_TABLE} packages")
    build = _table(pyproject, "tool", "hatch", "build")
    wheel = _table(build, "targets", "wheel")
    for table, where in ((wheel, "[tool.hatch.build.targets.wheel]"),
                         (build, "[tool.hatch.build]")):
        if table.get("packages"):
            return _existing(root, table["packages"], f"{where} packages")
    for table, where in ((wheel, "[tool.hatch.build.targets.wheel]"),
                         (build, "[tool.hatch.build]")):
        for option in ("include", "only-include", "sources"):
            if table.get(option):
                raise GristmillError(
                    f"{where} selects files with {option}=, from which gristmill cannot tell "
                    f"the packages the wheel ships; list them for the build hook: "
                    f"{HOOK_TABLE} packages = [\"src/mypkg\"]"
                )
    name = _table(pyproject, "project").get("name")
    if not isinstance(name, str) or not name:
        raise GristmillError("pyproject.toml: [project] has no name; the build hook needs one")
    candidates = dict.fromkeys([_file_name(name), _file_name(_normalized(name))])
    for candidate in candidates:
        for path in (root / candidate, root / "src" / candidate):
            if (path / "__init__.py").is_file():
                return [path]
        if (root / f"{candidate}.py").is_file():
            return [root / f"{candidate}.py"]
    looked = ", ".join(f"{c}/, src/{c}/, {c}.py" for c in candidates)
    raise GristmillError(
        f"the build hook found no package of project {name!r} in {root} (looked for {looked}); "
        f"name the package directories: [tool.hatch.build.targets.wheel] packages = "
        f"[\"src/mypkg\"] (or {HOOK_TABLE} packages = [...])"
    )


def _existing(root: Path, entries: object, where: str) -> list[Path]:
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise GristmillError(f"{where} must be a list of paths, such as packages = "
                             f"[\"src/mypkg\"]; got {entries!r}")
    paths = [root / entry for entry in entries]
    missing = [entry for entry, path in zip(entries, paths) if not path.exists()]
    if missing:
        raise GristmillError(
            f"{where} names {', '.join(map(repr, missing))}, which does not exist under {root}"
        )
    return paths


def _table(mapping: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for key in keys:
        value = mapping.get(key, {})
        mapping = value if isinstance(value, Mapping) else {}
    return mapping


def _normalized(name: str) -> str:
    """The PEP 503 form of a project name, as hatchling's ``core.name``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _file_name(name: str) -> str:
    """hatchling's ``normalize_file_name_component``: ``my-pkg`` -> ``my_pkg``."""
    return re.sub(r"[^\w\d.]+", "_", name, flags=re.UNICODE)
