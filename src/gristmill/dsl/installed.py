"""What pip installed: the distributions that provide a package, and what a console script runs.

A console script's name is shared by every package in an environment: two
distributions that declare a script ``fit`` both write ``bin/fit``, the one
installed last wins, and the metadata of the other still says the file is its
own. So a script is trusted only after reading the file itself (pip, uv and
installer all write ``from <module> import <name>`` and ``sys.exit(<attr>())``)
or finding it byte-identical to what its distribution's ``RECORD`` lists.

Editable installs (``pip install -e .``) list no package file in their RECORD,
only a ``.pth`` file (hatchling, pdm-backend, setuptools' compat mode) or an
import hook that the ``.pth`` loads (the ``editables`` library, setuptools'
finder), so such a distribution is matched by where those point.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.util
import os
import re
import shutil
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

#: A console script is a few hundred bytes; reading more would only read a binary launcher.
_MAX_SCRIPT = 64 * 1024
#: The import hook an editable install loads is small; a big module is not one.
_MAX_HOOK = 256 * 1024
_IMPORT = re.compile(r"^from[ \t]+([\w.]+)[ \t]+import[ \t]+(\w+)[ \t]*$", re.MULTILINE)
_CALL = re.compile(r"^[ \t]*sys\.exit\([ \t]*([\w.]+)\(\)[ \t]*\)[ \t]*$", re.MULTILINE)
_EASY_INSTALL = re.compile(
    r"load_entry_point\(\s*['\"]([^'\"]+)['\"]\s*,\s*['\"]console_scripts['\"]\s*,"
    r"\s*['\"]([^'\"]+)['\"]\s*\)"
)


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Seiir_Like`` is ``seiir-like``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_name(ep: metadata.EntryPoint) -> str | None:
    """The name of the distribution that declares ``ep``."""
    dist = getattr(ep, "dist", None)
    return None if dist is None else str(dist.metadata["Name"])


def console_scripts() -> list[metadata.EntryPoint]:
    """Every installed console-script entry point (Python 3.9's API included)."""
    eps: Any = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group="console_scripts"))
    return list(eps.get("console_scripts", ()))  # pragma: no cover - Python < 3.10


def target(ep: metadata.EntryPoint) -> str:
    """``module:attr`` of an entry point, spaces removed (``a : b`` is legal metadata)."""
    return ep.value.replace(" ", "")


def _recorded(ep: metadata.EntryPoint) -> Iterable[metadata.PackagePath]:
    """The files the entry point's distribution recorded for its script."""
    dist = getattr(ep, "dist", None)
    for file in (dist.files or ()) if dist is not None else ():
        if file.name in (ep.name, ep.name + ".exe") and file.parent.name in ("bin", "Scripts"):
            yield file


def script_path(ep: metadata.EntryPoint) -> Path | None:
    """The absolute path of an entry point's installed script.

    The distribution's RECORD says where pip wrote it, which beats the first
    match on ``PATH`` (another environment's script, or a pyenv shim that goes
    through a shell); ``shutil.which`` is the fallback.
    """
    for file in _recorded(ep):
        located = Path(str(file.locate())).resolve()
        if located.is_file() and os.access(located, os.X_OK):
            return located
    found = shutil.which(ep.name)
    return None if found is None else Path(found).absolute()


def _read(path: Path, limit: int) -> bytes | None:
    try:
        with path.open("rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


def script_target(path: Path) -> str | None:
    """The ``module:attr`` a console script runs, read from the file (None: cannot tell).

    Knows the scripts pip, uv and installer write (one ``from M import N`` and one
    ``sys.exit(N.rest())``) and setuptools' old ``load_entry_point`` scripts.
    """
    data = _read(path, _MAX_SCRIPT)
    if data is None or b"\0" in data:
        return None
    text = data.decode("utf-8", errors="replace")
    imports, calls = _IMPORT.findall(text), _CALL.findall(text)
    if len(imports) == 1 and len(calls) == 1:
        (module, name), func = imports[0], calls[0]
        if func == name or func.startswith(name + "."):
            return f"{module}:{func}"
        return None
    legacy = _EASY_INSTALL.search(text)
    if legacy is not None:
        requirement, name = legacy.groups()
        try:
            dist = metadata.distribution(re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0])
        except metadata.PackageNotFoundError:
            return None
        found = [ep for ep in dist.entry_points if ep.group == "console_scripts"]
        return next((target(ep) for ep in found if ep.name == name), None)
    return None


