"""The register: schema, migrations, version checks, idempotent and crash-safe ingest."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from monitor import api
from monitor.records import TABLES, columns
from monitor.register import SCHEMA_VERSION, RegisterError, open_register

from conftest import PCAPS, ROOT, expected

CONTRACT = {
    "runs": "run_id started_at finished_at source sensor packets bytes dropped version",
    "flows": "run_id flow_uid first_seen last_seen proto client_ip client_port server_ip "
    "server_port vlan app packets_to_server packets_to_client bytes_to_server bytes_to_client",
    "dicom_associations": "run_id ts client_ip client_port server_ip server_port calling_ae "
    "called_ae implementation_class_uid implementation_version_name "
    "acceptor_implementation_class_uid acceptor_implementation_version_name result "
    "abstract_syntaxes commands",
    "dicom_devices": "run_id ts ip modality manufacturer model software_versions station_name "
    "device_serial_number",
    "hl7_messages": "run_id ts client_ip server_ip server_port direction sending_application "
    "sending_facility receiving_application receiving_facility message_type trigger_event "
    "version ack_code",
    "observations": "run_id ts ip mac kind value",
    "assets": "ip mac vlan zone hostname vendor model device_class os software_version patchable "
    "patchable_reason confidence evidence first_seen last_seen",
    "exceptions": "exception_id kind subject title hipaa_ref likelihood impact risk status owner "
    "compensating_controls review_by first_seen last_seen occurrences",
    "exception_history": "exception_id at actor field old new comment",
}


def test_register_has_every_contract_column(db: str) -> None:
    with open_register(db) as reg:
        for table, cols in CONTRACT.items():
            _names, rows = reg.query(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]
            )
            have = {r[0] for r in rows}
            missing = set(cols.split()) - have
            assert not missing, f"{table} lacks {missing}"
        assert reg.schema_version() == SCHEMA_VERSION


def test_records_and_tables_agree(db: str) -> None:
    with open_register(db) as reg:
        for table, record in TABLES:
            _n, rows = reg.query(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                "ORDER BY column_index",
                [table],
            )
            assert [r[0] for r in rows] == [c[0] for c in columns(record)]


def test_a_newer_register_is_refused(db: str) -> None:
    open_register(db).close()
    con = duckdb.connect(db)
    con.execute("UPDATE _medmon_meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(RegisterError, match=r"schema version 99 was written by a newer medmon"):
        open_register(db)


def test_a_file_that_is_not_a_register_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.duckdb"
    text.write_text("hello\n")
    with pytest.raises(RegisterError, match=r"notes.duckdb: not a medmon register"):
        open_register(text)
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    with pytest.raises(RegisterError, match=r"other.duckdb: not a medmon register"):
        open_register(other)


def test_a_register_held_by_another_process_is_a_clear_error(db: str) -> None:
    open_register(db).close()
    script = (
        f"import duckdb,time; c=duckdb.connect({db!r}); print('ok', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(RegisterError, match=r"in use by another medmon"):
            open_register(db)
    finally:
        holder.kill()
        holder.wait()


def test_replaying_the_same_capture_twice_records_it_once(db: str) -> None:
    sample = str(PCAPS / "generic" / "http.pcap")
    first = api.replay([sample], db=db)
    again = api.replay([sample], db=db)
    n = expected("http.pcap")["tcp_conversations"]
    assert first.run_id == 1 and first.flows == n
    assert again.run_id is None
    assert again.already_recorded == [(sample, 1)]
    forced = api.replay([sample], db=db, force=True)
    assert forced.run_id == 2
    con = duckdb.connect(db, read_only=True)
    per_run = con.execute("SELECT run_id, count(*) FROM flows GROUP BY 1 ORDER BY 1").fetchall()
    con.close()
    assert per_run == [(1, n), (2, n)]


def test_flow_uids_are_stable_across_replays(tmp_path: Path) -> None:
    sample = str(PCAPS / "generic" / "tls.pcap")
    uids = []
    for name in ("a.duckdb", "b.duckdb"):
        api.replay([sample], db=str(tmp_path / name))
        con = duckdb.connect(str(tmp_path / name), read_only=True)
        uids.append(sorted(r[0] for r in con.execute("SELECT flow_uid FROM flows").fetchall()))
        con.close()
    assert uids[0] == uids[1] and len(uids[0]) == 4


def _tls_records() -> tuple[bytes, list[tuple[int, int, bytes, int]]]:
    data = (PCAPS / "generic" / "tls.pcap").read_bytes()
    header, body = data[:24], data[24:]
    records = []
    off = 0
    while off + 16 <= len(body):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", body, off)
        records.append((sec, usec, body[off + 16 : off + 16 + caplen], wirelen))
        off += 16 + caplen
    return header, records


def _copies(records: list[tuple[int, int, bytes, int]], start: int, count: int) -> bytes:
    """tls.pcap's records repeated with timestamps an hour apart: 4 new flows per copy."""
    chunk = []
    for i in range(start, start + count):
        for sec, usec, frame, wirelen in records:
            chunk.append(struct.pack("<IIII", sec + 3600 * i, usec, len(frame), wirelen))
            chunk.append(frame)
    return b"".join(chunk)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until_idle(pid: int, timeout: float) -> None:
    """Wait until a process has consumed its input and sits waiting for more: its CPU time
    stops growing for a second."""
    last, still = -1.0, 0
    deadline = time.monotonic() + timeout
    while still < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = _cpu_seconds(pid)
        still = still + 1 if now == last else 0
        last = now


