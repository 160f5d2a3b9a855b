"""The store's tables and the format version they carry.

Bump :data:`SCHEMA_VERSION` with any change to :data:`SCHEMA`, or to the meaning of
what it holds: a store newer than this gristmill is refused (nothing changed) rather
than misread.

Versions: 1, the first; 2, node identities cover upstream identities (the tables are
the same, but a gristmill that only knows version 1 would find none of a version 2
store's downstream nodes and run them all again; the identity version is in the
``identity_version`` meta key, absent in stores of version 1); 3, attempts record their
CPU time and whose measurement their usage is (``cpu_time``, ``usage_source``).

An older store opened to be written is brought up to this version first
(:data:`MIGRATIONS`, one transaction); opened read-only it is read as it is, and the
columns it lacks read as NULL. A store of version 3 is refused by a gristmill that
knows only version 2: that gristmill would write attempts without their CPU time.
"""

SCHEMA_VERSION = 3

#: What brings a store of version ``v - 1`` to version ``v``: the columns it adds, as
#: (table, column, type). A column already there is left as it is, so a step is safe
#: on a store that has it (one whose version was set back by hand, say).
MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (),  # the tables are the same; only the identities' meaning changed
    3: (("attempts", "cpu_time", "REAL"), ("attempts", "usage_source", "TEXT")),
}

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE units (
    id INTEGER PRIMARY KEY, task TEXT NOT NULL, task_key TEXT NOT NULL,
    is_group INTEGER NOT NULL, size INTEGER NOT NULL, start INTEGER NOT NULL,
    owned INTEGER NOT NULL, definition TEXT NOT NULL
);
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY, identity TEXT NOT NULL, unit INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE attempts (
    identity TEXT NOT NULL, attempt INTEGER NOT NULL, key TEXT NOT NULL,
    task TEXT NOT NULL, job_name TEXT NOT NULL, backend TEXT NOT NULL,
    job_id TEXT, result_path TEXT NOT NULL, stdout TEXT NOT NULL, stderr TEXT NOT NULL,
    argv TEXT NOT NULL, resources TEXT NOT NULL, state TEXT NOT NULL,
    exit_code INTEGER, signal INTEGER, peak_rss INTEGER, elapsed REAL, host TEXT,
    reason TEXT NOT NULL DEFAULT '', submitted REAL NOT NULL, ended REAL,
    cpu_time REAL, usage_source TEXT,
    PRIMARY KEY (identity, attempt)
);
CREATE INDEX attempts_open ON attempts (ended) WHERE ended IS NULL;
CREATE UNIQUE INDEX attempts_key ON attempts (key);
CREATE TABLE events (
    ts REAL NOT NULL, node_lo INTEGER NOT NULL, node_hi INTEGER NOT NULL,
    state INTEGER NOT NULL, note TEXT NOT NULL DEFAULT ''
);
"""
