"""What each built-in backend declares as its settings matches what it takes.

The CLI makes its backend flags from these declarations, so a setting missing here is
a flag missing there, and a declared default that drifted from ``__init__`` is help
that lies.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest

from gristmill.backends.base import BackendSetting
from gristmill.backends.dask.backend import DaskBackend
from gristmill.backends.jobmon.backend import JobmonBackend
from gristmill.backends.local.backend import LocalBackend
from gristmill.backends.sge.backend import SgeBackend
from gristmill.backends.slurm.backend import SlurmBackend
from gristmill.errors import SpecError

BUILT_IN: list[Any] = [LocalBackend, SlurmBackend, SgeBackend, DaskBackend, JobmonBackend]
#: Constructor keywords that are not settings: a test's stand-in for the scheduler commands.
NOT_SETTINGS = {"runner"}


@pytest.mark.parametrize("cls", BUILT_IN, ids=lambda cls: cls.name)
def test_every_option_is_declared_with_its_real_default(cls: Any) -> None:
    params = inspect.signature(cls.__init__).parameters
    taken = {name for name, p in params.items() if p.kind is p.KEYWORD_ONLY} - NOT_SETTINGS
    names = [s.name for s in cls.settings]
    assert sorted(names) == sorted(taken)  # each once, none missing, none made up
    for setting in cls.settings:
        if setting.default is not None:  # None: none, or computed (the help says how)
            assert setting.default == params[setting.name].default, setting.name


def test_no_two_backends_share_a_flag() -> None:
    flags = [s.flag_for(cls.name) for cls in BUILT_IN for s in cls.settings]
    assert len(flags) == len(set(flags))
    local = {s.name: s.flag_for("local") for s in LocalBackend.settings}
    assert local["max_cores"] == "--max-cores"  # the flags gristmill always had
    assert local["grace"] == "--local-grace"
    assert {s.flag_for("dask") for s in DaskBackend.settings} >= {"--dask-scheduler"}


def test_a_setting_converts_a_memory_size_naming_its_flag() -> None:
    setting = BackendSetting("max_mem", "Memory.", kind="memory")
    assert setting.convert("1K", "mine") == 1024
    with pytest.raises(SpecError, match="--mine-max-mem: 'lots' is not a memory size"):
        setting.convert("lots", "mine")
    assert BackendSetting("n", "A number.", kind="int").convert(3, "mine") == 3


@pytest.mark.parametrize(("name", "flag"), [("Max-Cores", None), ("cores", "cores")])
def test_a_setting_refuses_a_name_or_flag_no_command_line_can_carry(
    name: str, flag: str | None
) -> None:
    with pytest.raises(ValueError, match="must match regex"):
        BackendSetting(name, "Help.", flag=flag)


def test_a_setting_refuses_a_kind_the_command_line_cannot_parse() -> None:
    with pytest.raises(ValueError, match="'kind' must be in"):
        BackendSetting("when", "Help.", kind="date")  # type: ignore[arg-type]


def test_the_backend_classes_import_without_their_heavy_dependencies() -> None:
    """The CLI imports every backend class for its settings: distributed and jobmon wait
    until a backend is built."""
    code = ("import sys, gristmill.backends.dask.backend, gristmill.backends.jobmon.backend; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('distributed', 'dask', 'jobmon')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
