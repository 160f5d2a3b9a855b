"""Backends by name; the engine only ever sees the :class:`Backend` protocol."""

from __future__ import annotations

import importlib
from typing import Any

from gristmill.backends.base import Backend
from gristmill.errors import BackendError

#: name -> "module:class"; heavy backends import only when chosen.
BACKENDS: dict[str, str] = {
    "local": "gristmill.backends.local.backend:LocalBackend",
    "slurm": "gristmill.backends.slurm.backend:SlurmBackend",
    "sge": "gristmill.backends.sge.backend:SgeBackend",
    "dask": "gristmill.backends.dask.backend:DaskBackend",
    "jobmon": "gristmill.backends.jobmon.backend:JobmonBackend",
}


def make_backend(name: str, **options: Any) -> Backend:
    """Build the backend called ``name`` with its options (from the spec or the CLI)."""
    target = BACKENDS.get(name)
    if target is None:
        raise BackendError(
            f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} needs an optional dependency: {exc}; "
            f"install it with pip install 'gristmill[{name}]'"
        ) from exc
    cls = getattr(module, class_name)
    try:
        backend: Backend = cls(**options)
    except TypeError as exc:
        raise BackendError(f"backend {name!r}: bad option: {exc}") from None
    return backend
