"""The Slurm backend on a production-like cluster: submit limits, preemption, node failure,
jobs that can never start, and the pending reason in ``gristmill status``.

They need the test cluster's production knobs (ci/slurm/start.sh, on by default):
partitions ``low`` (preemptible) and ``high`` (PriorityTier=10, MaxTime=10 minutes) with
``PreemptType=preempt/partition_prio`` and ``PreemptMode=REQUEUE``, and
``AccountingStorageEnforce=associations,limits`` with the account ``gristmill-limits``,
where a test may put a submit limit without limiting anyone else. With ``-m slurm`` and
a cluster without them, every test here fails and says so.

The cluster is shared: other users' jobs may be running or pending. Our jobs are
submitted ``--priority`` (root only) so they are not queued behind others' pending
jobs; the job that preempts ours asks for the whole node, so it never needs to preempt
(nor can: ``debug`` is never preempted) anything but ours. Every wait is bounded.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cluster_testing
import pytest
from cluster_testing import GRISTMILL, gristmill, lines, wait_until
from gm_testing import attempts

from gristmill.backends.slurm.backend import SlurmBackend
from gristmill.engine.runner import RunResult

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("job_env")]

LIMITS_ACCOUNT = "gristmill-limits"
#: Ahead of every job other users leave pending (priority/basic gives later jobs less).
PRIORITY = "--priority=4294967000"
NODE = os.environ.get("SLURM_KIT_NODE", "")


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=check)


def _prod_problem() -> str | None:
    """Why the cluster cannot run these tests, or None."""
    if "SLURM_CONF" not in os.environ:
        return "SLURM_CONF is not set: start the test cluster with ci/slurm/start.sh"
    try:
        config = _run("scontrol", "show", "config", timeout=30).stdout
        partitions = _run("sinfo", "--noheader", "--format=%P", timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"slurmctld does not answer: {exc}"
    settings = {k.strip(): v.strip() for k, _, v in
                (line.partition("=") for line in config.splitlines())}
    missing = [
        what for what, ok in (
            ("PreemptType=preempt/partition_prio",
             settings.get("PreemptType") == "preempt/partition_prio"),
            ("AccountingStorageEnforce with limits",
             "limits" in settings.get("AccountingStorageEnforce", "")),
            ("partitions low and high", {"low", "high"} <= set(partitions)),
        ) if not ok
    ]
    if missing:
        return (f"the cluster runs without the production knobs ({', '.join(missing)}): "
                "restart it with this version's ci/slurm/start.sh")
    if os.geteuid() != 0:
        return "these tests run as root (sbatch --priority, sacctmgr, scontrol update)"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster(request: pytest.FixtureRequest) -> None:
    cluster_testing.require_cluster(request, "slurm", _prod_problem)


@pytest.fixture
def tasks(job_env: None) -> Any:
    import slurm_prod_tasks

    return slurm_prod_tasks


def run_bounded(wf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float,
                **options: Any) -> tuple[RunResult, SlurmBackend]:
    result, backend = cluster_testing.run_bounded(wf, "slurm", tmp_path, monkeypatch, seconds,
                                                  poll_interval=1, **options)
    assert isinstance(backend, SlurmBackend)
    return result, backend


class Beside:
    """Runs ``action`` in a thread while the engine runs in the test's; re-raises its error."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(action,), daemon=True)
        self.thread.start()

    def _run(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BaseException as exc:
            self.errors.append(exc)

    def join(self) -> None:
        self.thread.join(timeout=60)
        if self.errors:
            raise self.errors[0]


def count(marker: Path, word: str) -> collections.Counter[str]:
    """How often each ident logged ``word`` (start, done)."""
    return collections.Counter(line.split()[1] for line in lines(marker)
                               if line.split()[0] == word)


def trace_rows(run_dir: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [*GRISTMILL, "trace", str(run_dir), "--format", "json",
         "--fields", "job_name,attempt,state,retry_cause,native_id,mem_requested,"
         "cores_requested,runtime_requested"],
        capture_output=True, text=True, timeout=60, check=True)
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def others_gone(seconds: float) -> None:
    """Wait (bounded) until no job but this test's runs on the node: a node failure or a
    whole-node job should touch as few of other users' jobs as it can."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        names = _run("squeue", "--noheader", "--states=R,CG", "--format=%j").stdout.split()
        if all(name in ("stint", "quick", "gm-test-high") for name in names):
            return
        time.sleep(1)


# -- submit limits ------------------------------------------------------------------------------


@pytest.fixture
def submit_limit() -> Iterator[int]:
    """MaxSubmitJobs=20 on root's association with the dedicated account, for one test."""
    user = "root"
    _run("sacctmgr", "-i", "modify", "user", user, "where", f"account={LIMITS_ACCOUNT}",
         "set", "MaxSubmitJobs=20")
    try:
        wait_until(lambda: "MaxSubmitJobs=20(" in _run(
            "scontrol", "show", "assoc_mgr", f"users={user}", f"accounts={LIMITS_ACCOUNT}",
            "flags=assoc").stdout, 30, "slurmctld to know the limit")
        yield 20
    finally:
        _run("sacctmgr", "-i", "modify", "user", user, "where", f"account={LIMITS_ACCOUNT}",
             "set", "MaxSubmitJobs=-1")


class InFlight:
    """Samples how many of the account's jobs Slurm holds (pending, running, completing)."""

    def __init__(self) -> None:
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["squeue", "--noheader", "--array", f"--account={LIMITS_ACCOUNT}",
                 "--states=PD,CF,R,CG,S", "--format=%i"],
                capture_output=True, text=True, timeout=60, check=False).stdout
            self.most = max(self.most, len(out.split()))
            self.samples += 1
            self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=90)


