"""check_store: an untrustworthy store is refused, saying what to do, and left untouched."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from gm_users import as_nobody, shared_tmp

from gristmill.errors import StoreError
from gristmill.store.check import check_store, diagnose, open_readonly
from gristmill.store.db import STORE_NAME, Store
from gristmill.store.lock import LOCK_NAME, RunLock
from gristmill.store.schema import SCHEMA_VERSION


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_sound_store_passes_both_checks(tmp_path: Path) -> None:
    Store.create(tmp_path, {"name": "x"}).close()
    check_store(tmp_path / STORE_NAME)
    check_store(tmp_path / STORE_NAME, full=False)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(b"not sqlite at all" * 300), "corrupt or not a gristmill store"),
        (lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.commit(),
         "corrupt or not a gristmill store"),
    ],
    ids=["empty", "garbage", "another-database"],
)
def test_what_is_not_a_store_is_refused_and_left_as_it_was(
    tmp_path: Path, make: object, message: str
) -> None:
    path = tmp_path / STORE_NAME
    make(path)  # type: ignore[operator]
    before = digest(path)
    with pytest.raises(StoreError, match=message):
        check_store(path)
    assert digest(path) == before


def test_a_newer_schema_asks_for_a_newer_gristmill(tmp_path: Path) -> None:
    Store.create(tmp_path, {"name": "x"}).close()
    path = tmp_path / STORE_NAME
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="upgrade gristmill"):
        check_store(path, full=False)


def test_diagnose_says_a_write_next_to_the_store_works(tmp_path: Path) -> None:
    assert "works now" in diagnose(tmp_path / STORE_NAME)
    assert list(tmp_path.iterdir()) == []  # the probe is gone


# -- read by a user who cannot write the run ---------------------------------------------------

shared = pytest.fixture(name="shared")(shared_tmp)


def _store(shared: Path, rows: int = 3) -> tuple[Path, Store]:
    """A run directory of root's (mode 755: nobody may read, not write) with a store open."""
    run_dir = shared / "run"
    run_dir.mkdir()
    store = Store.create(run_dir, {"workflow": "w"})
    store.write_dag([(0, "t", "m:t", True, rows, 0, rows, "{}")], [f"i{n}" for n in range(rows)],
                    [0] * rows)
    return run_dir, store


def _read(run_dir: Path) -> tuple[list[str], str]:
    """As the reader: check the store (the full check), then read it; (identities, files)."""
    path = run_dir / STORE_NAME
    check_store(path)
    conn = open_readonly(path)
    try:
        identities = [r[0] for r in conn.execute("SELECT identity FROM nodes ORDER BY id")]
    finally:
        conn.close()
    return identities, " ".join(sorted(p.name for p in run_dir.iterdir()))


def test_a_finished_run_reads_for_a_user_who_cannot_write_it(shared: Path) -> None:
    run_dir, store = _store(shared)
    store.close()  # as its engine does at the end: -wal and -shm go
    assert as_nobody(lambda: _read(run_dir)) == (["i0", "i1", "i2"], STORE_NAME)


def test_a_reader_who_could_write_leaves_no_files_beside_a_finished_store(shared: Path) -> None:
    """Read-only WAL connections make -wal and -shm files; their owner, the reader, may
    leave them unwritable for the run's owner. A finished store is read without them."""
    run_dir, store = _store(shared)
    store.close()
    run_dir.chmod(0o777)
    assert as_nobody(lambda: _read(run_dir)) == (["i0", "i1", "i2"], STORE_NAME)


def test_a_live_run_reads_for_a_user_who_cannot_write_it(shared: Path) -> None:
    """An engine holds the run: the reader sees what it committed, through its -shm."""
    run_dir, store = _store(shared)
    try:
        with RunLock(run_dir), store.transaction() as cur:
            cur.execute("INSERT INTO nodes (id, identity, unit) VALUES (3, 'i3', 0)")
        with RunLock(run_dir):
            identities, files = as_nobody(lambda: _read(run_dir))
    finally:
        store.close()
    assert identities == ["i0", "i1", "i2", "i3"]  # the last one is in the log only
    assert files == f"{LOCK_NAME} {STORE_NAME} {STORE_NAME}-shm {STORE_NAME}-wal"


def test_a_log_that_cannot_be_read_here_is_explained_not_called_corrupt(shared: Path) -> None:
    """Changes in the log, no -shm beside it, and no right to make one: say so."""
    run_dir, store = _store(shared)
    with store.transaction() as cur:
        cur.execute("INSERT INTO nodes (id, identity, unit) VALUES (3, 'i3', 0)")
    copy = shared / "copy"
    copy.mkdir()
    for name in (STORE_NAME, f"{STORE_NAME}-wal"):  # as a copy of a crashed run may be
        shutil.copyfile(run_dir / name, copy / name)
    store.close()

    def read() -> str:
        with pytest.raises(StoreError) as info:
            check_store(copy / STORE_NAME)
        return str(info.value)

    message = as_nobody(read)
    assert "corrupt" not in message
    assert (f"cannot read the run store {copy / STORE_NAME}: its write-ahead log "
            f"{copy / STORE_NAME}-wal holds changes not yet in it, and reading them needs the "
            f"index file {STORE_NAME}-shm, which is missing and cannot be made in "
            f"{copy}") in message
    assert sorted(p.name for p in copy.iterdir()) == [STORE_NAME, f"{STORE_NAME}-wal"]


def test_a_store_the_reader_may_not_read_names_its_owner(shared: Path) -> None:
    run_dir, store = _store(shared)
    store.close()
    (run_dir / STORE_NAME).chmod(0o600)

    def read() -> str:
        with pytest.raises(StoreError) as info:
            check_store(run_dir / STORE_NAME)
        return str(info.value)

    assert as_nobody(read) == (
        f"cannot read the run store {run_dir / STORE_NAME}: {run_dir / STORE_NAME} belongs to "
        "root (mode -rw-------) and is not readable by you (nobody); ask its owner to make the "
        "run directory readable (chmod -R a+rX, or g+rX for a shared group)"
    )
