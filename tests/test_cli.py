"""The command line through click's CliRunner: output formats and every kind of bad input."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor import __version__
from monitor.cli import cli

from conftest import PCAPS, expected

HTTP = PCAPS / "generic" / "http.pcap"
HTTP_FRAMES = expected("http.pcap")["frames"]
HTTP_FLOWS = expected("http.pcap")["tcp_conversations"]


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    code, out, _err = run("--version")
    assert (code, out.strip()) == (0, f"medmon, version {__version__}")


def test_replay_then_flows_as_json_and_csv(db: str) -> None:
    code, _out, err = run("replay", str(HTTP), "--db", db)
    assert code == 0, err
    code, out, _err = run("flows", "--db", db, "--format", "json")
    rows = json.loads(out)
    assert len(rows) == HTTP_FLOWS
    assert {(r["client_ip"], r["server_ip"], r["server_port"], r["app"]) for r in rows} == {
        ("10.20.0.11", "10.10.0.80", 80, "http"),
        ("10.40.0.31", "10.10.0.80", 80, "http"),
    }
    assert all(r["first_seen"].endswith("+00:00") for r in rows)
    code, out, _err = run("flows", "--db", db, "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [r["flow_uid"] for r in parsed] == [r["flow_uid"] for r in rows]
    code, out, _err = run("flows", "--db", db)
    assert code == 0 and "10.40.0.31" in out and "http" in out


def test_replay_from_stdin(db: str) -> None:
    code, _out, err = run("replay", "-", "--db", db, input=HTTP.read_bytes())
    assert code == 0, err
    code, out, _err = run("runs", "--db", db, "--format", "json")
    assert json.loads(out)[0]["packets"] == HTTP_FRAMES
    # The same bytes again on stdin are recognised by their hash.
    code, _out, err = run("replay", "-", "--db", db, input=HTTP.read_bytes())
    assert code == 0 and "already recorded in run 1" in err


def _err_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_not_a_capture(tmp_path: Path, db: str) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("<?xml version='1.0'?>\n")
    code, _out, err = run("replay", str(bad), "--db", db)
    assert code == 2
    line = _err_line(err)
    assert line.startswith(f"medmon: error: {bad}: not a pcap or pcapng file")


def test_empty_file(tmp_path: Path, db: str) -> None:
    bad = tmp_path / "empty.pcap"
    bad.write_bytes(b"")
    code, _out, err = run("replay", str(bad), "--db", db)
    assert code == 2
    assert _err_line(err) == f"medmon: error: {bad}: empty file"


def test_missing_path(tmp_path: Path, db: str) -> None:
    code, _out, err = run("replay", str(tmp_path / "nope.pcap"), "--db", db)
    assert code == 2
    assert _err_line(err) == f"medmon: error: {tmp_path / 'nope.pcap'}: no such file or directory"


def test_directory_without_captures(tmp_path: Path, db: str) -> None:
    (tmp_path / "README.txt").write_text("no captures here\n")
    code, _out, err = run("replay", str(tmp_path), "--db", db)
    assert code == 2
    assert _err_line(err) == f"medmon: error: {tmp_path}: directory holds no capture files"


def test_truncated_last_record_keeps_what_was_read(tmp_path: Path, db: str) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(HTTP.read_bytes()[:-30])
    code, _out, err = run("replay", str(cut), "--db", db)
    assert code == 0
    line = _err_line(err)
    assert line.startswith(f"medmon: warning: {cut}: truncated record")
    code, out, _err = run("runs", "--db", db, "--format", "json")
    assert json.loads(out)[0]["packets"] == HTTP_FRAMES - 1


def test_absurd_record_length_on_the_first_record(tmp_path: Path, db: str) -> None:
    data = bytearray(HTTP.read_bytes())
    struct.pack_into("<I", data, 24 + 8, 0x7FFFFFFF)
    bad = tmp_path / "absurd.pcap"
    bad.write_bytes(bytes(data))
    code, _out, err = run("replay", str(bad), "--db", db)
    assert code == 2
    assert "absurd" in _err_line(err) and str(bad) in err
    code, _out, err = run("runs", "--db", db)
    assert code == 0  # the register exists, and holds no run
    assert "(no rows)" in err


def test_good_inputs_are_recorded_beside_bad_ones(tmp_path: Path, db: str) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_text("not a capture")
    code, _out, err = run("replay", str(bad), str(HTTP), "--db", db)
    assert code == 0
    assert _err_line(err).startswith(f"medmon: error: {bad}: not a pcap or pcapng file")
    code, out, _err = run("flows", "--db", db, "--format", "json")
    assert len(json.loads(out)) == HTTP_FLOWS


def test_unsupported_link_type_is_one_warning_as_json(tmp_path: Path, db: str) -> None:
    data = bytearray(HTTP.read_bytes())
    struct.pack_into("<I", data, 20, 147)  # LINKTYPE_USER0
    odd = tmp_path / "user0.pcap"
    odd.write_bytes(bytes(data))
    code, _out, err = run("--log-format", "json", "replay", str(odd), "--db", db)
    assert code == 0
    event = json.loads(_err_line(err))
    assert event["level"] == "warning"
    assert event["message"] == (
        f"{odd}: link type 147 (unknown) is not supported; its frames are counted and skipped"
    )
    code, out, _err = run("runs", "--db", db, "--format", "json")
    assert json.loads(out)[0]["skipped"] == HTTP_FRAMES


def test_listing_without_a_register(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    code, _out, err = run("flows", "--db", str(db))
    assert code == 2
    assert _err_line(err) == (
        f"medmon: error: {db}: no register here yet (run 'medmon replay CAPTURE' first)"
    )


def test_a_newer_register_is_a_one_line_error(db: str) -> None:
    import duckdb

    run("replay", str(HTTP), "--db", db)
    con = duckdb.connect(db)
    con.execute("UPDATE _medmon_meta SET value = '7' WHERE key = 'schema_version'")
    con.close()
    for args in (("flows",), ("replay", str(PCAPS / "generic" / "dns.pcap"))):
        code, _out, err = run(*args, "--db", db)
        assert code == 2
        assert "schema version 7 was written by a newer medmon" in _err_line(err)


@pytest.mark.parametrize("command", ["replay", "flows", "runs", "dicom", "hl7"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, out, _err = run(command, "--help")
    assert code == 0 and "Example:" in out and "--db" in out


def test_replay_from_a_pipe(tmp_path: Path, db: str) -> None:
    """A named pipe (as bash's <(zcat x.pcap.gz) gives) is read once, and hashed as read."""
    import os
    import threading

    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as w:
            w.write(HTTP.read_bytes())

    writer = threading.Thread(target=feed)
    writer.start()
    code, _out, err = run("replay", str(fifo), "--db", db)
    writer.join()
    assert code == 0, err
    code, out, _err = run("runs", "--db", db, "--format", "json")
    assert json.loads(out)[0]["packets"] == HTTP_FRAMES


def test_errors_are_json_lines_too(tmp_path: Path, db: str) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    code, _out, err = run("--log-format", "json", "replay", str(bad), "--db", db)
    assert code == 2
    event = json.loads(_err_line(err))
    assert event["level"] == "error"
    assert event["message"].startswith(f"{bad}: not a pcap or pcapng file")


def test_hl7_listing_filters_by_address(db: str) -> None:
    run("replay", str(PCAPS / "hl7"), "--db", db)
    code, out, _err = run("hl7", "--db", db, "--format", "json", "--ip", "10.40.0.42")
    rows = json.loads(out)
    assert code == 0 and rows
    assert all("10.40.0.42" in (r["client_ip"], r["server_ip"]) for r in rows)
    assert {r["message_type"] for r in rows} >= {"ORU", "ACK"}
    code, out, _err = run("hl7", "--db", db, "--format", "json")
    assert len(json.loads(out)) > len(rows)


def test_dicom_listing_and_devices(db: str) -> None:
    run("replay", str(PCAPS / "dicom"), "--db", db)
    code, out, _err = run("dicom", "--db", db, "--format", "json", "--ip", "10.20.0.11")
    rows = json.loads(out)
    assert code == 0 and rows
    assert all(r["calling_ae"] == "CT01" for r in rows if not r["tls"])
    assert {r["server_port"] for r in rows if r["tls"]} == {2762}
    code, out, _err = run("dicom", "--db", db, "--devices", "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert {"GE MEDICAL SYSTEMS", "SIEMENS"} <= {r["manufacturer"] for r in parsed}
    code, out, _err = run("dicom", "--db", db)
    assert code == 0 and "ORTHANC" in out


def test_port_option_adds_server_ports_and_rejects_unknown_parsers(db: str) -> None:
    code, _out, err = run("replay", str(HTTP), "--db", db, "--port", "dicomx=4242")
    assert code == 2
    assert _err_line(err) == (
        "medmon: error: --port: no parser named dicomx "
        "(known: dicom, ftp, hl7, http, smb, ssh, telnet, tls)"
    )
    code, _out, err = run("replay", str(HTTP), "--db", db, "--port", "dicom=x")
    assert code == 2 and "expected PARSER=PORT" in err
    # HTTP declared on another port: the flows are still http (by port now, not by content).
    code, _out, err = run("replay", str(HTTP), "--db", db, "--port", "http=80")
    assert code == 0, err


def test_parser_registry_takes_extra_ports() -> None:
    from monitor.api import parser_registry

    ports = {s.name: s.tcp_ports for s in parser_registry({"dicom": (4242, 104)})}
    assert ports["dicom"] == (104, 11112, 4242)
    assert ports["hl7"] == (2575,)


def test_csv_lists_are_json(db: str) -> None:
    run("replay", str(PCAPS / "hl7" / "mllp-adt-oru-ack.pcap"), "--db", db)
    code, out, _err = run("hl7", "--db", db, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows
    assert json.loads(rows[0]["segments"])[0] == "MSH"


def test_the_process_entry_point_exits_with_the_commands_code_and_output(tmp_path: Path) -> None:
    """``python -m monitor`` ends the process itself (os._exit, no teardown): the register is
    committed, stdout is complete, the exit code is the command's, and errors still print."""
    import subprocess
    import sys

    db = str(tmp_path / "m.duckdb")
    run = [sys.executable, "-m", "monitor"]
    done = subprocess.run(
        [*run, "replay", str(PCAPS / "generic" / "http.pcap"), "--db", db, "--quiet"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    flows = subprocess.run(
        [*run, "flows", "--db", db, "--format", "csv"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert flows.returncode == 0
    rows = list(csv.DictReader(io.StringIO(flows.stdout)))
    assert len(rows) == expected("http.pcap")["tcp_conversations"]
    bad = subprocess.run(
        [*run, "replay", str(tmp_path / "missing.pcap"), "--db", db],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "missing.pcap" in bad.stderr and "Traceback" not in bad.stderr
