"""Tests for gristmill.build.hooks: the hatchling metadata hook, through hatchling itself.

The first tests ask hatchling for a project's metadata in this process (hatchling finds
the hook through gristmill's ``hatch`` entry point, as a build does). The ``slow`` ones
build and install real packages with pip into a fresh venv, which reaches this
environment's hatchling and gristmill through a ``.pth`` file (offline, no isolation).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path

import attrs
import pytest
from hatchling.metadata.core import ProjectMetadata
from hatchling.plugin.manager import PluginManager

from gristmill.build.hooks import TaskScriptWarning
from gristmill.errors import GristmillError

HOOK = "[tool.hatch.metadata.hooks.gristmill]\n"
TASKS = """\
import click

import gristmill as gm


@gm.task
@click.option("--n", type=int, required=True)
def fit(n: int) -> None:
    \"\"\"Fit.\"\"\"
    click.echo(f"fit {n} in {__name__}")


@gm.task(script="my-report", name="report_{n}")
@click.option("--n", type=int, default=0)
def report(n: int) -> None:
    click.echo(f"report {n}")


@gm.task(program=["Rscript", "plot.R"])
def plot() -> None: ...
"""


def project(root: Path, files: dict[str, str], *, hook: str = HOOK,
            dynamic: str = 'dynamic = ["scripts"]\n', name: str = "gm-hooked",
            dependencies: str = "[]") -> Path:
    """A hatchling project at ``root``: ``files`` under ``src/<package>/``, the hook enabled."""
    package = name.replace("-", "_")
    for relative, text in files.items():
        path = root / "src" / package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling", "gristmill"]\n'
        'build-backend = "hatchling.build"\n\n'
        f'[project]\nname = "{name}"\nversion = "0.1"\n{dynamic}'
        f"dependencies = {dependencies}\n\n{hook}"
    )
    return root


def scripts_of(root: Path) -> dict[str, str]:
    """``[project.scripts]`` as hatchling computes it for a build of ``root``."""
    scripts: dict[str, str] = ProjectMetadata(str(root), PluginManager()).core.scripts
    return scripts


def test_the_hook_declares_each_task_script(tmp_path: Path) -> None:
    root = project(tmp_path, {"__init__.py": "", "tasks.py": TASKS})
    assert scripts_of(root) == {
        "gm-hooked-fit": "gm_hooked.tasks:fit.main",
        "my-report": "gm_hooked.tasks:report.main",
    }


def test_scripts_written_by_hand_are_kept_and_win(tmp_path: Path) -> None:
    hook = HOOK + ('[tool.hatch.metadata.hooks.gristmill.scripts]\n'
                   'gm-hooked = "gm_hooked.cli:main"\n'
                   'my-report = "gm_hooked.cli:report"\n')
    root = project(tmp_path, {"__init__.py": "", "tasks.py": TASKS}, hook=hook)
    with pytest.warns(TaskScriptWarning) as caught:
        scripts = scripts_of(root)
    assert scripts == {
        "gm-hooked": "gm_hooked.cli:main",
        "gm-hooked-fit": "gm_hooked.tasks:fit.main",
        "my-report": "gm_hooked.cli:report",
    }
    (warning,) = caught
    header = (root / "pyproject.toml").read_text().splitlines().index(
        "[tool.hatch.metadata.hooks.gristmill.scripts]")
    assert "declares my-report = \"gm_hooked.cli:report\", which replaces the script of the " \
           "task gm_hooked.tasks:report.main" in str(warning.message)
    assert (warning.filename, warning.lineno) == (str(root / "pyproject.toml"), header + 1)


DYNAMIC = """\
import gristmill as gm

SCRIPT = "fit-" + "later"


@gm.task
def ok() -> None: ...


