"""Writing one run into the register: batched, in one transaction.

A run is all or nothing: :class:`RunWriter` opens a transaction, appends flows in batches of
Arrow columns (one ``INSERT ... SELECT`` per batch, never a row-by-row insert per packet), and
commits once at the end. A crash or Ctrl-C before the commit leaves the register as it was:
DuckDB writes a transaction to its WAL only when it commits.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from itertools import islice
from operator import attrgetter
from typing import Any

import pyarrow as pa

from monitor import __version__
from monitor.records import TABLES
from monitor.register.schema import Register

_TS = pa.timestamp("ns", tz="UTC")
#: record type -> (table, whether its first column is run_id, a getter of all its columns in
#: order as one tuple): dataclasses.fields() is slow per record, one attrgetter call is not.
_RECORD_FIELDS = {
    record: (
        table,
        fields(record)[0].name == "run_id",
        attrgetter(*(f.name for f in fields(record))),
    )
    for table, record in TABLES
}


def _arrow_type(sql: str) -> pa.DataType:
    base = sql.split()[0].upper()
    if base == "TIMESTAMPTZ":
        return _TS
    if base in ("BIGINT", "INTEGER"):
        return pa.int64()
    if base == "DOUBLE":
        return pa.float64()
    if base == "BOOLEAN":
        return pa.bool_()
    if base == "INTEGER[]":
        return pa.list_(pa.int64())
    if base == "VARCHAR[]":
        return pa.list_(pa.string())
    return pa.string()


class RunWriter:
    """Collects one run's rows and writes them in batches inside one transaction.

    Use as a context manager: leaving the block without :meth:`commit` rolls everything back.
    """

    def __init__(self, reg: Register | None, *, batch_rows: int = 50_000) -> None:
        #: The open register; a live run attaches one only while it writes (:meth:`attach`).
        self.reg: Any = reg
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
        self.batch_rows = batch_rows
        self.run_id = 0
        self._pending: dict[str, list[tuple[Any, ...]]] = {}
        self._columns: dict[str, list[tuple[str, pa.DataType]]] = {
            table: [(f.name, _arrow_type(f.metadata["sql"])) for f in fields(record)]
            for table, record in TABLES
        }
        self._open = False

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._open:
            self.rollback()

    def begin(self, source: str, command: str = "replay", sensor: str | None = None) -> int:
        """Start the run's transaction and its ``runs`` row; return the new run id."""
        con = self.reg.con
        con.begin()
        self._open = True
        row = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchone()
        self.run_id = int(row[0]) if row else 1
        con.execute(
            "INSERT INTO runs (run_id, started_at, source, sensor, version, command) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                self.run_id,
                datetime.now(UTC),
                source,
                sensor or socket.gethostname(),
                __version__,
                command,
            ],
        )
        return self.run_id

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        """Queue one row (values in the table's column order, ``run_id`` included)."""
        rows = self._pending.setdefault(table, [])
        rows.append(row)
        if len(rows) >= self.batch_rows and self.reg is not None:
            self._flush_table(table)

    def add_many(self, table: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """Queue several rows of one table (taken a batch at a time, not row by row)."""
        it = iter(rows)
        while True:
            pending = self._pending.setdefault(table, [])
            if self.reg is None:
                pending.extend(it)
                return
            pending.extend(islice(it, max(1, self.batch_rows - len(pending))))
            if len(pending) < self.batch_rows:
                return
            self._flush_table(table)

    def add_record(self, record: Any) -> None:
        """Queue a record dataclass from :mod:`monitor.records`; its run_id is set here."""
        table, has_run_id, columns = _RECORD_FIELDS[type(record)]
        values = columns(record)
        if has_run_id:
            values = (self.run_id, *values[1:])
        self.add(table, values)

    def flush(self) -> None:
        """Write every queued row (still inside the transaction)."""
        for table in list(self._pending):
            self._flush_table(table)

    def _flush_table(self, table: str) -> None:
        rows = self._pending.pop(table, [])
        if not rows:
            return
        cols = self._columns[table]
        values = list(zip(*rows, strict=True))  # rows to columns, in C
        arrays = [pa.array(values[i], type=typ) for i, (_name, typ) in enumerate(cols)]
        batch = pa.Table.from_arrays(arrays, names=[name for name, _t in cols])
        names = ", ".join(f'"{name}"' for name, _t in cols)
        con = self.reg.con
        con.register("_medmon_batch", batch)
        try:
            con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _medmon_batch")
        finally:
            con.unregister("_medmon_batch")

    def finish_run(self, **totals: Any) -> None:
        """Set the run's totals (column=value) and its finish time."""
        totals["finished_at"] = datetime.now(UTC)
        sets = ", ".join(f'"{k}" = ?' for k in totals)
        self.reg.con.execute(
            f"UPDATE runs SET {sets} WHERE run_id = ?", [*totals.values(), self.run_id]
        )

    def commit(self) -> None:
        """Write what is queued and commit the run."""
        self.flush()
        self.reg.con.commit()
        self._open = False

    @property
    def pending_rows(self) -> int:
        """Rows queued and not written yet."""
        return sum(len(rows) for rows in self._pending.values())

    def attach(self, reg: Register | None) -> None:
        """Write into ``reg`` from now on (None: only queue rows until one is attached)."""
        self.reg = reg

    def begin_transaction(self) -> None:
        """Open a transaction on the attached register for the run's next writes."""
        self.reg.con.begin()
        self._open = True

    def checkpoint(self) -> None:
        """Commit what the run has written so far and go on in a new transaction (a live run
        flushes this way at intervals: a crash loses at most the last interval)."""
        self.commit()
        self.reg.con.begin()
        self._open = True

    def rollback(self) -> None:
        """Forget the run: nothing of it reaches the file."""
        self._pending.clear()
        if self._open:
            self._open = False
            self.reg.con.rollback()


def recorded_captures(reg: Register, digests: Sequence[str]) -> dict[str, int]:
    """Which of these SHA-256 digests a committed run already recorded: digest -> run id."""
    if not digests:
        return {}
    rows = reg.con.execute(
        "SELECT sha256, min(run_id) FROM captures WHERE sha256 IN (SELECT unnest(?)) "
        "GROUP BY sha256",
        [list(digests)],
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def recorded_quick_ids(reg: Register, quick_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Captures already recorded under these quick ids: quick id -> {sha256: run id}."""
    if not quick_ids:
        return {}
    rows = reg.con.execute(
        "SELECT quick_id, sha256, min(run_id) FROM captures "
        "WHERE quick_id IN (SELECT unnest(?)) GROUP BY quick_id, sha256",
        [list(quick_ids)],
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for qid, sha, run_id in rows:
        out.setdefault(qid, {})[sha] = int(run_id)
    return out


#: Well-known web ports: TLS to a DICOM server on these is taken for its web interface.
WEB_TLS_PORTS = (443, 8443)


def label_dicom_tls(reg: Register, run_id: int) -> int:
    """Mark the run's TLS flows that carry DICOM: to port 2762 (PS3.15 Annex B, DICOM over
    TLS), or to a server this run saw speaking cleartext DICOM, on a port other than the web
    ones. Their ``app`` becomes ``dicom-tls`` and each gets a ``dicom_associations`` row with
    ``tls`` true: its addresses, times and bytes are all that can be known. Returns how many.

    Runs inside the run's transaction, after its flows were written; running it again for the
    same run (a live run's next flush) labels only the flows written since."""
    con = reg.con
    web = ", ".join(str(p) for p in WEB_TLS_PORTS)
    con.execute(
        f"""
        UPDATE flows SET app = 'dicom-tls'
        WHERE run_id = $run AND app = 'tls' AND (
            server_port = 2762
            OR (server_port NOT IN ({web}) AND server_ip IN (
                SELECT server_ip FROM flows WHERE run_id = $run AND app = 'dicom'))
        )
        """,
        {"run": run_id},
    )
    row = con.execute(
        """
        INSERT INTO dicom_associations (
            run_id, flow_uid, ts, ts_end, client_ip, client_port, server_ip, server_port,
            result, tls, bytes_to_server, bytes_to_client)
        SELECT run_id, flow_uid, first_seen, last_seen, client_ip, client_port, server_ip,
            server_port, 'unknown', true, payload_to_server, payload_to_client
        FROM flows WHERE run_id = $run AND app = 'dicom-tls' AND flow_uid NOT IN (
            SELECT flow_uid FROM dicom_associations WHERE run_id = $run AND tls)
        """,
        {"run": run_id},
    ).fetchall()
    return int(row[0][0]) if row else 0
