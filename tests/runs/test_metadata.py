"""Tests for gristmill.runs.metadata: run metadata, package versions, git commit and dirtiness."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from gm_testing import fixtures_importable

import gristmill.runs.metadata as provenance
import gristmill.runs.directory as runs
from gristmill.errors import GristmillError, RunDirError

DAY = datetime.date(2026, 11, 29)
SRC = str(Path(provenance.__file__).resolve().parents[2])
MakePackage = Callable[..., Path]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


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

    md = provenance.RunMetadata.collect("gm_pkg_git.sub", argv=["gristmill", "run", "x:y"])
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
    assert provenance.git_info(repo / "gm_pkg_git") == (head, True)
    assert provenance.git_info(repo / "gm_pkg_git" / "sub.py") == (head, True)
    (repo / "untracked.txt").write_text("x")
    git(repo, "checkout", "-q", "--", ".")
    assert provenance.git_info(repo / "gm_pkg_git") == (head, False)  # untracked files don't count

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
    loaded = provenance.load_run_metadata(run)
    assert loaded == md
    assert provenance.RunMetadata.from_dict(md.to_dict()) == md


def test_package_as_module_and_version_from_dist_metadata(make_package: MakePackage) -> None:
    base = make_package("gm_pkg_dist", "X = 1\n", where="dist")
    info = base / "gm_pkg_dist-4.5.6.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gm_pkg_dist\nVersion: 4.5.6\n")
    import gm_pkg_dist  # type: ignore[import-not-found]

    md = provenance.RunMetadata.collect(gm_pkg_dist, argv=[])
    assert (md.package, md.package_version) == ("gm_pkg_dist", "4.5.6")
    assert md.jobmon_tool_version is None
    assert (md.git_commit, md.git_dirty) == (None, None)  # tmp_path is not a repository


@pytest.mark.parametrize("listed_in", ["RECORD", "top_level.txt"])
def test_version_of_a_distribution_named_otherwise_than_its_package(
    make_package: MakePackage, listed_in: str
) -> None:
    base = make_package("gm_pkg_renamed", "X = 1\n", where="renamed")
    info = base / "gm_renamed_dist-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gm-renamed-dist\nVersion: 2.0\n")
    if listed_in == "RECORD":
        (info / "RECORD").write_text(
            "gm_pkg_renamed/__init__.py,sha256=x,6\n"
            "gm_renamed_dist-2.0.dist-info/METADATA,,\n"
        )
    else:
        (info / "top_level.txt").write_text("gm_pkg_renamed\n")
    md = provenance.RunMetadata.collect("gm_pkg_renamed", argv=[])
    assert (md.package, md.package_version) == ("gm_pkg_renamed", "2.0")


def test_package_without_any_version(make_package: MakePackage) -> None:
    make_package("gm_pkg_bare", "__jobmon_tool_version__ = 7\n")
    md = provenance.RunMetadata.collect("gm_pkg_bare", argv=[])
    assert (md.package, md.package_version, md.jobmon_tool_version) == ("gm_pkg_bare", None, "7")


def test_unimportable_package_is_an_error() -> None:
    with pytest.raises(GristmillError, match="cannot import package 'gm_no_such_pkg'"):
        provenance.RunMetadata.collect("gm_no_such_pkg")


def test_default_package_is_the_caller_and_argv_is_sys_argv() -> None:
    md = provenance.RunMetadata.collect()
    assert md.package == __name__.partition(".")[0]
    assert md.argv == sys.argv
    assert md.tool_version == provenance._dist_version("gristmill")


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
    assert provenance.git_info(pkg) == (None, None)
    assert provenance.git_info(tmp_path)[0] == git(tmp_path, "rev-parse", "HEAD")


def test_git_info_without_git_or_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert provenance.git_info(tmp_path) == (None, None)
    assert provenance.git_info(tmp_path / "missing") == (None, None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable on PATH
    assert provenance.git_info(Path(SRC)) == (None, None)


def test_finish_rejects_unknown_status() -> None:
    md = provenance.RunMetadata()
    with pytest.raises(ValueError, match="'done' is not one of running, succeeded"):
        md.finish("done")  # type: ignore[arg-type]
    assert (md.status, md.ended_at) == ("running", None)


def test_load_missing_and_corrupt_metadata(tmp_path: Path) -> None:
    with pytest.raises(
        RunDirError, match=re.escape(f"no run metadata at {tmp_path / 'run_metadata.yaml'}")
    ):
        provenance.load_run_metadata(tmp_path)
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
            provenance.load_run_metadata(tmp_path)
        assert str(path) in str(info.value)


def test_a_resume_keeps_the_origin_and_appends_to_history() -> None:
    first = provenance.RunMetadata(argv=["gristmill", "run", "m:wf"], user="ann", host="a",
                                   started_at="2026-11-29T08:00:00+00:00",
                                   extra={"workflow": "wf", "backend": "slurm"})
    first.finish("failed", {"DONE": 3, "FAILED": 1})
    resume = provenance.RunMetadata(argv=["gristmill", "resume", "runs/x"], user="bob",
                                    host="b", cwd="/w", git_commit="abc", git_dirty=True,
                                    started_at="2026-11-30T09:00:00+00:00",
                                    extra={"backend": "local"})

    first.record_resume(resume)

    assert (first.argv, first.user, first.host) == (["gristmill", "run", "m:wf"], "ann", "a")
    assert first.started_at == "2026-11-29T08:00:00+00:00"
    assert (first.status, first.ended_at) == ("running", None)
    assert first.extra == {"workflow": "wf", "backend": "local"}
    assert first.history == [{
        "started_at": "2026-11-30T09:00:00+00:00", "argv": ["gristmill", "resume", "runs/x"],
        "user": "bob", "host": "b", "cwd": "/w", "tool_version": None,
        "package_version": None, "git_commit": "abc", "git_dirty": True,
    }]
    assert provenance.RunMetadata.from_dict(first.to_dict()) == first


def test_metadata_written_before_history_existed_loads_and_resumes(tmp_path: Path) -> None:
    old = provenance.RunMetadata(argv=["gristmill", "run", "m:wf"]).to_dict()
    del old["history"]
    (tmp_path / "run_metadata.yaml").write_text(yaml.safe_dump(old))
    now = provenance.RunMetadata(argv=["gristmill", "resume", str(tmp_path)])

    resumed = provenance.resumed_metadata(tmp_path, now)

    assert provenance.load_run_metadata(tmp_path).history == []
    assert resumed.argv == ["gristmill", "run", "m:wf"]
    assert [entry["argv"] for entry in resumed.history] == [now.argv]


def test_a_run_without_readable_metadata_resumes_with_new_metadata(tmp_path: Path) -> None:
    now = provenance.RunMetadata(argv=["gristmill", "resume", str(tmp_path)])

    assert provenance.resumed_metadata(tmp_path, now) is now  # no file: a 0.1 run directory
    (tmp_path / "run_metadata.yaml").write_text("status: [unclosed\n")
    assert provenance.resumed_metadata(tmp_path, now) is now


@pytest.mark.parametrize(
    "history",
    ["resumed twice", ["a"], [{"argv": "gristmill resume"}], [{"colour": "red"}],
     [{"git_dirty": "yes"}]],
)
def test_a_bad_history_is_refused(tmp_path: Path, history: object) -> None:
    (tmp_path / "run_metadata.yaml").write_text(yaml.safe_dump({"history": history}))

    with pytest.raises(RunDirError, match="field 'history' has an invalid value"):
        provenance.load_run_metadata(tmp_path)


def test_a_real_run_and_its_resumes_keep_the_first_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixtures_importable(monkeypatch)
    control, out = tmp_path / "control", tmp_path / "out"
    control.touch()  # the flaky task fails while this exists
    run = ["run", "engine_tasks:fix_and_resume", "--path", str(out), "--control", str(control),
           "--n", "2", "--run-dir", str(tmp_path / "runs")]

    assert gristmill(*run).returncode == 1
    run_dir = (tmp_path / "runs" / "latest").resolve()
    first = provenance.load_run_metadata(run_dir)
    assert first.argv[1:] == run
    assert (first.status, first.history) == ("failed", [])
    old = yaml.safe_load((run_dir / "run_metadata.yaml").read_text())
    del old["history"]  # as a version before history wrote it
    (run_dir / "run_metadata.yaml").write_text(yaml.safe_dump(old, sort_keys=False))

    assert gristmill("resume", str(run_dir)).returncode == 1  # still failing
    control.unlink()
    assert gristmill("resume", str(run_dir), "--retries", "1").returncode == 0

    final = provenance.load_run_metadata(run_dir)
    assert final.argv == first.argv
    assert (final.started_at, final.user, final.host) == (first.started_at, first.user,
                                                         first.host)
    assert (final.status, final.counts) == ("succeeded", {"DONE": 3})
    assert [entry["argv"][1:] for entry in final.history] == [
        ["resume", str(run_dir)], ["resume", str(run_dir), "--retries", "1"],
    ]
    for entry in final.history:
        assert (entry["user"], entry["host"]) == (first.user, first.host)
        assert str(entry["started_at"]) >= first.started_at
    assert final.history[0]["started_at"] <= final.history[1]["started_at"]


def gristmill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gristmill.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_from_dict_fills_missing_keys_with_defaults() -> None:
    md = provenance.RunMetadata.from_dict({"status": "failed", "counts": {"FAILED": 1}})
    assert (md.status, md.counts, md.tool_name) == ("failed", {"FAILED": 1}, "gristmill")


def test_dump_errors(tmp_path: Path) -> None:
    md = provenance.RunMetadata(extra={"obj": object()})
    with pytest.raises(RunDirError, match="YAML cannot write"):
        md.dump(tmp_path)
    with pytest.raises(RunDirError, match=r"cannot write .*missing"):
        provenance.RunMetadata().dump(tmp_path / "missing")
    assert names(tmp_path) == []