@gm.task(script=SCRIPT)
def fit() -> None: ...
"""


def test_an_unreadable_decorator_warns_at_its_file_and_line(tmp_path: Path) -> None:
    root = project(tmp_path, {"__init__.py": "", "tasks.py": DYNAMIC})
    with pytest.warns(TaskScriptWarning) as caught:
        scripts = scripts_of(root)
    assert scripts == {"gm-hooked-ok": "gm_hooked.tasks:ok.main"}
    (warning,) = caught
    assert (warning.filename, warning.lineno) == (str(root / "src/gm_hooked/tasks.py"), 10)
    assert str(warning.message).startswith("script=SCRIPT on task fit is not a literal string")
    assert "[tool.hatch.metadata.hooks.gristmill.scripts]" in str(warning.message)


def test_a_script_by_hand_settles_an_unreadable_decorator(tmp_path: Path) -> None:
    hook = HOOK + ('[tool.hatch.metadata.hooks.gristmill.scripts]\n'
                   'fit-later = "gm_hooked.tasks:fit.main"\n')
    root = project(tmp_path, {"__init__.py": "", "tasks.py": DYNAMIC}, hook=hook)
    assert scripts_of(root) == {  # and no warning (they are errors here)
        "fit-later": "gm_hooked.tasks:fit.main", "gm-hooked-ok": "gm_hooked.tasks:ok.main"}


def test_the_packages_of_the_wheel_are_the_ones_scanned(tmp_path: Path) -> None:
    hook = '[tool.hatch.build.targets.wheel]\npackages = ["lib/gm_other"]\n\n' + HOOK
    root = project(tmp_path, {"tasks.py": TASKS}, hook=hook)  # src/gm_hooked: not shipped
    (tmp_path / "lib/gm_other").mkdir(parents=True)
    (tmp_path / "lib/gm_other/__init__.py").write_text("import gristmill\n"
                                                       "@gristmill.task\ndef fit(): ...\n")
    assert scripts_of(root) == {"gm-other-fit": "gm_other:fit.main"}


@pytest.mark.parametrize(("old", "new", "words"), [
    ('dynamic = ["scripts"]\n', "", 'must list it as dynamic: dynamic = ["scripts"]'),
    ('dynamic = ["scripts"]\n', 'dynamic = ["readme"]\n', "must list it as dynamic"),
    ('dynamic = ["scripts"]\ndependencies = []\n',
     'dependencies = []\n\n[project.scripts]\nx = "m:f"\n',
     "move the [project.scripts] entries into [tool.hatch.metadata.hooks.gristmill.scripts]"),
    (HOOK, HOOK + "package = ['src']\n",
     "has unknown option(s) package; it takes packages and scripts"),
    (HOOK, HOOK + "scripts = ['x']\n",
     "[tool.hatch.metadata.hooks.gristmill.scripts] must map script names to targets"),
], ids=["no dynamic", "other dynamic", "static scripts", "unknown option", "scripts not a table"])
def test_a_misconfigured_project_is_refused_with_the_fix(
    tmp_path: Path, old: str, new: str, words: str
) -> None:
    root = project(tmp_path, {"__init__.py": "", "tasks.py": TASKS})
    text = (root / "pyproject.toml").read_text()
    assert old in text
    (root / "pyproject.toml").write_text(text.replace(old, new))
    with pytest.raises(GristmillError) as info:
        scripts_of(root)
    assert words in str(info.value)


def test_two_tasks_wanting_one_script_fail_the_build(tmp_path: Path) -> None:
    task = "import gristmill as gm\n@gm.task(script='same')\ndef {}(): ...\n"
    root = project(tmp_path, {"__init__.py": "", "a.py": task.format("one"),
                              "b.py": task.format("two")})
    with pytest.raises(GristmillError, match=r"gm_hooked\.a:one and gm_hooked\.b:two both want"):
        scripts_of(root)


# --- real builds and installs into a fresh venv ------------------------------------------------


@attrs.frozen
class Venv:
    """A fresh venv that sees this environment's packages (hatchling, gristmill) through a .pth."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def run(self, *args: str | Path, cwd: Path | None = None,
            ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_INDEX_URL")}
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env,
                              cwd=cwd, timeout=300, check=False)

    def pip(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        done = self.run(self.python, "-m", "pip", *args, "--no-deps", "--no-build-isolation",
                        "--no-index", "--disable-pip-version-check")
        assert done.returncode == 0, f"pip {' '.join(map(str, args))}:\n{done.stdout}\n" \
                                     f"{done.stderr}"
        return done

    def check(self, package: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.python, "-m", "gristmill.cli", "check", package)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    path = tmp_path_factory.mktemp("hook_venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    made = Venv(path)
    site = made.run(made.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    ours = sysconfig.get_path("purelib")  # hatchling, pip, gristmill (editable) and its deps
    (Path(site.stdout.strip()) / "gm_parent_env.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n")
    return made


HEAVY = """\
import gm_not_installed_anywhere  # a dependency this environment lacks

import gristmill as gm


@gm.task
def crunch() -> None:
    gm_not_installed_anywhere.run()
"""


@attrs.frozen
class Built:
    root: Path
    wheel: Path
    output: str


@pytest.fixture(scope="module")
def built(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A wheel of a package with a module that cannot import, and one unreadable decorator."""
    root = project(tmp_path_factory.mktemp("hooked"), {
        "__init__.py": "", "tasks.py": TASKS, "heavy.py": HEAVY, "later.py": DYNAMIC,
    }, dependencies='["gm-not-installed-anywhere>=1"]')
    out = root.parent / "dist"
    done = venv.pip("wheel", "-v", "--wheel-dir", out, root)
    (wheel,) = out.glob("gm_hooked-*.whl")
    return Built(root, wheel, done.stdout + done.stderr)


def wheel_scripts(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        return archive.read(name).decode()


@pytest.mark.slow
def test_the_wheel_declares_every_task_script(built: Built) -> None:
    assert wheel_scripts(built.wheel) == (
        "[console_scripts]\n"
        "gm-hooked-crunch = gm_hooked.heavy:crunch.main\n"
        "gm-hooked-fit = gm_hooked.tasks:fit.main\n"
        "gm-hooked-ok = gm_hooked.later:ok.main\n"
        "my-report = gm_hooked.tasks:report.main\n"
    )


@pytest.mark.slow
def test_a_package_whose_dependencies_are_missing_still_builds(
    built: Built, venv: Venv
) -> None:
    """heavy.py imports a module installed nowhere: the build never imports the package."""
    missing = venv.run(venv.python, "-c", "import gm_not_installed_anywhere")
    assert "No module named 'gm_not_installed_anywhere'" in missing.stderr
    assert "gm-hooked-crunch = gm_hooked.heavy:crunch.main" in wheel_scripts(built.wheel)


@pytest.mark.slow
def test_the_build_output_names_the_unreadable_decorator(built: Built) -> None:
    where = built.root / "src/gm_hooked/later.py"
    assert f"{where}:10: TaskScriptWarning: script=SCRIPT on task fit is not a literal " \
           f"string" in built.output


@pytest.mark.slow
def test_the_installed_wheel_scripts_run(built: Built, venv: Venv) -> None:
    venv.pip("install", built.wheel)
    fit = venv.run(venv.path / "bin" / "gm-hooked-fit", "--n", "3")
    assert (fit.returncode, fit.stdout) == (0, "fit 3 in gm_hooked.tasks\n"), fit.stderr
    report = venv.run(venv.path / "bin" / "my-report", "--n", "4")
    assert (report.returncode, report.stdout) == (0, "report 4\n"), report.stderr
    assert not (venv.path / "bin" / "gm-hooked-plot").exists()  # a program task


@pytest.mark.slow
def test_an_sdist_builds_a_wheel_with_the_same_scripts(built: Built, venv: Venv) -> None:
    """pip installs an sdist by building a wheel from it, where PKG-INFO holds the metadata."""
    out = built.root.parent / "sdist"
    code = ("import sys; from hatchling.build import build_sdist, build_wheel; "
            "print(build_sdist(sys.argv[1]))")
    done = venv.run(venv.python, "-c", code, out, cwd=built.root)
    assert done.returncode == 0, done.stderr
    with tarfile.open(out / done.stdout.strip()) as archive:
        archive.extractall(out, filter="data")
    (unpacked,) = [p for p in out.iterdir() if p.is_dir()]
    assert (unpacked / "PKG-INFO").is_file()
    code = "import sys; from hatchling.build import build_wheel; print(build_wheel(sys.argv[1]))"
    done = venv.run(venv.python, "-c", code, out, cwd=unpacked)
    assert done.returncode == 0, done.stderr
    assert wheel_scripts(out / done.stdout.strip()) == wheel_scripts(built.wheel)


GROWN = """

@gm.task
@click.option("--x", default="a")
def extra(x: str) -> None:
    click.echo(f"extra {x}")
"""


@pytest.mark.slow
def test_an_editable_install_grows_a_script_when_a_task_is_added(
    venv: Venv, tmp_path: Path
) -> None:
    # (its own script name: gm-hooked's my-report is installed in this venv too)
    tasks = TASKS.replace("my-report", "gm-grow-report")
    root = project(tmp_path / "grow", {"__init__.py": "", "tasks.py": tasks}, name="gm-grow")
    venv.pip("install", "-e", root)
    check = venv.check("gm_grow")
    assert (check.returncode, check.stdout) == (0, "gm_grow: installed console scripts match "
                                                   "the code\n"), check.stderr
    tasks = root / "src/gm_grow/tasks.py"
    tasks.write_text(tasks.read_text() + GROWN)
    stale = venv.check("gm_grow")
    assert stale.returncode == 1
    assert stale.stderr.splitlines() == [
        "task script 'gm-grow-extra' -> gm_grow.tasks:extra.main is not installed",
        f"fix: pip install -e {root} (its build hook writes the task scripts)",
    ]
    venv.pip("install", "-e", root)
    extra = venv.run(venv.path / "bin" / "gm-grow-extra", "--x", "b")
    assert (extra.returncode, extra.stdout) == (0, "extra b\n"), extra.stderr
    assert venv.check("gm_grow").returncode == 0
    # a decorator the hook cannot read: check names it, the next build warns about it
    (root / "src/gm_grow/later.py").write_text(DYNAMIC)
    unread = venv.check("gm_grow")
    assert unread.returncode == 1
    assert unread.stderr.splitlines()[0] == (
        f"{root / 'src/gm_grow/later.py'}:10: script=SCRIPT on task fit is not a literal "
        "string; write the name itself (script=\"my-name\"); the gristmill build hook "
        "declares no console script for this task"
    )
