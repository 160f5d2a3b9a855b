"""The Slurm backend without a cluster: parsers on recorded outputs, the sbatch render, packing.

``tests/backends/data/slurm`` holds what Slurm 22.05 really printed in the three
modes of the test cluster (see its INDEX.md). The backend-level tests put small
stand-ins for ``sbatch``/``squeue``/``sacct``/``scontrol``/``scancel`` first on
PATH: real executables that replay those recorded files and log their argv, so
the real :class:`CommandRunner` runs them and every scheduler call is counted.
The cluster itself is exercised in test_slurm_cluster.py.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import time
from pathlib import Path

import attrs
import pytest

from gristmill.backends.base import JobHandle, JobRequest, SubmitLimitError
from gristmill.backends.batch.arrays import Array, element_boot
from gristmill.backends.batch.backend import lookup
from gristmill.backends.batch.commands import CommandRunner
from gristmill.backends.batch.element import SCHEDULER_DECIDES, read_manifest, verdict
from gristmill.backends.isolated import GRISTMILL_PARENT
from gristmill.backends.registry import make_backend
from gristmill.backends.slurm.backend import (
    SACCT_FORMAT,
    STOP_RULES,
    SlurmBackend,
    batch_script,
    compact_ids,
    expand_ids,
    job_log,
    parse_cpu_time,
    parse_elapsed,
    parse_exit_code,
    parse_rss,
    parse_sacct,
    parse_scontrol,
    parse_squeue,
    parse_submit_limit,
    sbatch_argv,
    slurm_state,
    submit_limit_refusal,
    unschedulable,
    why_stopped,
)
from gristmill.errors import BackendError
from gristmill.resources import Resources
from gristmill.states import JobState
from gristmill.worker.result import AttemptResult, write_result

DATA = Path(__file__).parent / "data" / "slurm"
PROD = DATA / "prod"
GOLDEN = Path(__file__).parent / "data" / "slurm_render"
MODES = ("cgroup", "jobacct", "noacct")
S, F, OOM, TO, C, Q = (JobState.SUCCEEDED, JobState.FAILED, JobState.OOM, JobState.TIMEOUT,
                       JobState.CANCELLED, JobState.QUEUED)
#: What squeue/scontrol say at the end of each recorded scenario (INDEX.md), before
#: the backend looks at the job's log: jobacct's memory kill is only FAILED there.
FINAL = {
    "cgroup": {"ok": S, "exit3": F, "oom": OOM, "timeout": TO, "cancel_running": C,
               "pending": Q, "pending_dep": Q},
    "jobacct": {"ok": S, "exit3": F, "oom": F, "cancel_running": C, "pending": Q,
                "pending_dep": Q},
    "noacct": {"ok": S, "exit3": F, "oom": OOM, "cancel_running": C, "pending": Q,
               "pending_dep": Q},
}
ARRAY = {"0": S, "1": S, "2": S, "3": F, "4": S}


def data(name: str) -> str:
    return (DATA / name).read_text()


def job_ids(mode: str) -> dict[str, str]:
    """Scenario -> the job id sbatch printed for it in ``mode``."""
    found = {}
    for path in DATA.glob(f"*_{mode}.sbatch.txt"):
        scenario = path.name[: -len(f"_{mode}.sbatch.txt")]
        found[scenario] = path.read_text().strip()
    return found


def expected(mode: str) -> dict[str, JobState]:
    """Job id (array elements as ``A_T``) -> the state the recorded outputs must give."""
    ids = job_ids(mode)
    out = {ids[scenario]: state for scenario, state in FINAL[mode].items()}
    out.update({f"{ids['array']}_{task}": state for task, state in ARRAY.items()})
    return out


# -- small parsers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("PENDING", Q), ("CONFIGURING", Q), ("REQUEUED", Q), ("SUSPENDED", Q), ("", Q),
        ("REQUEUE_HOLD", Q), ("REQUEUE_FED", Q), ("STOPPED", Q), ("RESV_DEL_HOLD", Q),
        ("RUNNING", JobState.RUNNING), ("COMPLETING", JobState.RUNNING),
        ("RESIZING", JobState.RUNNING), ("SIGNALING", JobState.RUNNING),
        ("STAGE_OUT", JobState.RUNNING),
        ("COMPLETED", S), ("FAILED", F), ("NODE_FAIL", JobState.NODE_FAIL),
        ("BOOT_FAIL", JobState.NODE_FAIL),
        ("OUT_OF_MEMORY", OOM), ("OUT_OF_ME+", F), ("TIMEOUT", TO),
        ("DEADLINE", F),  # the job's own --deadline: more runtime would not help
        ("CANCELLED", C), ("CANCELLED by 0", C), ("CANCELLED+", C),
        ("PREEMPTED", JobState.PREEMPTED), ("SOMETHING_NEW", F),
    ],
)
def test_slurm_state(text: str, state: JobState) -> None:
    assert slurm_state(text) is state


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0:0", (0, None)), ("3:0", (3, None)), ("0:9", (0, 9)), ("0:15", (0, 15)),
     ("0:125", (0, None)),  # Slurm's OOM marker, not a signal
     ("", (None, None)), ("x:y", (None, None))],
)
def test_parse_exit_code(text: str, parsed: tuple[int | None, int | None]) -> None:
    assert parse_exit_code(text) == parsed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00:04", 4), ("00:01:27", 87), ("1-02:03:04", 93784), ("05:06", 306), ("", None),
     ("garbage", None)],
)
def test_parse_elapsed(text: str, seconds: float | None) -> None:
    assert parse_elapsed(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("66076K", 66076 * 1024), ("2G", 2 * 2**30), ("", None), ("0", None)],
)
def test_parse_rss(text: str, size: int | None) -> None:
    assert parse_rss(text) == size


# -- squeue / sacct / scontrol on the recorded outputs -------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_squeue_gives_every_recorded_final_state(mode: str) -> None:
    records = parse_squeue(data(f"all_{mode}.squeue_r.txt"))
    assert {job: r.state for job, r in records.items()} == expected(mode)
    pending = records[job_ids(mode)["pending"]]
    assert (pending.reason, pending.host) == ("BeginTime", None)
    assert records[job_ids(mode)["ok"]].host == "vm"


def test_squeue_names_array_elements_one_per_line_with_r() -> None:
    running = parse_squeue(data("array_cgroup.running.squeue_r.txt"))
    assert {job: r.state for job, r in running.items()} == {
        "6_0": JobState.RUNNING, "6_1": JobState.RUNNING, "6_2": JobState.RUNNING,
        "6_3": Q, "6_4": Q,
    }
    assert running["6_3"].reason == "Resources"
    # Without -r pending elements are folded into one line (6_[3-4]); it is expanded.
    assert parse_squeue(data("array_cgroup.running.squeue.txt")) == running


@pytest.mark.parametrize(
    ("job_id", "expanded"),
    [("21_[1-5%1]", ["21_1", "21_2", "21_3", "21_4", "21_5"]), ("6_[3-4]", ["6_3", "6_4"]),
     ("7_[0,2,5-6]", ["7_0", "7_2", "7_5", "7_6"]), ("7_3", ["7_3"]), ("15", ["15"]),
     ("7_[]", [])],
)
def test_expand_ids(job_id: str, expanded: list[str]) -> None:
    assert expand_ids(job_id) == expanded


def test_compact_ids_names_each_array_once() -> None:
    ids = ["7_5", "7_0", "7_1", "9", "7_2", "8_3", "7_7", "7_1"]
    assert compact_ids(ids) == ["9", "7_[0-2,5,7]", "8_[3]"]
    assert compact_ids([f"7_{i}" for i in range(10_000)]) == ["7_[0-9999]"]
    assert [one for word in compact_ids(ids) for one in expand_ids(word)] == [
        "9", "7_0", "7_1", "7_2", "7_5", "7_7", "8_3"]


# Seen on the test cluster (22.05): a held array cancelled before any element started
# is one row named by the array id; a whole array cancelled while one element ran
# keeps that element's row and folds the others in sacct.
HELD_CANCELLED_SQUEUE = "15|CANCELLED|JobHeldUser|\n"
PARTLY_RUN_SACCT = "21_0|CANCELLED by 0|0:0||00:00:02\n21_0.batch|CANCELLED|0:15|1000K|00:00:02\n" \
    "21_[1-5%1]|CANCELLED by 0|0:0||00:00:00\n"


def test_an_array_that_never_split_answers_for_its_elements() -> None:
    queue = parse_squeue(HELD_CANCELLED_SQUEUE)
    found = [lookup(queue, f"15_{i}") for i in range(3)]
    assert [r.state if r else None for r in found] == [C, C, C]
    assert lookup(queue, "16_0") is None
    assert lookup({}, "15_0") is None


def test_sacct_expands_folded_elements() -> None:
    records = parse_sacct(PARTLY_RUN_SACCT)
    assert sorted(records) == [f"21_{i}" for i in range(6)]
    assert records["21_0"].signal == 15
    assert {records[f"21_{i}"].state for i in range(6)} == {C}


@pytest.mark.parametrize("name", ["purged_noacct.squeue", "unknown_noacct.squeue"])
def test_squeue_of_purged_or_unknown_ids_prints_nothing(name: str) -> None:
    assert parse_squeue(data(f"{name}.stdout.txt")) == {}
    assert "Invalid job id specified" in data(f"{name}.stderr.txt")


@pytest.mark.parametrize(
    ("name", "state", "exit_code", "signal", "rss_kib", "elapsed"),
    [
        ("ok_cgroup", S, 0, None, 66076, 4),
        ("ok_jobacct", S, 0, None, 66232, 3),
        ("exit3_cgroup", F, 3, None, 1076, 0),
        ("exit3_jobacct", F, 3, None, None, 0),
        ("oom_cgroup", OOM, 0, None, 1076, 1),
        ("oom_jobacct", F, 0, 9, 322108, 1),
        ("timeout_cgroup", TO, 0, 15, 3328, 87),  # the signal is on the .batch row only
        ("cancel_running_cgroup", C, 0, 15, 3276, 3),
        ("cancel_running_jobacct", C, 0, 15, 3196, 3),
        ("pending_cgroup", C, 0, None, None, 0),  # cancelled before it ever ran: no steps
    ],
)
def test_sacct_steps_of_each_scenario(
    name: str, state: JobState, exit_code: int, signal: int | None, rss_kib: int | None,
    elapsed: float,
) -> None:
    records = parse_sacct(data(f"{name}.sacct_steps.txt"))
    assert len(records) == 1  # the .batch (and .extern) rows fold into their job
    (record,) = records.values()
    assert (record.state, record.exit_code, record.signal) == (state, exit_code, signal)
    assert record.peak_rss == (rss_kib * 1024 if rss_kib else None)
    assert record.elapsed == elapsed


@pytest.mark.parametrize("mode", ["cgroup", "jobacct"])
def test_sacct_of_an_array_names_its_elements(mode: str) -> None:
    records = parse_sacct(data(f"array_{mode}.sacct_steps.txt"))
    array = job_ids(mode)["array"]
    assert {job: r.state for job, r in records.items()} == {
        f"{array}_{t}": s for t, s in ARRAY.items()
    }
    assert records[f"{array}_3"].exit_code == 2
    assert all(r.peak_rss for r in records.values())


# What the job ``ok`` (sacct_steps of each mode above) reads as in SACCT_FORMAT: its
# recorded values with TotalCPU, AllocCPUS, ReqMem and NodeList in the form sacct gives
# them (``MM:SS.mmm``; the job line's TotalCPU sums its steps; ``--mem`` shows as ReqMem).
USAGE_SACCT = """\
1|COMPLETED|0:0||00:00:04|00:01.234|1|200M|vm
1.batch|COMPLETED|0:0|66076K|00:00:04|00:01.230|1||vm
1.extern|COMPLETED|0:0|0|00:00:04|00:00.004|1||vm
6_3|FAILED|2:0||00:00:04|1-02:03:04|8|4Gn|node[01-02]
6_3.batch|FAILED|2:0|3228K|00:00:04|1-02:03:03.500|8||node01
6_4|COMPLETED|0:0||00:00:04||1|100M|vm
6_4.batch|COMPLETED|0:0|3296K|00:00:04|00:00.100|1||vm
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:01.234", 1.234), ("05:02.500", 302.5), ("02:03:04", 7384.0),
     ("1-02:03:04", 93784.0), ("1-02:03:04.5", 93784.5), ("", None), ("junk", None),
     ("1:2:3:4", None)],
)
def test_total_cpu_reads_in_seconds(text: str, seconds: float | None) -> None:
    assert parse_cpu_time(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_sacct_carries_what_each_job_used() -> None:
    assert SACCT_FORMAT.split(",")[:5] == ["JobID", "State", "ExitCode", "MaxRSS", "Elapsed"]
    records = parse_sacct(USAGE_SACCT)
    ok, multi, fallback = records["1"], records["6_3"], records["6_4"]
    assert (ok.cpu_time, ok.peak_rss, ok.host, ok.alloc_cpus, ok.req_mem) == (
        pytest.approx(1.234), 66076 * 1024, "vm", 1, 200 * 2**20)  # MaxRSS of .batch
    assert (multi.cpu_time, multi.host, multi.alloc_cpus, multi.req_mem) == (
        93784, "node[01-02]", 8, 4 * 2**30)
    assert fallback.cpu_time == pytest.approx(0.1)  # the job line's empty: the batch step's
    # The five fields gristmill asked for before: the rest is unknown, not wrong.
    (old,) = parse_sacct(data("ok_cgroup.sacct_steps.txt")).values()
    assert (old.cpu_time, old.alloc_cpus, old.host, old.peak_rss) == (None, None, None,
                                                                       66076 * 1024)


def test_sacct_without_accounting_fails_with_a_message() -> None:
    assert data("ok_noacct.sacct_steps.rc.txt").strip() == "1"
    assert "accounting storage is disabled" in data("ok_noacct.sacct_steps.stderr.txt")
    assert parse_sacct(data("ok_noacct.sacct_steps.stdout.txt")) == {}


@pytest.mark.parametrize("mode", MODES)
def test_scontrol_gives_every_recorded_final_state(mode: str) -> None:
    records = parse_scontrol(data(f"all_{mode}.scontrol.txt"))
    assert {job: r.state for job, r in records.items()} == expected(mode)
    ids = job_ids(mode)
    assert records[ids["exit3"]].exit_code == 3
    assert records[f"{ids['array']}_3"].exit_code == 2
    assert records[ids["cancel_running"]].signal == 15
    assert records[ids["ok"]].host == "vm"
    assert records[ids["pending"]].reason == "BeginTime"


def test_scontrol_of_a_purged_id_prints_nothing() -> None:
    assert parse_scontrol(data("purged_noacct.scontrol.stdout.txt")) == {}


@pytest.mark.parametrize(
    ("log", "verdict"),
    [
        ("timeout_cgroup.joblog.txt", TO),
        ("cancel_running_cgroup.joblog.txt", C),
        ("cancel_running_jobacct.joblog.txt", C),
        ("oom_jobacct.joblog.txt", OOM),  # its kill line says CANCELLED; the limit line wins
        ("ok_cgroup.joblog.txt", None),
        ("exit3_cgroup.joblog.txt", None),
        ("does-not-exist.txt", None),
    ],
)
def test_why_stopped_reads_slurmstepds_line_in_the_job_log(
    log: str, verdict: JobState | None
) -> None:
    found = why_stopped(DATA / log)
    assert (found[0] if found else None) is verdict


# -- rendering ---------------------------------------------------------------------------


def request(root: Path, i: int, task: str = "fit", res: Resources | None = None) -> JobRequest:
    stem = root / "logs" / task / f"{task}_{i}.1"
    return JobRequest(
        key=f"{task}{i:04d}.1", task=task, job_name=f"{task}_{i}",
        argv=("/opt/env/bin/fit", "-v", "--draw", str(i), "--note", "it's $HOME"),
        resources=res or Resources(mem="1G", cores=1, runtime="1h"),
        stdout=stem.with_suffix(".1.out"), stderr=stem.with_suffix(".1.err"),
        result_path=stem.with_suffix(".1.result.json"),
    )


FULL = Resources(mem="10G", cores=4, runtime="1h30m", queue="long.q", gpus=2,
                 project="proj_covid", extra={"constraint": "skylake", "exclusive": ""})


def golden(name: str, text: str) -> None:
    """Compare ``text`` with tests/backends/data/slurm_render/NAME (GRISTMILL_GOLDEN=1 rewrites)."""
    path = GOLDEN / name
    text = text.replace(str(GRISTMILL_PARENT), "{GRISTMILL_PARENT}")  # where gristmill lives
    if os.environ.get("GRISTMILL_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_sbatch_argv_of_a_full_request_matches_the_golden_file() -> None:
    root = Path("/runs/seiir/2026_11_29.01")
    array = Array("fit", FULL, tuple(request(root, i, res=FULL) for i in range(5)))
    argv = sbatch_argv(
        array, root / "logs/fit/array-fit0000.1.sh", partition="all.q", account="ignored",
        max_concurrent=2, mem_overhead=64 * 2**20, extra=["--qos=high", "--requeue"],
    )
    golden("full.txt", "\n".join(argv) + "\n")
    assert "--mem=10304M" in argv  # 10G + the wrapper's 64M
    assert "--array=0-4%2" in argv
    assert "--partition=long.q" in argv
    assert "--account=proj_covid" in argv


def test_sbatch_argv_of_a_bare_request_matches_the_golden_file() -> None:
    root = Path("/runs/r/2026_11_29.01")
    bare = Resources(cores=1)
    array = Array("noop", bare, (request(root, 0, task="noop", res=bare),))
    argv = sbatch_argv(array, root / "logs/noop/array-noop0000.1.sh")
    golden("bare.txt", "\n".join(argv) + "\n")
    assert not any(a.startswith(("--mem", "--time", "--partition", "--gres")) for a in argv)


def test_site_defaults_apply_when_the_task_sets_none() -> None:
    root = Path("/r")
    array = Array("fit", Resources(cores=1), (request(root, 0, res=Resources(cores=1)),))
    argv = sbatch_argv(array, root / "s.sh", partition="all.q", account="proj_x")
    assert [
        a for a in argv if a.startswith(("--partition", "--account"))
    ] == ["--partition=all.q", "--account=proj_x"]


def test_the_batch_script_runs_the_element_named_by_the_array_index() -> None:
    script = batch_script(Path("/runs/my run/logs/fit/array-x.1.json"), "/opt/py 3/bin/python")
    golden("batch_script.sh", script)
    last = shlex.split(script.splitlines()[-1])
    assert last == ["exec", "/opt/py 3/bin/python", "-I", "-c", element_boot(),
                    "/runs/my run/logs/fit/array-x.1.json", "${SLURM_ARRAY_TASK_ID}"]


# -- the backend against replayed commands ---------------------------------------------------

FAKE = """#!/bin/sh
# Replays recorded Slurm output: $FAKE_SLURM/<cmd>.{stdout,stderr,rc}; logs argv.
name=$(basename "$0")
d=$FAKE_SLURM
printf '%s\\n' "$name $*" >> "$d/calls.log"
[ -f "$d/$name.hang" ] && exec sleep "$(cat "$d/$name.hang")"
case "$*" in *%F*) cat "$d/scripts.stdout" 2>/dev/null; exit 0;; esac
if [ "$name" = sbatch ]; then
  n=$(cat "$d/next_id" 2>/dev/null || echo 100); echo $((n + 1)) > "$d/next_id"
  if [ -f "$d/sbatch.fail_from" ] && [ "$n" -ge "$(cat "$d/sbatch.fail_from")" ]; then
    echo "sbatch: error: Batch job submission failed: Invalid account specified" >&2; exit 1
  fi
  if [ -f "$d/sbatch.lost" ]; then  # accepted, and the answer lost on the way back
    printf '%s|%s\\n' "$n" "$(eval echo \\${$#})" >> "$d/scripts.stdout"
    echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
    exit 1
  fi
  if [ -f "$d/sbatch.refuse_from" ] && [ "$n" -ge "$(cat "$d/sbatch.refuse_from")" ]; then
    cat "$d/sbatch.refusal" >&2; exit 1
  fi
  if [ -f "$d/sbatch.stdout" ]; then cat "$d/sbatch.stdout"; else echo "$n"; fi
  exit 0
fi
if [ "$name" = scontrol ] && [ "$1" = show ] && [ "$2" = config ]; then
  cat "$d/config.txt"; exit 0
fi
if [ "$name" = sacctmgr ]; then  # sacctmgr --noheader --parsable2 show user|qos ...
  name="sacctmgr.$4"
fi
[ -f "$d/$name.stdout" ] && cat "$d/$name.stdout"
[ -f "$d/$name.stderr" ] && cat "$d/$name.stderr" >&2
exit "$(cat "$d/$name.rc" 2>/dev/null || echo 0)"
"""


class Fake:
    """The replaying commands' directory: what each prints, and the argv it was called with."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def reply(self, command: str, stdout: str = "", stderr: str = "", rc: int = 0) -> None:
        (self.root / f"{command}.stdout").write_text(stdout)
        (self.root / f"{command}.stderr").write_text(stderr)
        (self.root / f"{command}.rc").write_text(str(rc))

    def config(self, **values: str) -> None:
        settings = {"AccountingStorageType": "accounting_storage/slurmdbd",
                    "MaxArraySize": "1001", **values}
        (self.root / "config.txt").write_text(
            "".join(f"{k:<24}= {v}\n" for k, v in settings.items())
        )

    def calls(self, command: str | None = None) -> list[list[str]]:
        log = self.root / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        words = [line.split(" ") for line in lines]
        return [w for w in words if command is None or w[0] == command]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    bin_dir = tmp_path / "fakebin"
    state = tmp_path / "fakestate"
    bin_dir.mkdir()
    state.mkdir()
    script = bin_dir / "fake-slurm"
    script.write_text(FAKE)
    script.chmod(0o755)
    for name in ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sacctmgr"):
        (bin_dir / name).symlink_to(script)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    found = Fake(state)
    found.config()
    return found


def backend(**options: object) -> SlurmBackend:
    """A backend whose failed commands are retried without sleeping."""
    runner = CommandRunner(timeout=10, sleep=lambda _: None)
    return SlurmBackend(runner=runner, **options)  # type: ignore[arg-type]


def handles_for(tmp_path: Path, ids: list[str]) -> list[JobHandle]:
    log_dir = tmp_path / "logs" / "t"
    log_dir.mkdir(parents=True, exist_ok=True)
    return [JobHandle("slurm", job, f"k{job}", str(log_dir / f"t_{job}.1.result.json"))
            for job in ids]


@pytest.mark.parametrize("mode", MODES)
def test_one_poll_answers_every_job_with_one_squeue(
    fake: Fake, tmp_path: Path, mode: str
) -> None:
    fake.reply("squeue", data(f"all_{mode}.squeue_r.txt"))
    want = expected(mode)
    handles = handles_for(tmp_path, sorted(want))
    oom = job_ids(mode)["oom"]
    (tmp_path / "logs" / "t" / f"slurm-{oom}.out").write_text(data(f"oom_{mode}.joblog.txt"))
    slurm = backend()
    statuses = slurm.poll(handles)
    got = {h.job_id: s.state for h, s in statuses.items()}
    assert got == {**want, oom: OOM}  # jobacct's FAILED becomes OOM through the job's log
    # Finished jobs are asked about in one sacct call too, for what they used.
    assert slurm.calls == {"squeue": 1, "scontrol": 1, "sacct": 1}  # scontrol: config, once
    (squeue,) = fake.calls("squeue")
    array = job_ids(mode)["array"]
    assert "--array" in squeue
    assert "--states=all" in squeue
    listed = next(w for w in squeue if w.startswith("--jobs=")).removeprefix("--jobs=")
    assert sorted(listed.split(",")) == sorted({j.split("_")[0] for j in want})
    assert array in listed.split(",")


def test_jobs_gone_from_squeue_are_looked_up_with_one_sacct(fake: Fake, tmp_path: Path) -> None:
    fake.reply("squeue", stderr=data("purged_noacct.squeue.stderr.txt"), rc=1)
    names = ("ok", "exit3", "oom", "timeout", "cancel_running")
    fake.reply("sacct", "".join(data(f"{n}_cgroup.sacct_steps.txt") for n in names)
               + data("array_cgroup.sacct_steps.txt"))
    ids = job_ids("cgroup")
    handles = handles_for(tmp_path, [ids[n] for n in names] + ["6_3", "6_4"])
    slurm = backend()
    statuses = {h.job_id: s for h, s in slurm.poll(handles).items()}
    assert {j: s.state for j, s in statuses.items()} == {
        "1": S, "2": F, "3": OOM, "4": TO, "5": C, "6_3": F, "6_4": S,
    }
    assert (statuses["2"].exit_code, statuses["6_3"].exit_code) == (3, 2)
    assert statuses["4"].signal == 15
    assert statuses["4"].elapsed == 87
    assert statuses["1"].peak_rss == 66076 * 1024
    assert statuses["3"].reason == "OUT_OF_MEMORY"
    assert slurm.calls == {"squeue": 1, "scontrol": 1, "sacct": 1}  # scontrol: config, once
    (sacct,) = fake.calls("sacct")
    assert sacct[-1] == "--jobs=1,2,3,4,5,6"


def test_jobs_finished_in_squeue_get_their_usage_from_the_same_sacct_call(
    fake: Fake, tmp_path: Path
) -> None:
    """squeue's state stands (sacct may lag); what the job used is sacct's, marked so."""
    fake.reply("squeue", "1|COMPLETED|None|vm\n6_4|COMPLETED|None|vm\n7|RUNNING|None|vm\n")
    fake.reply("sacct", USAGE_SACCT)
    handles = handles_for(tmp_path, ["1", "6_4", "7"])
    slurm = backend()
    statuses = {h.job_id: s for h, s in slurm.poll(handles).items()}
    ok = statuses["1"]
    assert (ok.state, ok.cpu_time, ok.peak_rss, ok.host, ok.usage_source) == (
        S, pytest.approx(1.234), 66076 * 1024, "vm", "scheduler")
    assert statuses["6_4"].cpu_time == pytest.approx(0.1)
    assert (statuses["7"].state, statuses["7"].usage_source) == (JobState.RUNNING, None)
    (sacct,) = fake.calls("sacct")
    assert f"--format={SACCT_FORMAT}" in sacct
    assert sacct[-1] == "--jobs=1,6"  # not the running job's array
    assert slurm.calls == {"squeue": 1, "scontrol": 1, "sacct": 1}


def test_no_sacct_is_asked_while_every_job_still_runs(fake: Fake, tmp_path: Path) -> None:
    fake.reply("squeue", "7|RUNNING|None|vm\n")
    slurm = backend()
    slurm.poll(handles_for(tmp_path, ["7"]))
    assert slurm.calls == {"squeue": 1}


def test_a_wrapper_that_could_not_start_nor_record_its_attempt_is_lost(
    fake: Fake, tmp_path: Path
) -> None:
    """Exit 75 (EX_TEMPFAIL) with no result file: the node was short of descriptors or
    processes; LOST runs it again without spending the task's retries."""
    fake.reply("squeue", stderr=data("purged_noacct.squeue.stderr.txt"), rc=1)
    fake.reply("sacct", data("exit3_cgroup.sacct_steps.txt").replace("3:0", "75:0"))
    (handle,) = handles_for(tmp_path, ["2"])
    status = backend().poll([handle])[handle]
    assert status.state is JobState.LOST
    assert "short of file descriptors or processes" in status.reason


def test_without_accounting_gone_jobs_come_from_scontrol(fake: Fake, tmp_path: Path) -> None:
    fake.config(AccountingStorageType="accounting_storage/none")
    fake.reply("squeue", stderr=data("purged_noacct.squeue.stderr.txt"), rc=1)
    fake.reply("scontrol", data("all_noacct.scontrol.txt"))
    want = expected("noacct")
    slurm = backend()
    statuses = slurm.poll(handles_for(tmp_path, sorted(want)))
    assert {h.job_id: s.state for h, s in statuses.items()} == want
    assert slurm.calls == {"squeue": 1, "scontrol": 2}  # config once, then show job
    assert fake.calls("sacct") == []
    assert ["scontrol", "--oneliner", "show", "job"] in fake.calls("scontrol")


def test_a_job_no_source_knows_is_lost_only_after_the_grace_time(
    fake: Fake, tmp_path: Path
) -> None:
    fake.reply("squeue", stderr=data("unknown_noacct.squeue.stderr.txt"), rc=1)
    fake.reply("sacct", "")
    (handle,) = handles_for(tmp_path, ["999999_0"])
    assert backend(lost_after=3600).poll([handle]) == {}  # unchanged: maybe sacct lags
    (status,) = backend(lost_after=0).poll([handle]).values()
    assert status.state is JobState.LOST
    assert "no record" in status.reason


def test_a_job_no_source_knows_ends_as_its_result_file_says(fake: Fake, tmp_path: Path) -> None:
    fake.reply("squeue", stderr=data("unknown_noacct.squeue.stderr.txt"), rc=1)
    fake.reply("sacct", "")
    (handle,) = handles_for(tmp_path, ["999999_0"])
    write_result(handle.result_path, AttemptResult(
        JobState.FAILED, 4, None, 2**20, 1.5, "vm", 1.0, 2.5, "exit code 4"
    ), key=handle.key)
    (status,) = backend(lost_after=0).poll([handle]).values()
    assert (status.state, status.exit_code, status.reason) == (F, 4, "exit code 4")


def test_a_failing_squeue_is_a_backend_error_not_a_job_failure(
    fake: Fake, tmp_path: Path
) -> None:
    fake.reply("squeue", stderr="slurm_load_jobs error: Socket timed out on send/recv", rc=1)
    slurm = backend()
    with pytest.raises(BackendError, match="Socket timed out"):
        slurm.poll(handles_for(tmp_path, ["7_0"]))
    # Asked once: the engine's next poll is the retry (a stopped controller is not asked
    # three times a poll).
    assert slurm.calls == {"squeue": 1}


def test_polling_nothing_calls_nothing(fake: Fake) -> None:
    slurm = backend()
    assert slurm.poll([]) == {}
    assert fake.calls() == []


# -- submission against the replaying sbatch -------------------------------------------------


def sbatch_arrays(fake: Fake) -> list[tuple[str, Path]]:
    """(``--array`` value, batch script) of each sbatch call, in order."""
    found = []
    for argv in fake.calls("sbatch"):
        spec = next(w for w in argv if w.startswith("--array=")).removeprefix("--array=")
        found.append((spec, Path(argv[-1])))
    return found


def manifest_of(script: Path) -> Path:
    words = shlex.split(script.read_text().splitlines()[-1])
    assert (words[0], *words[2:4]) == ("exec", "-I", "-c"), words
    return Path(words[-2])


def test_jobs_of_one_task_and_resources_become_one_array(fake: Fake, tmp_path: Path) -> None:
    big = Resources(mem="2G", cores=1, runtime="1h")
    jobs = [request(tmp_path, i, res=big if i % 3 == 1 else None) for i in range(9)]
    jobs.append(request(tmp_path, 9, task="other"))
    slurm = backend()
    handles = slurm.submit(jobs)
    assert slurm.calls == {"scontrol": 1, "sbatch": 3}
    assert [h.key for h in handles] == [j.key for j in jobs]  # in the order asked
    # first-seen order: the 1G array (ids 100), the 2G one (101), then task "other" (102)
    small = [h.job_id for h, j in zip(handles, jobs) if j.resources != big and j.task == "fit"]
    assert small == ["100_0", "100_1", "100_2", "100_3", "100_4", "100_5"]
    assert [h.job_id for h, j in zip(handles, jobs) if j.resources == big] == [
        "101_0", "101_1", "101_2"]
    assert handles[-1].job_id == "102_0"
    arrays = sbatch_arrays(fake)
    assert [spec for spec, _ in arrays] == ["0-5", "0-2", "0-0"]
    mem = [next(w for w in a if w.startswith("--mem=")) for a in fake.calls("sbatch")]
    assert mem == ["--mem=1088M", "--mem=2112M", "--mem=1088M"]
    for job, handle in zip(jobs, handles):  # every index maps to its own attempt
        index = int(handle.job_id.split("_")[1])
        spec_script = dict(zip(["100", "101", "102"], [s for _, s in arrays]))
        manifest = manifest_of(spec_script[handle.job_id.split("_")[0]])
        entry, scheduler = read_manifest(manifest, index)
        assert entry["key"] == job.key
        # what the element runner needs of Slurm travels as data, not as an import
        assert scheduler == {
            "job_env": "SLURM_ARRAY_JOB_ID", "task_env": "SLURM_ARRAY_TASK_ID",
            "stop_log": str(manifest.parent / "slurm-{id}.out"), "stop_rules": STOP_RULES}
        assert entry["argv"] == list(job.argv)
        assert entry["result"] == str(job.result_path) == handle.result_path


def test_arrays_split_at_the_clusters_max_array_size(fake: Fake, tmp_path: Path) -> None:
    fake.config(MaxArraySize="4")  # indices 0-3: four elements per array
    slurm = backend()
    handles = slurm.submit([request(tmp_path, i) for i in range(10)])
    assert [spec for spec, _ in sbatch_arrays(fake)] == ["0-3", "0-3", "0-1"]
    assert [h.job_id for h in handles][3:6] == ["100_3", "101_0", "101_1"]


def test_arrays_split_at_the_batch_size(fake: Fake, tmp_path: Path) -> None:
    slurm = backend(batch_size="3")  # as --option batch_size=3 passes it
    slurm.submit([request(tmp_path, i) for i in range(7)])
    assert [spec for spec, _ in sbatch_arrays(fake)] == ["0-2", "0-2", "0-0"]


def test_twenty_five_hundred_jobs_cost_three_sbatch_calls(fake: Fake, tmp_path: Path) -> None:
    slurm = backend()  # batch_size 1000 binds before MaxArraySize (1001)
    handles = slurm.submit([request(tmp_path, i) for i in range(2500)])
    assert [spec for spec, _ in sbatch_arrays(fake)] == ["0-999", "0-999", "0-499"]
    assert slurm.calls["sbatch"] == 3
    assert len({h.job_id for h in handles}) == 2500


def test_max_array_size_binds_when_the_batch_size_is_larger(fake: Fake, tmp_path: Path) -> None:
    slurm = backend(batch_size=5000)
    slurm.submit([request(tmp_path, i) for i in range(2500)])
    assert [spec for spec, _ in sbatch_arrays(fake)] == ["0-1000", "0-1000", "0-497"]


@pytest.mark.parametrize(("limit", "spec"), [("2", "0-4%2"), ("5", "0-4"), ("50", "0-4"),
                                             (None, "0-4")])
def test_max_concurrent_throttles_each_array(
    fake: Fake, tmp_path: Path, limit: str | None, spec: str
) -> None:
    backend(max_concurrent=limit).submit([request(tmp_path, i) for i in range(5)])
    assert [s for s, _ in sbatch_arrays(fake)] == [spec]


def test_site_flags_and_options_pass_through_as_strings(fake: Fake, tmp_path: Path) -> None:
    slurm = make_backend(
        "slurm", partition="all.q", account="proj_x", sbatch_flags="--qos=high --requeue",
        mem_overhead="0", accounting="0", command_timeout="30", lost_after="60",
    )
    assert isinstance(slurm, SlurmBackend)
    slurm.submit([request(tmp_path, 0)])
    (argv,) = fake.calls("sbatch")
    assert argv[-3:-1] == ["--qos=high", "--requeue"]
    assert "--mem=1024M" in argv
    assert "--partition=all.q" in argv
    assert "--account=proj_x" in argv
    assert not slurm.accounting
    assert slurm.vanished.grace == 60


def test_an_sbatch_answer_that_is_no_job_id_is_an_error(fake: Fake, tmp_path: Path) -> None:
    (fake.root / "sbatch.stdout").write_text("Submitted batch job 7\n")  # not --parsable output
    with pytest.raises(BackendError, match="not a job id"):
        backend().submit([request(tmp_path, 0)])


def test_sbatch_parsable_with_a_cluster_name_is_understood(fake: Fake, tmp_path: Path) -> None:
    (fake.root / "sbatch.stdout").write_text("4242;gristmill\n")
    (handle,) = backend().submit([request(tmp_path, 0)])
    assert handle.job_id == "4242_0"


def test_the_manifest_and_script_land_next_to_the_task_logs(fake: Fake, tmp_path: Path) -> None:
    jobs = [request(tmp_path, i) for i in range(2)]
    backend().submit(jobs)
    ((_, script),) = sbatch_arrays(fake)
    assert script.parent == jobs[0].stdout.parent
    manifest = manifest_of(script)
    assert manifest.parent == script.parent
    assert json.loads(manifest.read_text())["task"] == "fit"
    (argv,) = fake.calls("sbatch")
    assert f"--output={job_log(script.parent, '%A_%a')}" in argv
    assert "--job-name=fit" in argv
    assert "--parsable" in argv


def test_cancel_is_one_scancel_for_every_job(fake: Fake, tmp_path: Path) -> None:
    slurm = backend()
    slurm.cancel(handles_for(tmp_path, ["7_0", "7_1", "8_0", "7_3", "unknown"]))
    assert fake.calls("scancel") == [["scancel", "7_[0-1,3]", "8_[0]"]]
    slurm.cancel([])
    assert slurm.calls == {"scancel": 1}


def test_a_cancelled_element_slurm_forgot_is_cancelled_not_lost(
    fake: Fake, tmp_path: Path
) -> None:
    """Pending elements cancelled one by one vanish from squeue and sacct alike."""
    fake.reply("squeue", "")
    fake.reply("sacct", "")
    handles = handles_for(tmp_path, ["7_0", "7_1"])
    slurm = backend(lost_after=3600)
    slurm.cancel(handles[:1])
    statuses = slurm.poll(handles)
    assert [h.job_id for h in statuses] == ["7_0"]  # 7_1: not yet LOST, maybe sacct lags
    assert statuses[handles[0]].state is C
    assert "no record" in statuses[handles[0]].reason


def test_a_corrupt_result_file_does_not_stop_polling(fake: Fake, tmp_path: Path) -> None:
    fake.reply("squeue", "")
    fake.reply("sacct", "")
    (handle,) = handles_for(tmp_path, ["7_0"])
    Path(handle.result_path).write_text("{not json")
    (status,) = backend(lost_after=0).poll([handle]).values()
    assert status.state is JobState.LOST


def test_a_failed_sbatch_takes_back_the_arrays_of_its_batch(fake: Fake, tmp_path: Path) -> None:
    """The engine counts a failed submit as "nothing submitted": make it true."""
    (fake.root / "sbatch.fail_from").write_text("102")
    jobs = [request(tmp_path, i, task=task) for task in ("a", "b", "c") for i in range(2)]
    slurm = backend()
    with pytest.raises(BackendError, match=r"Invalid account specified \(the 2 array\(s\) of "
                       r"the same batch already submitted were cancelled: 100 101\)"):
        slurm.submit(jobs)
    assert fake.calls("scancel") == [["scancel", "100", "101"]]
    assert slurm.calls["sbatch"] == 2 + 3  # the refused one was tried three times


def test_a_manifest_that_cannot_be_written_is_a_backend_error(fake: Fake, tmp_path: Path) -> None:
    job = request(tmp_path, 0)
    job.stdout.parent.parent.mkdir(parents=True)
    job.stdout.parent.write_text("a file where the log directory should be")
    with pytest.raises(BackendError, match=r"cannot write .*free space or fix permissions"):
        backend().submit([job])
    assert fake.calls("sbatch") == []


def test_a_batch_size_below_one_is_refused_when_the_backend_is_made() -> None:
    with pytest.raises(BackendError, match="batch_size='0': give at least 1"):
        SlurmBackend(batch_size="0")


# -- preemption, node failure, requeue, jobs that can never start --------------------------

#: squeue of an array preempted under ``PreemptMode=REQUEUE`` (Slurm's own format): element
#: 0 ran and was requeued (pending again, same id), 1 is on its way back, 2 still runs.
REQUEUED_SQUEUE = (
    "40_0|PENDING|BeginTime|\n40_1|REQUEUED|None|vm\n40_2|RUNNING|None|vm\n"
)
#: The same array's next poll, under ``--no-requeue``: the elements ended.
PREEMPTED_SQUEUE = (
    "41_0|PREEMPTED|None|vm\n41_1|NODE_FAIL|NodeDown|vm\n41_2|BOOT_FAIL|None|vm\n"
)


def test_a_job_slurm_requeued_is_queued_again_not_ended_nor_lost(
    fake: Fake, tmp_path: Path
) -> None:
    """A requeued element keeps its id: the engine waits for it (no second submission),
    and the stopped run's result file is not taken for the attempt's end."""
    fake.reply("squeue", REQUEUED_SQUEUE)
    handles = handles_for(tmp_path, ["40_0", "40_1", "40_2"])
    write_result(handles[0].result_path, AttemptResult(
        JobState.CANCELLED, None, 15, None, 3.0, "vm", 0.0, 3.0, "stopped"), key=handles[0].key)
    slurm = backend()
    for _ in range(3):  # as many polls as you like, nothing ends
        got = {h.job_id: (s.state, s.reason) for h, s in slurm.poll(handles).items()}
        # Slurm's "None" (not looked at yet, or running) is no reason to wait.
        assert got == {"40_0": (Q, "BeginTime"), "40_1": (Q, ""),
                       "40_2": (JobState.RUNNING, "")}
    assert slurm.calls == {"squeue": 3}  # no sacct for jobs still in the queue


def test_preempted_and_node_failed_jobs_say_so_with_slurms_reason(
    fake: Fake, tmp_path: Path
) -> None:
    fake.reply("squeue", PREEMPTED_SQUEUE)
    fake.reply("sacct", "")
    handles = handles_for(tmp_path, ["41_0", "41_1", "41_2"])
    got = {h.job_id: s for h, s in backend().poll(handles).items()}
    assert {j: s.state for j, s in got.items()} == {
        "41_0": JobState.PREEMPTED, "41_1": JobState.NODE_FAIL, "41_2": JobState.NODE_FAIL}
    assert "preempted" in got["41_0"].reason
    assert got["41_1"].reason.startswith("NODE_FAIL")
    assert got["41_2"].reason.startswith("BOOT_FAIL")


def test_a_preempted_job_gone_from_squeue_is_preempted_in_sacct(
    fake: Fake, tmp_path: Path
) -> None:
    fake.reply("squeue", stderr=data("purged_noacct.squeue.stderr.txt"), rc=1)
    fake.reply("sacct", "42_0|PREEMPTED|0:15||00:01:10|00:00:01.500|1|200M|vm\n"
                        "42_0.batch|CANCELLED|0:15|120K|00:01:10|00:00:01.500|1||vm\n")
    (handle,) = handles_for(tmp_path, ["42_0"])
    status = backend().poll([handle])[handle]
    assert (status.state, status.elapsed) == (JobState.PREEMPTED, 70)


@pytest.mark.parametrize(("options", "flag"), [
    ({}, "--no-requeue"), ({"requeue": True}, "--requeue"), ({"requeue": "yes"}, "--requeue"),
])
def test_sbatch_is_told_whether_slurm_may_requeue(
    fake: Fake, tmp_path: Path, options: dict[str, object], flag: str
) -> None:
    fake.reply("sbatch", "77\n")
    backend(sbatch_flags="--qos=high", **options).submit(
        [request(tmp_path, i) for i in range(2)])
    (argv,) = fake.calls("sbatch")
    assert flag in argv
    assert {"--requeue", "--no-requeue"} & set(argv) == {flag}
    assert argv.index(flag) < argv.index("--qos=high")  # site flags come after, and win


UNSCHEDULABLE_SQUEUE = (
    "50_0|PENDING|PartitionTimeLimit|\n50_1|PENDING|QOSMaxMemoryPerJob|\n"
    "50_2|PENDING|Priority|\n50_3|PENDING|QOSMaxJobsPerUserLimit|\n"
)


def test_a_job_that_can_never_start_waits_with_slurms_reason_by_default(
    fake: Fake, tmp_path: Path
) -> None:
    fake.reply("squeue", UNSCHEDULABLE_SQUEUE)
    handles = handles_for(tmp_path, ["50_0", "50_1", "50_2", "50_3"])
    slurm = backend()
    got = {h.job_id: (s.state, s.reason) for h, s in slurm.poll(handles).items()}
    assert got == {"50_0": (Q, "PartitionTimeLimit"), "50_1": (Q, "QOSMaxMemoryPerJob"),
                   "50_2": (Q, "Priority"), "50_3": (Q, "QOSMaxJobsPerUserLimit")}
    assert fake.calls("scancel") == []


def test_fail_on_unschedulable_cancels_and_fails_only_jobs_that_can_never_start(
    fake: Fake, tmp_path: Path
) -> None:
    fake.reply("squeue", UNSCHEDULABLE_SQUEUE)
    handles = handles_for(tmp_path, ["50_0", "50_1", "50_2", "50_3"])
    slurm = backend(fail_on_unschedulable=True)
    got = {h.job_id: s for h, s in slurm.poll(handles).items()}
    assert {j: s.state for j, s in got.items()} == {"50_0": F, "50_1": F, "50_2": Q, "50_3": Q}
    assert "PartitionTimeLimit" in got["50_0"].reason
    assert "QOSMaxMemoryPerJob" in got["50_1"].reason
    assert fake.calls("scancel") == [["scancel", "50_[0-1]"]]  # one call for all of them


@pytest.mark.parametrize(("reason", "never"), [
    ("PartitionTimeLimit", True), ("PartitionNodeLimit", True), ("QOSMaxMemoryPerJob", True),
    ("QOSMaxWallDurationPerJobLimit", True), ("AssocMaxCpuPerJobLimit", True),
    ("InvalidAccount", True), ("DependencyNeverSatisfied", True), ("BadConstraints", True),
    ("Priority", False), ("Resources", False), ("QOSMaxJobsPerUserLimit", False),
    ("AssocGrpCPUMinutesLimit", False), ("BeginTime", False), ("Dependency", False),
    ("ReqNodeNotAvail, UnavailableNodes:vm", False),  # nodes come back from maintenance
    ("", False),
])
def test_which_pending_reasons_never_clear(reason: str, never: bool) -> None:
    assert unschedulable(reason) is never


def test_slurmstepds_preemption_line_leaves_the_verdict_to_slurm(tmp_path: Path) -> None:
    log = tmp_path / "slurm-3_0.out"
    log.write_text("working\n*** JOB 3 ON vm CANCELLED AT 2026-11-29T10:00:00 DUE TO "
                   "PREEMPTION ***\n")
    assert why_stopped(log) is None
    assert verdict(log.read_text(), STOP_RULES) == (SCHEDULER_DECIDES, "Slurm preempted the job")


# -- a controller that does not answer -------------------------------------------------------


def impatient(**options: object) -> SlurmBackend:
    """A backend whose commands time out after 1 s."""
    return SlurmBackend(runner=CommandRunner(timeout=1, sleep=lambda _: None),
                        **options)  # type: ignore[arg-type]


def test_a_hanging_squeue_is_killed_at_the_timeout_and_asked_once(
    fake: Fake, tmp_path: Path
) -> None:
    """squeue hangs (slurmctld stopped): the poll fails within the command timeout, asked
    once (the engine's next poll asks again), and says what happened."""
    (fake.root / "squeue.hang").write_text("30")
    slurm = impatient()
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"squeue --noheader failed once, not retried: "
                                           r"timed out after 1 s") as caught:
        slurm.poll(handles_for(tmp_path, ["7_0", "7_1", "8_0"]))
    assert time.monotonic() - start < 20  # not 30: killed at 1 s (generous under load)
    assert caught.value.transient
    assert slurm.calls == {"squeue": 1}
    (fake.root / "squeue.hang").unlink()
    fake.reply("squeue", "7_0|RUNNING|None|vm|2026-12-08T02:00:00|t\n"
               "7_1|PENDING|Priority||2026-12-08T02:00:00|t\n8_0|RUNNING|None|vm||t\n")
    statuses = {h.job_id: s.state for h, s in slurm.poll(
        handles_for(tmp_path, ["7_0", "7_1", "8_0"])).items()}
    assert statuses == {"7_0": JobState.RUNNING, "7_1": Q, "8_0": JobState.RUNNING}


def test_a_submission_that_timed_out_is_not_retried_and_is_found_again(
    fake: Fake, tmp_path: Path
) -> None:
    """sbatch hangs past the timeout: the array may exist, so it is never run again; its
    jobs are handed over under a provisional id, which the scheduler's list of scripts
    resolves once it answers (here: the array was accepted as job 100)."""
    fake.config()
    slurm = impatient()
    slurm.config()
    (fake.root / "sbatch.hang").write_text("30")
    jobs = [request(tmp_path, i) for i in range(3)]
    handles = list(slurm.submit(jobs))
    assert slurm.calls["sbatch"] == 1  # never retried
    assert all(h.job_id.startswith("?array-fit0000.1_") for h in handles), handles
    (fake.root / "sbatch.hang").unlink()
    (fake.root / "squeue.hang").write_text("30")  # still not answering: nothing concluded
    with pytest.raises(BackendError):
        slurm.poll(handles)
    (fake.root / "squeue.hang").unlink()
    script = tmp_path / "logs" / "fit" / "array-fit0000.1.sh"
    (fake.root / "scripts.stdout").write_text(f"99|/elsewhere/array-x.sh\n100|{script}\n")
    fake.reply("squeue", "100_0|RUNNING|None|vm||fit\n100_1|RUNNING|None|vm||fit\n"
               "100_2|PENDING|Priority|||fit\n")
    statuses = slurm.poll(handles)
    assert [statuses[h].state for h in handles] == [JobState.RUNNING, JobState.RUNNING, Q]
    squeue = fake.calls("squeue")[-1]
    assert "--jobs=100" in squeue
    slurm.cancel(handles)
    assert fake.calls("scancel")[-1] == ["scancel", "100_[0-2]"]


def test_a_lost_answer_to_sbatch_is_not_retried_and_the_array_is_found_by_its_script(
    fake: Fake, tmp_path: Path
) -> None:
    """sbatch says "Socket timed out": Slurm had accepted the array all the same."""
    (fake.root / "sbatch.lost").write_text("")
    slurm = backend()
    handles = list(slurm.submit([request(tmp_path, i) for i in range(2)]))
    assert slurm.calls["sbatch"] == 1
    fake.reply("squeue", "100_0|COMPLETED|None|vm||fit\n100_1|RUNNING|None|vm||fit\n")
    fake.reply("sacct", "")
    statuses = slurm.poll(handles)
    assert [statuses[h].state for h in handles] == [S, JobState.RUNNING]


def test_an_array_whose_submission_was_lost_is_found_by_an_elements_marker_after_a_restart(
    fake: Fake, tmp_path: Path
) -> None:
    """A new engine (a new backend) with the provisional ids in its store: an element that
    started wrote its job id next to its result, and that is enough."""
    (fake.root / "sbatch.lost").write_text("")
    handles = list(backend().submit([request(tmp_path, i) for i in range(2)]))
    Path(handles[1].result_path + ".handle").write_text("100_1\n")
    (fake.root / "scripts.stdout").write_text("")
    fake.reply("squeue", "100_0|RUNNING|None|vm||fit\n100_1|RUNNING|None|vm||fit\n")
    again = backend()
    statuses = again.poll(handles)
    assert [statuses[h].state for h in handles] == [JobState.RUNNING] * 2


def test_a_submission_slurm_never_got_is_lost_once_it_answers_without_it(
    fake: Fake, tmp_path: Path
) -> None:
    (fake.root / "sbatch.hang").write_text("30")
    slurm = impatient(lost_after=3600)
    slurm._config = {"MaxArraySize": "1001"}  # asked before the controller stopped
    handles = list(slurm.submit([request(tmp_path, 0)]))
    (fake.root / "sbatch.hang").unlink()
    (fake.root / "scripts.stdout").write_text("")
    assert slurm.poll(handles) == {}  # not listed yet: unchanged while the grace runs
    slurm.vanished.grace = 0
    (status,) = slurm.poll(handles).values()
    assert status.state is JobState.LOST
    assert "never accepted" in status.reason


# -- what sacct is asked ---------------------------------------------------------------------


def test_sacct_names_the_arrays_and_the_earliest_submission(fake: Fake, tmp_path: Path) -> None:
    fake.reply("squeue", "100_0|COMPLETED|None|vm|2026-12-08T02:10:00|fit\n"
               "101_0|COMPLETED|None|vm|2026-12-08T02:05:00|fit\n")
    fake.reply("sacct", "")
    slurm = backend()
    slurm.poll(handles_for(tmp_path, ["100_0", "101_0"]))
    (sacct,) = fake.calls("sacct")
    assert sacct[-2:] == ["--jobs=100,101", "--starttime=2026-12-08T02:05:00"]


def test_after_many_retry_arrays_sacct_asks_by_task_name_instead(
    fake: Fake, tmp_path: Path
) -> None:
    """300 arrays (each retry is one): ``--name`` is shorter than 300 ids; never element ids."""
    ids = [f"{1000 + a}_0" for a in range(300)]
    fake.reply("squeue", "".join(f"{j}|FAILED|None|vm|2026-12-08T02:{a % 60:02d}:00|fit\n"
                                 for a, j in enumerate(ids)))
    fake.reply("sacct", "")
    slurm = backend()
    slurm.poll(handles_for(tmp_path, ids))
    (sacct,) = fake.calls("sacct")
    assert sacct[-3:] == ["--name=fit", f"--user={os.getuid()}",
                          "--starttime=2026-12-08T02:00:00"]
    assert slurm.calls["sacct"] == 1


def test_poll_bounds_are_options_and_nonsense_is_refused() -> None:
    assert (backend().capabilities.poll_min, backend().capabilities.poll_max) == (5.0, 60.0)
    mine = backend(poll_min="1", poll_max="30")  # as --option or the spec give them
    assert (mine.capabilities.poll_min, mine.capabilities.poll_max) == (1.0, 30.0)
    with pytest.raises(BackendError, match=r"poll_min=10, poll_max=2: give 0 <= poll_min <= "
                                           r"poll_max seconds \(--slurm-poll-min"):
        backend(poll_min=10, poll_max=2)



@pytest.mark.parametrize("options", [{}, {"poll_min": "1", "poll_max": "30"}])
def test_poll_options_keep_everything_else_the_backend_declares(
    options: dict[str, str],
) -> None:
    """An instance's capabilities are the class's with its poll bounds: the submit limit
    and chunks a backend declares reach the engine whatever its options."""
    for made in (backend(**options), make_backend("sge", **options)):
        declared = type(made).capabilities
        assert attrs.evolve(made.capabilities, poll_min=declared.poll_min,
                            poll_max=declared.poll_max) == declared
    assert backend(**options).capabilities.submit_limit
    assert backend(**options).capabilities.chunks

# -- submit limits (recorded on the production-like cluster: data/slurm/prod) ---------------


@pytest.mark.parametrize(("name", "word"), [
    ("limit_single", "AssocMaxSubmitJobLimit"),  # MaxSubmitJobs=3 held, one more
    ("limit_array", "AssocMaxSubmitJobLimit"),  # 3 held, an array of 2
    ("limit_after_array", "AssocMaxSubmitJobLimit"),  # an array of 3 held, one more
    ("limit_qos", "QOSMaxSubmitJobPerUserLimit"),  # the QOS's MaxSubmitJobsPerUser=1
    ("too_much_mem", None),  # never clears: not a submit limit
])
def test_sbatch_refusals_for_a_submit_limit_are_told_apart(name: str, word: str | None) -> None:
    assert (PROD / f"{name}.sbatch.rc.txt").read_text().strip() == "1"
    assert submit_limit_refusal((PROD / f"{name}.sbatch.stderr.txt").read_text()) == word


def test_an_accounting_policy_refusal_without_a_submit_word_is_no_submit_limit() -> None:
    """The policy line alone is also printed for size and time limits, which never clear."""
    assert submit_limit_refusal(
        "sbatch: error: AssocMaxWallDurationPerJobLimit\nsbatch: error: Batch job submission "
        "failed: Job violates accounting/QOS policy (job submit limit, user's size and/or "
        "time limits)") is None


def test_the_submit_limit_is_the_associations_or_its_qos() -> None:
    assoc = (PROD / "limit.assoc.txt").read_text()
    qos = (PROD / "limit.qos.txt").read_text()
    assert parse_submit_limit(assoc, qos, account="gristmill-limits", partition=None) == (
        3, "normal")
    # root's default account has no limit, nor has its QOS
    assert parse_submit_limit(assoc, qos, account=None, partition=None) == (None, "normal")
    assert parse_submit_limit(assoc, qos, account="elsewhere", partition=None) == (None, None)
    limited = (PROD / "limit_qos.qos.txt").read_text()  # gristmill-limited|1|
    assert parse_submit_limit(assoc, limited, account="gristmill-limits", partition="debug",
                              qos_name="gristmill-limited") == (1, "gristmill-limited")


def test_the_submit_limit_is_read_once_from_sacctmgr(fake: Fake) -> None:
    fake.config(ClusterName="gristmill")
    fake.reply("sacctmgr.user", (PROD / "limit.assoc.txt").read_text())
    fake.reply("sacctmgr.qos", (PROD / "limit.qos.txt").read_text())
    slurm = backend(account="gristmill-limits")
    assert slurm.submit_limit() == 3
    assert slurm.submit_limit() == 3
    user, qos = fake.calls("sacctmgr")
    assert user[3:6] == ["show", "user", pwd.getpwuid(os.getuid()).pw_name]
    assert "cluster=gristmill" in user
    assert qos[3:6] == ["show", "qos", "normal"]
    assert slurm.calls["sacctmgr"] == 2


@pytest.mark.parametrize("why", ["fails", "no accounting"])
def test_a_submit_limit_that_cannot_be_read_is_unknown_not_an_error(
    fake: Fake, why: str
) -> None:
    if why == "fails":
        fake.reply("sacctmgr.user", stderr="sacctmgr: error: Problem talking to the database",
                   rc=1)
    else:
        fake.config(AccountingStorageType="accounting_storage/none")
    slurm = backend(account="gristmill-limits")
    assert slurm.submit_limit() is None
    assert slurm.calls.get("sacctmgr", 0) == (1 if why == "fails" else 0)  # never retried


def test_a_submit_limits_refusal_is_not_retried_and_takes_back_the_batch(
    fake: Fake, tmp_path: Path
) -> None:
    """The second array of a batch is refused for the limit: one sbatch call for it, the
    first array withdrawn, and the error says it was a limit (the engine waits, never fails)."""
    (fake.root / "sbatch.refuse_from").write_text("101")
    (fake.root / "sbatch.refusal").write_text((PROD / "limit_array.sbatch.stderr.txt").read_text())
    jobs = [request(tmp_path, i, task=task) for task in ("a", "b") for i in range(2)]
    slurm = backend()
    with pytest.raises(SubmitLimitError, match=r"refused 2 job\(s\) of b for a submit limit "
                       r"\(AssocMaxSubmitJobLimit\).*were cancelled: 100") as refused:
        slurm.submit(jobs)
    assert refused.value.transient
    assert refused.value.limit is None  # not read: the engine learns it
    assert slurm.calls["sbatch"] == 2
    assert fake.calls("scancel") == [["scancel", "100"]]
