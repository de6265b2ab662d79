"""Opening the register: the DuckDB file, its schema version and its migrations.

A register carries its schema version in ``_medmon_meta`` and the named migrations applied to
it in ``_medmon_migrations`` [sqlite-utils Migrations]. Opening one:

1. refuses a file that is not a DuckDB database, or a DuckDB database that is not a register;
2. refuses a register whose schema version is newer than this medmon's (``RegisterError``
   naming both versions: upgrade medmon, never downgrade a register);
3. applies the pending named migrations of :mod:`monitor.register.migrations`, each in a
   transaction, then adds any column a record type in :mod:`monitor.records` has gained
   (additive changes need no named migration).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import duckdb

from monitor import __version__
from monitor.records import TABLES, columns

#: The schema version this medmon writes. Bump it with every named migration.
SCHEMA_VERSION = 1


class RegisterError(Exception):
    """The register cannot be used. ``str()`` is one line naming the file and the fault."""


class RegisterBusy(RegisterError):
    """Another process holds the register (a writer; or a reader, such as ``medmon assets``,
    while this one wants to write): worth trying again in a moment."""


class Register:
    """An open register: a DuckDB connection and what is known about the file."""

    def __init__(self, path: str, con: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self.con = con

    def close(self) -> None:
        """Close the connection (uncommitted work is rolled back by DuckDB)."""
        self.con.close()

    def __enter__(self) -> Register:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Run a read query; return (column names, rows)."""
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description or []]
        return names, cur.fetchall()

    def schema_version(self) -> int:
        """The schema version recorded in the file."""
        rows = self.con.execute(
            "SELECT value FROM _medmon_meta WHERE key = 'schema_version'"
        ).fetchall()
        return int(rows[0][0]) if rows else 0


def _connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as e:
        msg = str(e)
        if "lock" in msg.lower():
            holder = re.search(r"PID (\d+)", msg)
            who = f" (process {holder.group(1)})" if holder else ""
            raise RegisterBusy(f"{path}: register is in use by another medmon{who}") from None
        if "not a valid DuckDB database" in msg or "database file" in msg.lower():
            raise RegisterError(f"{path}: not a medmon register (not a DuckDB database)") from None
        raise RegisterError(f"{path}: cannot open register: {_first_line(msg)}") from None
    except duckdb.Error as e:
        msg = _first_line(str(e))
        if "version" in msg.lower() and "storage" in msg.lower():
            raise RegisterError(
                f"{path}: register was written by a newer DuckDB than this medmon's "
                f"({duckdb.__version__}); upgrade medmon"
            ) from None
        raise RegisterError(f"{path}: cannot open register: {msg}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def open_register(path: str | os.PathLike[str], *, read_only: bool = False) -> Register:
    """Open (creating when needed and not ``read_only``) the register at ``path``.

    Raises :class:`RegisterError` for a file that is not a register, a register from a newer
    medmon, or one that another process holds.
    """
    spath = os.fspath(path)
    p = Path(spath)
    if p.is_dir():
        raise RegisterError(f"{spath}: is a directory, not a register file")
    if not p.exists():
        if read_only:
            raise RegisterError(
                f"{spath}: no register here yet (run 'medmon replay CAPTURE' first)"
            )
        if p.parent and not p.parent.exists():
            raise RegisterError(f"{spath}: directory {p.parent} does not exist")
    elif p.stat().st_size > 0:
        with open(p, "rb") as fh:
            head = fh.read(16)
        if head[8:12] != b"DUCK":
            raise RegisterError(f"{spath}: not a medmon register (not a DuckDB database)")
    con = _connect(spath, read_only)
    reg = Register(spath, con)
    try:
        con.execute("SET TimeZone = 'UTC'")
        _check_and_migrate(reg, read_only)
    except BaseException:
        con.close()
        raise
    return reg


def _check_and_migrate(reg: Register, read_only: bool) -> None:
    from monitor.register.migrations import MIGRATIONS

    con = reg.con
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "_medmon_meta" not in tables:
        if tables:
            raise RegisterError(
                f"{reg.path}: not a medmon register (a DuckDB database with other tables)"
            )
        if read_only:
            raise RegisterError(f"{reg.path}: empty database, not a medmon register yet")
    else:
        version = reg.schema_version()
        if version > SCHEMA_VERSION:
            raise RegisterError(
                f"{reg.path}: register schema version {version} was written by a newer medmon; "
                f"this medmon {__version__} reads up to version {SCHEMA_VERSION}: upgrade medmon"
            )
        if read_only:
            return
    applied: set[str] = set()
    if "_medmon_migrations" in tables:
        applied = {r[0] for r in con.execute("SELECT name FROM _medmon_migrations").fetchall()}
    for name, migrate in MIGRATIONS:
        if name in applied:
            continue
        con.begin()
        try:
            migrate(con)
            con.execute(
                "INSERT INTO _medmon_migrations VALUES (?, current_timestamp, ?)",
                [name, __version__],
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
    _ensure_columns(con)
    con.execute(
        "INSERT OR REPLACE INTO _medmon_meta VALUES ('schema_version', ?), ('written_by', ?)",
        [str(SCHEMA_VERSION), __version__],
    )


def create_table_sql(table: str, record: type) -> str:
    """``CREATE TABLE`` for a record type, as it is now."""
    cols = ",\n  ".join(f'"{name}" {sql}' for name, sql, _doc in columns(record))
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {cols}\n)"


def _ensure_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and add columns that record types gained (additive changes)."""
    for table, record in TABLES:
        con.execute(create_table_sql(table, record))
        have = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]
            ).fetchall()
        }
        for name, sql, _doc in columns(record):
            if name not in have:
                # ADD COLUMN takes no constraints; the type is the first word(s) before them.
                sql_type = re.split(r"\s+(NOT NULL|PRIMARY KEY|DEFAULT)\b", sql)[0]
                con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {sql_type}')
