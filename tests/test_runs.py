"""Tests for gristmill.runs: numbered run directories, links, and run metadata."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

import gristmill.runs as runs
from gristmill.errors import GristmillError, RunDirError

DAY = datetime.date(2026, 11, 29)
SRC = str(Path(runs.__file__).resolve().parents[1])
MakePackage = Callable[..., Path]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


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
    import gristmill.runs as runs
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
        "import sys, datetime, gristmill.runs as r; "
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


# ------------------------------------------------------------------- metadata


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakePackage]:
    """Write a tiny package under ``tmp_path/<where>`` and put it on sys.path."""
    made: list[str] = []

    def make(name: str, init: str, where: str = "site", submodule: bool = False) -> Path:
        base = tmp_path / where
        (base / name).mkdir(parents=True)
        (base / name / "__init__.py").write_text(textwrap.dedent(init))
        if submodule:
            (base / name / "sub.py").write_text("X = 1\n")
        monkeypatch.syspath_prepend(str(base))
        made.append(name)
        return base

    yield make
    for name in made:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@needs_git
def test_metadata_round_trip_with_git_repo(tmp_path: Path, make_package: MakePackage) -> None:
    repo = make_package(
        "gm_pkg_git", '__version__ = "1.2.3"\n__jobmon_tool_version__ = "2026-11-29"\n',
        submodule=True,
    )  # fmt: skip
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    head = git(repo, "rev-parse", "HEAD")

    md = runs.RunMetadata.collect("gm_pkg_git.sub", argv=["gristmill", "run", "x:y"])
    assert (md.package, md.package_version, md.jobmon_tool_version) == (
        "gm_pkg_git", "1.2.3", "2026-11-29",
    )  # fmt: skip
    assert (md.git_commit, md.git_dirty) == (head, False)
    assert md.argv == ["gristmill", "run", "x:y"]
    assert (md.tool_name, md.status, md.ended_at) == ("gristmill", "running", None)
    assert md.cwd == os.getcwd()
    assert md.host
    assert md.python_version
    assert datetime.datetime.fromisoformat(md.started_at).utcoffset() == datetime.timedelta(0)

    (repo / "gm_pkg_git" / "sub.py").write_text("X = 2\n")  # dirty the tree
    assert runs.git_info(repo / "gm_pkg_git") == (head, True)
    assert runs.git_info(repo / "gm_pkg_git" / "sub.py") == (head, True)
    (repo / "untracked.txt").write_text("x")
    git(repo, "checkout", "-q", "--", ".")
    assert runs.git_info(repo / "gm_pkg_git") == (head, False)  # untracked files don't count

    md.extra["spec"] = {"fit": {"mem": "10G"}}
    md.finish("succeeded", {"DONE": 10, "FAILED": 0})
    assert md.elapsed_seconds is not None
    assert md.elapsed_seconds >= 0
    run = runs.make_run_directory(tmp_path / "runs", date=DAY)
    path = md.dump(run)
    assert path == run / "run_metadata.yaml"
    assert names(run) == ["run_metadata.yaml"]  # no temporary file left
    raw = yaml.safe_load(path.read_text())
    assert (raw["status"], raw["git_commit"]) == ("succeeded", head)
    assert raw["counts"] == {"DONE": 10, "FAILED": 0}
    loaded = runs.load_run_metadata(run)
    assert loaded == md
    assert runs.RunMetadata.from_dict(md.to_dict()) == md


def test_package_as_module_and_version_from_dist_metadata(make_package: MakePackage) -> None:
    base = make_package("gm_pkg_dist", "X = 1\n", where="dist")
    info = base / "gm_pkg_dist-4.5.6.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gm_pkg_dist\nVersion: 4.5.6\n")
    import gm_pkg_dist  # type: ignore[import-not-found]

    md = runs.RunMetadata.collect(gm_pkg_dist, argv=[])
    assert (md.package, md.package_version) == ("gm_pkg_dist", "4.5.6")
    assert md.jobmon_tool_version is None
    assert (md.git_commit, md.git_dirty) == (None, None)  # tmp_path is not a repository


def test_package_without_any_version(make_package: MakePackage) -> None:
    make_package("gm_pkg_bare", "__jobmon_tool_version__ = 7\n")
    md = runs.RunMetadata.collect("gm_pkg_bare", argv=[])
    assert (md.package, md.package_version, md.jobmon_tool_version) == ("gm_pkg_bare", None, "7")


def test_unimportable_package_is_an_error() -> None:
    with pytest.raises(GristmillError, match="cannot import package 'gm_no_such_pkg'"):
        runs.RunMetadata.collect("gm_no_such_pkg")


def test_default_package_is_the_caller_and_argv_is_sys_argv() -> None:
    md = runs.RunMetadata.collect()
    assert md.package == __name__.partition(".")[0]
    assert md.argv == sys.argv
    assert md.tool_version == runs._dist_version("gristmill")


@needs_git
def test_git_info_ignores_untracked_package_inside_a_repo(tmp_path: Path) -> None:
    # A package installed in a git-ignored virtualenv inside a project is not that project's code.
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("venv/\n")
    pkg = tmp_path / "venv" / "lib" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    assert runs.git_info(pkg) == (None, None)
    assert runs.git_info(tmp_path)[0] == git(tmp_path, "rev-parse", "HEAD")


def test_git_info_without_git_or_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runs.git_info(tmp_path) == (None, None)
    assert runs.git_info(tmp_path / "missing") == (None, None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable on PATH
    assert runs.git_info(Path(SRC)) == (None, None)


def test_finish_rejects_unknown_status() -> None:
    md = runs.RunMetadata()
    with pytest.raises(ValueError, match="'done' is not one of running, succeeded"):
        md.finish("done")  # type: ignore[arg-type]
    assert (md.status, md.ended_at) == ("running", None)


def test_load_missing_and_corrupt_metadata(tmp_path: Path) -> None:
    with pytest.raises(
        RunDirError, match=re.escape(f"no run metadata at {tmp_path / 'run_metadata.yaml'}")
    ):
        runs.load_run_metadata(tmp_path)
    path = tmp_path / "run_metadata.yaml"
    for text, match in [
        ("status: [unclosed\n", "cannot read"),
        ("- a list\n", "does not hold a mapping"),
        ("status: 3\n", "field 'status' has an invalid value 3"),
        ("counts: {DONE: yes}\n", "field 'counts'"),
        ("argv: [1, 2]\n", "field 'argv'"),
        ("colour: red\n", r"unknown keys \['colour'\]"),
    ]:
        path.write_text(text)
        with pytest.raises(RunDirError, match=match) as info:
            runs.load_run_metadata(tmp_path)
        assert str(path) in str(info.value)


def test_from_dict_fills_missing_keys_with_defaults() -> None:
    md = runs.RunMetadata.from_dict({"status": "failed", "counts": {"FAILED": 1}})
    assert (md.status, md.counts, md.tool_name) == ("failed", {"FAILED": 1}, "gristmill")


def test_dump_errors(tmp_path: Path) -> None:
    md = runs.RunMetadata(extra={"obj": object()})
    with pytest.raises(RunDirError, match="YAML cannot write"):
        md.dump(tmp_path)
    with pytest.raises(RunDirError, match=r"cannot write .*missing"):
        runs.RunMetadata().dump(tmp_path / "missing")
    assert names(tmp_path) == []
