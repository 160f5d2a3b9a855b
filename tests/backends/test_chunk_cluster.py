"""Chunks (``chunk: N``) on the REAL single-node Slurm cluster that ci/slurm/start.sh runs.

Run with ``pytest -m slurm tests/backends/test_chunk_cluster.py`` once ``SLURM_CONF``
names the test cluster; skipped otherwise. The tasks (tests/fixtures/chunk_tasks.py)
append one line per attempt to a shared file, so each test proves how often every node
really ran, whatever the store says.
"""

from __future__ import annotations

import collections
import signal
import subprocess
from pathlib import Path

import cluster_testing
import pytest
from cluster_testing import GRISTMILL, gristmill, lines, wait_until
from gm_testing import attempts
from test_slurm_cluster import _cluster_problem, run_bounded, scontrol_job

from gristmill.backends.base import WORKER
from gristmill.backends.slurm.backend import SlurmBackend
from gristmill.backends.slurm.partitions import parse_partitions
from gristmill.resources import Resources
from gristmill.spec.load import Spec

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("job_env")]


@pytest.fixture(scope="module", autouse=True)
def cluster(request: pytest.FixtureRequest) -> None:
    cluster_testing.require_cluster(request, "slurm", _cluster_problem)


def test_two_hundred_nodes_in_chunks_of_fifty_are_four_elements_of_one_sbatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One node fails once and runs again alone; every other node runs exactly once."""
    import chunk_tasks

    seen = tmp_path / "seen"
    result, backend = run_bounded(chunk_tasks.marks(str(seen), 200, fail=7), tmp_path,
                                  monkeypatch, 300)
    assert result.counts == {"DONE": 200}
    assert collections.Counter(lines(seen)) == {
        str(i): 2 if i == 7 else 1 for i in range(200)}
    records = attempts(result.run_dir)
    first = [r for r in records if r.attempt == 1]
    elements = collections.Counter(r.job_id for r in first)
    assert len(elements) == 4
    assert set(elements.values()) == {50}
    assert len({r.job_id.split("_")[0] for r in first}) == 1  # one array
    (retry,) = [r for r in records if r.attempt == 2]
    assert retry.job_name == "mark_7" or retry.job_name.startswith("mark_")
    assert retry.job_id.split("_")[0] not in {r.job_id.split("_")[0] for r in first}
    assert backend.calls["sbatch"] == 2  # the chunks, then the retry alone
    assert {r.usage_source for r in records} == {WORKER}  # never the element's sacct figures
    assert {r.state for r in records} == {"SUCCEEDED", "FAILED"}
    # The element asks for the sum of its nodes' runtimes (50 x 2 min), not one node's.
    assert scontrol_job(next(iter(elements)))["TimeLimit"] == "01:40:00"


def limited_partition() -> tuple[str, int] | None:
    """A partition of the test cluster with a finite MaxTime of 4 minutes or more."""
    out = subprocess.run(["scontrol", "show", "partition", "--oneliner"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    limits, _ = parse_partitions(out)
    found = [(name, limit) for name, limit in limits.items() if limit and limit >= 240]
    return min(found, key=lambda item: item[1]) if found else None


def test_the_partitions_time_limit_is_read_once_and_caps_a_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chunk of 2-minute nodes holds only as many as the partition's MaxTime allows."""
    import chunk_tasks

    backend = SlurmBackend()
    unlimited = [n for n, limit in parse_partitions(subprocess.run(
        ["scontrol", "show", "partition", "--oneliner"], capture_output=True, text=True,
        timeout=30, check=True).stdout)[0].items() if limit is None]
    for name in unlimited:
        assert backend.time_limit(Resources(queue=name)) is None
    backend.time_limit(Resources())
    assert backend.calls.get("scontrol", 0) == 1  # read once, whatever is asked
    found = limited_partition()
    if found is None:
        pytest.skip("the test cluster has no partition with a finite MaxTime of 4 min or more")
    name, limit = found
    per = limit // 120
    seen = tmp_path / "seen"
    spec = Spec.from_dict({"default": {"queue": name}})
    result, _ = run_bounded(chunk_tasks.marks(str(seen), per + 1), tmp_path, monkeypatch, 300,
                            spec=spec)
    assert result.counts == {"DONE": per + 1}
    elements = collections.Counter(r.job_id for r in attempts(result.run_dir))
    assert sorted(elements.values()) == [1, per]


def test_kill_9_mid_chunk_then_resume_runs_every_node_exactly_once(
    tmp_path: Path, engines: list[subprocess.Popen[bytes]],
) -> None:
    shared = tmp_path / "seen"
    proc = gristmill(
        engines, "run", "chunk_tasks:marks", "--path", str(shared), "--n", "40", "--pause",
        "0.5", "--chunk", "mark=10", "--backend", "slurm", "--run-dir", str(tmp_path / "runs"),
        "--poll-interval", "1",
    )
    wait_until(lambda: len(lines(shared)) >= 6 or proc.poll() is not None, 120,
               "the first nodes to run")
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run_dir = (tmp_path / "runs" / "latest").resolve()
    before = {r.job_name: r.job_id for r in attempts(run_dir)}
    assert len(before) == 40
    assert collections.Counter(before.values()) == {j: 10 for j in set(before.values())}
    assert len(lines(shared)) < 40, "every node ran before the kill: nothing left to adopt"
    done = subprocess.run([*GRISTMILL, "resume", str(run_dir), "--poll-interval", "1"],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert collections.Counter(lines(shared)) == {str(i): 1 for i in range(40)}
    records = attempts(run_dir)
    assert len(records) == 40  # reattached where the chunks ran: no attempt made again
    assert {r.job_name: r.job_id for r in records} == before
    assert {r.state for r in records} == {"SUCCEEDED"}


def test_a_chunked_fork_task_imports_once_per_element_and_runs_each_node_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """60 nodes, ``chunk: 20``, ``launch: fork``: three elements, three imports of the
    task (one warm interpreter each), every node DONE once from a process of its own."""
    import chunk_tasks

    seen, imports = tmp_path / "seen", tmp_path / "imports"
    monkeypatch.setenv("GM_CHUNK_IMPORTS", str(imports))  # after the engine's own import
    spec = Spec.from_dict({"tasks": {"mark": {"chunk": 20, "launch": "fork"}}})
    result, _ = run_bounded(chunk_tasks.marks(str(seen), 60), tmp_path, monkeypatch, 300,
                            spec=spec)
    assert result.counts == {"DONE": 60}
    assert collections.Counter(lines(seen)) == {str(i): 1 for i in range(60)}
    records = attempts(result.run_dir)
    elements = collections.Counter(r.job_id for r in records)
    assert sorted(elements.values()) == [20, 20, 20]
    assert len(lines(imports)) == len(elements) == 3
    assert {r.state for r in records} == {"SUCCEEDED"}
    assert {r.usage_source for r in records} == {WORKER}
