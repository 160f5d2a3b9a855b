"""Console scripts generated from the code, found again at dispatch, and checked for drift.

A task's console script is never hand-written: ``gristmill entry-points PKG``
derives the ``[project.scripts]`` table from the registry, with names prefixed
by the package (``seiir-like-fit``) because ``PATH`` is shared by every
installed package. At dispatch the engine looks up the installed script whose
*target* is the task (whatever its name, so installs made under older names keep
working), checks that the file really runs that target (another package's
script of the same name may have overwritten it), and runs it by absolute
path; otherwise it falls back to ``python -m gristmill.dsl.exec module:task``
and says why, once.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
import sys
from collections import defaultdict
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from loguru import logger

from gristmill.dsl import installed
from gristmill.dsl.naming import claim_scripts
from gristmill.dsl.registry import registry
from gristmill.dsl.task import Task
from gristmill.errors import GristmillError
from gristmill.worker.atomic import write_atomic

_FALLBACK_WARNED: set[str] = set()
_SECTION = "[project.scripts]"
_INLINE_SCRIPTS = re.compile(r"^\s*scripts\s*=\s*\{", re.MULTILINE)
#: A pyproject.toml whose build runs gristmill's hatchling hook (gristmill.build.hooks).
_BUILD_HOOK = re.compile(r"^\s*\[\s*tool\.hatch\.metadata\.hooks\.gristmill\s*[\].]", re.MULTILINE)
_ENTRY_LINE = re.compile(r'^\s*("?)([A-Za-z0-9_.\-]+)\1\s*=\s*["\']([^"\']+)["\']\s*(#.*)?$')


@functools.lru_cache(maxsize=1)
def installed_scripts() -> dict[str, list[metadata.EntryPoint]]:
    """Installed console scripts by target (``module:attr``)."""
    by_target: dict[str, list[metadata.EntryPoint]] = defaultdict(list)
    for ep in installed.console_scripts():
        by_target[installed.target(ep)].append(ep)
    return dict(by_target)


def refresh() -> None:
    """Forget cached lookups (after an install in the same process)."""
    installed_scripts.cache_clear()
    script_prefix.cache_clear()


@functools.cache
def script_prefix(task: Task) -> tuple[str, ...]:
    """The argv prefix that runs ``task``: its installed script, or the exec fallback.

    A script counts only if the file runs the task's entry point: a name is no proof.
    """
    if task.module == "__main__":
        raise GristmillError(
            f"task {task.name!r} is defined in the script being run (__main__); its jobs run "
            "in new processes, which cannot import that script. Move the task into a module "
            "of your package (e.g. mypkg/tasks.py) and import it from there"
        )
    taken: tuple[metadata.EntryPoint, Path] | None = None
    for ep in installed_scripts().get(task.entry_point, ()):
        path = installed.script_path(ep)
        if path is not None and installed.script_runs(ep, path):
            return (str(path),)
        if path is not None and taken is None:
            taken = (ep, path)
    fallback = (sys.executable, "-m", "gristmill.dsl.exec", task.key)
    if task.key not in _FALLBACK_WARNED:
        _FALLBACK_WARNED.add(task.key)
        run_instead = f"running it with {shlex.join(fallback)!r} instead"
        if taken is None:
            package = task.module.split(".")[0]
            project = _hook_project(package)
            logger.warning(
                "task {}: no installed console script targets {}; {} (add it with: {})",
                task.name, task.entry_point, run_instead,
                f"gristmill entry-points {package} --write pyproject.toml && pip install -e ."
                if project is None else f"pip install -e {project}, whose build writes it",
            )
        else:
            logger.warning(_taken_message(task, *taken, run_instead))
    return fallback


def _taken_message(task: Task, ep: metadata.EntryPoint, path: Path, run_instead: str) -> str:
    """Why the task's own script cannot be used: another package's script sits in its place."""
    package = task.module.split(".")[0]
    ours = installed.dist_name(ep) or "an unknown distribution"
    found = installed.script_target(path)
    if found is None:
        other = "something gristmill cannot read as a console script"
        owners = [d for d in installed.declarers(ep.name) if d != ours]
    else:
        other = f"the entry point {found}"
        owners = installed.declarers(path.name, found) or installed.declarers(ep.name, found)
    if owners:
        other += f" of distribution {', '.join(owners)} (each declares a script named " \
                 f"{ep.name!r}, and the one installed last wrote the file)"
    return (
        f"task {task.name} ({task.key}): the console script {path}, which distribution {ours} "
        f"installed for {task.entry_point}, now runs {other}; {run_instead}. Give the scripts "
        f"distinct names (@gm.task(script=...), or the default names, which carry the "
        f"package: gristmill entry-points {package} --write pyproject.toml) and reinstall; "
        f"'gristmill check {package}' lists such clashes"
    )


def render_argv(task: Task, args: Mapping[str, Any], *, verbose: int = 1) -> list[str]:
    """The full command of one node as an argv list; no shell ever reads it."""
    if task.program is not None:
        return [*task.program, *task.signature.render(args)]
    flags = ["-" + "v" * verbose] if verbose else []
    return [*script_prefix(task), *flags, *task.signature.render(args)]


def _check_bound(task: Task) -> None:
    """The console-script target must resolve to the task itself, not to what it wraps."""
    target: Any = sys.modules.get(task.module)
    for part in task.qualname.split("."):
        target = getattr(target, part, None)
    if target is not task:
        raise GristmillError(
            f"task {task.key}: {task.entry_point} would not run the task, because "
            f"{task.qualname!r} in {task.module} is {type(target).__name__}, not the Task; "
            f"apply @gm.task directly above the function or click command, or bind the task "
            f"to that name ({task.qualname} = gm.task(...)({task.qualname}))"
        )


def scripts_table(package: str) -> dict[str, str]:
    """``{script name: target}`` for every task of a package."""
    claims = []
    for task in registry().tasks_in(package):
        if task.program is not None:
            continue  # runs an external program, not a console script
        _check_bound(task)
        claims.append((task.key, task.script, task.entry_point))
    return claim_scripts(claims)


def render_table(table: Mapping[str, str]) -> str:
    """The ``[project.scripts]`` TOML section for a table."""
    lines = [_SECTION]
    lines += [f'{_toml_key(name)} = "{target}"' for name, target in table.items()]
    return "\n".join(lines) + "\n"


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


def _is_task_target(target: str, package: str) -> bool:
    """Whether ``target`` is (or was) a task's script target in ``package``.

    ``pkg.mod:name.main`` counts unless ``pkg.mod:name`` exists and is not a task
    (a click group of the package's own CLI), so stale task scripts are found
    without touching the package's other scripts.
    """
    module, _, attr = target.partition(":")
    if not (module == package or module.startswith(package + ".")):
        return False
    if not attr.endswith(".main"):
        return False
    obj: Any = sys.modules.get(module)
    if obj is None:
        return True  # a module that no longer exists (tasks_in imported every module)
    for part in attr[: -len(".main")].split("."):
        obj = getattr(obj, part, None)
    return obj is None or isinstance(obj, Task)


def update_pyproject(path: Path, package: str) -> tuple[list[str], list[str]]:
    """Rewrite the ``[project.scripts]`` section of ``path`` in place.

    Scripts that are not task targets of ``package`` (the package's own CLI) are
    kept; stale task scripts are removed. Returns (added, removed) script names.
    """
    table = scripts_table(package)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GristmillError(f"cannot read {path}: {exc.strerror}") from None
    if _BUILD_HOOK.search(text):
        raise GristmillError(
            f"{path} builds with gristmill's build hook ([tool.hatch.metadata.hooks.gristmill]), "
            f"which writes the task scripts at every install; reinstall the package "
            f"(pip install -e {path.parent}) instead of writing them into the file"
        )
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == _SECTION), None)
    if start is None and _INLINE_SCRIPTS.search(text):
        raise GristmillError(
            f"{path}: [project] declares scripts inline (scripts = {{...}}); move them to a "
            f"{_SECTION} table so that gristmill can keep the task scripts in it up to date"
        )
    existing: dict[str, str] = {}
    end = start
    if start is not None:
        end = start + 1
        while end < len(lines) and not lines[end].lstrip().startswith("["):
            match = _ENTRY_LINE.match(lines[end])
            if match:
                existing[match.group(2)] = match.group(3)
            elif lines[end].strip() and not lines[end].lstrip().startswith("#"):
                raise GristmillError(
                    f"{path}:{end + 1}: cannot read this [project.scripts] line: "
                    f"{lines[end].strip()!r}; write entries as name = \"module:attr\""
                )
            end += 1
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
    kept = {n: t for n, t in existing.items() if not _is_task_target(t, package)}
    merged = dict(sorted({**kept, **table}.items()))
    removed = sorted(n for n in existing if n not in merged)
    added = sorted(n for n in table if existing.get(n) != table[n])
    section = render_table(merged).rstrip("\n").splitlines()
    if start is None:
        new_lines = [*lines, *([""] if lines and lines[-1].strip() else []), *section]
    else:
        assert end is not None
        new_lines = lines[:start] + section + lines[end:]
    new_text = "\n".join(new_lines) + "\n"
    if new_text != text:
        write_atomic(path, new_text)
    return added, removed


def check_installed(package: str) -> list[str]:
    """Problems between the code's tasks and the installed console scripts (empty: in sync).

    Besides drift (a script missing, stale, renamed or retargeted), another
    distribution declaring one of the package's script names is a problem: both
    write ``bin/NAME``, and whichever is installed last silently wins.
    """
    table = scripts_table(package)
    dists = installed.distributions_of(package)
    if not dists:
        return [
            f"package {package!r} is not installed as a distribution; install it with "
            "'pip install -e .'"
        ]
    ours: dict[str, metadata.EntryPoint] = {}
    for dist in dists:
        for ep in metadata.distribution(dist).entry_points:
            if ep.group == "console_scripts":
                ours[ep.name] = ep
    installed_targets = {name: installed.target(ep) for name, ep in ours.items()}
    problems = _drift(package, table, installed_targets)
    problems += _clashes(package, table, ours, {installed.normalize(d) for d in dists})
    if problems:
        project = _hook_project(package)
        problems.append(
            f"fix: gristmill entry-points {package} --write pyproject.toml && pip install -e ."
            if project is None else
            f"fix: pip install -e {project} (its build hook writes the task scripts)"
        )
    return problems


def installed_targets(package: str) -> set[str]:
    """The targets of the console scripts that ``package``'s distributions installed."""
    return {
        installed.target(ep)
        for dist in installed.distributions_of(package)
        for ep in metadata.distribution(dist).entry_points if ep.group == "console_scripts"
    }


def _hook_project(package: str) -> Path | None:
    """The project directory of an installed source tree built by gristmill's build hook.

    Found by walking up from the package's files to the first ``pyproject.toml``
    (an editable install points into the source tree); None for anything else.
    """
    spec = importlib.util.find_spec(package.split(".")[0])
    locations = list(spec.submodule_search_locations or ()) if spec else []
    for location in locations[:1]:
        for parent in list(Path(location).parents)[:3]:
            pyproject = parent / "pyproject.toml"
            if pyproject.is_file():
                try:
                    text = pyproject.read_text(encoding="utf-8")
                except OSError:
                    return None
                return parent if _BUILD_HOOK.search(text) else None
    return None


def _drift(package: str, table: Mapping[str, str], installed_targets: Mapping[str, str]
           ) -> list[str]:
    """Where the installed metadata and the code's table disagree."""
    problems: list[str] = []
    names_of: dict[str, list[str]] = defaultdict(list)
    for name, target in installed_targets.items():
        names_of[target].append(name)
    for name, target in table.items():
        if name in names_of[target]:
            continue
        if names_of[target]:
            problems.append(
                f"task script {name!r} -> {target} is installed under another name: "
                f"{', '.join(sorted(names_of[target]))}"
            )
        elif name in installed_targets:
            problems.append(
                f"task script {name!r} is installed with target {installed_targets[name]}, "
                f"but the code says {target}"
            )
        else:
            problems.append(f"task script {name!r} -> {target} is not installed")
    valid_targets = set(table.values())
    for name, target in sorted(installed_targets.items()):
        if _is_task_target(target, package) and target not in valid_targets:
            problems.append(
                f"installed script {name!r} -> {target} names no task in the code (stale)"
            )
    return problems


def _clashes(package: str, table: Mapping[str, str], ours: Mapping[str, metadata.EntryPoint],
             our_dists: set[str]) -> list[str]:
    """Task script names that another distribution also declares, and task scripts whose
    file now runs something else."""
    problems: list[str] = []
    names = set(table) | {n for n, ep in ours.items() if installed.target(ep) in
                          set(table.values())}
    for ep in installed.console_scripts():
        other = installed.dist_name(ep)
        if ep.name in names and other is not None and installed.normalize(other) not in our_dists:
            mine = table.get(ep.name) or installed.target(ours[ep.name])
            problems.append(
                f"script {ep.name!r} ({mine}) is also declared by distribution {other} "
                f"(-> {installed.target(ep)}); both install bin/{ep.name} and the one installed "
                f"last wins; give the task another script name (the default, which carries "
                f"the package, or @gm.task(script=...)) or uninstall {other}"
            )
    for name in sorted(n for n in table if n in ours and installed.target(ours[n]) == table[n]):
        path = installed.script_path(ours[name])
        if path is None:
            problems.append(f"installed script {name!r} is missing from disk (not on PATH)")
        elif not installed.script_runs(ours[name], path):
            found = installed.script_target(path) or "something gristmill cannot read"
            problems.append(
                f"{path} runs {found}, not {installed.target(ours[name])}: another package's "
                f"script {name!r} was installed over it"
            )
    return problems
