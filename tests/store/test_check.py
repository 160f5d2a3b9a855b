"""check_store: an untrustworthy store is refused, saying what to do, and left untouched."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from gristmill.errors import StoreError
from gristmill.store.check import check_store, diagnose
from gristmill.store.db import STORE_NAME, Store
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
