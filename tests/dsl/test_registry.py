"""Tests for gristmill.dsl.registry: tasks by module:qualname, found by importing packages."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import gm_tasks
import pytest

from gristmill.dsl.registry import Registry, import_package, registry
from gristmill.errors import GristmillError

TASK = """\
import click
import gristmill as gm


@gm.task
@click.option("--n", type=int, default=0)
def {name}(n: int) -> None:
    \"\"\"A task of the temporary package.\"\"\"
"""


@pytest.fixture
def tmp_package(tmp_path: Path) -> Iterator[Path]:
    """An importable package ``gm_reg_pkg`` with a task module and a subpackage."""
    root = tmp_path / "gm_reg_pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "tasks.py").write_text(TASK.format(name="alpha"))
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "more.py").write_text(TASK.format(name="beta"))
    sys.path.insert(0, str(tmp_path))
    yield root
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == "gm_reg_pkg" or m.startswith("gm_reg_pkg.")]:
        del sys.modules[name]


def test_the_registry_is_one_process_wide_object() -> None:
    assert registry() is registry()
    assert registry().get("gm_tasks:fit") is gm_tasks.fit
    assert len(registry()) >= 5


def test_tasks_in_imports_every_submodule(tmp_package: Path) -> None:
    tasks = registry().tasks_in("gm_reg_pkg")
    assert [t.key for t in tasks] == ["gm_reg_pkg.sub.more:beta", "gm_reg_pkg.tasks:alpha"]
    assert registry().tasks_in("gm_reg_pkg.sub") == tasks[:1]


def test_tasks_in_does_not_run_the_packages_main_modules(tmp_package: Path) -> None:
    """``python -m pkg`` code (``pkg/__main__.py``, ``pkg/sub/__main__.py``) is a program."""
    for where in (tmp_package, tmp_package / "sub"):
        (where / "__main__.py").write_text("raise SystemExit('the program ran')\n")
    tasks = registry().tasks_in("gm_reg_pkg")
    assert [t.key for t in tasks] == ["gm_reg_pkg.sub.more:beta", "gm_reg_pkg.tasks:alpha"]
    assert not [m for m in sys.modules if m.endswith("__main__") and "gm_reg_pkg" in m]


def test_get_imports_the_module_of_a_key(tmp_package: Path) -> None:
    assert "gm_reg_pkg.tasks" not in sys.modules
    assert registry().get("gm_reg_pkg.tasks:alpha").name == "alpha"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("no_colon", "'no_colon' is not a task key; use 'package.module:function'"),
        ("gm_tasks:nope", "'gm_tasks:nope' is not a registered task; decorate the function"),
        ("gm_no_such_mod:fit", "cannot import 'gm_no_such_mod' for task 'gm_no_such_mod:fit'"),
    ],
)
def test_get_errors(key: str, message: str) -> None:
    with pytest.raises(GristmillError, match=message):
        registry().get(key)


def test_a_module_that_fails_to_import_is_named(tmp_package: Path) -> None:
    (tmp_package / "broken.py").write_text("raise RuntimeError('no database here')\n")
    with pytest.raises(GristmillError) as info:
        import_package("gm_reg_pkg")
    message = str(info.value)
    assert "cannot import 'gm_reg_pkg.broken' while looking for tasks" in message
    assert "RuntimeError: no database here" in message


def test_a_missing_package_is_a_user_error() -> None:
    with pytest.raises(GristmillError, match=r"cannot import package 'gm_nope_pkg'.*pip install"):
        import_package("gm_nope_pkg")


def test_registering_a_key_again_keeps_the_newest() -> None:
    fresh = Registry()
    fresh.register(gm_tasks.fit)
    other = gm_tasks.fit.options()
    fresh.register(other)
    assert fresh.get("gm_tasks:fit") is other
    assert len(fresh) == 1
    assert "gm_tasks:fit" in fresh
