"""``covid_shared.shell_tools``: download, unpack and make directories with a given mode.

covid_shared built each command as one string and split it, so a path with a space
became two arguments; here every path is one argument and no shell reads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"{name} is not on PATH; install it (e.g. apt-get install {name}) or put it on PATH"
        )
    return found


def wget(url: str, output_path: PathLike) -> None:
    """Download ``url`` to ``output_path`` (``wget -O``); a failed download raises."""
    subprocess.run([_program("wget"), "-O", os.fspath(output_path), url], check=True)


def unzip_and_delete_archive(archive_path: PathLike, output_path: PathLike) -> None:
    """Unpack a zip archive into ``output_path``, then delete the archive."""
    subprocess.run(
        [_program("unzip"), os.fspath(archive_path), "-d", os.fspath(output_path)], check=True
    )
    Path(archive_path).unlink()


def mkdir(
    path: PathLike, mode: int = 0o775, exists_ok: bool = False, parents: bool = False
) -> None:
    """Create ``path`` (and, with ``parents``, its parents) with exactly ``mode``.

    ``Path.mkdir`` gives the parents it creates the umask's mode; covid_shared set the
    umask around the call, which changes it for every thread of the process. Here each
    directory made is given ``mode`` afterwards instead.
    """
    target = Path(path)
    made = [] if target.exists() else [target]
    if parents:
        probe = target.parent
        while not probe.exists():
            made.append(probe)
            probe = probe.parent
    target.mkdir(exist_ok=exists_ok, parents=parents)
    for directory in reversed(made):  # only what this call created; the mode is not cut by
        directory.chmod(mode)  # the umask, and the umask of other threads is left alone
