"""Tests for gristmill.build.layout: the packages a hatchling project ships, found as hatchling
finds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gristmill.build.layout import package_paths
from gristmill.errors import GristmillError


def tree(root: Path, *files: str) -> Path:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def pyproject(name: str = "my-pkg", **tool_hatch_build: Any) -> dict[str, Any]:
    return {"project": {"name": name}, "tool": {"hatch": {"build": tool_hatch_build}}}


@pytest.mark.parametrize(("files", "name", "found"), [
    (["src/my_pkg/__init__.py"], "my-pkg", "src/my_pkg"),
    (["my_pkg/__init__.py"], "my-pkg", "my_pkg"),
    (["my_pkg.py"], "my-pkg", "my_pkg.py"),
    (["src/my_pkg/__init__.py"], "My.Pkg", "src/my_pkg"),  # the normalized name
    (["src/My_Pkg/__init__.py"], "My-Pkg", "src/My_Pkg"),  # the raw name first
    (["my_pkg/__init__.py", "src/my_pkg/__init__.py"], "my-pkg", "my_pkg"),  # hatchling's order
])
def test_default_discovery_follows_hatchling(
    tmp_path: Path, files: list[str], name: str, found: str
) -> None:
    assert package_paths(tree(tmp_path, *files), pyproject(name)) == [tmp_path / found]


def test_the_wheel_targets_packages_come_before_discovery(tmp_path: Path) -> None:
    tree(tmp_path, "src/my_pkg/__init__.py", "lib/other/__init__.py", "lib/more/__init__.py")
    wheel = pyproject(targets={"wheel": {"packages": ["lib/other"]}}, packages=["lib/more"])
    assert package_paths(tmp_path, wheel) == [tmp_path / "lib/other"]
    assert package_paths(tmp_path, pyproject(packages=["lib/more"])) == [tmp_path / "lib/more"]
    assert package_paths(tmp_path, wheel, ["lib/more", "src/my_pkg"]) == [
        tmp_path / "lib/more", tmp_path / "src/my_pkg"]


@pytest.mark.parametrize(("settings", "configured", "words"), [
    ({}, None, "found no package of project 'my-pkg'"),
    ({"targets": {"wheel": {"only-include": ["src"]}}}, None, "selects files with only-include="),
    ({"packages": ["src/missing"]}, None, "names 'src/missing', which does not exist"),
    ({}, ["src/missing"], "[tool.hatch.metadata.hooks.gristmill] packages names 'src/missing'"),
    ({}, "src/my_pkg", "must be a list of paths"),
])
def test_what_cannot_be_found_says_where_to_name_it(
    tmp_path: Path, settings: dict[str, Any], configured: object, words: str
) -> None:
    with pytest.raises(GristmillError) as info:
        package_paths(tree(tmp_path, "lib/x.txt"), pyproject(**settings), configured)
    assert words in str(info.value)
    assert "packages = [" in str(info.value) or "does not exist" in str(info.value)
