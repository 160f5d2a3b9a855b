"""``Metadata``, ``RunMetadata``, ``monitor_application`` and ``handle_exceptions``.

``Metadata`` is covid_shared's set-once dict. ``RunMetadata`` adds the start time and,
through :class:`gristmill.runs.metadata.RunMetadata`, the provenance gristmill records for its
own runs (package and version, ``__jobmon_tool_version__``, git commit, user, host,
argv); ``finish_application`` writes both. ``metadata.yaml`` is written as covid_shared
wrote it (keys sorted, the same keys), except that values YAML cannot read back safely
(exception classes and objects) are written as text.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import os
import pdb
import time
import traceback
import types
from bdb import BdbQuit
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import yaml
from loguru import logger

from gristmill import runs
from gristmill.errors import GristmillError

METADATA_FILE_NAME = "metadata.yaml"
#: Not a key: the exception ``monitor_application`` caught (``finish_application`` reads it).
_RAISED = "_raised"

R = TypeVar("R")


class YamlIOMixin:
    """Read and write plain data as YAML (covid_shared's mixin; safe loading and dumping).

    covid_shared used ``yaml.load``/``yaml.dump``, which read and wrote Python objects;
    here only plain data is read, and what YAML cannot write plainly is written as text.
    """

    @staticmethod
    def _load(in_file: IO[str]) -> Any:
        return yaml.safe_load(in_file)

    @staticmethod
    def _write(data: Mapping[str, Any], out_file: IO[str]) -> None:
        yaml.safe_dump(_yaml_safe(data), out_file, default_flow_style=False)


class Metadata(Mapping[str, Any]):
    """A dict whose keys can each be set once (a second set is a ``KeyError``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._metadata: dict[str, Any] = {}

    def update(self, metadata_update: Mapping[str, Any]) -> None:
        for key, value in metadata_update.items():
            self[key] = value

    def update_from_file(self, metadata_key: str, metadata_file: IO[str]) -> None:
        """Plain ``Metadata`` cannot read files (``RunMetadata`` can)."""
        logger.warning("Metadata cannot be read from a file; use RunMetadata. Nothing was added.")

    def to_dict(self) -> dict[str, Any]:
        return self._metadata.copy()

    def __getitem__(self, metadata_key: str) -> Any:
        return self._metadata[metadata_key]

    def __setitem__(self, metadata_key: str, value: Any) -> None:
        if metadata_key in self._metadata:
            raise KeyError(
                f"metadata key {metadata_key!r} has already been set; each key is set once "
                "(use a new key, or a fresh Metadata per run)"
            )
        self._metadata[metadata_key] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self._metadata)

    def __len__(self) -> int:
        return len(self._metadata)

    def dump(self, metadata_file: Any) -> None:
        """Plain ``Metadata`` is not written to disk (``RunMetadata`` is)."""
        logger.warning("Metadata is not written to files; use RunMetadata. Nothing was written.")

    def __repr__(self) -> str:
        return type(self).__name__


def _yaml_safe(value: Any) -> Any:
    """Plain data for YAML: exception classes and values become text, tuples lists."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_yaml_safe(v) for v in value]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, BaseException):
        return repr(value)
    return str(value)


def _collect(package: str | types.ModuleType | None) -> runs.RunMetadata:
    try:
        return runs.RunMetadata.collect(package=package)
    except GristmillError as exc:
        logger.debug("provenance of {!r} not collected: {}", package, exc)
        return runs.RunMetadata.collect(package=None)


def raised_by(app_metadata: Metadata) -> BaseException | None:
    """The exception ``monitor_application`` recorded in ``app_metadata`` (not one of its keys)."""
    return cast("BaseException | None", getattr(app_metadata, _RAISED, None))


class RunMetadata(Metadata, YamlIOMixin):
    """Metadata of one application run: start time, arguments, run time and provenance.

    ``package`` names the application's package for the provenance; by default it is
    the module that creates this object.
    """

    def __init__(
        self, *args: Any, package: str | types.ModuleType | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._start = time.monotonic()
        self.provenance = _collect(package)
        self["start_time"] = datetime.datetime.now().strftime("%Y_%m_%d_%H_%M_%S")

    def update_from_path(self, metadata_key: str, metadata_path: str | os.PathLike[str]) -> None:
        """Store another run's ``metadata.yaml`` under ``metadata_key``."""
        path = Path(metadata_path)
        if path.name != METADATA_FILE_NAME:
            raise ValueError(
                f"can only read {METADATA_FILE_NAME} files, got {path}; pass the metadata file of "
                "a run directory"
            )
        with path.open(encoding="utf-8") as metadata_file:
            self.update_from_file(metadata_key, metadata_file)

    def update_from_file(self, metadata_key: str, metadata_file: IO[str]) -> None:
        self._metadata[metadata_key] = yaml.safe_load(metadata_file)

    def to_yaml(self) -> str:
        """The YAML ``dump`` writes: the keys set so far plus ``provenance``, sorted as
        covid_shared's ``yaml.dump`` sorted them."""
        data = {**_yaml_safe(self._metadata), "provenance": self.provenance.to_dict()}
        return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)

    def dump(self, metadata_file_path: str | os.PathLike[str]) -> None:
        """Write the metadata (with ``run_time``) as YAML; a missing directory is logged."""
        self._metadata["run_time"] = f"{time.monotonic() - self._start:.2f} seconds"
        text = self.to_yaml()
        path = Path(metadata_file_path)
        try:
            path.write_text(text, encoding="utf-8")
        except FileNotFoundError:
            logger.warning("{} does not exist; the run metadata was not written:\n{}",
                           path.parent, text)