@pytest.mark.parametrize("read", [True, False], ids=["read-from-sacctmgr", "learned-from-sbatch"])
def test_a_submit_limit_throttles_a_run_and_never_fails_a_node(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, submit_limit: int, read: bool
) -> None:
    """MaxSubmitJobs=20: a 200-node run (60 when the limit must be learnt) completes, Slurm
    never holds more than 20 of its jobs, every node runs exactly once with one attempt,
    and its arrays still pack elements (an array of N counts N jobs)."""
    n = 200 if read else 60
    if not read:  # sacctmgr unreadable: only sbatch's refusal tells
        monkeypatch.setattr(SlurmBackend, "_read_submit_limit", lambda self: None)
    marker = tmp_path / "marker"
    sampler = InFlight()
    started = time.monotonic()
    try:
        result, backend = run_bounded(tasks.quicks(marker=str(marker), n=n), tmp_path,
                                      monkeypatch, 600, account=LIMITS_ACCOUNT,
                                      sbatch_flags=PRIORITY)
    finally:
        sampler.stop()
    took = time.monotonic() - started
    assert result.ok, result.counts
    assert backend.submit_limit() == (submit_limit if read else None)
    assert count(marker, "done") == {str(i): 1 for i in range(n)}
    records = attempts(result.run_dir)
    assert sorted((r.attempt, r.state) for r in records) == [(1, "SUCCEEDED")] * n
    assert sampler.samples > 10
    assert 0 < sampler.most <= submit_limit, sampler.most
    arrays = collections.Counter(str(r.job_id).split("_")[0] for r in records)
    # The first array filled the limit read; a learnt one halves refused batches to fit.
    assert max(arrays.values()) >= (submit_limit if read else submit_limit // 2)
    assert len(arrays) < n  # refills pack what ended since the last poll
    refused = backend.calls["sbatch"] - len(arrays)
    if read:
        assert refused == 0
    else:
        assert refused >= 1
    print(f"{n} nodes under MaxSubmitJobs={submit_limit} ({'read' if read else 'learned'}): "
          f"{took:.0f} s, most held {sampler.most}, {len(arrays)} arrays, "
          f"{refused} refused sbatch call(s), {sampler.samples} squeue samples")


# -- preemption ---------------------------------------------------------------------------------


def preempt_when_started(marker: Path, n: int) -> Callable[[], None]:
    """Once ``n`` stints run in ``low``, a job in ``high`` asking for the whole node."""

    def action() -> None:
        wait_until(lambda: len(count(marker, "start")) >= n, 240, f"{n} stints to start")
        others_gone(60)
        _run("sbatch", "--parsable", "--job-name=gm-test-high", "--partition=high",
             "--cpus-per-task=8", "--mem=100M", "--output=/dev/null", PRIORITY,
             "--wrap", "sleep 2")

    return action


def test_preempted_jobs_are_run_again_by_gristmill_without_spending_retries(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-requeue (the default): the preempted array's elements end PREEMPTED; gristmill
    submits each node again as it was (the task has no retries to spend), and every node
    completes exactly once. ``trace`` names PREEMPTED as the retries' cause."""
    marker = tmp_path / "marker"
    beside = Beside(preempt_when_started(marker, 3))
    started = time.monotonic()
    result, _ = run_bounded(tasks.stints(marker=str(marker), n=3, pause=20), tmp_path,
                            monkeypatch, 600, partition="low", sbatch_flags=PRIORITY)
    beside.join()
    took = time.monotonic() - started
    assert result.ok, result.counts
    assert count(marker, "done") == {"0": 1, "1": 1, "2": 1}
    assert count(marker, "start") == {"0": 2, "1": 2, "2": 2}
    rows = trace_rows(result.run_dir)
    by_node: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["job_name"], r["attempt"])):
        by_node[row["job_name"]].append(row)
    assert len(by_node) == 3
    for name, (first, second) in ((k, v) for k, v in by_node.items() if len(v) == 2):
        assert (first["state"], second["state"]) == ("PREEMPTED", "SUCCEEDED"), name
        assert second["retry_cause"] == "PREEMPTED", second
        asked = ("mem_requested", "cores_requested", "runtime_requested")
        assert [first[k] for k in asked] == [second[k] for k in asked]  # no escalation
    assert all(len(v) == 2 for v in by_node.values()), by_node
    print(f"preemption without requeue: {took:.0f} s")


