"""The Grid Engine backend's renderers and parsers, on outputs recorded from a real SGE 8.1.9.

The files in data/sge/ come from the test cluster (ci/sge/start.sh); INDEX.md there
says which job each is. The backend against the live cluster is test_sge_cluster.py.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from gristmill.backends.base import JobHandle, JobRequest
from gristmill.backends.batch.arrays import Array, element_boot, write_manifest
from gristmill.backends.batch.backend import lookup
from gristmill.backends.batch.commands import CommandRunner
from gristmill.backends.registry import make_backend
from gristmill.backends.sge.backend import (
    SgeBackend,
    batch_script,
    expand_tasks,
    job_name,
    parse_error_reasons,
    parse_qacct,
    parse_qacct_memory,
    parse_qstat_xml,
    qdel_argv,
    qsub_argv,
    ran_out_of_memory,
    sge_state,
    task_stderr,
)
from gristmill.errors import BackendError
from gristmill.resources import Resources
from gristmill.states import JobState

DATA = Path(__file__).parent / "data" / "sge"


def read(name: str) -> str:
    return (DATA / name).read_text()


def request(tmp_path: Path, key: str, res: Resources, task: str = "fit") -> JobRequest:
    logs = tmp_path / "logs" / task
    return JobRequest(key, task, key, ("echo", "a b"), res, logs / f"{key}.out",
                      logs / f"{key}.err", logs / f"{key}.result.json")


# -- qstat -xml -----------------------------------------------------------------------------


def test_qstat_lists_pending_array_tasks_by_number_and_held_jobs_as_queued() -> None:
    records = parse_qstat_xml(read("qstat_live.xml"))  # jobs 1-7 just submitted, 7 held
    assert [records[f"5_{t}"].state for t in (1, 2, 3, 4)] == [JobState.QUEUED] * 4
    assert "5_5" not in records
    assert records["7"].raw_state == "hqw"
    assert records["7"].state is JobState.QUEUED
    assert records["1"].host is None


def test_qstat_running_tasks_carry_their_host_and_deleted_jobs_are_gone() -> None:
    running = parse_qstat_xml(read("qstat_array_running.xml"))
    assert (running["5_3"].state, running["5_3"].host) == (JobState.RUNNING, "vm")
    assert running["5_4"].raw_state == "t"
    assert running["5_4"].state is JobState.RUNNING
    assert "4" in parse_qstat_xml(read("qstat_live.xml"))
    assert "4" not in parse_qstat_xml(read("qstat_after_qdel.xml"))  # qdel'ed while pending


def test_a_job_listed_without_tasks_answers_for_its_tasks() -> None:
    records = parse_qstat_xml(read("qstat_live.xml"))
    record = lookup(records, "1_1")
    assert record is not None
    assert record.state is JobState.QUEUED
    assert lookup(records, "99_1") is None


@pytest.mark.parametrize(("code", "state"), [
    ("qw", JobState.QUEUED), ("hqw", JobState.QUEUED), ("r", JobState.RUNNING),
    ("t", JobState.RUNNING), ("dr", JobState.RUNNING), ("Rr", JobState.RUNNING),
    ("Eqw", JobState.FAILED), ("s", JobState.RUNNING),
    # rescheduled (the host failed, qmod -rj): waiting or running again, never an end
    ("Rq", JobState.QUEUED), ("Rhqw", JobState.QUEUED), ("Rt", JobState.RUNNING),
])
def test_state_codes(code: str, state: JobState) -> None:
    assert sge_state(code) is state


def test_task_ranges_expand_with_steps_and_lists() -> None:
    assert expand_tasks("1-4:1") == [1, 2, 3, 4]
    assert expand_tasks("3,4") == [3, 4]
    assert expand_tasks("1-7:3") == [1, 4, 7]
    assert expand_tasks("") == []


def test_unparsable_qstat_output_is_a_transient_backend_error() -> None:
    with pytest.raises(BackendError, match="does not parse"):
        parse_qstat_xml("<job_info><queue_info>")


# -- qacct -j -------------------------------------------------------------------------------


def test_qacct_ok_and_exit_3() -> None:
    (ok,) = parse_qacct(read("qacct_ok.txt")).values()
    assert (ok.state, ok.exit_code, ok.host, ok.elapsed) == (JobState.SUCCEEDED, 0, "vm", 1.0)
    assert ok.peak_vmem == int(8.176 * 2**20)
    bad = parse_qacct(read("qacct_exit3.txt"))["2"]
    assert (bad.state, bad.exit_code, bad.signal) == (JobState.FAILED, 3, None)


def test_qacct_cpu_is_the_jobs_cpu_time() -> None:
    """``cpu`` (user + system of the whole job, ``0.121s``); junk or a missing line: unknown."""
    (ok,) = parse_qacct(read("qacct_ok.txt")).values()
    assert ok.cpu_time == pytest.approx(0.121)
    assert parse_qacct(read("qacct_hvmem.txt"))["6"].cpu_time == pytest.approx(0.209)
    text = read("qacct_ok.txt")
    assert next(iter(parse_qacct(text.replace("0.121s", "n/a")).values())).cpu_time is None
    no_cpu = "\n".join(line for line in text.splitlines() if not line.startswith("cpu "))
    assert next(iter(parse_qacct(no_cpu).values())).cpu_time is None


def test_qacct_h_rt_kill_is_a_timeout_and_qdel_a_cancel() -> None:
    timeout = parse_qacct(read("qacct_timeout.txt"))["3"]
    assert (timeout.state, timeout.exit_code, timeout.signal) == (JobState.TIMEOUT, 137, 9)
    assert "time limit" in timeout.reason
    assert "h_rt" in timeout.reason
    cancelled = parse_qacct(read("qacct_qdel.txt"))["9"]
    assert cancelled.state is JobState.CANCELLED
    assert "qdel" in cancelled.reason


def test_qacct_of_an_array_has_one_record_per_task() -> None:
    records = parse_qacct(read("qacct_array.txt"))
    assert sorted(records) == ["5_1", "5_2", "5_3", "5_4"]
    assert [records[f"5_{t}"].exit_code for t in (1, 2, 3, 4)] == [0, 3, 0, 0]
    assert records["5_2"].state is JobState.FAILED


def test_h_vmem_says_nothing_about_memory_in_qacct() -> None:
    record = parse_qacct(read("qacct_hvmem.txt"))["6"]
    assert (record.state, record.exit_code) == (JobState.FAILED, 1)
    assert "memory" not in record.reason.lower()


def test_qacct_for_a_job_it_does_not_know_is_empty() -> None:
    assert parse_qacct(read("qacct_missing.txt")) == {}


def test_qacct_memory_units() -> None:
    assert parse_qacct_memory("1.750MB") == int(1.75 * 2**20)
    assert parse_qacct_memory("2.000GB") == 2 * 2**30
    assert parse_qacct_memory("0.000B") is None
    assert parse_qacct_memory("junk") is None


# -- rendering ------------------------------------------------------------------------------


def test_qsub_argv_renders_every_resource_as_separate_words(tmp_path: Path) -> None:
    res = Resources(cores=4, mem="1G", runtime="1h", queue="long.q", project="p x",
                    gpus=1)
    array = Array("fit", res, tuple(request(tmp_path, f"n{i}.1", res) for i in range(3)))
    script = tmp_path / "s.sh"
    argv = qsub_argv(array, script, max_concurrent=2, mem_overhead=2**20 * 64, pe="mpi",
                     extra=["-l", "tmp=1G"])
    logs = tmp_path / "logs" / "fit"
    assert argv == [
        "qsub", "-terse", "-V", "-b", "n", "-S", "/bin/bash", "-N", "fit", "-t", "1-3",
        "-o", f"{logs}/sge-$JOB_ID.$TASK_ID.out", "-e", f"{logs}/sge-$JOB_ID.$TASK_ID.err",
        "-tc", "2", "-pe", "mpi", "4", "-l", "h_vmem=1088M", "-l", "h_rt=3600",
        "-q", "long.q", "-P", "p x", "-l", "gpu=1", "-l", "tmp=1G", str(script),
    ]


def test_h_rt_is_the_runtime_plus_the_margin_the_wrapper_leaves_itself(tmp_path: Path) -> None:
    res = Resources(runtime="90.5s")
    array = Array("fit", res, (request(tmp_path, "a.1", res),))
    argv = qsub_argv(array, tmp_path / "s.sh", h_rt_margin=60)
    assert argv[argv.index("-l") + 1] == "h_rt=151"
    backend = SgeBackend(h_rt_margin="0")
    assert "h_rt=91" in backend.submit_argv(array, tmp_path / "s.sh")
    with pytest.raises(BackendError, match="h_rt_margin"):
        SgeBackend(h_rt_margin=-1)


def test_qsub_argv_minimal_and_m_mem_free(tmp_path: Path) -> None:
    res = Resources(mem="100M")
    array = Array("7up", res, (request(tmp_path, "a.1", res),))
    argv = qsub_argv(array, tmp_path / "s.sh", queue="q", project="pr", max_concurrent=5,
                     memory_resource="m_mem_free")
    assert argv[argv.index("-N") + 1] == "g7up"
    assert "-tc" not in argv  # a throttle of 5 never binds an array of 1
    assert "-pe" not in argv
    assert argv[argv.index("-l") + 1] == "m_mem_free=100M"
    assert argv[argv.index("-q") + 1] == "q"
    assert argv[argv.index("-P") + 1] == "pr"


def test_job_names_qsub_would_refuse_are_made_safe() -> None:
    assert job_name("a/b:c@d") == "a_b_c_d"
    assert job_name("fit") == "fit"


def test_qdel_argv_is_one_call_with_one_range_per_run_of_tasks() -> None:
    assert qdel_argv(["5_1", "5_2", "5_3", "5_7", "9_2", "12"]) == [
        "qdel", "12", "5", "-t", "1-3", "5", "-t", "7", "9", "-t", "2"]


def test_the_shell_batch_script_runs_manifest_entry_task_id_minus_one(tmp_path: Path) -> None:
    script = batch_script(Path("/runs/a b/m.json"), "/opt/py thon", shell="/bin/bash")
    assert script.startswith("#!/bin/bash\n")
    line = script.splitlines()[-1]
    out = subprocess.run(["bash", "-c", line.replace("exec ", "printf '%s\\n' ", 1)],
                         env={"SGE_TASK_ID": "1"}, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["/opt/py thon", "-I", "-c", element_boot(),
                                       "/runs/a b/m.json", "0"]


def test_the_python_batch_script_runs_manifest_entry_task_id_minus_one(tmp_path: Path) -> None:
    """The default: python runs the script, no login shell; element 2 is entry 1."""
    res = Resources()
    (tmp_path / "logs").mkdir()  # the run's (the engine makes each task's folder in it)
    jobs = [request(tmp_path, f"n{i}.1", res) for i in range(2)]
    jobs[1] = attrs.evolve(jobs[1], argv=("sh", "-c", "echo picked >&2; exit 4"))
    array = Array("fit", res, tuple(jobs))
    manifest = tmp_path / "m '.json"
    write_manifest(array, manifest)
    script = tmp_path / "job.py"
    text = batch_script(manifest, sys.executable)
    assert text.startswith(f"#!{sys.executable} -I\n")  # isolated from the job's directory
    script.write_text(text)
    script.chmod(0o755)
    (tmp_path / "types.py").write_text("raise SystemExit('a shadowing types.py was imported')\n")
    proc = subprocess.run([str(script)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=30, check=False, env={**os.environ, "SGE_TASK_ID": "2",
                                                         "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 4, proc.stderr
    assert jobs[1].stderr.read_text() == "picked\n"
    assert not jobs[0].stderr.exists()


def test_oom_is_read_from_the_tasks_stderr(tmp_path: Path) -> None:
    result = tmp_path / "n.1.result.json"
    assert task_stderr(str(result)) == tmp_path / "n.1.err"
    assert not ran_out_of_memory(tmp_path / "n.1.err")  # no file: no verdict
    (tmp_path / "n.1.err").write_text('Traceback...\n  File "<string>", line 1\nMemoryError\n')
    assert ran_out_of_memory(tmp_path / "n.1.err")
    (tmp_path / "n.1.err").write_text("about to exit with code 3\n")
    assert not ran_out_of_memory(tmp_path / "n.1.err")


# -- the backend with stand-in commands ------------------------------------------------------


def fake_commands(tmp_path: Path, **outputs: str) -> Path:
    """Executables named like Grid Engine's clients that print a recorded file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, data in outputs.items():
        (bin_dir / f"{name}.out").write_text(data)
        (bin_dir / name).write_text(f"#!/bin/sh\necho \"$*\" >> {bin_dir}/{name}.args\n"
                                    f"cat {bin_dir}/{name}.out\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_poll_asks_qacct_only_for_gone_jobs_without_a_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_commands(tmp_path, qstat=read("qstat_array_running.xml"),
                            qacct=read("qacct_qdel.txt"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    backend = SgeBackend(runner=CommandRunner(attempts=1))
    running = JobHandle("sge", "5_3", "a.1", str(tmp_path / "a.1.result.json"))
    killed = JobHandle("sge", "9_1", "b.1", str(tmp_path / "b.1.result.json"))
    statuses = backend.poll([running, killed])
    assert statuses[running].state is JobState.RUNNING
    assert statuses[killed].state is JobState.CANCELLED
    assert statuses[running].usage_source is None  # still running: nothing measured yet
    assert (statuses[killed].cpu_time, statuses[killed].usage_source) == (
        pytest.approx(0.106), "scheduler")  # qacct's cpu line
    assert backend.calls == {"qstat": 1, "qacct": 1}
    assert (bin_dir / "qacct.args").read_text() == "-j 9\n"


def test_a_wrapper_that_could_not_start_nor_record_its_attempt_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """exit_status 75 (EX_TEMPFAIL) and no result file: LOST, the task's retries kept."""
    tempfail = re.sub(r"exit_status\s+3", "exit_status  75", read("qacct_exit3.txt"))
    tempfail = re.sub(r"jobnumber\s+2", "jobnumber    77", tempfail)  # not in qstat's list
    bin_dir = fake_commands(tmp_path, qstat=read("qstat_after_qdel.xml"), qacct=tempfail)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    handle = JobHandle("sge", "77", "a.1", str(tmp_path / "a.1.result.json"))
    status = SgeBackend(runner=CommandRunner(attempts=1)).poll([handle])[handle]
    assert status.state is JobState.LOST
    assert "short of file descriptors or processes" in status.reason


def test_a_job_nobody_knows_is_lost_after_the_grace_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_commands(tmp_path, qstat=read("qstat_after_qdel.xml"),
                            qacct=read("qacct_missing.txt"), qdel="")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    backend = SgeBackend(lost_after=0, runner=CommandRunner(attempts=1))
    gone = JobHandle("sge", "40_1", "c.1", str(tmp_path / "c.1.result.json"))
    assert backend.poll([gone])[gone].state is JobState.LOST
    cancelled = JobHandle("sge", "41_1", "d.1", str(tmp_path / "d.1.result.json"))
    backend.cancel([cancelled])
    assert backend.poll([cancelled])[cancelled].state is JobState.CANCELLED


def test_error_reasons_per_task_from_qstat_j() -> None:
    reasons = parse_error_reasons(read("qstat_j_eqw.txt"))
    assert set(reasons) == {("161", "1"), ("161", "2")}
    assert reasons[("161", "1")] == (
        'error: can\'t open output file "/nonexistent/dir/out": No such file or directory'
    )
    assert parse_error_reasons("") == {}


def test_a_task_in_error_state_fails_with_its_reason_and_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eqw never ends by itself: one qstat -j says why, one qdel removes every such task."""
    bin_dir = fake_commands(tmp_path, qdel="")
    (bin_dir / "qstat.xml").write_text(read("qstat_eqw.xml"))
    (bin_dir / "qstat.j").write_text(read("qstat_j_eqw.txt"))
    (bin_dir / "qstat").write_text(
        f"#!/bin/sh\necho \"$*\" >> {bin_dir}/qstat.args\n"
        f"if [ \"$1\" = -j ]; then cat {bin_dir}/qstat.j; else cat {bin_dir}/qstat.xml; fi\n"
    )
    (bin_dir / "qstat").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    backend = SgeBackend(runner=CommandRunner(attempts=1))
    handles = [JobHandle("sge", f"161_{t}", f"k{t}.1", str(tmp_path / f"k{t}.json"))
               for t in (1, 2)]
    statuses = backend.poll(handles)
    assert {s.state for s in statuses.values()} == {JobState.FAILED}
    assert "error state (Eqw)" in statuses[handles[0]].reason
    assert "can't open output file" in statuses[handles[1]].reason
    assert backend.calls == {"qstat": 2, "qdel": 1}
    assert (bin_dir / "qstat.args").read_text() == "-xml\n-j 161\n"
    assert (bin_dir / "qdel.args").read_text() == "161 -t 1-2\n"


def test_backend_registered_and_options_checked() -> None:
    assert isinstance(make_backend("sge", queue="all.q"), SgeBackend)
    with pytest.raises(BackendError, match="memory_resource"):
        SgeBackend(memory_resource="mem_free")
    with pytest.raises(BackendError, match="batch_size"):
        SgeBackend(batch_size=0)
    assert SgeBackend(python=sys.executable).python == sys.executable


def _qacct_failed(code: str, job: str = "2") -> str:
    """The recorded exit3 job's qacct, as if it had ended ``failed <code>``."""
    text = re.sub(r"failed\s+0", f"failed       {code}", read("qacct_exit3.txt"))
    return re.sub(r"jobnumber\s+2", f"jobnumber    {job}", text)


def test_a_run_grid_engine_rescheduled_is_no_end_and_a_lost_job_is_the_hosts_fault() -> None:
    assert parse_qacct(_qacct_failed("25  : rescheduling")) == {}
    (host,) = parse_qacct(_qacct_failed("21  : in recognizing job")).values()
    assert host.state is JobState.NODE_FAIL
    assert "host" in host.reason
    # the task's own setup errors stay its failures
    (shell,) = parse_qacct(_qacct_failed("27  : searching requested shell")).values()
    assert shell.state is JobState.FAILED


def test_a_rescheduled_task_waits_and_its_earlier_runs_record_is_not_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gone from qstat for a moment with only the rescheduled run in qacct: not an end
    (LOST only after the grace time, which a task back in the queue never reaches)."""
    bin_dir = fake_commands(tmp_path, qstat=read("qstat_after_qdel.xml"),
                            qacct=_qacct_failed("25  : rescheduling", job="77"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    handle = JobHandle("sge", "77", "a.1", str(tmp_path / "a.1.result.json"))
    backend = SgeBackend(runner=CommandRunner(attempts=1))
    assert backend.poll([handle]) == {}


def test_one_qacct_answers_for_every_array_that_left_qstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks of three arrays gone, no result files: one qacct (every job of this user that
    ended since the earliest one was seen queued), not one per array."""
    both = read("qacct_qdel.txt") + read("qacct_exit3.txt")
    bin_dir = fake_commands(tmp_path, qstat=read("qstat_array_running.xml"), qacct=both)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    backend = SgeBackend(runner=CommandRunner(attempts=1), lost_after=3600)
    backend._seen.update({"9": "2026-11-29T10:23:23", "2": "2026-11-29T10:20:05",
                          "4": "2026-11-29T10:30:00"})
    gone = [JobHandle("sge", job, f"{job}.1", str(tmp_path / f"{job}.1.result.json"))
            for job in ("9_1", "2", "4_1")]
    statuses = backend.poll(gone)
    assert {h.job_id: s.state for h, s in statuses.items()} == {
        "9_1": JobState.CANCELLED, "2": JobState.FAILED}  # 4: qacct lags, not lost yet
    assert backend.calls == {"qstat": 1, "qacct": 1}
    assert (bin_dir / "qacct.args").read_text() == (
        f"-o {pwd.getpwuid(os.getuid()).pw_name} -E -b 202611291020.05 -j\n")


def test_a_hanging_qstat_is_killed_at_the_timeout_and_asked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "qstat").write_text("#!/bin/sh\nexec sleep 30\n")
    (bin_dir / "qstat").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    backend = SgeBackend(runner=CommandRunner(timeout=1, sleep=lambda _: None))
    with pytest.raises(BackendError, match="qstat -xml failed once, not retried: timed out"):
        backend.poll([JobHandle("sge", "5_3", "a.1", str(tmp_path / "a.1.result.json"))])
    assert backend.calls == {"qstat": 1}
