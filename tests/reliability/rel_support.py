"""Helpers of the reliability suite: start engines, read the evidence, read the store."""

from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from click.testing import Result
from gm_testing import pid_gone as pid_gone  # the suites import it from here
from gm_testing import wait_for

from gristmill.states import NodeState
from gristmill.store import db as store_module
from gristmill.store.db import AttemptRecord, Store

#: Where gristmill's own modules are: no frame of them belongs in a user's error.
OWN_CODE = str(Path(store_module.__file__).parent)
#: ``gristmill`` run by this interpreter (a console-script shim may be another one).
GRISTMILL = [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()"]


def lines(path: Path) -> list[str]:
    """The whitespace-separated words of a shared evidence file ([] when absent)."""
    return path.read_text().split() if path.exists() else []


def once_each(path: Path, expected: list[str]) -> None:
    """Every expected line exactly once, and nothing else."""
    seen = collections.Counter(lines(path))
    assert {k: n for k, n in seen.items() if n != 1} == {}, "side effects ran more than once"
    assert sorted(seen) == sorted(expected)


def wait_while_running(
    proc: subprocess.Popen[bytes], predicate: Callable[[], object], timeout: float, what: str
) -> None:
    """``wait_for``, failing at once (with its stderr) if the engine ``proc`` exits first."""

    def ready() -> object:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the engine exited ({proc.returncode}) before {what}:\n"
                                 f"{err.decode()}")
        return predicate()

    wait_for(ready, timeout, what)


def pids(path: Path) -> list[int]:
    return [int(word) for word in lines(path)]


def start(
    procs: list[subprocess.Popen[bytes]], *args: str, env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """``gristmill ARGS`` in a child process (added to ``procs`` for cleanup)."""
    proc = subprocess.Popen(
        [*GRISTMILL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=None if env is None else {**os.environ, **env}, start_new_session=new_session,
    )
    procs.append(proc)
    return proc


def gristmill(*args: str, env: Mapping[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GRISTMILL, *args], capture_output=True, text=True, timeout=timeout, check=False,
        env=None if env is None else {**os.environ, **env},
    )


def assert_user_error(result: Result, *fragments: str, user_traceback: bool = False) -> str:
    """Exit 2, every fragment in the message on stderr, no traceback; the message.

    ``user_traceback``: the message may show a traceback of the user's own code (an
    import that failed), but no frame of gristmill's.
    """
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert user_traceback or "Traceback" not in result.output
    assert OWN_CODE not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (empty when it does not exist)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_store(run_dir: Path) -> tuple[dict[tuple[str, str], int], list[AttemptRecord]]:
    """(counts by task and state, every attempt) of a run."""
    store = Store.open(run_dir, readonly=True)
    try:
        return store.counts(), store.attempts()
    finally:
        store.close()


def node_states(run_dir: Path) -> dict[str, NodeState]:
    """Each node's state by identity."""
    store = Store.open(run_dir, readonly=True)
    try:
        identities, states, _ = store.node_states()
    finally:
        store.close()
    return {i: NodeState(s) for i, s in zip(identities, states)}


def latest(root: Path) -> Path:
    return (root / "latest").resolve()


class Mounts:
    """File systems a test mounts under its tmp_path (root only), unmounted afterwards."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.mounted: list[Path] = []

    def mount(self, target: Path, *args: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a file system needs root")
        target.mkdir(exist_ok=True)
        done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True,
                              timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount here: {done.stderr.strip()}")
        self.mounted.append(target)
        return target

    def tmpfs(self, name: str, size: str) -> Path:
        return self.mount(self.base / name, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")

    def ext4(self, name: str, size_mb: int) -> Path:
        """An ext4 image on a loop device that turns read-only on its first error."""
        image = self.base / f"{name}.img"
        with open(image, "wb") as handle:
            handle.truncate(size_mb * 2**20)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True,
                              text=True, timeout=60)
        if made.returncode != 0:
            pytest.skip(f"cannot make an ext4 file system: {made.stderr.strip()}")
        return self.mount(self.base / name, "-o", "loop,errors=remount-ro", str(image))

    def remount(self, target: Path, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True,
                       timeout=30)

    def unmount(self, target: Path) -> None:
        subprocess.run(["umount", str(target)], check=True, timeout=30)
        self.mounted.remove(target)

    def cleanup(self) -> None:
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)
