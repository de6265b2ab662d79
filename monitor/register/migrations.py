"""Named schema migrations, applied in order, each once, each in its own transaction.

Additive changes (a new table, a new column) need no entry here: the record types in
:mod:`monitor.records` are applied after the migrations. An entry is needed for anything else
(a renamed column, a changed type, a data fix), and every entry bumps
:data:`monitor.register.schema.SCHEMA_VERSION`, so that an older medmon refuses the register
instead of misreading it. Never edit or remove a migration that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb


def _0001_bookkeeping(con: duckdb.DuckDBPyConnection) -> None:
    """The register's own tables: its metadata and the migrations applied to it."""
    con.execute("CREATE TABLE IF NOT EXISTS _medmon_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute(
        "CREATE TABLE IF NOT EXISTS _medmon_migrations ("
        "name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ, medmon_version VARCHAR)"
    )


#: (name, function) in the order they apply.
MIGRATIONS: tuple[tuple[str, Callable[[duckdb.DuckDBPyConnection], None]], ...] = (
    ("0001_bookkeeping", _0001_bookkeeping),
)
