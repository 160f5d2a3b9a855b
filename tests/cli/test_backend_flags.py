"""``run`` and ``resume`` take each backend's flags from the settings it declares.

No backend option is hard-coded in the CLI: a plugin's settings become flags as soon
as its distribution is on ``sys.path``, and a flag of a backend the run does not use
is refused before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result
from gm_testing import plugin_site

from gristmill.cli.app import main
from gristmill.store.db import Store


@pytest.fixture
def mine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin backend ``mine`` (gm_plugin_backend.MineBackend), registered as pip would."""
    site = plugin_site(tmp_path / "site", {"mine": "gm_plugin_backend:MineBackend"})
    monkeypatch.syspath_prepend(str(site))


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def stored(run_dir: Path) -> dict[str, object]:
    store = Store.open(run_dir, readonly=True)
    try:
        return store.meta()
    finally:
        store.close()


def refused(result: Result, root: Path, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not root.exists() or not any(root.iterdir())


def test_the_help_lists_every_backends_flags_under_its_name() -> None:
    result = cli("run", "--help")
    assert result.exit_code == 0, result.output
    text = result.output
    for heading, flag in [("local", "--max-cores"), ("local", "--strict-resources"),
                          ("dask", "--dask-scheduler"), ("slurm", "--slurm-partition"),
                          ("sge", "--sge-queue"), ("jobmon", "--jobmon-cluster")]:
        assert f"Options of backend {heading}:" in text
        section = text.split(f"Options of backend {heading}:")[1].split("Options of")[0]
        assert flag in section, (heading, flag)
    assert text.index("Options of backend local") < text.index("Options of backend dask")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--dask-scheduler", "tcp://nowhere:8786"],
         ["--dask-scheduler is an option of backend dask, but this run uses backend local"]),
        (["--backend", "slurm", "--max-cores", "2"],
         ["--max-cores is an option of backend local, but this run uses backend slurm",
          "choose --backend local"]),
        (["--backend", "dask", "--no-strict-resources"],
         ["--strict-resources is an option of backend local, but this run uses backend dask"]),
    ],
)
def test_a_flag_of_another_backend_exits_2_naming_both_and_writes_nothing(
    et: ModuleType, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    root = tmp_path / "runs"
    result = cli("run", "engine_tasks:one_exit", "--code", "0", *args, "--run-dir", str(root))
    refused(result, root, *fragments)


def test_the_backend_a_flag_must_belong_to_may_come_from_the_spec(
    et: ModuleType, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("workflow: {backend: sge}\n")
    root = tmp_path / "runs"
    result = cli("run", "engine_tasks:one_exit", "--code", "0", "--spec", str(spec),
                 "--max-mem", "1G", "--run-dir", str(root))
    refused(result, root, "--max-mem is an option of backend local, but this run uses "
            "backend sge")


def test_flags_reach_the_backend_parsed_and_resume_checks_them_against_the_runs_backend(
    et: ModuleType, tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    first = cli("run", "engine_tasks:one_exit", "--code", "0", "--max-mem", "1G",
                "--max-cores", "2", "--no-strict-resources", "--run-dir", str(root))
    assert first.exit_code == 0, first.output
    run_dir = (root / "latest").resolve()
    assert stored(run_dir)["backend_options"] == {
        "max_mem": 2**30, "max_cores": 2, "strict_resources": False}
    refused(cli("resume", str(run_dir), "--slurm-account", "covid"), tmp_path / "none",
            "--slurm-account is an option of backend slurm, but this run uses backend local")
    again = cli("resume", str(run_dir), "--max-cores", "1")
    assert again.exit_code == 0, again.output
    assert stored(run_dir)["backend_options"] == {
        "max_mem": 2**30, "max_cores": 1, "strict_resources": False}


def test_a_plugin_backends_settings_become_flags_of_run_and_resume(
    et: ModuleType, tmp_path: Path, mine: None
) -> None:
    mark, root = tmp_path / "mark", tmp_path / "runs"
    assert "--mine-mark" in cli("run", "--help").output
    first = cli("run", "engine_tasks:appends", "--path", str(tmp_path / "out"), "--n", "1",
                "--backend", "mine", "--mine-mark", str(mark), "--option", "max_cores=2",
                "--run-dir", str(root))
    assert first.exit_code == 0, first.output
    run_dir = (root / "latest").resolve()
    assert stored(run_dir)["backend"] == "mine"
    assert mark.read_text() == "built\n"
    again = cli("resume", str(run_dir), "--mine-mark", str(mark))
    assert again.exit_code == 0, again.output
    assert mark.read_text() == "built\n" * 2
    refused(cli("run", "engine_tasks:one_exit", "--mine-mark", str(mark), "--run-dir",
                str(tmp_path / "other")), tmp_path / "other",
            "--mine-mark is an option of backend mine, but this run uses backend local")
