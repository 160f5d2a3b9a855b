"""Backends by name, found through the entry-point group ``gristmill.backends``.

A site plugin adds a backend by declaring, in its own ``pyproject.toml``::

    [project.entry-points."gristmill.backends"]
    mine = "mine_site.backend:MineBackend"

gristmill's own backends are registered the same way, so nothing here names one.
The group is read lazily (again whenever ``sys.path`` changed) and a backend's module
is imported only when that backend is chosen, or when the CLI needs its settings;
a backend module therefore imports its heavy dependencies (distributed, jobmon)
inside the functions that use them. The engine only ever sees the :class:`Backend`
protocol.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, MutableMapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from gristmill.backends.base import Backend, BackendSetting, Capabilities
from gristmill.errors import BackendError

GROUP = "gristmill.backends"
#: The backend when neither ``--backend`` nor the spec's ``workflow.backend`` names one.
DEFAULT_BACKEND = "local"


class BackendRegistry(MutableMapping[str, str]):
    """name -> ``"module:attr"``: the entry-point group, plus what this process registered.

    Registering in-process (``BACKENDS["mine"] = "pkg.mod:Mine"``) serves tests and
    benchmarks; it wins over an installed backend of the same name.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self._added: dict[str, str] = {}
        self._found: tuple[tuple[str, ...], dict[str, EntryPoint]] | None = None

    def entry_points(self) -> dict[str, EntryPoint]:
        """Every backend by name, read from installed distributions once per ``sys.path``."""
        key = tuple(sys.path)
        if self._found is None or self._found[0] != key:
            found: dict[str, EntryPoint] = {}
            for ep in _group(self.group):
                found.setdefault(ep.name, ep)  # the first on sys.path wins, as for imports
            self._found = (key, found)
        found = dict(self._found[1])
        for name, value in self._added.items():
            found[name] = EntryPoint(name, value, self.group)
        return found

    def __getitem__(self, name: str) -> str:
        return self.entry_points()[name].value

    def __setitem__(self, name: str, value: str) -> None:
        self._added[name] = value

    def __delitem__(self, name: str) -> None:
        if name not in self._added:
            raise KeyError(f"{name!r} is installed, not registered in this process")
        del self._added[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.entry_points()))

    def __len__(self) -> int:
        return len(self.entry_points())


def _group(group: str) -> list[EntryPoint]:
    if sys.version_info >= (3, 10):
        return list(entry_points(group=group))
    return list(entry_points().get(group, ()))  # pragma: no cover - Python 3.9


#: The one backend registry of the process.
BACKENDS = BackendRegistry(GROUP)


def backend_class(name: str) -> Any:
    """The class (or factory) registered as ``name``, its module imported now.

    Raises :class:`BackendError` for an unknown name, a missing dependency (saying what
    to install) and a class that does not declare what the engine and CLI read.
    """
    points = BACKENDS.entry_points()
    ep = points.get(name)
    if ep is None:
        raise BackendError(
            f"unknown backend {name!r}; available: {', '.join(sorted(points)) or 'none'}"
        )
    try:
        cls = ep.load()
    except ImportError as exc:
        raise _missing(name, ep, exc) from exc
    except AttributeError as exc:
        raise BackendError(f"backend {name!r}: cannot load {ep.value!r}: {exc}") from exc
    settings = getattr(cls, "settings", None)  # checked here, so that nothing else guesses
    if not isinstance(settings, tuple) or not all(
        isinstance(s, BackendSetting) for s in settings
    ):
        raise BackendError(
            f"backend {name!r} ({ep.value}) must declare settings, a tuple of BackendSetting "
            f"(empty if it takes no options), not {settings!r}; see docs/backends/README.md"
        )
    return cls


def _missing(name: str, ep: EntryPoint, exc: ImportError) -> BackendError:
    """What to install for a backend whose dependency is missing."""
    module = ep.value.partition(":")[0]
    if module.startswith("gristmill."):
        hint = f"install it with pip install 'gristmill[{name}]'"
    else:
        dist = ep.dist if sys.version_info >= (3, 10) else None  # who declared it
        provider = f"distribution {dist.name!r}" if dist is not None else f"module {module!r}"
        hint = f"install what the {provider} that provides it needs"
    return BackendError(f"backend {name!r} needs an optional dependency: {exc}; {hint}")


def backend_settings(name: str) -> tuple[BackendSetting, ...]:
    """The settings backend ``name`` declares (its module is imported)."""
    settings: tuple[BackendSetting, ...] = backend_class(name).settings
    return settings


def make_backend(name: str, **options: Any) -> Backend:
    """Build the backend called ``name`` with its options (from the spec or the CLI)."""
    cls = backend_class(name)
    try:
        backend: Backend = cls(**options)
    except TypeError as exc:
        raise BackendError(f"backend {name!r}: bad option: {exc}") from None
    except ImportError as exc:  # a backend imports its heavy dependencies when built
        raise _missing(name, BACKENDS.entry_points()[name], exc) from exc
    _check(name, backend)
    return backend


#: What :func:`make_backend` checks a new backend for (the protocol's members).
_MEMBERS = ("name", "capabilities", "submit", "poll", "cancel", "attach", "wait", "close")


def _check(name: str, backend: Any) -> None:
    """Refuse a backend that does not offer what the engine reads, saying what is missing."""
    missing = [m for m in _MEMBERS if not hasattr(backend, m)]
    problem = ""
    if missing:
        problem = f"it lacks {', '.join(missing)}"
    elif not isinstance(backend.capabilities, Capabilities):
        problem = f"its capabilities are {backend.capabilities!r}, not a Capabilities"
    elif backend.name != name:
        problem = (f"it calls itself {backend.name!r}; its name must be the one it is "
                   "registered under, or a resume would not find it")
    if problem:
        if hasattr(backend, "close"):
            backend.close()
        raise BackendError(f"backend {name!r} ({BACKENDS[name]}): {problem}; "
                           "see docs/backends/README.md")
