"""The GRISTMILL_FAULT test hook: read once, refused when malformed, fires at the n-th point."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gm_testing import subprocess_env

from gristmill.engine.faults import FAULT_POINTS, Fault
from gristmill.errors import GristmillError


def test_unset_means_no_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRISTMILL_FAULT", raising=False)
    assert Fault.from_env() is None


@pytest.mark.parametrize("text", ["submit", "submit:0", "nowhere:1", "submit:x"])
def test_a_malformed_fault_is_refused_naming_the_points(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("GRISTMILL_FAULT", text)
    with pytest.raises(GristmillError, match="after_submit") as info:
        Fault.from_env()
    assert text in str(info.value)
    assert all(point in str(info.value) for point in FAULT_POINTS)


def test_the_process_is_killed_at_the_nth_time_it_reaches_the_point() -> None:
    code = (
        "from gristmill.engine.faults import FAULT\n"
        "for i in range(5):\n"
        "    print(i, flush=True)\n"
        "    FAULT.reached('status')\n"
        "    FAULT.reached('submit')\n"
    )
    env = {**subprocess_env(), "GRISTMILL_FAULT": "submit:3"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == -9
    assert done.stdout.split() == ["0", "1", "2"]
