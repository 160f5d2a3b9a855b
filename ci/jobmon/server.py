"""Serve a jobmon 3.2.2 web service on 127.0.0.1 backed by an SQLite file (tests only).

Run with the interpreter of a venv holding ``jobmon-server==3.2.2`` (ci/jobmon/start.sh
makes one): ``python ci/jobmon/server.py --db /tmp/x/jobmon.db --port 8070``.

Two defects of jobmon-server 3.2.2 as published are worked around here, without
touching its files:

- ``jobmon.server.web.hooks_and_handlers`` imports ``MySQLdb`` (mysqlclient, not a
  dependency); PyMySQL (a dependency) stands in for it.
- On SQLite the server adds ``CHECK(length(col) <= N)`` for every ``String(N)``
  column. jobmon-client 3.3.0 (the only client on PyPI) sends ``arg_mapping_hash``
  as a 77-digit integer, which fails ``<= 50`` and turns every new task template
  into an HTTP 500. The schema is therefore created without those checks, exactly
  as ``init_db`` itself does for MySQL.
"""

from __future__ import annotations

import argparse
import os
import sqlite3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLite file; created when missing")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    import pymysql

    pymysql.install_as_MySQLdb()

    import sqlalchemy
    from jobmon.core.configuration import JobmonConfig
    from jobmon.server.web import models

    # Before any model module is imported: the listener fires as each class is defined.
    sqlalchemy.event.remove(models.Base, "instrument_class", models.add_string_length_constraint)
    from jobmon.server.web.api import get_app

    db = os.path.abspath(args.db)
    uri = f"sqlite:///{db}?timeout=60"
    if not os.path.exists(db):
        models.init_db(sqlalchemy.create_engine(uri))
        with sqlite3.connect(db) as conn:  # readers never block the writer
            conn.execute("PRAGMA journal_mode=WAL")
    config = JobmonConfig(dict_config={"db": {"sqlalchemy_database_uri": uri}})
    app = get_app(config)
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