def get_function_full_argument_mapping(
    func: Callable[..., Any], *args: Any, **kwargs: Any
) -> dict[str, str]:
    """``{parameter name: str(value)}`` of one call of ``func``."""
    try:
        signature = inspect.signature(func)
        bound = dict(signature.bind_partial(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        bound = {**{f"arg{i}": v for i, v in enumerate(args)}, **kwargs}
    else:
        for name, param in signature.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD and name in bound:
                bound.update(bound.pop(name))  # **kwargs: each keyword under its own name
    return {name: str(value) for name, value in bound.items()}


def _log_exception(logger_: Any, exc: BaseException) -> None:
    """Log ``exc`` with its traceback, attributed to the application's frame.

    With loguru the record is made two frames up (the caller of the wrapper), so it is
    filtered as the application's record, not as gristmill's (which is off by default).
    """
    message = f"Uncaught exception {exc!r}"
    opt = getattr(logger_, "opt", None)
    if opt is not None:
        opt(depth=2, exception=exc).error(message)
    else:
        logger_.exception(message)


def monitor_application(
    func: Callable[..., R],
    logger_: Any,
    with_debugger: bool,
    app_metadata: Metadata | None = None,
) -> Callable[..., tuple[Metadata, R | None]]:
    """Wrap an application main: it gets a ``Metadata`` first, and errors are recorded.

    The wrapped function returns ``(app_metadata, result)``; ``app_metadata`` says
    ``success`` and, on failure, ``error_info``. Ctrl-C is recorded as a user
    interrupt; with ``with_debugger`` an exception opens a post-mortem debugger.
    """

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> tuple[Metadata, R | None]:
        metadata = Metadata() if app_metadata is None else app_metadata
        metadata["main_function"] = f"{func.__module__}:{func.__qualname__}"
        metadata["run_arguments"] = get_function_full_argument_mapping(
            func, metadata, *args, **kwargs
        )
        result = None
        try:
            result = func(metadata, *args, **kwargs)
            metadata["success"] = True
        except (BdbQuit, KeyboardInterrupt) as exc:
            setattr(metadata, _RAISED, exc)
            metadata["success"] = False
            metadata["error_info"] = "User interrupt."
        except Exception as exc:
            setattr(metadata, _RAISED, exc)
            metadata["success"] = False
            _log_exception(logger_, exc)
            metadata["error_info"] = {
                "exception_type": type(exc),
                "exception_value": exc,
                "exc_traceback": traceback.format_tb(exc.__traceback__),
            }
            if with_debugger:
                pdb.post_mortem(exc.__traceback__)
        return metadata, result

    return wrapped


def handle_exceptions(
    func: Callable[..., R], logger_: Any, with_debugger: bool
) -> Callable[..., R]:
    """Wrap a task main: an exception is logged with its traceback, then re-raised.

    With ``with_debugger`` a post-mortem debugger opens first. Re-raising makes the
    process exit non-zero, which is how the engine learns the task failed.
    """

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> R:
        try:
            return func(*args, **kwargs)
        except (BdbQuit, KeyboardInterrupt):
            raise
        except Exception as exc:
            _log_exception(logger_, exc)
            if with_debugger:
                pdb.post_mortem(exc.__traceback__)
            raise

    return wrapped


def update_with_previous_metadata(
    run_metadata: RunMetadata, input_root: str | os.PathLike[str]
) -> RunMetadata:
    """Store ``input_root/metadata.yaml`` under a key made from the input's resolved path."""
    root = Path(input_root)
    key = str(root.resolve()).replace(" ", "_").replace("-", "_").lower() + "_metadata"
    run_metadata.update_from_path(key, root / METADATA_FILE_NAME)
    return run_metadata
