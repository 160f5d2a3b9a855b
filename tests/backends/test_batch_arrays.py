"""Array packing and manifests (:mod:`gristmill.backends.batch.arrays`)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from gm_testing import job_request

from gristmill.backends.batch.arrays import (
    Array,
    element_boot,
    element_command,
    pack,
    throttle,
    write_manifest,
)
from gristmill.backends.batch.element import (
    CHUNK_MANIFEST_VERSION,
    read_manifest,
)
from gristmill.backends.isolated import GRISTMILL_PARENT
from gristmill.resources import Resources

SMALL = Resources(mem="1G", cores=1)
BIG = Resources(mem="4G", cores=1)


# -- packing ------------------------------------------------------------------------------


def test_pack_groups_by_task_and_resources_in_first_seen_order(tmp_path: Path) -> None:
    jobs = [
        job_request(tmp_path, 0), job_request(tmp_path, 1, res=BIG), job_request(tmp_path, 2),
        job_request(tmp_path, 3, task="other"), job_request(tmp_path, 4, res=BIG),
        job_request(tmp_path, 5),
    ]
    arrays = list(pack(jobs, max_elements=100))
    assert [(a.task, a.resources, [j.key for j in a.jobs]) for a in arrays] == [
        ("fit", SMALL, ["fit-0.1", "fit-2.1", "fit-5.1"]),
        ("fit", BIG, ["fit-1.1", "fit-4.1"]),
        ("other", SMALL, ["other-3.1"]),
    ]
    assert [a.size for a in arrays] == [3, 2, 1]
    assert arrays[2].log_dir == tmp_path / "logs" / "other"


def test_pack_splits_a_group_at_max_elements(tmp_path: Path) -> None:
    jobs = [job_request(tmp_path, i) for i in range(7)]
    arrays = list(pack(jobs, max_elements=3))
    assert [[j.key for j in a.jobs] for a in arrays] == [
        ["fit-0.1", "fit-1.1", "fit-2.1"], ["fit-3.1", "fit-4.1", "fit-5.1"], ["fit-6.1"],
    ]


def test_ten_thousand_jobs_pack_into_ten_arrays(tmp_path: Path) -> None:
    jobs = [job_request(tmp_path, i) for i in range(10_000)]
    assert [a.size for a in pack(jobs, max_elements=1000)] == [1000] * 10


def test_pack_of_nothing_is_nothing() -> None:
    assert list(pack([], max_elements=10)) == []


def test_pack_refuses_a_limit_below_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_elements must be at least 1, got 0"):
        list(pack([job_request(tmp_path, 0)], max_elements=0))


@pytest.mark.parametrize(
    ("limit", "size", "expected"),
    [(None, 10, None), (10, 10, None), (20, 10, None), (3, 10, 3), (1, 2, 1), (0, 5, 1)],
)
def test_throttle_only_where_it_binds(limit: int | None, size: int, expected: int | None) -> None:
    assert throttle(limit, size) == expected


# -- manifests ----------------------------------------------------------------------------


def test_a_manifest_maps_each_index_to_its_attempt(tmp_path: Path) -> None:
    jobs = tuple(
        job_request(tmp_path, i, argv=("fit", "--draw", str(i), "it's $HOME"),
                env=(("SEED", str(i)),), cwd=tmp_path if i == 1 else None)
        for i in range(3)
    )
    path = tmp_path / "m" / "array.json"
    write_manifest(Array("fit", SMALL, jobs), path)
    assert [p.name for p in path.parent.iterdir()] == ["array.json"]  # no temp file left
    for i, job in enumerate(jobs):
        entry = read_manifest(path, i)[0]
        assert entry == {
            "key": job.key, "runtime": None, "argv": list(job.argv), "stdout": str(job.stdout),
            "stderr": str(job.stderr), "result": str(job.result_path),
            "env": {"SEED": str(i)}, "cwd": str(tmp_path) if i == 1 else None,
        }


def test_an_index_past_the_end_is_an_error_naming_the_size(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    write_manifest(Array("fit", SMALL, (job_request(tmp_path, 0),)), path)
    with pytest.raises(IndexError, match=r"no element 1 \(the array has 1\)"):
        read_manifest(path, 1)[0]
    with pytest.raises(IndexError):
        read_manifest(path, -1)[0]


def test_a_manifest_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    path.write_text(json.dumps({"version": CHUNK_MANIFEST_VERSION + 1, "jobs": []}))
    with pytest.raises(ValueError, match=f"manifest version {CHUNK_MANIFEST_VERSION + 1}"):
        read_manifest(path, 0)[0]


def test_element_command_quotes_paths_and_leaves_the_index_to_the_shell() -> None:
    line = element_command("/opt/my env/python", Path("/runs/a b/m.json"), "SGE_TASK_ID")
    assert line == (
        f"exec '/opt/my env/python' -I -c {shlex.quote(element_boot())} '/runs/a b/m.json' "
        '"${SGE_TASK_ID}"'
    )
    out = subprocess.run(["bash", "-c", line.replace("exec ", "printf '%s\\n' ", 1)],
                         env={"SGE_TASK_ID": "7"}, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["/opt/my env/python", "-I", "-c", element_boot(),
                                       "/runs/a b/m.json", "7"]
    assert repr(str(GRISTMILL_PARENT)) in element_boot()
