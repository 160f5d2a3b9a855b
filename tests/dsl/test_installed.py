"""Tests for gristmill.dsl.installed: what a console script runs, and which distribution
provides a package, for regular and editable installs of every common build backend.

The editable cases build small real packages in temporary directories and install them
with ``pip install -e`` into a private prefix, offline (no build isolation): the build
backends come from the test extra, and a case whose backend is missing skips, saying why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from gm_testing import (
    InstalledPackage,
    Prefix,
    backend_missing,
    pip_install,
    run_in_site,
    run_python,
    script_dist,
    subprocess_env,
    write_package,
)

from gristmill.dsl import installed
from gristmill.dsl.installed import distributions_of, script_runs, script_target

PIP_SCRIPT = """\
#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {name}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""

# pip's form when the interpreter's path is too long for a shebang line.
LONG_SHEBANG = """\
#!/bin/sh
'''exec' "/a/very/long/path/bin/python" "$0" "$@"
' '''
# -*- coding: utf-8 -*-
import re
import sys
from seiir_like.tasks import fit
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(fit.main())
"""

# uv's form.
UV_SCRIPT = """\
#!/venv/bin/python
# -*- coding: utf-8 -*-
import sys
from seiir_like.tasks import fit
if __name__ == "__main__":
    if sys.argv[0].endswith("-script.pyw"):
        sys.argv[0] = sys.argv[0][:-11]
    elif sys.argv[0].endswith(".exe"):
        sys.argv[0] = sys.argv[0][:-4]
    sys.exit(fit.main())
"""


# --- what a script runs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target"),
    [
        (PIP_SCRIPT.format(python="/v/bin/python", module="seiir_like.tasks", name="fit",
                           func="fit.main"), "seiir_like.tasks:fit.main"),
        (PIP_SCRIPT.format(python="/v/bin/python", module="pkg.mod", name="Outer",
                           func="Outer.task.main"), "pkg.mod:Outer.task.main"),
        (PIP_SCRIPT.format(python="/v/bin/python", module="gristmill.cli", name="main",
                           func="main"), "gristmill.cli:main"),
        (LONG_SHEBANG, "seiir_like.tasks:fit.main"),
        (UV_SCRIPT, "seiir_like.tasks:fit.main"),
        # What gristmill cannot read as a console script: no guess.
        (PIP_SCRIPT.format(python="/v/bin/python", module="a", name="fit", func="other.main"),
         None),
        ("#!/bin/sh\nexec python -m seiir_like.tasks \"$@\"\n", None),
        ("from a import b\nfrom c import d\nsys.exit(b())\n", None),
        ("\x7fELF\x00\x00from a import b\nsys.exit(b())\n", None),
    ],
)
def test_script_target_reads_what_the_file_runs(
    tmp_path: Path, text: str, target: str | None
) -> None:
    path = tmp_path / "fit"
    path.write_text(text)
    assert script_target(path) == target


def test_script_target_of_a_missing_file_is_unknown(tmp_path: Path) -> None:
    assert script_target(tmp_path / "nope") is None


def test_an_old_setuptools_script_is_read_through_its_distribution(
    installed_pkg: InstalledPackage, tmp_path: Path
) -> None:
    path = tmp_path / "gm-fixture-pkg-fx-echo"
    path.write_text(
        "#!/usr/bin/python\n"
        "# EASY-INSTALL-ENTRY-SCRIPT: 'gm-fixture-pkg==0.0.1','console_scripts',"
        "'gm-fixture-pkg-fx-echo'\n"
        "import re\nimport sys\n"
        "if __name__ == '__main__':\n"
        "    sys.exit(load_entry_point('gm-fixture-pkg==0.0.1', 'console_scripts', "
        "'gm-fixture-pkg-fx-echo')())\n"
    )
    assert script_target(path) == "gm_fixture_pkg.tasks:fx_echo.main"


def test_a_script_gristmill_cannot_read_counts_only_if_it_is_what_pip_recorded(
    tmp_path: Path,
) -> None:
    """A launcher of another form (a binary, a shell wrapper) is trusted when it is byte for
    byte the file its distribution's RECORD lists, and not once anything rewrote it."""
    content = b"\x7fELF\x00 a launcher of some other installer\n"
    ep = script_dist(tmp_path / "site", tmp_path / "bin", "gm-fake-run", content)
    path = installed.script_path(ep)
    assert path == (tmp_path / "bin" / "gm-fake-run").resolve()
    assert script_runs(ep, path)
    path.write_bytes(content + b"rewritten by another package\n")
    assert not script_runs(ep, path)


def test_a_readable_script_is_judged_by_what_it_runs(tmp_path: Path) -> None:
    text = PIP_SCRIPT.format(python="/p", module="gm_fake", name="run", func="run.main")
    ep = script_dist(tmp_path / "site", tmp_path / "bin", "gm-fake-run", text.encode())
    path = tmp_path / "bin" / "gm-fake-run"
    assert script_runs(ep, path)
    path.write_text(text.replace("gm_fake", "gm_other"))
    assert not script_runs(ep, path)


# --- which distribution provides a package ----------------------------------------------------


def test_a_package_that_is_not_installed_has_no_distribution() -> None:
    assert distributions_of("gm_flows") == []  # importable from tests/fixtures, not installed
    assert distributions_of("gm_no_such_package") == []


def test_a_regular_install_is_found_by_its_files(installed_pkg: InstalledPackage) -> None:
    assert distributions_of("gm_fixture_pkg") == ["gm-fixture-pkg"]
    assert distributions_of("gm_fixture_pkg.tasks") == ["gm-fixture-pkg"]


