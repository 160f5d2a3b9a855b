"""Tests for gristmill/__init__.py: the public names, and which of them load on first use."""

from __future__ import annotations

import json
import subprocess
import sys

from gm_testing import subprocess_env

import gristmill as gm
from gristmill.engine.runner import RunResult
from gristmill.runs.metadata import RunMetadata
from gristmill.spec.load import Spec


def test_lazy_names_are_the_real_objects() -> None:
    assert gm.Spec is Spec
    assert gm.RunResult is RunResult
    assert gm.runs.RunMetadata is RunMetadata
    assert set(gm.__all__) >= {"Spec", "RunResult", "runs", "task", "workflow", "Resources"}


def test_import_gristmill_loads_neither_the_engine_nor_the_spec_nor_run_dirs() -> None:
    """What every task process pays at start; then each lazy name works in a fresh process."""
    code = (
        "import json, sys; import gristmill as gm\n"
        "heavy = ('gristmill.engine', 'gristmill.spec', 'gristmill.runs', 'gristmill.store',"
        " 'gristmill.backends', 'yaml', 'cattrs', 'sqlite3')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(heavy))\n"
        "names = [gm.runs.RunMetadata.__name__, gm.runs.make_run_directory.__name__,"
        " gm.Spec.__name__, gm.RunResult.__name__]\n"
        "print(json.dumps([loaded, names]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), timeout=60, check=True)
    loaded, names = json.loads(out.stdout)
    assert loaded == []
    assert names == ["RunMetadata", "make_run_directory", "Spec", "RunResult"]
