"""A run's provenance: what ran, from which code, where, by whom, and how it ended.

:class:`RunMetadata` is filled over a run and written to ``run_metadata.yaml`` in its
run directory. It names the user's package and its version, the git commit of the
code that defined the workflow (and whether the tree was dirty), the host, user,
Python, argv and the final state counts. A resume keeps all of that (the command that
started the run is never overwritten) and appends one ``history`` entry: when, which
command, who, where, and the code's commit at that time.
"""

from __future__ import annotations

import csv
import datetime
import getpass
import importlib
import importlib.machinery
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, Union

import attrs
import yaml
from loguru import logger

from gristmill.errors import GristmillError, RunDirError
from gristmill.worker.atomic import write_atomic

PathLike = Union[str, "os.PathLike[str]"]
RunStatus = Literal["running", "succeeded", "failed", "cancelled"]

METADATA_FILE = "run_metadata.yaml"
RUN_STATUSES: tuple[str, ...] = ("running", "succeeded", "failed", "cancelled")
#: What a ``history`` entry records about each resume.
HISTORY_KEYS: tuple[str, ...] = (
    "started_at", "argv", "user", "host", "cwd", "tool_version", "package_version",
    "git_commit", "git_dirty",
)

_GIT_TIMEOUT = 5.0
#: Call-stack modules skipped when guessing the calling package.
_NOT_CALLERS = frozenset({"gristmill", "click", "runpy", "importlib"})


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@attrs.define
class RunMetadata:
    """What ran, where, by whom and how it ended; written to ``run_metadata.yaml``.

    ``tool_name``/``tool_version`` name the program that wrote it (gristmill);
    ``package``/``package_version`` the user's package that defined the workflow.
    Mutable because it is filled over a run.
    """

    tool_name: str = "gristmill"
    tool_version: str | None = None
    package: str | None = None
    package_version: str | None = None
    jobmon_tool_version: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    user: str | None = None
    host: str | None = None
    python_version: str = attrs.field(factory=platform.python_version)
    argv: list[str] = attrs.Factory(list)
    cwd: str | None = None
    started_at: str = attrs.field(factory=_utc_now)
    ended_at: str | None = None
    status: str = "running"
    counts: dict[str, int] = attrs.Factory(dict)
    #: One entry per resume, oldest first (see :meth:`record_resume`).
    history: list[dict[str, object]] = attrs.Factory(list)
    extra: dict[str, object] = attrs.Factory(dict)

    @classmethod
    def collect(
        cls,
        package: str | types.ModuleType | None = None,
        argv: Sequence[str] | None = None,
    ) -> RunMetadata:
        """Gather metadata about this process and ``package`` at the start of a run.

        ``package`` is an importable name or a module (its top-level package is
        used); None means the first module on the call stack outside gristmill
        and click. ``argv`` defaults to ``sys.argv``.
        """
        name, top = _top_level_package(package)
        source = _source_path(top)
        commit, dirty = git_info(source) if source is not None else (None, None)
        return cls(
            tool_version=_dist_version("gristmill"),
            package=name,
            package_version=None if top is None or name is None else _package_version(name, top),
            jobmon_tool_version=_str_attr(top, "__jobmon_tool_version__"),
            git_commit=commit,
            git_dirty=dirty,
            user=_user(),
            host=socket.gethostname(),
            argv=list(sys.argv if argv is None else argv),
            cwd=os.getcwd(),
        )

    def finish(self, status: RunStatus, counts: Mapping[str, int] | None = None) -> None:
        """Record the end of the run: its status, end time and final state counts."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        self.status = status
        self.ended_at = _utc_now()
        if counts is not None:
            self.counts = dict(counts)

    def record_resume(self, now: RunMetadata) -> None:
        """Record a resume of this run by the process ``now`` describes.

        The run keeps what it started with (command line, start time, user, host,
        code); the resume adds one ``history`` entry saying when, with which command,
        by whom, where and from which commit. The run is running again until
        :meth:`finish`; ``now.extra`` (the backend used this time) updates ``extra``.
        """
        self.history.append({key: getattr(now, key) for key in HISTORY_KEYS})
        self.status = "running"
        self.ended_at = None
        self.extra.update(now.extra)

    @property
    def elapsed_seconds(self) -> float | None:
        """Seconds from start to end; None while running."""
        if self.ended_at is None:
            return None
        end = datetime.datetime.fromisoformat(self.ended_at)
        return (end - datetime.datetime.fromisoformat(self.started_at)).total_seconds()

    def to_dict(self) -> dict[str, object]:
        """Plain data (copies), in field order, as written to YAML."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RunMetadata:
        """Build from :meth:`to_dict` output; wrong types or unknown keys raise ``RunDirError``."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunDirError(
                f"run metadata has unknown keys {unknown}; it was written by another "
                f"program or a newer gristmill (known keys: {', '.join(sorted(known))})"
            )
        for key, value in data.items():
            if not _FIELD_CHECKS[key](value):
                raise RunDirError(f"run metadata field {key!r} has an invalid value {value!r}")
        return cls(**data)  # type: ignore[arg-type]  # each value checked above

    def dump(self, run_dir: PathLike) -> Path:
        """Write ``run_dir/run_metadata.yaml`` atomically (temporary file + rename)."""
        path = Path(run_dir) / METADATA_FILE
        try:
            text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
        except yaml.YAMLError as exc:
            raise RunDirError(
                f"run metadata for {run_dir} holds a value YAML cannot write ({exc}); "
                "keep `extra` to str, int, float, bool, None, lists and dicts"
            ) from exc
        try:
            write_atomic(path, text, make_dirs=False)
        except OSError as exc:
            raise RunDirError(
                f"cannot write {path}: {exc.strerror}; check that {run_dir} exists and is writable"
            ) from exc
        return path


def resumed_metadata(run_dir: PathLike, now: RunMetadata) -> RunMetadata:
    """The metadata of the run in ``run_dir``, with this resume (``now``) recorded.

    A run without readable metadata (made by a version that wrote none, or whose file
    was damaged) continues with ``now``: what was there cannot be kept.
    """
    if not (Path(run_dir) / METADATA_FILE).exists():
        logger.info("{} has no {}; it starts with this resume", run_dir, METADATA_FILE)
        return now
    try:
        metadata = load_run_metadata(run_dir)
    except RunDirError as exc:
        logger.warning("{}; writing new run metadata from this resume", exc)
        return now
    metadata.record_resume(now)
    return metadata


def load_run_metadata(run_dir: PathLike) -> RunMetadata:
    """Read ``run_dir/run_metadata.yaml``; missing or corrupt files raise ``RunDirError``."""
    path = Path(run_dir) / METADATA_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunDirError(
            f"no run metadata at {path}; is {run_dir} a gristmill run directory?"
        ) from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunDirError(f"cannot read {path}: {exc}; restore or remove the file") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path} does not hold a mapping; restore or remove the file")
    try:
        return RunMetadata.from_dict(data)
    except RunDirError as exc:
        raise RunDirError(f"{path}: {exc}") from exc


def _opt(kind: type) -> Callable[[object], bool]:
    return lambda v: v is None or isinstance(v, kind)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_argv(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_counts(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    )


def _is_extra(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _is_history(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(entry, dict) and set(entry) <= set(HISTORY_KEYS)
        and all(_FIELD_CHECKS[key](item) for key, item in entry.items())
        for entry in value
    )


_OPT_STR = _opt(str)
_FIELD_CHECKS: dict[str, Callable[[object], bool]] = {
    "tool_name": _is_str, "tool_version": _OPT_STR, "package": _OPT_STR,
    "package_version": _OPT_STR, "jobmon_tool_version": _OPT_STR, "git_commit": _OPT_STR,
    "git_dirty": _opt(bool), "user": _OPT_STR, "host": _OPT_STR, "python_version": _is_str,
    "argv": _is_argv, "cwd": _OPT_STR, "started_at": _is_str, "ended_at": _OPT_STR,
    "status": _is_str, "counts": _is_counts, "history": _is_history, "extra": _is_extra,
}  # fmt: skip


def git_info(path: Path) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git work tree holding ``path``; ``(None, None)`` when unknown.

    Unknown means: no git, not in a repository, no commit yet, git too slow, or
    ``path`` not tracked (a package installed in an ignored virtualenv inside
    some project must not report that project's commit). Dirty means tracked
    files differ from HEAD; untracked files do not count (as ``git describe --dirty``).
    """
    path = Path(path)
    cwd, pathspec = (path.parent, path.name) if path.is_file() else (path, ".")
    if not cwd.is_dir():
        return None, None
    head = _git(cwd, "rev-parse", "--verify", "HEAD")
    if not head or not _git(cwd, "ls-files", "--", pathspec):
        return None, None
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return head.strip(), None if status is None else bool(status.strip())