def test_the_readme_install_of_the_example_is_found() -> None:
    """``pip install -e . -e examples/seiir_like`` (hatchling, editable) as the README says.

    The example lives inside gristmill's own source tree: each must still be found as its
    own distribution, not as the other."""
    if importlib.util.find_spec("seiir_like") is None:
        pytest.skip("examples/seiir_like is not installed (pip install -e examples/seiir_like)")
    assert distributions_of("seiir_like") == ["seiir-like"]
    assert distributions_of("gristmill") == ["gristmill"]


TASKS = '''\
import click

import gristmill as gm


@gm.task
@click.option("--n", type=int, required=True)
def fit(n: int) -> None:
    """Fit."""
    click.echo(f"fit {n} from {__name__}")
'''

#: (id, build backend, layout, pip --config-settings, [tool] table, module the mode needs)
EDITABLE = [
    ("hatch", "hatchling", "src", {}, "", None),
    ("hatchexact", "hatchling", "src", {},
     "[tool.hatch.build]\ndev-mode-exact = true\n", "editables"),
    ("st", "setuptools", "src", {}, "", None),
    ("stflat", "setuptools", "flat", {}, "", None),
    ("ststrict", "setuptools", "src", {"editable_mode": "strict"}, "", None),
    ("stcompat", "setuptools", "src", {"editable_mode": "compat"}, "", None),
    ("pdm", "pdm-backend", "src", {}, "", None),
    ("pdmeditables", "pdm-backend", "src", {},
     '[tool.pdm.build]\neditable-backend = "editables"\n', "editables"),
]


@pytest.mark.parametrize(
    ("case", "backend", "layout", "config", "tool", "needs"), EDITABLE,
    ids=[case[0] for case in EDITABLE],
)
def test_check_and_dispatch_work_after_an_editable_install(
    tmp_path: Path, case: str, backend: str, layout: str, config: dict[str, str], tool: str,
    needs: str | None,
) -> None:
    """``pip install -e .`` then ``gristmill check PKG``, as the README and quickstart do."""
    reason = backend_missing(backend, *([needs] if needs else []))
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")
    package = f"gm_ed_{case}"
    script = f"gm-ed-{case}-fit"  # the default name: package, then task
    project = write_package(tmp_path, package, TASKS, {script: f"{package}.tasks:fit.main"},
                            backend=backend, layout=layout, tool=tool)
    prefix = pip_install(tmp_path / "prefix", project, editable=True, config=config)
    assert not (prefix.site_packages / package).exists()  # editable: the code stays in place

    done = run_in_site(prefix, "check", package)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == f"{package}: installed console scripts match the code\n"

    dispatch = site_python(prefix, (
        f"from gristmill.dsl.installed import distributions_of; "
        f"from gristmill.dsl.scripts import script_prefix; import {package}.tasks as t; "
        f"print(json.dumps([distributions_of('{package}'), script_prefix(t.fit), t.__file__]))"
    ))
    dists, prefix_argv, source = json.loads(dispatch.stdout)
    assert dists == [package.replace("_", "-")]
    assert prefix_argv == [str((prefix.bin_dir / script).resolve())]
    assert Path(source).resolve().is_relative_to(project.resolve())  # the code in place


def site_python(prefix: Prefix, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python that reads ``prefix``'s site-packages like ``site``."""
    env = subprocess_env()
    env["PATH"] = f"{prefix.bin_dir}{os.pathsep}{env.get('PATH', '')}"
    setup = f"import json, site; site.addsitedir({str(prefix.site_packages)!r}); "
    done = run_python("-c", setup + code, env=env)
    assert done.returncode == 0, done.stderr
    return done


def test_an_editable_install_is_not_mistaken_for_another(tmp_path: Path) -> None:
    """Two editable projects, one inside the other's tree: each package maps to its own."""
    reason = backend_missing("hatchling")
    if reason is not None:
        pytest.skip(reason)
    outer = write_package(tmp_path, "gm_ed_outer", TASKS, {"gm-ed-outer-fit":
                                                           "gm_ed_outer.tasks:fit.main"})
    inner = write_package(outer / "examples", "gm_ed_inner", TASKS, {"gm-ed-inner-fit":
                                                                     "gm_ed_inner.tasks:fit.main"})
    prefix = pip_install(tmp_path / "prefix", outer, editable=True)
    pip_install(tmp_path / "prefix", inner, editable=True)
    done = site_python(prefix, (
        "from gristmill.dsl.installed import distributions_of; "
        "print(json.dumps([distributions_of('gm_ed_outer'), distributions_of('gm_ed_inner')]))"
    ))
    assert json.loads(done.stdout) == [["gm-ed-outer"], ["gm-ed-inner"]]


def test_a_package_shadowed_by_nothing_installed_is_not_claimed(tmp_path: Path) -> None:
    """An editable install whose .pth points at a directory without the package does not
    provide it (a bare source checkout on PYTHONPATH is not an install)."""
    reason = backend_missing("hatchling")
    if reason is not None:
        pytest.skip(reason)
    project = write_package(tmp_path, "gm_ed_alone", TASKS, {})
    prefix = pip_install(tmp_path / "prefix", project, editable=True)
    loose = tmp_path / "loose" / "gm_ed_loose"
    loose.mkdir(parents=True)
    (loose / "__init__.py").write_text("")
    env_path = str(loose.parent)
    done = site_python(prefix, (
        f"import sys; sys.path.insert(0, {env_path!r}); "
        "from gristmill.dsl.installed import distributions_of; "
        "print(json.dumps(distributions_of('gm_ed_loose')))"
    ))
    assert json.loads(done.stdout) == []