def _hash_matches(ep: metadata.EntryPoint, path: Path) -> bool:
    """Whether ``path`` is byte for byte the script ``ep``'s distribution recorded."""
    for file in _recorded(ep):
        if file.hash is None or file.hash.mode != "sha256":
            continue
        if Path(str(file.locate())).resolve() != path.resolve():
            continue
        data = _read(path, 1 << 24)
        if data is None:
            return False
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        return digest.decode() == file.hash.value
    return False


def script_runs(ep: metadata.EntryPoint, path: Path) -> bool:
    """Whether the file at ``path`` runs ``ep``'s target (not merely bears its name)."""
    found = script_target(path)
    if found is not None:
        return found == target(ep)
    return _hash_matches(ep, path)


def declarers(name: str, value: str | None = None) -> list[str]:
    """Distributions that declare a console script ``name`` (with target ``value``, if given)."""
    return sorted({
        d for ep in console_scripts()
        if ep.name == name and (value is None or target(ep) == value)
        and (d := dist_name(ep)) is not None
    })


# --- which distributions provide a package -----------------------------------------------------


def _locations(top: str) -> set[Path]:
    """Where the top-level package ``top`` is imported from (its directories, or its file)."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return set()
    if spec is None:
        return set()
    if spec.submodule_search_locations:
        return {Path(p).resolve() for p in spec.submodule_search_locations}
    return {Path(spec.origin).resolve()} if spec.origin else set()


def _pointed_at(dist: metadata.Distribution, top: str) -> set[Path]:
    """What a distribution's top-level ``.pth`` files and import hooks point at.

    A ``.pth`` line names a directory put on ``sys.path`` (so ``<dir>/<top>``
    would be the package); an import hook holds the package's path as a string
    (``F.map_module('pkg', '/src/pkg/__init__.py')``, ``MAPPING = {'pkg': '/src/pkg'}``).
    """
    files = [f for f in dist.files or () if len(f.parts) == 1]
    if not any(f.suffix == ".pth" for f in files):
        return set()  # every editable install starts from a .pth file
    pointed: set[Path] = set()
    for file in files:
        located = Path(str(file.locate()))
        if file.suffix == ".pth":
            data = _read(located, _MAX_HOOK) or b""
            for line in data.decode("utf-8", errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "import ", "import\t")):
                    root = located.parent / line
                    pointed |= {root / top, root / f"{top}.py"}
        elif file.suffix == ".py":
            data = _read(located, _MAX_HOOK + 1) or b""
            try:
                tree = ast.parse(data) if len(data) <= _MAX_HOOK else None
            except (SyntaxError, ValueError):
                tree = None
            for node in ast.walk(tree) if tree is not None else ():
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and os.path.isabs(node.value):
                    path = Path(node.value)
                    pointed |= {path, path.parent} if path.name == "__init__.py" else {path}
    return {p.resolve() for p in pointed if p.exists()}


def distributions_of(package: str) -> list[str]:
    """Installed distributions that provide ``package``'s top-level package, editable or not."""
    top = package.split(".")[0]
    finder = getattr(metadata, "packages_distributions", None)
    if finder is not None:
        found = set(finder().get(top, []))
    else:  # pragma: no cover - Python 3.9
        found = set()
        for dist in metadata.distributions():
            tops = (dist.read_text("top_level.txt") or "").split()
            tops += [f.parts[0] for f in dist.files or () if f.parts and f.suffix != ".pth"]
            if top in tops:
                found.add(dist.metadata["Name"])
    if found:
        return sorted(found)
    locations = _locations(top)
    if not locations:
        return []
    return sorted({
        str(dist.metadata["Name"]) for dist in metadata.distributions()
        if _pointed_at(dist, top) & locations
    })
