"""``gristmill cancel`` acts only on what it verified: the engine of the run, files in the run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from types import ModuleType

from click.testing import CliRunner

from gristmill.cli.app import main
from gristmill.engine.runner import run_workflow
from gristmill.store.db import STORE_NAME
from gristmill.store.lock import LOCK_NAME
from gristmill.worker.procfs import start_time


def test_cancel_signals_nothing_when_the_lock_file_names_another_process(
    tmp_path: Path, holder: subprocess.Popen[str], victim: subprocess.Popen[bytes]
) -> None:
    lock = tmp_path / LOCK_NAME
    forged = json.loads(lock.read_text())
    forged.update(pid=victim.pid, start=start_time(victim.pid))  # a pid with its real start
    lock.write_text(json.dumps(forged))
    result = CliRunner().invoke(main, ["cancel", str(tmp_path), "--timeout", "1"])
    assert result.exit_code == 2, result.output
    assert "cannot verify which process it is" in result.output
    assert f"process {victim.pid} does not hold the lock file open" in result.output
    assert victim.poll() is None  # still running: never signalled
    assert holder.poll() is None


def test_cancel_creates_no_file_outside_the_run_whatever_the_store_says(
    et: ModuleType, tmp_path: Path
) -> None:
    result = run_workflow(et.appends(path=str(tmp_path / "out"), n=1, pause=0.0),
                          run_dir=tmp_path / "runs")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "planted.result.json"
    with sqlite3.connect(result.run_dir / STORE_NAME) as db:  # a crafted store
        db.execute("UPDATE attempts SET ended = NULL, job_id = '1.1.x', result_path = ?",
                   (str(target),))
    done = CliRunner().invoke(main, ["cancel", str(result.run_dir)])
    assert done.exit_code == 0, done.output
    assert "name files outside" in done.output
    assert list(outside.iterdir()) == []
    again = run_workflow(et.appends(path=str(tmp_path / "out"), n=1, pause=0.0),
                         run_dir=result.run_dir)
    assert again.ok
    assert list(outside.iterdir()) == []
