"""``gristmill limit | pause | unpause`` on a real engine running real tasks (local backend).

The engine runs in a process of its own (``gristmill run``), as a user's would; the
test steers it with the CLI and reads what happened from the tasks' own start/end
stamps, not only from what the engine says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result
from gm_testing import wait_for

from gristmill.cli.app import main
from gristmill.engine.runner import run_workflow
from gristmill.engine.steering import META_KEY, STEER_DIR
from gristmill.store.db import Store
from gristmill.store.lock import is_locked

ENGINE = [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()"]


def stamps_of(stamps: Path) -> list[tuple[str, int, float]]:
    if not stamps.exists():
        return []
    out = []
    for line in stamps.read_text().splitlines():
        kind, ident, when = line.split()
        out.append((kind, int(ident), float(when)))
    return out


def overlap_between(stamps: Path, lo: float, hi: float = float("inf")) -> int:
    """Most tasks running at once among those that started in [lo, hi)."""
    events = []
    starts = {i: t for k, i, t in stamps_of(stamps) if k == "start"}
    for kind, ident, when in stamps_of(stamps):
        if lo <= starts[ident] < hi:
            events.append((when, 0 if kind == "end" else 1))
    running = peak = 0
    for _, is_start in sorted(events):
        running += 1 if is_start else -1
        peak = max(peak, running)
    return peak


def started(stamps: Path) -> int:
    return sum(1 for kind, _, _ in stamps_of(stamps) if kind == "start")


def ended(stamps: Path) -> int:
    return sum(1 for kind, _, _ in stamps_of(stamps) if kind == "end")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def engine(et: ModuleType, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # also closes its pipes


def start(procs: list[subprocess.Popen[bytes]], root: Path, stamps: Path, n: int,
          pause: float, *more: str) -> Path:
    """Start ``gristmill run engine_tasks:spans`` in the background; its run directory
    once the first task started."""
    proc = subprocess.Popen(
        [*ENGINE, "run", "engine_tasks:spans", "--stamps", str(stamps), "--n", str(n),
         "--pause", str(pause), "--max-cores", "8", "--run-dir", str(root), *more],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    wait_for(lambda: started(stamps) >= 1, 60, "the first task to start")
    return next(p for p in root.glob("2*") if is_locked(p))


def finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()


def steering_of(run_dir: Path) -> dict[str, object]:
    store = Store.open(run_dir, readonly=True)
    try:
        return dict(store.meta().get(META_KEY) or {})
    finally:
        store.close()


def test_raising_the_limit_of_a_live_run_runs_more_at_once(
    engine: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """8 tasks of 1.5 s under a limit of 1 run one at a time; raised to 4 after the first
    started, the rest run 4 at once and the run ends much sooner than 8 * 1.5 s."""
    stamps = tmp_path / "stamps"
    run_dir = start(engine, tmp_path / "runs", stamps, 8, 1.5, "--max-concurrent", "1")
    raised_at = time.time()
    done = cli("limit", str(run_dir), "--max-concurrent", "4")
    assert done.exit_code == 0, done.output
    assert "took it" in done.output
    finish(engine[0])
    assert overlap_between(stamps, 0, raised_at) == 1
    assert overlap_between(stamps, raised_at) == 4
    first = min(t for k, _, t in stamps_of(stamps) if k == "start")
    last = max(t for k, _, t in stamps_of(stamps) if k == "end")
    assert last - first < 8 * 1.5 * 0.75  # well under one at a time (12 s); ~4.5 s here
    recorded = steering_of(run_dir)["history"]
    assert isinstance(recorded, list)
    assert recorded[-1]["limits"] == {"max_concurrent": 4}
    assert recorded[-1]["user"]


def test_lowering_the_limit_never_stops_running_jobs(
    engine: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    stamps = tmp_path / "stamps"
    run_dir = start(engine, tmp_path / "runs", stamps, 6, 2.0, "--max-concurrent", "3")
    wait_for(lambda: started(stamps) >= 3, 60, "three tasks")
    lowered_at = time.time()
    assert cli("limit", str(run_dir), "--max-concurrent", "1").exit_code == 0
    finish(engine[0])
    ended = [i for k, i, t in stamps_of(stamps) if k == "end"]
    assert sorted(ended) == list(range(6))  # the three running ones were not killed
    assert overlap_between(stamps, lowered_at + 0.01) == 1


def test_pause_submits_nothing_until_unpause_and_status_says_who(
    engine: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    stamps = tmp_path / "stamps"
    run_dir = start(engine, tmp_path / "runs", stamps, 4, 0.5, "--max-concurrent", "1")
    paused = cli("pause", str(run_dir))
    assert paused.exit_code == 0, paused.output
    wait_for(lambda: started(stamps) == ended(stamps), 30, "the running task to end")
    seen = started(stamps)
    time.sleep(2.5)  # a paused engine would have started the next within 0.5 s
    assert started(stamps) == seen < 4
    status = cli("status", str(run_dir))
    assert "paused by" in status.output
    assert engine[0].poll() is None  # still running, waiting
    assert cli("unpause", str(run_dir)).exit_code == 0
    finish(engine[0])
    assert started(stamps) == 4
    assert "paused" not in cli("status", str(run_dir)).output


def test_a_paused_engine_still_stops_on_cancel(
    engine: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    stamps = tmp_path / "stamps"
    run_dir = start(engine, tmp_path / "runs", stamps, 3, 0.2, "--max-concurrent", "1")
    paused = cli("pause", str(run_dir))
    assert paused.exit_code == 0, paused.output
    done = cli("cancel", str(run_dir), "--timeout", "30")
    assert done.exit_code == 0, done.output
    engine[0].communicate(timeout=30)
    assert engine[0].returncode != 0


def test_limits_set_with_no_engine_hold_in_the_next_resume(
    et: ModuleType, tmp_path: Path
) -> None:
    stamps = tmp_path / "stamps"
    first = run_workflow(et.spans(stamps=str(stamps), n=4, pause=0.0), run_dir=tmp_path / "runs",
                         max_cores=8)
    assert first.ok
    done = cli("limit", str(first.run_dir), "--max-concurrent", "1")
    assert done.exit_code == 0, done.output
    assert "no engine is running" in done.output
    stamps.unlink()
    again = run_workflow(et.spans(stamps=str(stamps), n=4, pause=0.4), run_dir=first.run_dir,
                         max_cores=8, rerun=["span"])
    assert again.ok
    assert started(stamps) == 4
    assert overlap_between(stamps, 0) == 1


def test_a_request_left_for_an_engine_that_ended_applies_at_the_next_resume(
    et: ModuleType, tmp_path: Path
) -> None:
    stamps = tmp_path / "stamps"
    first = run_workflow(et.spans(stamps=str(stamps), n=3, pause=0.0), run_dir=tmp_path / "runs",
                         max_cores=8)
    from gristmill.engine.steering import Limits, Request, send

    send(first.run_dir, Request("limit", limits=Limits(max_concurrent=1), user="x", time=1.0))
    stamps.unlink()
    assert run_workflow(et.spans(stamps=str(stamps), n=3, pause=0.4), run_dir=first.run_dir,
                        max_cores=8, rerun=["span"]).ok
    assert overlap_between(stamps, 0) == 1
    assert not list((first.run_dir / STEER_DIR).iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["--max-concurrent", "0"], "--max-concurrent"),
    (["--retries", "-1"], "--retries"),
    (["--max-mem", "lots"], "--max-mem"),
    (["--max-runtime", "forever"], "--max-runtime"),
    ([], "give at least one of"),
    (["--task", "nosuch", "--retries", "2"], "has no task 'nosuch'"),
])
def test_bad_steering_is_refused_with_exit_2_and_changes_nothing(
    et: ModuleType, tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_workflow(et.spans(stamps=str(tmp_path / "s"), n=1, pause=0.0),
                        run_dir=tmp_path / "runs")
    result = cli("limit", str(done.run_dir), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert steering_of(done.run_dir) == {}
    assert not (done.run_dir / STEER_DIR).exists()


def test_the_engine_ignores_request_files_it_cannot_trust(
    et: ModuleType, tmp_path: Path
) -> None:
    """A crafted, oversized, foreign-owned or symlinked request changes nothing."""
    stamps = tmp_path / "stamps"
    first = run_workflow(et.spans(stamps=str(stamps), n=3, pause=0.0), run_dir=tmp_path / "runs",
                         max_cores=8)
    folder = first.run_dir / STEER_DIR
    folder.mkdir()
    good = {"action": "limit", "task": None, "limits": {"max_concurrent": 1}, "user": "u",
            "time": 1.0}
    (folder / "1-bad.json").write_text("{not json")
    (folder / "2-keys.json").write_text(json.dumps({**good, "exec": "rm -rf /"}))
    (folder / "3-big.json").write_text(json.dumps({**good, "user": "u" * 20_000}))
    (folder / "4-zero.json").write_text(json.dumps({**good, "limits": {"max_concurrent": 0}}))
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(good))
    (folder / "5-link.json").symlink_to(target)
    if os.geteuid() == 0:
        foreign = folder / "6-foreign.json"
        foreign.write_text(json.dumps(good))
        os.chown(foreign, 65534, 65534)
    stamps.unlink()
    assert run_workflow(et.spans(stamps=str(stamps), n=3, pause=0.4), run_dir=first.run_dir,
                        max_cores=8, rerun=["span"]).ok
    assert overlap_between(stamps, 0) == 3  # no limit took effect
    assert steering_of(first.run_dir) == {}
    assert not list(folder.iterdir())
    assert target.exists()  # the link was removed, not what it points at


def test_a_retry_cap_raised_with_no_engine_gives_a_failed_node_more_tries_on_resume(
    et: ModuleType, tmp_path: Path
) -> None:
    marker = tmp_path / "tries"
    first = run_workflow(et.one_exit(code=3, marker=str(marker)), run_dir=tmp_path / "runs")
    assert not first.ok
    assert len(marker.read_text().splitlines()) == 1  # retries=0: one attempt
    done = cli("limit", str(first.run_dir), "--task", "exit_with", "--retries", "2")
    assert done.exit_code == 0, done.output
    assert "exit_with" in cli("status", str(first.run_dir)).output
    again = run_workflow(et.one_exit(code=3, marker=str(marker)), run_dir=first.run_dir)
    assert not again.ok
    assert len(marker.read_text().splitlines()) == 1 + 3  # the resume's try and its 2 retries
