"""Tests for gristmill.build.scan: tasks read from source, never imported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from gm_testing import InstalledPackage

from gristmill.build.scan import Scan, package_modules, scan_importable, scan_package, scan_source
from gristmill.dsl.scripts import scripts_table
from gristmill.errors import GristmillError

PATH = Path("pkg/tasks.py")


def scan(source: str, module: str = "pkg.tasks") -> Scan:
    return scan_source(textwrap.dedent(source), module, PATH)


def scripts(source: str, module: str = "pkg.tasks") -> dict[str, str]:
    found = scan(source, module)
    assert not found.unreadable, [str(u) for u in found.unreadable]
    return {t.script: t.key for t in found.tasks}


#: (id, source, {script: task key}): every spelling of gristmill's ``task`` is found.
SPELLINGS = [
    ("gm.task bare", """
        import gristmill as gm
        @gm.task
        def fit(): ...
     """, {"pkg-fit": "pkg.tasks:fit"}),
    ("gm.task called", """
        import gristmill as gm
        @gm.task(mem="1G", cores=2)
        def fit(): ...
     """, {"pkg-fit": "pkg.tasks:fit"}),
    ("gristmill.task", """
        import gristmill
        @gristmill.task()
        def fit(): ...
     """, {"pkg-fit": "pkg.tasks:fit"}),
    ("from gristmill import task", """
        from gristmill import task
        @task
        def fit(): ...
     """, {"pkg-fit": "pkg.tasks:fit"}),
    ("from gristmill import task as t", """
        from gristmill import task as t
        @t("1G")
        def fit(): ...
     """, {"pkg-fit": "pkg.tasks:fit"}),
    ("from gristmill import *", """
        from gristmill import *
        @task
        def fit(): ...
     """, {"pkg-fit": "pkg.tasks:fit"}),
    ("the defining module", """
        from gristmill.dsl.task import task as make_task
        import gristmill.dsl.task as gt
        import gristmill.dsl.task
        @make_task
        def one(): ...
        @gt.task()
        def two(): ...
        @gristmill.dsl.task.task
        def three(): ...
     """, {"pkg-one": "pkg.tasks:one", "pkg-two": "pkg.tasks:two",
           "pkg-three": "pkg.tasks:three"}),
    ("over a click command", """
        import click
        import gristmill as gm
        @gm.task(mem="1G")
        @click.command()
        @click.option("--n", type=int)
        def fit_draw(n): ...
     """, {"pkg-fit-draw": "pkg.tasks:fit_draw"}),
    ("async def and class bodies", """
        import gristmill as gm
        @gm.task
        async def pull(): ...
        class Stage:
            @gm.task
            def fit(): ...
     """, {"pkg-pull": "pkg.tasks:pull", "pkg-fit": "pkg.tasks:Stage.fit"}),
    ("an import inside a function counts", """
        def helper():
            import gristmill as gm
        import gristmill as gm
        @gm.task
        def fit(): ...
     """, {"pkg-fit": "pkg.tasks:fit"}),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in SPELLINGS],
                         ids=[c[0] for c in SPELLINGS])
def test_every_spelling_of_task_is_found(source: str, expected: dict[str, str]) -> None:
    assert scripts(source) == expected


@pytest.mark.parametrize("source", [
    "from other import task\n@task\ndef fit(): ...\n",
    "import gristmill as gm\nimport other\n@other.task\ndef fit(): ...\n",
    "import gristmill as gm\n@gm.workflow\ndef flow(): ...\n",
    "import gristmill as gm\ntask = gm.Task\n@task\ndef fit(): ...\n",
    "from gristmill import task\n",  # imported, never used
    "@task\ndef fit(): ...\n",  # task from nowhere: not gristmill's
], ids=["other task", "other module", "workflow", "Task class", "unused", "unbound"])
def test_other_decorators_are_not_tasks(source: str) -> None:
    found = scan(source)
    assert found == Scan()


@pytest.mark.parametrize(("decorator", "module", "script"), [
    ("@gm.task(script='my-fit')", "pkg.tasks", "my-fit"),
    ("@gm.task(script='')", "pkg.tasks", "pkg-fit"),  # empty: the default, as at run time
    ("@gm.task(script=None)", "pkg.tasks", "pkg-fit"),
    ("@gm.task(name='fit_{draw}')", "pkg.tasks", "pkg-fit"),  # a job-name template only
    ("@gm.task", "my_pkg.stages.fit", "my-pkg-fit"),
    ("@gm.task", "_private.tasks", "private-fit"),
    ("@gm.task", "fit.tasks", "fit"),  # the package's own name: not prefixed twice
])
def test_script_names_follow_entry_points(decorator: str, module: str, script: str) -> None:
    assert scripts(f"import gristmill as gm\n{decorator}\ndef fit(): ...\n", module) == {
        script: f"{module}:fit"}


def test_name_is_read_as_the_job_name_template() -> None:
    (found,) = scan("import gristmill as gm\n@gm.task(name='fit_{draw}')\ndef fit(): ...\n").tasks
    assert (found.job_name, found.script, found.target) == (
        "fit_{draw}", "pkg-fit", "pkg.tasks:fit.main")
    assert found.line == 2


@pytest.mark.parametrize("program", ["['Rscript', 'fit.R']", "R_FIT", "('julia', 'x.jl')"])
def test_a_program_task_has_no_script_and_no_warning(program: str) -> None:
    found = scan(f"import gristmill as gm\n@gm.task(program={program})\ndef fit(): ...\n")
    assert found == Scan()


#: (id, source, line, words of the reason, target the task would have)
UNREADABLE = [
    ("script from a name", """
        import gristmill as gm
        NAME = "x"
        @gm.task(script=NAME)
        def fit(): ...
     """, 4, "script=NAME on task fit is not a literal string", "pkg.tasks:fit.main"),
    ("script from an f-string", """
        import gristmill as gm
        @gm.task(
            mem="1G",
            script=f"{__name__}-fit",
        )
        def fit(): ...
     """, 3, "is not a literal string", "pkg.tasks:fit.main"),
    ("** keywords", """
        from gristmill import task as t
        OPTS = {}
        @t(**OPTS)
        def fit(): ...
     """, 4, "@t(**OPTS) on fit: script= or program= may hide", "pkg.tasks:fit.main"),
    ("applied as a call, rebound to its name", """
        import gristmill as gm
        def fit(): ...
        fit = gm.task(mem="1G")(fit)
     """, 4, "gm.task(...) is called, not applied as a decorator", "pkg.tasks:fit.main"),
    ("applied as a call, bound elsewhere", """
        import gristmill
        def fit(): ...
        fit_task = gristmill.task(fit)
     """, 4, "gristmill.task(...) is called", None),
    ("a decorator made in advance", """
        import gristmill as gm
        big = gm.task(mem="100G")
        @big
        def fit(): ...
     """, 3, "gm.task(...) is called", None),
    ("passed around as a value", """
        from gristmill import task
        decorators = [task]
     """, 3, "task is used as a value", None),
    ("inside a function", """
        import gristmill as gm
        def make():
            @gm.task
            def fit(): ...
            return fit
     """, 4, "task fit is defined inside the function make()", None),
    ("not the topmost decorator", """
        import functools, gristmill as gm
        @functools.lru_cache
        @gm.task
        def fit(): ...
     """, 4, "@gm.task is not the topmost decorator of fit", "pkg.tasks:fit.main"),
    ("a syntax error", """
        import gristmill as gm
        def fit(:
     """, 3, "cannot parse", None),
]


@pytest.mark.parametrize(("source", "line", "reason", "target"), [c[1:] for c in UNREADABLE],
                         ids=[c[0] for c in UNREADABLE])
def test_what_cannot_be_read_is_reported_with_file_and_line(
    source: str, line: int, reason: str, target: str | None
) -> None:
    found = scan(source)
    assert found.tasks == ()
    (item,) = found.unreadable
    assert (item.path, item.line, item.target) == (PATH, line, target)
    assert reason in item.reason
    assert str(item).startswith(f"pkg/tasks.py:{line}: ")


def test_an_unreadable_task_does_not_hide_the_readable_ones() -> None:
    found = scan("""
        import gristmill as gm
        @gm.task(script=SCRIPT)
        def one(): ...
        @gm.task
        def two(): ...
    """)
    assert [t.key for t in found.tasks] == ["pkg.tasks:two"]
    assert [u.line for u in found.unreadable] == [3]


def test_two_tasks_claiming_one_script_is_the_entry_points_error() -> None:
    found = scan("""
        import gristmill as gm
        @gm.task(script="same")
        def one(): ...
        @gm.task(script="same")
        def two(): ...
    """)
    with pytest.raises(GristmillError, match=r"pkg\.tasks:one and pkg\.tasks:two both want "
                                             r"the console script 'same'"):
        found.table()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


def test_the_package_walk_reads_the_modules_the_registry_would_import(tmp_path: Path) -> None:
    task = "import gristmill as gm\n@gm.task\ndef {name}(): ...\n"
    write(tmp_path / "my_pkg", {
        "__init__.py": task.format(name="root"),
        "tasks.py": task.format(name="fit"),
        "__main__.py": task.format(name="main_only"),  # never imported: running it runs it
        "stages/__init__.py": "",
        "stages/late.py": task.format(name="late"),
        "notes/loose.py": task.format(name="loose"),  # no __init__.py: not a package
        "not-a-module.py": task.format(name="dash"),
        "data.txt": task.format(name="text"),
    })
    modules = [m for m, _ in package_modules(tmp_path / "my_pkg", "my_pkg")]
    assert modules == ["my_pkg", "my_pkg.stages", "my_pkg.stages.late", "my_pkg.tasks"]
    assert scan_package(tmp_path / "my_pkg").table() == {
        "my-pkg-fit": "my_pkg.tasks:fit.main",
        "my-pkg-late": "my_pkg.stages.late:late.main",
        "my-pkg-root": "my_pkg:root.main",
    }


def test_task_re_exported_by_the_package_itself_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``from .common import task`` and friends: the package's own modules re-export it.
    The same package imported gives the same table."""
    write(tmp_path / "gm_reexport_pkg", {
        "__init__.py": "from gristmill import task\nimport gristmill as gm\n",
        "common.py": "from gristmill import task as shared_task\n",
        "star.py": "from gristmill.dsl.task import *\n",
        "a.py": "from . import task\n@task\ndef one(): ...\n",
        "b.py": "from .common import shared_task\n@shared_task(script='b-two')\ndef two(): ...\n",
        "c.py": "import gm_reexport_pkg.common as c\n@c.shared_task\ndef three(): ...\n",
        "d.py": "from gm_reexport_pkg import gm\n@gm.task\ndef four(): ...\n",
        "e.py": "from .star import *\n@task\ndef five(): ...\n",
        "sub/__init__.py": "",
        "sub/deep.py": "from ..common import shared_task as st\n@st\ndef six(): ...\n",
    })
    table = scan_package(tmp_path / "gm_reexport_pkg").table()
    assert table == {
        "b-two": "gm_reexport_pkg.b:two.main",
        "gm-reexport-pkg-five": "gm_reexport_pkg.e:five.main",
        "gm-reexport-pkg-four": "gm_reexport_pkg.d:four.main",
        "gm-reexport-pkg-one": "gm_reexport_pkg.a:one.main",
        "gm-reexport-pkg-six": "gm_reexport_pkg.sub.deep:six.main",
        "gm-reexport-pkg-three": "gm_reexport_pkg.c:three.main",
    }
    monkeypatch.syspath_prepend(str(tmp_path))
    assert scripts_table("gm_reexport_pkg") == table


def test_a_star_import_cycle_ends(tmp_path: Path) -> None:
    write(tmp_path / "my_pkg", {
        "__init__.py": "",
        "f.py": "from .g import *\n",
        "g.py": "from .f import *\n@task\ndef not_a_task(): ...\n",
    })
    assert scan_package(tmp_path / "my_pkg") == Scan()


def test_a_single_module_is_a_package_of_its_own(tmp_path: Path) -> None:
    write(tmp_path, {"solo.py": "import gristmill as gm\n@gm.task\ndef fit(): ...\n"})
    assert scan_package(tmp_path / "solo.py").table() == {"solo-fit": "solo:fit.main"}


def test_the_scan_agrees_with_entry_points_on_a_real_package(
    installed_pkg: InstalledPackage,
) -> None:
    """The fixture package, installed by pip: its source read statically gives the table that
    importing it gives (custom script=, a wrapped click command, a non-task CLI beside)."""
    source = installed_pkg.site_packages / "gm_fixture_pkg"
    assert scan_package(source).table() == scripts_table("gm_fixture_pkg")
    assert scan_importable("gm_fixture_pkg").table() == scripts_table("gm_fixture_pkg")


def test_the_scan_agrees_with_entry_points_on_the_example() -> None:
    pytest.importorskip("seiir_like", reason="examples/seiir_like is not installed")
    assert scan_importable("seiir_like").table() == scripts_table("seiir_like")


def test_an_unknown_package_scans_to_nothing() -> None:
    assert scan_importable("gm_no_such_package") == Scan()
