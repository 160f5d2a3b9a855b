"""Tests for gristmill.runs.directory: numbered run directories and their links."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from gm_users import as_nobody, shared_tmp

import gristmill.runs.directory as runs
from gristmill.errors import RunDirError

DAY = datetime.date(2026, 11, 29)
SRC = str(Path(runs.__file__).resolve().parents[2])


shared = pytest.fixture(name="shared")(shared_tmp)


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


# ------------------------------------------------------------------ numbering


def test_numbering_per_day_and_across_dates(tmp_path: Path) -> None:
    root = tmp_path / "out" / "seiir"  # parents are created
    first = runs.make_run_directory(root, date=DAY)
    second = runs.make_run_directory(root, date=DAY)
    other_day = runs.make_run_directory(root, date=datetime.date(2026, 11, 30))
    third = runs.make_run_directory(root, date=DAY)
    assert [first.name, second.name, third.name] == [
        "2026_11_29.01", "2026_11_29.02", "2026_11_29.03",
    ]  # fmt: skip
    assert other_day.name == "2026_11_30.01"
    assert first.parent == root.absolute()
    assert all(p.is_dir() for p in (first, second, third, other_day))


def test_default_date_is_today(tmp_path: Path) -> None:
    run = runs.make_run_directory(tmp_path)
    assert run.name == f"{datetime.date.today():%Y_%m_%d}.01"


def test_numbering_skips_past_gaps_and_ignores_other_names(tmp_path: Path) -> None:
    for name in ("2026_11_29.01", "2026_11_29.05", "2026_11_29.xx", "notes", "2026_11_28.09"):
        (tmp_path / name).mkdir()
    (tmp_path / "2026_11_29.07").write_text("a file holding a run name")
    # Highest is .07 (a file, still taken): numbers never go back, so a deleted run is not reused.
    assert runs.make_run_directory(tmp_path, date=DAY).name == "2026_11_29.08"


def test_numbering_goes_past_99(tmp_path: Path) -> None:
    (tmp_path / "2026_11_29.99").mkdir()
    assert runs.make_run_directory(tmp_path, date=DAY).name == "2026_11_29.100"
    assert runs.make_run_directory(tmp_path, date=DAY).name == "2026_11_29.101"
    assert [p.name for p in runs.list_runs(tmp_path)][-3:] == [
        "2026_11_29.99", "2026_11_29.100", "2026_11_29.101",
    ]  # fmt: skip
    assert runs.latest_run(tmp_path) == (tmp_path / "2026_11_29.101").resolve()


_WORKER = textwrap.dedent(
    """
    import datetime, sys, time
    from pathlib import Path
    import gristmill.runs.directory as runs
    root, go = Path(sys.argv[1]), Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.001)
    for _ in range(12):
        print(runs.make_run_directory(root, date=datetime.date(2026, 11, 29)).name, flush=True)
    """
)


def test_concurrent_creation_gives_distinct_dirs_and_latest_is_newest(tmp_path: Path) -> None:
    root, go = tmp_path / "root", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(root), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(8)
    ]
    go.touch()  # release all of them at once
    made: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        made.extend(out.split())
    expected = [f"2026_11_29.{n:02d}" for n in range(1, 97)]
    assert sorted(made, key=lambda s: int(s.split(".")[1])) == expected  # 96 distinct, no gaps
    assert os.readlink(root / "latest") == "2026_11_29.96"  # never moved back by a slower process
    assert not [n for n in names(root) if n.endswith(".tmp")]


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_slow_creator_waits_for_lock_and_does_not_move_latest_back(tmp_path: Path) -> None:
    import fcntl

    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = (
        "import sys, datetime, gristmill.runs.directory as r; "
        "r.make_run_directory(sys.argv[1], date=datetime.date(2026, 11, 29))"
    )
    first, newer = tmp_path / "2026_11_29.01", tmp_path / "2026_11_29.02"
    with open(tmp_path / ".gristmill-runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        slow = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env)
        deadline = time.monotonic() + 30
        while not first.exists() and slow.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.1)  # it has made .01 and now waits for the lock
        assert first.is_dir()
        assert slow.poll() is None
        assert not (tmp_path / "latest").is_symlink()  # latest is only moved under the lock
        newer.mkdir()  # meanwhile a faster process made .02 and marked it latest
        runs.mark_latest(newer)
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert slow.wait(timeout=30) == 0
    assert os.readlink(tmp_path / "latest") == "2026_11_29.02"


# ---------------------------------------------------------------------- links


def test_latest_is_relative_and_moves(tmp_path: Path) -> None:
    assert runs.latest_run(tmp_path) is None
    first = runs.make_run_directory(tmp_path, date=DAY)
    assert os.readlink(tmp_path / "latest") == "2026_11_29.01"
    second = runs.make_run_directory(tmp_path, date=DAY)
    assert os.readlink(tmp_path / "latest") == "2026_11_29.02"
    assert runs.latest_run(tmp_path) == second.resolve()
    # mark_latest moves it unconditionally (the compat layer marks a run latest when it succeeds).
    assert runs.mark_latest(first) == first.parent.resolve() / "latest"
    assert runs.latest_run(tmp_path) == first.resolve()
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)  # relative links survive moving the root
    assert runs.latest_run(moved) == (moved / "2026_11_29.01").resolve()
    assert names(moved) == [".gristmill-runs.lock", "2026_11_29.01", "2026_11_29.02", "latest"]


def test_a_run_made_without_marking_latest_leaves_latest_alone(tmp_path: Path) -> None:
    first = runs.make_run_directory(tmp_path, date=DAY)
    second = runs.make_run_directory(tmp_path, date=DAY, mark_latest=False)
    assert second.name == "2026_11_29.02"
    assert runs.latest_run(tmp_path) == first.resolve()
    fresh = tmp_path / "fresh"
    made = runs.make_run_directory(fresh, date=DAY, mark_latest=False)
    assert made.is_dir()
    assert not (fresh / "latest").exists()
    assert runs.make_run_directory(fresh, date=DAY, mark_latest=False).name == "2026_11_29.02"


def test_replace_link_points_a_link_anywhere_at_a_run(tmp_path: Path) -> None:
    run = runs.make_run_directory(tmp_path / "runs", date=DAY)
    elsewhere = tmp_path / "versions"
    elsewhere.mkdir()
    (elsewhere / "best").mkdir()  # covid_shared's empty placeholder is replaced
    link = runs.replace_link(elsewhere / "best", run)
    assert os.readlink(link) == "../runs/2026_11_29.01"
    assert link.resolve() == run.resolve()
    (elsewhere / "notes").write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a link"):
        runs.replace_link(elsewhere / "notes", run)
    with pytest.raises(RunDirError, match="does not exist"):
        runs.replace_link(elsewhere / "best", tmp_path / "missing")


def test_latest_run_dangling_link_is_none(tmp_path: Path) -> None:
    run = runs.make_run_directory(tmp_path, date=DAY)
    run.rmdir()
    assert runs.latest_run(tmp_path) is None


def test_mark_best_moves_link_and_never_chains_to_latest(tmp_path: Path) -> None:
    first = runs.make_run_directory(tmp_path, date=DAY)
    link = runs.mark_best(first)
    assert link == tmp_path.resolve() / "best"
    assert os.readlink(link) == "2026_11_29.01"
    runs.make_run_directory(tmp_path, date=DAY)
    runs.mark_best(tmp_path / "latest")  # resolved: best names the run, not the moving link
    assert os.readlink(link) == "2026_11_29.02"
    runs.make_run_directory(tmp_path, date=DAY)
    assert (tmp_path / "best").resolve().name == "2026_11_29.02"


def test_mark_production_uses_tag_under_production_runs(tmp_path: Path) -> None:
    run = runs.make_run_directory(tmp_path, date=DAY)
    link = runs.mark_production(run, "2026_11_29")
    assert link == tmp_path.resolve() / "production-runs" / "2026_11_29"
    assert os.readlink(link) == "../2026_11_29.01"
    assert link.resolve() == run.resolve()
    later = runs.make_run_directory(tmp_path, date=DAY)
    runs.mark_production(later, "2026_11_29")  # re-using a tag moves it
    assert link.resolve() == later.resolve()
    assert runs.get_last_stage_directory("production-runs/2026_11_29", tmp_path) == later.resolve()


@pytest.mark.parametrize("tag", ["", "a/b", "/abs", ".", "..", "x\0y"])
def test_mark_production_rejects_bad_tags(tmp_path: Path, tag: str) -> None:
    run = runs.make_run_directory(tmp_path, date=DAY)
    with pytest.raises(RunDirError, match="production tag"):
        runs.mark_production(run, tag)
    assert not (tmp_path / "production-runs").exists()


def test_links_replace_covid_placeholders_but_not_real_data(tmp_path: Path) -> None:
    run = runs.make_run_directory(tmp_path, date=DAY)
    (tmp_path / "best").mkdir()  # covid_shared's setup_directory_structure made empty dirs
    assert runs.mark_best(run).is_symlink()
    (tmp_path / "best").unlink()
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "data.csv").write_text("x")
    with pytest.raises(RunDirError, match="real directory"):
        runs.mark_best(run)
    (tmp_path / "production-runs").mkdir()
    (tmp_path / "production-runs" / "t1").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        runs.mark_production(run, "t1")
    assert (tmp_path / "best" / "data.csv").read_text() == "x"


def test_mark_missing_run_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="does not exist"):
        runs.mark_best(tmp_path / "2026_11_29.01")


def test_get_last_stage_directory(tmp_path: Path) -> None:
    run = runs.make_run_directory(tmp_path, date=DAY)
    assert runs.get_last_stage_directory("latest", tmp_path) == run.resolve()
    assert runs.get_last_stage_directory("2026_11_29.01", root=tmp_path) == run.resolve()
    assert runs.get_last_stage_directory(run) == run.resolve()  # absolute: root not needed
    with pytest.raises(RunDirError, match="relative and no root"):
        runs.get_last_stage_directory("latest")
    with pytest.raises(RunDirError, match=r"2026_11_29\.09 does not exist"):
        runs.get_last_stage_directory("2026_11_29.09", tmp_path)


def test_setup_directory_structure(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    runs.setup_directory_structure(root)
    assert root.is_dir()
    assert names(root) == []
    runs.setup_directory_structure(root, with_production=True)
    runs.setup_directory_structure(root, with_production=True)  # idempotent
    assert names(root) == ["production-runs"]


# --------------------------------------------------------------------- errors


def test_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_text("not a dir")
    with pytest.raises(RunDirError, match=re.escape(f"run root {root} is a file")):
        runs.make_run_directory(root)
    with pytest.raises(RunDirError, match="is a file"):
        runs.setup_directory_structure(root)


def test_root_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    root = tmp_path / "file" / "runs"
    with pytest.raises(RunDirError) as info:
        runs.make_run_directory(root)
    message = str(info.value)
    assert str(root) in message
    assert "its parents must be directories" in message
    assert isinstance(info.value, OSError)  # RunDirError refines OSError


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_root_not_writable_even_for_root() -> None:
    root = Path("/proc/gristmill-test/runs")  # /proc refuses mkdir to every user
    with pytest.raises(
        RunDirError, match=r"cannot create directory /proc/gristmill-test/runs: .*; choose a path"
    ):
        runs.make_run_directory(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_root(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(RunDirError, match=re.escape(f"run root {tmp_path} is not writable")):
            runs.make_run_directory(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_gm_runs_offers_the_names_of_both_its_modules() -> None:
    import gristmill as gm
    import gristmill.runs.metadata as provenance

    for name in ("METADATA_FILE", "RUN_STATUSES", "RunMetadata", "git_info", "load_run_metadata"):
        assert getattr(gm.runs, name) is getattr(provenance, name)
    for name in ("make_run_directory", "mark_best", "mark_latest", "mark_production",
                 "LATEST_LINK", "BEST_LINK", "latest_run", "list_runs"):
        assert getattr(gm.runs, name) is getattr(runs, name)


@pytest.mark.parametrize("blocker", ["file", "full directory"])
def test_a_refused_run_leaves_no_numbered_directory_behind(tmp_path: Path, blocker: str) -> None:
    latest = tmp_path / "latest"
    if blocker == "file":
        latest.write_text("x")
    else:
        latest.mkdir()
        (latest / "keep").write_text("x")
    with pytest.raises(RunDirError, match="move it away"):
        runs.make_run_directory(tmp_path)
    assert runs.list_runs(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["latest"]


# ------------------------------------------------- numbers of runs moved away


def test_the_number_of_the_newest_run_is_not_reused_once_it_moved_away(tmp_path: Path) -> None:
    """Its engine may still run it elsewhere: the new run must not take its name."""
    runs.make_run_directory(tmp_path, date=DAY)
    second = runs.make_run_directory(tmp_path, date=DAY)
    second.rename(tmp_path.parent / "elsewhere")  # latest now dangles, still naming .02
    assert runs.make_run_directory(tmp_path, date=DAY).name == "2026_11_29.03"


def test_the_record_keeps_a_number_when_latest_no_longer_names_it(tmp_path: Path) -> None:
    first = runs.make_run_directory(tmp_path, date=DAY)
    second = runs.make_run_directory(tmp_path, date=DAY)
    runs.mark_latest(first)
    shutil.rmtree(second)
    assert (tmp_path / ".gristmill-runs.lock").read_text() == "2026_11_29.02\n"
    assert runs.make_run_directory(tmp_path, date=DAY).name == "2026_11_29.03"


def test_the_record_keeps_the_highest_run_made(tmp_path: Path) -> None:
    """A run made for an earlier day does not lower it."""
    runs.make_run_directory(tmp_path, date=DAY)
    runs.make_run_directory(tmp_path, date=datetime.date(2026, 11, 28))
    assert (tmp_path / ".gristmill-runs.lock").read_text() == "2026_11_29.01\n"


# ------------------------------------------------------- runs one cannot write


def test_a_run_directory_one_can_write_passes(tmp_path: Path) -> None:
    (tmp_path / "logs" / "fit").mkdir(parents=True)
    (tmp_path / "gristmill.db").write_bytes(b"")
    runs.check_writable(tmp_path, ["gristmill.db", "gristmill.db-wal", "logs"])


@pytest.mark.parametrize("what", ["directory", "store", "task logs"])
def test_a_run_directory_another_user_cannot_write_is_named_with_its_owner(
    shared: Path, what: str
) -> None:
    run_dir = shared / "2026_11_29.01"
    (run_dir / "logs" / "fit").mkdir(parents=True)
    (run_dir / "gristmill.db").write_bytes(b"")
    for path in (run_dir, run_dir / "logs", run_dir / "logs" / "fit", run_dir / "gristmill.db"):
        path.chmod(0o777 if path.is_dir() else 0o666)  # nobody may write all of it ...
    blocked = {"directory": run_dir, "store": run_dir / "gristmill.db",
               "task logs": run_dir / "logs" / "fit"}[what]
    blocked.chmod(0o755 if blocked.is_dir() else 0o644)  # ... but this

    def check() -> str:
        try:
            runs.check_writable(run_dir, ["gristmill.db", "gristmill.db-wal", "logs"])
        except RunDirError as exc:
            return str(exc)
        return "passed"

    message = as_nobody(check)
    named = "it" if blocked == run_dir else str(blocked)
    mode = "drwxr-xr-x" if blocked.is_dir() else "-rw-r--r--"
    assert message == (
        f"the run directory {run_dir} is not writable by you (nobody): {named} belongs to "
        f"root (mode {mode}); nothing was changed; continue it as root, or copy it to storage "
        f"you can write (cp -a {run_dir} NEW_PATH) and continue the copy: gristmill resume "
        "NEW_PATH"
    )