def test_with_requeue_slurm_runs_the_job_again_and_gristmill_never_resubmits(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--slurm-requeue: Slurm puts each preempted job back in the queue (eligible again
    about two minutes later); gristmill waits for it: one attempt per node, each started
    twice, none completed twice."""
    marker = tmp_path / "marker"
    beside = Beside(preempt_when_started(marker, 3))
    started = time.monotonic()
    result, _ = run_bounded(tasks.stints(marker=str(marker), n=3, pause=20), tmp_path,
                            monkeypatch, 600, partition="low", sbatch_flags=PRIORITY,
                            requeue=True)
    beside.join()
    took = time.monotonic() - started
    assert result.ok, result.counts
    assert count(marker, "done") == {"0": 1, "1": 1, "2": 1}
    assert count(marker, "start") == {"0": 2, "1": 2, "2": 2}
    records = attempts(result.run_dir)
    assert sorted((r.attempt, r.state) for r in records) == [(1, "SUCCEEDED")] * 3
    for record in records:
        restarts = _run("scontrol", "--oneliner", "show", "job", str(record.job_id),
                        check=False).stdout
        if restarts:  # still known to slurmctld (MinJobAge)
            assert "Restarts=1" in restarts, restarts
    print(f"preemption with requeue: {took:.0f} s")


# -- node failure and suspension ----------------------------------------------------------------


def test_a_node_failure_is_retried_without_spending_retries(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node is set DOWN under two running stints (then RESUME; with ReturnToService=2
    it may already be back): both end NODE_FAIL, run again as they were, complete once."""
    marker = tmp_path / "marker"

    def fail_node() -> None:
        wait_until(lambda: len(count(marker, "start")) >= 2, 240, "two stints to start")
        others_gone(15)  # the stints run 60 s: the node must fail under them
        _run("scontrol", "update", f"nodename={NODE}", "state=DOWN", "reason=gristmill-test")
        time.sleep(2)
        _run("scontrol", "update", f"nodename={NODE}", "state=RESUME", check=False)

    beside = Beside(fail_node)
    started = time.monotonic()
    result, _ = run_bounded(tasks.stints(marker=str(marker), n=2, pause=60), tmp_path,
                            monkeypatch, 600, sbatch_flags=PRIORITY)
    beside.join()
    assert result.ok, result.counts
    assert count(marker, "done") == {"0": 1, "1": 1}
    assert count(marker, "start") == {"0": 2, "1": 2}
    rows = trace_rows(result.run_dir)
    assert sorted((r["attempt"], r["state"], r["retry_cause"]) for r in rows) == [
        (1, "NODE_FAIL", ""), (1, "NODE_FAIL", ""),
        (2, "SUCCEEDED", "NODE_FAIL"), (2, "SUCCEEDED", "NODE_FAIL")]
    print(f"node failure: {time.monotonic() - started:.0f} s")


def test_a_job_suspended_past_the_lost_grace_is_not_lost(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scontrol suspend`` for 3x the 5 s LOST grace, then resume: one attempt, done."""
    marker = tmp_path / "marker"

    def suspend() -> None:
        wait_until(lambda: len(count(marker, "start")) >= 1, 240, "the stint to start")
        job = _run("squeue", "--noheader", "--name=stint", "--states=R", "--format=%i",
                   f"--account={LIMITS_ACCOUNT}").stdout.split()
        assert len(job) == 1, job
        _run("scontrol", "suspend", job[0])
        time.sleep(15)
        assert _run("squeue", "--noheader", "-j", job[0], "--format=%T").stdout.strip() \
            == "SUSPENDED"
        _run("scontrol", "resume", job[0])

    beside = Beside(suspend)
    result, _ = run_bounded(tasks.stints(marker=str(marker), n=1, pause=10), tmp_path,
                            monkeypatch, 300, sbatch_flags=PRIORITY, lost_after=5,
                            account=LIMITS_ACCOUNT)
    beside.join()
    assert result.ok, result.counts
    assert [(r.attempt, r.state) for r in attempts(result.run_dir)] == [(1, "SUCCEEDED")]
    assert count(marker, "done") == {"0": 1}


# -- jobs that can never start --------------------------------------------------------------


def test_a_job_over_the_partitions_time_limit_fails_with_slurms_reason(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--slurm-fail-on-unschedulable: 20 minutes asked of ``high`` (MaxTime=10) fails at once."""
    marker = tmp_path / "marker"
    result, _ = run_bounded(tasks.long_asks(marker=str(marker)), tmp_path, monkeypatch, 120,
                            partition="high", fail_on_unschedulable=True)
    assert result.counts == {"FAILED": 1}, result.counts
    (record,) = attempts(result.run_dir)
    # Slurm says PartitionConfig for about a second after submission, then PartitionTimeLimit;
    # either never clears, and the first poll that sees one fails the node.
    assert re.search(r"\((PartitionTimeLimit|PartitionConfig)\)", record.reason), record
    assert lines(marker) == []


def test_status_shows_why_a_run_waits(
    tasks: Any, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    """Without the flag the run waits; ``gristmill status`` says how many nodes and why."""
    marker = tmp_path / "marker"
    proc = gristmill(engines, "run", "slurm_prod_tasks:long_asks", "--marker", str(marker),
                     "--backend", "slurm", "--slurm-partition", "high",
                     "--run-dir", str(tmp_path / "runs"), "--poll-interval", "1")
    run_dir = tmp_path / "runs" / "latest"
    shown: list[str] = []

    def says_why() -> bool:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        if not run_dir.exists():
            return False
        out = subprocess.run([*GRISTMILL, "status", str(run_dir)], capture_output=True,
                             text=True, timeout=60, check=False).stdout
        shown[:] = [out]
        return "long_ask  waiting: 1 (PartitionTimeLimit 1)" in out

    wait_until(says_why, 120, "status to show the pending reason")
    proc.send_signal(2)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert lines(marker) == []
