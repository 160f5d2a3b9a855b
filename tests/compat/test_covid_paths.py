"""paths: covid_shared's names, site roots moved by the environment, production lookups."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gristmill.compat.covid_shared import paths

SHOW = ("from gristmill.compat.covid_shared import paths; "
        "print(paths.COVID_19, paths.SEIR_FIT_ROOT, paths.R_SINGULARITY_IMAGE_PATH)")


def show(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_COVID_SHARED")}
    done = subprocess.run([sys.executable, "-c", SHOW], env={**clean, **env},
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.split()


def test_the_site_roots_default_to_covid_shareds_and_follow_the_environment(
    tmp_path: Path,
) -> None:
    assert show() == ["/ihme/covid-19", "/ihme/covid-19/seir-fit",
                      "/ihme/singularity-images/lbd/releases/lbd_full_20200128.simg"]
    assert show(GRISTMILL_COVID_SHARED_ROOT=str(tmp_path),
                GRISTMILL_COVID_SHARED_R_IMAGE="/images/r.simg") == [
        str(tmp_path), str(tmp_path / "seir-fit"), "/images/r.simg"]


def test_run_file_and_link_names_are_covid_shareds() -> None:
    names = {name: getattr(paths, name).as_posix() for name in (
        "BEST_LINK", "LATEST_LINK", "PRODUCTION_RUN", "METADATA_FILE_NAME", "LOG_DIR",
        "LOG_FILE_NAME", "DETAILED_LOG_FILE_NAME")}
    assert names == {
        "BEST_LINK": "best", "LATEST_LINK": "latest", "PRODUCTION_RUN": "production-runs",
        "METADATA_FILE_NAME": "metadata.yaml", "LOG_DIR": "logs",
        "LOG_FILE_NAME": "master_log.txt", "DETAILED_LOG_FILE_NAME": "master_log.json"}
    gpr = paths.MOBILITY_COVARIATES_GPR_OUTPUT_ROOT
    assert gpr.parent == paths.MOBILITY_COVARIATES_OUTPUT_ROOT


def test_the_latest_production_run_and_its_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "model-inputs"
    monkeypatch.setattr(paths, "MODEL_INPUTS_ROOT", inputs)
    production = inputs / "production-runs"
    production.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no production run tagged YYYY_MM_DD"):
        paths.latest_production_etl_path()
    for run, tag in (("2026_01_02.01", "2026_01_02"), ("2026_02_01.03", "2026_02_01")):
        (inputs / run).mkdir()
        (production / tag).symlink_to(inputs / run)
    (production / "README").write_text("not a run")
    newest = inputs / "2026_02_01.03"
    assert paths.latest_production_etl_path() == newest
    (newest / "metadata.yaml").write_text(yaml.safe_dump({
        "snapshot_metadata": {"app_metadata": {"run_arguments": {"snapshot_directory": "/s/1"}}},
    }))
    monkeypatch.setattr(paths, "SNAPSHOT_ROOT", tmp_path / "snapshot-data")
    monkeypatch.setattr(paths, "DATA_FIXES_ROOT", tmp_path / "data-fixes")
    assert paths.latest_production_snapshot_path() == Path("/s/1")
    with pytest.raises(KeyError, match="data_fixes_metadata"):
        paths.latest_production_data_fixes_path()


def test_make_dir_tree_gives_every_new_level_the_shared_mode(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        paths.make_dir_tree(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    for level in ("a", "a/b", "a/b/c"):
        assert (tmp_path / level).stat().st_mode & 0o777 == paths.DIRECTORY_PERMISSIONS
    (tmp_path / "a" / "f.txt").write_text("x")
    (tmp_path / "a" / "f.txt").chmod(0o600)
    paths.recursive_set_permissions(tmp_path / "a")
    assert (tmp_path / "a" / "f.txt").stat().st_mode & 0o777 == paths.FILE_PERMISSIONS
