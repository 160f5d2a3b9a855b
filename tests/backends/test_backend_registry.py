"""Backends are found through the entry-point group ``gristmill.backends``.

gristmill's own are registered in its ``pyproject.toml``; a plugin is a
``*.dist-info`` on ``sys.path`` (:func:`gm_testing.plugin_site`), found exactly as
after ``pip install``, with nothing installed.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from gm_plugin_backend import MineBackend
from gm_testing import plugin_site

from gristmill.backends.registry import BACKENDS, GROUP, backend_settings, make_backend
from gristmill.errors import BackendError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
BUILT_IN = {"local", "slurm", "sge", "dask", "jobmon"}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plugin distribution on sys.path registering the backends of gm_plugin_backend."""
    folder = plugin_site(tmp_path / "site", {
        "mine": "gm_plugin_backend:MineBackend",
        "unsettled": "gm_plugin_backend:Unsettled",
        "impostor": "gm_plugin_backend:Impostor",
        "needy": "gm_no_such_module_xyz:Needy",
    })
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_the_built_in_backends_are_registered_in_the_group_as_in_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][GROUP]
    installed = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    assert set(declared) == BUILT_IN
    assert {n: installed.get(n) for n in declared} == declared, (
        "the installed metadata is stale: pip install -e . again")
    assert {n: BACKENDS[n] for n in BUILT_IN} == declared


def test_a_backend_module_is_imported_only_when_that_backend_is_chosen() -> None:
    code = ("import sys; from gristmill.backends.registry import BACKENDS, make_backend; "
            "assert {'local', 'dask'} <= set(BACKENDS); make_backend('local').close(); "
            "print(sorted(m for m in sys.modules if m.startswith('gristmill.backends.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = done.stdout.strip()
    assert "gristmill.backends.local.backend" in loaded
    for other in ("slurm", "sge", "batch", "dask", "jobmon"):
        assert f"gristmill.backends.{other}" not in loaded


def test_an_unknown_backend_is_refused_naming_the_available_ones() -> None:
    with pytest.raises(BackendError, match="unknown backend 'nope'; available: dask, jobmon"):
        make_backend("nope")


def test_a_plugin_on_sys_path_is_found_built_and_its_settings_read(
    site: Path, tmp_path: Path
) -> None:
    assert BACKENDS["mine"] == "gm_plugin_backend:MineBackend"
    assert [s.name for s in backend_settings("mine")] == ["mark"]
    mark = tmp_path / "mark"
    backend = make_backend("mine", mark=str(mark), max_cores=1)
    try:
        assert isinstance(backend, MineBackend)
        assert (backend.name, backend.capabilities.reattach) == ("mine", True)
        assert mark.read_text() == "built\n"
    finally:
        backend.close()


def test_a_plugin_off_sys_path_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = plugin_site(tmp_path / "site", {"mine": "gm_plugin_backend:MineBackend"})
    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(folder))
        assert "mine" in BACKENDS
    assert "mine" not in BACKENDS


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("unsettled", ["backend 'unsettled' (gm_plugin_backend:Unsettled) must declare "
                       "settings, a tuple of BackendSetting", "not None"]),
        ("impostor", ["backend 'impostor' (gm_plugin_backend:Impostor): it calls itself "
                      "'local'; its name must be the one it is registered under"]),
        ("needy", ["backend 'needy' needs an optional dependency: No module named "
                   "'gm_no_such_module_xyz'", "the distribution 'gm-site-plugin'"]),
    ],
)
def test_a_plugin_that_breaks_the_contract_is_refused_saying_how(
    site: Path, name: str, fragments: list[str]
) -> None:
    with pytest.raises(BackendError) as info:
        make_backend(name, max_cores=1)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_a_built_in_backend_missing_its_extra_says_what_to_install() -> None:
    """distributed is imported when the dask backend is built: hide it from a child."""
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from gristmill.backends.registry import make_backend\n"
            "try:\n    make_backend('dask')\nexcept Exception as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert "backend 'dask' needs an optional dependency" in done.stdout
    assert "pip install 'gristmill[dask]'" in done.stdout


def test_a_backend_registered_in_process_wins_and_can_be_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(BACKENDS, "dagtest", "gm_dag_backend:DagLocalBackend")
    assert BACKENDS["dagtest"] == "gm_dag_backend:DagLocalBackend"
    monkeypatch.undo()
    assert "dagtest" not in BACKENDS
    with pytest.raises(KeyError, match="installed"):
        del BACKENDS["local"]