def _git(cwd: Path, *args: str) -> str | None:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=_GIT_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("git {} in {} failed: {}", " ".join(args), cwd, exc)
        return None
    if done.returncode != 0:
        logger.debug("git {} in {}: {}", " ".join(args), cwd, done.stderr.strip())
        return None
    return done.stdout


def _top_level_package(
    package: str | types.ModuleType | None,
) -> tuple[str | None, types.ModuleType | None]:
    """The top-level package's import name and module; ``__main__`` keeps its ``-m`` name."""
    if package is None:
        package = _caller_module()
        if package is None:
            return None, None
    try:
        module = importlib.import_module(package) if isinstance(package, str) else package
    except ImportError as exc:
        raise GristmillError(
            f"cannot import package {package!r} to record its version: {exc}; "
            "pass an importable package name or the module itself"
        ) from exc
    name = module.__name__
    if name == "__main__":  # a script, or a module run with -m (then its spec has the name)
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.name:
            return None, module
        name = str(spec.name)
    top = name.partition(".")[0]
    # Parents of an imported module are imported already; the main module is not under its name.
    return top, sys.modules.get(top, module if top == name else None)


def _caller_module() -> types.ModuleType | None:
    frame = sys._getframe(1)
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.partition(".")[0] not in _NOT_CALLERS:
            return sys.modules.get(name)
        frame = frame.f_back  # type: ignore[assignment]  # None ends the loop
    return None