@pytest.mark.slow
def test_a_replay_killed_mid_ingest_leaves_earlier_runs_intact(tmp_path: Path) -> None:
    """Kill -9 a replay while it is writing: the register keeps exactly the earlier runs.

    The capture comes through a pipe that is never closed, so the replay is surely still
    running when it is killed: after 60,000 flows have ended and been written in batches,
    it waits for more input."""
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(PCAPS / "generic" / "http.pcap")], db=db)
    header, records = _tls_records()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "replay", "-", "--db", db, "--quiet"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(header)
    for start in range(0, 15_000, 1000):
        proc.stdin.write(_copies(records, start, 1000))
    proc.stdin.flush()
    _wait_until_idle(proc.pid, 120)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    with open_register(db, read_only=True) as reg:
        _n, runs = reg.query("SELECT run_id FROM runs")
        _n, flows = reg.query("SELECT run_id, count(*) FROM flows GROUP BY 1")
        _n, caps = reg.query("SELECT path FROM captures")
    assert runs == [(1,)]
    assert flows == [(1, expected("http.pcap")["tcp_conversations"])]
    assert [Path(c[0]).name for c in caps] == ["http.pcap"]
    big = tmp_path / "big.pcap"
    big.write_bytes(header + _copies(records, 0, 200))
    again = api.replay([str(big)], db=db)
    assert again.run_id == 2 and again.flows == 800


def test_ctrl_c_mid_replay_records_nothing_and_says_so(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(PCAPS / "generic" / "dns.pcap")], db=db)
    header, records = _tls_records()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "replay", "-", "--db", db],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=False,
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(header + _copies(records, 0, 500))
    proc.stdin.flush()
    _wait_until_idle(proc.pid, 60)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 130
    proc.stdin.close()
    assert err.strip().splitlines()[-1] == (
        "medmon: warning: interrupted; nothing from this run was recorded"
    )
    assert "Traceback" not in err
    with open_register(db, read_only=True) as reg:
        _n, runs = reg.query("SELECT run_id FROM runs")
    assert runs == [(1,)]


def test_the_writer_takes_many_rows_a_batch_at_a_time(db: str) -> None:
    """add_many writes a batch whenever batch_rows are queued (bounded memory), keeps the rest
    queued, and commit writes it: every row arrives once, in order."""
    from monitor.register.ingest import RunWriter

    with open_register(db) as reg:
        writer = RunWriter(reg, batch_rows=1000)
        run_id = writer.begin(source="test")
        flushed: list[int] = []
        real = writer._flush_table

        def counting(table: str) -> None:
            flushed.append(len(writer._pending.get(table, [])))
            real(table)

        writer._flush_table = counting  # type: ignore[method-assign]
        writer.add_many("anomalies", ((run_id, f"name{i}", 1, None, None) for i in range(2500)))
        assert flushed == [1000, 1000] and writer.pending_rows == 500
        writer.commit()
        got = reg.con.execute(
            "SELECT name FROM anomalies WHERE run_id = ? ORDER BY rowid", [run_id]
        ).fetchall()
    assert [g[0] for g in got] == [f"name{i}" for i in range(2500)]


def test_a_live_run_waits_for_a_reader_to_let_go(db: str) -> None:
    """A reader (medmon assets...) holding the register is RegisterBusy: open_when_free tries
    again until it lets go (medmon sniff's first and last writes), within its wait."""
    from monitor.register import RegisterBusy

    open_register(db).close()
    script = (
        f"import duckdb,time; c=duckdb.connect({db!r}, read_only=True); print('ok', flush=True);"
        " time.sleep(1.5)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(RegisterBusy):
            api.open_when_free(db, 0.0)
        t0 = time.monotonic()
        api.open_when_free(db, 30.0).close()
        assert 0.5 < time.monotonic() - t0 < 25
    finally:
        holder.kill()
        holder.wait()
