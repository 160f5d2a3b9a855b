"""Every per-attempt wrapper starts light: the standard library and the few gristmill
modules it needs, never the package's ``__init__`` imports (click, loguru, attrs, cattrs).

Each entry runs for real on ``/bin/true`` (an array element from its manifest, a jobmon
try, ``python -m gristmill.worker``, the local backend's supervisor with one job) and the
modules its process held at exit are read back: written by an ``atexit`` hook put in
front of the entry's own boot program, or, for ``-m``, from ``-X importtime``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gm_testing import subprocess_env

from gristmill.backends.batch.arrays import element_boot
from gristmill.backends.isolated import GRISTMILL_PARENT, isolated_argv
from gristmill.backends.jobmon.translate import ATTEMPT
from gristmill.backends.local.backend import _BOOT
from gristmill.worker.result import read_result

#: What no wrapper may import: the package's ``__init__`` imports and anything heavy.
HEAVY = ("loguru", "click", "cattrs", "attr", "attrs", "yaml", "sqlite3", "typing",
         "gristmill.dsl", "gristmill.resources", "gristmill.engine", "gristmill.store",
         "gristmill.spec", "gristmill.runs", "gristmill.graph", "gristmill.cli")
#: Not on the plain path of a wrapper either (each costs several ms of every attempt).
SLOW = ("argparse", "subprocess", "secrets", "shutil", "dataclasses", "inspect")


def _heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def _dump_prefix(out: Path) -> str:
    """Python that writes ``sorted(sys.modules)`` and whether ``gristmill/__init__.py`` ran
    to ``out`` at exit; it imports nothing itself."""
    return (f"import atexit, sys; atexit.register(lambda: open({str(out)!r}, 'w').write("
            "'\\n'.join(sorted(sys.modules)) + '\\n__file__=' "
            "+ str(getattr(sys.modules.get('gristmill'), '__file__', None)))); ")


def _read_dump(out: Path) -> tuple[set[str], str]:
    *modules, init = out.read_text().splitlines()
    return set(modules), init.removeprefix("__file__=")


def _files(tmp_path: Path) -> dict[str, str]:
    return {"result": str(tmp_path / "r.json"), "stdout": str(tmp_path / "o"),
            "stderr": str(tmp_path / "e")}


def _succeeded(tmp_path: Path) -> None:
    result = read_result(tmp_path / "r.json", key="k.1")
    assert result is not None, "the wrapper wrote no result"
    assert result.state.value == "SUCCEEDED", result.reason


def test_an_array_element_imports_neither_the_package_init_nor_anything_heavy(
    tmp_path: Path,
) -> None:
    files = _files(tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"version": 2, "task": "t", "scheduler": {}, "jobs": [
        {**files, "key": "k.1", "argv": ["/bin/true"], "runtime": 60}]}))
    out = tmp_path / "modules"
    done = subprocess.run([sys.executable, "-I", "-c", _dump_prefix(out) + element_boot(),
                           str(manifest), "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _succeeded(tmp_path)
    modules, init = _read_dump(out)
    assert "gristmill.backends.batch.element" in modules  # the dump saw the real run
    assert init == "None"  # a bare package: gristmill/__init__.py never ran
    assert _heavy(modules, HEAVY + SLOW) == []


def test_a_jobmon_try_imports_neither_the_package_init_nor_the_driver(tmp_path: Path) -> None:
    files = _files(tmp_path)
    out = tmp_path / "modules"
    python, flag, _, boot = isolated_argv(sys.executable, ATTEMPT)
    done = subprocess.run(
        [python, flag, "-c", _dump_prefix(out) + boot, "--result", files["result"],
         "--key", "k.1", "--stdout", files["stdout"], "--stderr", files["stderr"],
         "--max-attempts", "2", "--mem", str(2**30), "--runtime", "60", "--", "/bin/true"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _succeeded(tmp_path)
    modules, init = _read_dump(out)
    assert ATTEMPT in modules
    assert init == "None"
    assert _heavy(modules, HEAVY + SLOW + ("gristmill.backends.jobmon.driver", "jobmon")) == []


def test_python_m_gristmill_worker_runs_a_light_package_init(tmp_path: Path) -> None:
    """``-m`` runs ``gristmill/__init__.py`` first: it must import nothing heavy."""
    files = _files(tmp_path)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gristmill.worker", "--result",
         files["result"], "--key", "k.1", "--stdout", files["stdout"], "--stderr",
         files["stderr"], "--runtime", "60", "--", "/bin/true"],
        capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    _succeeded(tmp_path)
    modules = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:")}
    assert {"gristmill", "gristmill.worker.wrapper", "gristmill.worker.monitor"} <= modules
    assert _heavy(modules, HEAVY + SLOW) == []


def test_the_local_supervisor_imports_nothing_heavy(tmp_path: Path) -> None:
    """One job through the supervisor, started as LocalBackend starts it (its own boot)."""
    files = _files(tmp_path)
    out = tmp_path / "modules"
    req_r, req_w = os.pipe()
    ev_r, ev_w = os.pipe()
    request = {"op": "run", "id": 1, "argv": ["/bin/true"], "out": files["stdout"],
               "err": files["stderr"], "res": files["result"], "mem": None, "rt": 60.0,
               "cores": 1, "env": None, "cwd": None, "key": "k.1"}
    os.write(req_w, json.dumps(request).encode() + b"\n")
    os.close(req_w)  # EOF after the one job: the supervisor runs it, then exits
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _dump_prefix(out) + _BOOT,
             str(GRISTMILL_PARENT / "gristmill"), "--requests-fd", str(req_r), "--events-fd",
             str(ev_w), "--max-cores", "1", "--max-mem", str(2**30)],
            pass_fds=(req_r, ev_w), capture_output=True, text=True, timeout=60)
    finally:
        os.close(req_r)
        os.close(ev_w)
        os.close(ev_r)
    assert done.returncode == 0, done.stderr
    _succeeded(tmp_path)
    modules, init = _read_dump(out)
    assert "gristmill.backends.local.supervisor" in modules
    assert init == "None"
    assert _heavy(modules, HEAVY) == []  # argparse is fine: one supervisor serves a whole run


@pytest.mark.parametrize("extra", [["--mem", "1x"], ["--bogus", "1"], ["--grace"]])
def test_unusual_options_still_get_argparse_messages(tmp_path: Path, extra: list[str]) -> None:
    files = _files(tmp_path)
    done = subprocess.run(
        [*isolated_argv(sys.executable, "gristmill.worker.wrapper"), "--result",
         files["result"], "--stdout", files["stdout"], "--stderr", files["stderr"], *extra,
         "--", "/bin/true"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m gristmill.worker")
    assert not (tmp_path / "r.json").exists()
