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


def _run(code: str) -> list[object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), timeout=60, check=True)
    result: list[object] = json.loads(out.stdout)
    return result


def test_import_gristmill_loads_no_click_loguru_or_attrs_until_a_name_needs_them() -> None:
    """``python -m gristmill.worker`` imports the package in every attempt of a job."""
    loaded, names = _run(
        "import json, sys; import gristmill as gm\n"
        "heavy = sorted(m for m in ('click', 'loguru', 'attrs', 'cattrs', 'typing',"
        " 'gristmill.dsl') if m in sys.modules)\n"
        "names = [gm.task.__name__, gm.workflow.__name__, gm.Resources.__name__,"
        " gm.product.__name__, gm.Node.__name__, gm.Policy.__name__, gm.dsl.__name__,"
        " gm.SpecError.__name__]\n"
        "print(json.dumps([heavy, names]))\n")
    assert loaded == []
    assert names == ["task", "workflow", "Resources", "product", "Node", "Policy",
                     "gristmill.dsl", "SpecError"]


def test_a_task_module_pays_neither_for_pdb_nor_for_package_scans() -> None:
    """A task process imports its module (``@gm.task`` runs) on every attempt: what only
    ``--with-debugger`` or ``gristmill entry-points`` use is imported when they run."""
    loaded, ran = _run(
        "import json, sys, click; import gristmill as gm\n"
        "@gm.task(mem='1G')\n@click.command()\ndef t():\n    print('ran')\n"
        "slow = sorted(m for m in ('pdb', 'pkgutil', 'bdb', 'pprint') if m in sys.modules)\n"
        "print(json.dumps([slow, t.name]))\n")
    assert loaded == []
    assert ran == "t"


def test_gristmill_logs_stay_off_until_the_program_enables_them() -> None:
    """As when ``__init__`` imported loguru: disabled at loguru's import, whether loguru
    came before or after gristmill, and a program's ``enable`` wins from then on (no later
    import turns them off again)."""
    check = ("import json, sys; from loguru import logger\n"
             "off = list(logger._core.activation_list)\n"
             "logger.enable('gristmill'); import gristmill.dsl.task, gristmill.engine.runner\n"
             "print(json.dumps([off, list(logger._core.activation_list)]))\n")
    after = _run("import gristmill\n" + check)
    assert after == [[["gristmill.", False]], [["gristmill.", True]]]
    before = _run("import loguru, gristmill\n" + check)
    assert before == [[["gristmill.", False]], [["gristmill.", True]]]
    lazily = _run("import gristmill as gm; gm.task\n" + check)
    assert lazily == [[["gristmill.", False]], [["gristmill.", True]]]


def test_unknown_attributes_are_attribute_errors() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = gm.nope
    assert {"task", "workflow", "Resources", "SpecError"} <= set(dir(gm))