def _source_path(module: types.ModuleType | None) -> Path | None:
    if module is None:
        return None
    paths = list(getattr(module, "__path__", []))  # packages, namespace packages included
    if paths:
        return Path(paths[0])
    file = getattr(module, "__file__", None)
    return None if file is None else Path(file)


def _str_attr(module: types.ModuleType | None, name: str) -> str | None:
    # vars(), not getattr(): a module __getattr__ may warn (click 8.2 deprecates __version__).
    value = None if module is None else vars(module).get(name)
    return None if value is None else str(value)


def _package_version(name: str, module: types.ModuleType) -> str | None:
    version = _str_attr(module, "__version__")
    if version is not None:
        return version
    found = _dist_version(name)
    if found is None:
        dist = _distribution_providing(name)
        found = None if dist is None else dist.version
    return found


def _distribution_providing(name: str) -> importlib.metadata.Distribution | None:
    """The installed distribution whose files include top-level package ``name``.

    What ``importlib.metadata.packages_distributions()`` answers, for one name: it reads
    each distribution's ``top_level.txt``, else the first path part of its ``RECORD``
    lines, and parses no metadata (that took 0.1-0.2 s a run with ~150 installed).
    """
    modules = {name + suffix for suffix in importlib.machinery.all_suffixes()}
    for dist in importlib.metadata.distributions():
        top = dist.read_text("top_level.txt")
        if top is not None:
            if name in top.split():
                return dist
            continue
        for line in (dist.read_text("RECORD") or "").splitlines():
            if not line.startswith((name, '"')):
                continue
            path = next(csv.reader([line]))[0] if line.startswith('"') else line.split(",")[0]
            if path.startswith(name + "/") or path in modules:
                return dist
    return None


def _dist_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no passwd entry, e.g. in some containers
        return None
