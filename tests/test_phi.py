"""No patient data leaves the wire: the PHI canaries planted in the sample captures never
reach the register, the logs or any export (STYLE S9).

pcaps/make_captures.py plants fixed canaries (patient name ``CANARY^PHI``, identifier
``PHI-CANARY-0001``, birth date ``19000101``) in the traffic it generates. This test first
proves they are really in the captures (so that it can fail), then replays every sample with
debug logging and greps everything medmon wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from click.testing import CliRunner

from monitor.cli import cli
from monitor.records import TABLES

from conftest import PCAPS

POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"

CANARIES = ("CANARY^PHI", "CANARY%5EPHI", "PHI-CANARY-0001", "19000101")


def _contains_canary(blob: bytes) -> list[str]:
    return [c for c in CANARIES if c.encode() in blob]


def test_the_canaries_are_on_the_wire() -> None:
    found: set[str] = set()
    for capture in PCAPS.rglob("*.pcap*"):
        found.update(_contains_canary(capture.read_bytes()))
    assert {"CANARY%5EPHI", "PHI-CANARY-0001", "19000101"} <= found


def test_no_canary_reaches_register_logs_or_exports(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    runner = CliRunner()
    outputs: list[str] = []
    result = runner.invoke(
        cli, ["--log-format", "json", "--debug", "replay", str(PCAPS), "--db", db,
              "--policy", str(POLICY)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    outputs += [result.stdout, result.stderr]
    for command in ("flows", "runs", "assets", "dicom", "hl7"):
        for fmt in ("table", "json", "csv"):
            r = runner.invoke(cli, [command, "--db", db, "--format", fmt])
            assert r.exit_code == 0
            outputs += [r.stdout, r.stderr]
    for fmt in ("graphml", "gexf", "json", "dot"):
        r = runner.invoke(cli, ["graph", "--db", db, "--format", fmt, "-o", "-"])
        assert r.exit_code == 0
        outputs += [r.stdout, r.stderr]
    for who in ("10.20.0.21", "10.40.0.31"):
        r = runner.invoke(cli, ["fingerprint", "explain", who, "--db", db])
        assert r.exit_code == 0, r.output
        outputs.append(r.stdout)
    assert json.loads(runner.invoke(cli, ["flows", "--db", db, "--format", "json"]).stdout)
    # The risk register: its listing, every exception shown, every export, the audit report.
    for fmt in ("table", "json", "csv"):
        r = runner.invoke(cli, ["register", "list", "--db", db, "--format", fmt])
        assert r.exit_code == 0, r.output
        outputs += [r.stdout, r.stderr]
    listed = runner.invoke(cli, ["register", "list", "--db", db, "--format", "json"]).stdout
    ids = [e["exception_id"] for e in json.loads(listed)]
    assert ids
    for eid in ids:
        r = runner.invoke(cli, ["register", "show", eid, "--db", db, "--format", "json"])
        assert r.exit_code == 0, r.output
        outputs.append(r.stdout)
    files = [tmp_path / f"register.{fmt}" for fmt in ("csv", "json", "parquet", "xlsx", "html")]
    files.append(tmp_path / "report.html")
    for path in files[:-1]:
        r = runner.invoke(cli, ["register", "export", "--db", db, "--format", path.suffix[1:],
                                "-o", str(path)])  # fmt: skip
        assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["report", "--db", db, "-o", str(files[-1]), "--policy", str(POLICY)])
    assert r.exit_code == 0, r.output
    for path in files:
        blob = path.read_bytes()
        if path.suffix == ".xlsx":  # a zip: read the sheets' XML
            import zipfile

            with zipfile.ZipFile(path) as z:
                blob = b"".join(z.read(n) for n in z.namelist())
        assert len(blob) > 1000 and not _contains_canary(blob), path
    for text in outputs:
        assert not _contains_canary(text.encode())
    # Every value of every table, as text.
    con = duckdb.connect(db, read_only=True)
    for table, _record in TABLES:
        for row in con.execute(f"SELECT * FROM {table}").fetchall():
            assert not _contains_canary(repr(row).encode()), f"PHI canary in {table}: {row}"
    con.close()
    # And the file's raw bytes (compressed pages aside, strings are stored as written).
    raw = Path(db).read_bytes()
    wal = Path(db + ".wal")
    if wal.exists():
        raw += wal.read_bytes()
    assert not _contains_canary(raw)
