"""``medmon replay --policy``: the run's findings in the risk register, on the real sample
captures and the shipped default policy."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from monitor import api
from monitor.cli import cli
from monitor.fingerprint.identity import is_device_ip
from monitor.policy import decide, load_policy
from monitor.resources import data_dir

from conftest import db_rows

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
POLICY = data_dir("policies") / "default.yaml"


@pytest.fixture(scope="module")
def register(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = str(tmp_path_factory.mktemp("findings") / "medmon.duckdb")
    api.replay([str(PCAPS)], db=db, policy=str(POLICY))
    return db


def test_every_denied_flow_is_a_finding_and_no_allowed_flow_is(register: str) -> None:
    policy = load_policy(POLICY)
    rows = db_rows(register, "SELECT asset_id, ip, device_class, vlan FROM assets")
    assets = {ip: {"device_class": dc, "vlan": vlan, "asset_id": aid} for aid, ip, dc, vlan in rows}
    flows = db_rows(
        register,
        "SELECT DISTINCT client_ip, server_ip, proto, server_port, app FROM flows",
    )
    denied, allowed = set(), set()
    for client, server, proto, port, app in flows:
        if not (is_device_ip(client) and is_device_ip(server)):
            continue
        flow = {"client_ip": client, "server_ip": server, "proto": proto,
                "server_port": port, "app": app}  # fmt: skip
        d = decide(policy, flow, assets.get(client), assets.get(server))
        subject = f"{client} -> {server} {proto}/{port}"
        (denied if d.action == "deny" else allowed).add((subject, d.rule_id))
    found = set(
        db_rows(register, "SELECT subject, rule FROM exceptions WHERE kind = 'policy.violation'")
    )
    assert denied and allowed
    assert found == denied
    assert not {s for s, _r in allowed} & {s for s, _r in found}


def test_the_built_in_checks_find_what_the_captures_hold(register: str) -> None:
    rows = set(db_rows(register, "SELECT kind, subject, severity, hipaa_ref FROM exceptions"))
    # openssl s_server negotiated TLS 1.0 and 1.1 (pcaps/generic/tls-legacy.pcap, tls.pcap).
    assert ("tls.deprecated", "10.30.0.80", "medium", "164.312(e)(1)") in rows
    assert ("tls.deprecated", "10.10.0.80", "medium", "164.312(e)(1)") in rows
    # smbclient -m NT1 against Samba (smb.pcap): both ends used SMB1.
    assert {
        ("smb.v1", ip, "high", "164.308(a)(5)(ii)(B)") for ip in ("10.20.0.11", "10.10.0.45")
    } <= rows
    # Telnet and FTP (cleartext.pcap); SNMP v1 with "public" (snmp.pcap).
    assert ("auth.cleartext", "10.10.0.20 -> 10.20.0.40 tcp/23", "high", "164.312(d)") in rows
    assert ("snmp.default_community", "10.10.0.161", "medium", "164.312(d)") in rows
    # The modalities store DICOM in clear text across zones (imaging -> pacs).
    assert ("ephi.cleartext", "10.20.0.21 -> 10.30.0.10 tcp/4242", "high", "164.312(e)(1)") in rows
    # The site community of snmp.pcap is never recorded.
    assert not db_rows(register, "SELECT * FROM exceptions WHERE evidence LIKE '%h0sp1tal%'")
    # Every device got its zone.
    zones = dict(db_rows(register, "SELECT ip, zone FROM assets"))
    assert zones["10.20.0.21"] == "imaging" and zones["10.30.0.10"] == "pacs"


def test_ids_are_stable_and_decisions_stay(register: str, tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    capture = str(PCAPS / "generic" / "cleartext.pcap")
    api.replay([capture], db=db, policy=str(POLICY))
    first = dict(db_rows(db, "SELECT exception_id, occurrences FROM exceptions"))
    con = duckdb.connect(db)
    con.execute("UPDATE exceptions SET status = 'accepted', owner = 'biomed'")
    con.close()
    api.replay([capture], db=db, policy=str(POLICY), force=True)
    second = dict(db_rows(db, "SELECT exception_id, occurrences FROM exceptions"))
    assert set(second) == set(first)
    assert all(second[k] == 2 * first[k] for k in first)
    assert set(db_rows(db, "SELECT status, owner FROM exceptions")) == {("accepted", "biomed")}


def test_fail_on_exits_1_at_or_above_the_threshold(tmp_path: Path) -> None:
    runner = CliRunner()
    capture = str(PCAPS / "generic" / "cleartext.pcap")
    args = ["replay", capture, "--policy", str(POLICY), "-q"]
    result = runner.invoke(cli, [*args, "--db", str(tmp_path / "a.duckdb"), "--fail-on", "high"])
    assert result.exit_code == 1
    assert "findings of severity high or worse" in result.stderr
    result = runner.invoke(
        cli, [*args, "--db", str(tmp_path / "b.duckdb"), "--fail-on", "critical"]
    )
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(cli, ["replay", capture, "--db", str(tmp_path / "c.duckdb"),
                                 "--fail-on", "high"])  # fmt: skip
    assert result.exit_code == 2 and "--fail-on needs --policy" in result.stderr


def test_an_invalid_policy_is_one_line_and_nothing_is_recorded(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\nzones: {}\nrules: []\n")
    db = str(tmp_path / "medmon.duckdb")
    result = CliRunner().invoke(
        cli, ["replay", str(PCAPS / "generic" / "dns.pcap"), "--db", db, "--policy", str(bad)]
    )
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith(f"medmon: error: {bad}:") for line in lines)
    assert not Path(db).exists() or db_rows(db, "SELECT count(*) FROM runs") == [(0,)]


def test_a_suggested_policy_adopted_as_is_finds_no_violation(register: str, tmp_path: Path) -> None:
    """``medmon policy suggest`` on the sample captures' register lints clean and, adopted as
    is, makes no ``policy.violation`` in the traffic it came from (replayed again)."""
    out = tmp_path / "suggested.yaml"
    runner = CliRunner()
    result = runner.invoke(cli, ["policy", "suggest", "--db", register, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert text.startswith("# Suggested by `medmon policy suggest`")
    assert runner.invoke(cli, ["policy", "lint", str(out)]).exit_code == 0
    policy = load_policy(out)
    assert {z.name for z in policy.zones} >= {"net-10-20-0-0", "net-10-30-0-0"}
    assert policy.default.same_zone == policy.default.cross_zone == "deny"
    db = str(tmp_path / "again.duckdb")
    api.replay([str(PCAPS)], db=db, policy=str(out))
    assert db_rows(db, "SELECT count(*) FROM exceptions WHERE kind = 'policy.violation'") == [(0,)]
    # The suggested policy names no built-in check: the read-only check lists nothing either.
    result = runner.invoke(
        cli, ["policy", "check", "--db", db, "--policy", str(out), "--format", "json"]
    )
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_the_read_only_check_lists_what_replay_recorded(register: str) -> None:
    result = CliRunner().invoke(
        cli, ["policy", "check", "--db", register, "--policy", str(POLICY), "--format", "json"]
    )
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)
    recorded = db_rows(register, "SELECT exception_id, occurrences FROM exceptions")
    assert {(f["exception_id"], f["occurrences"]) for f in listed} == set(recorded)


def test_unpatchable_devices_outside_isolated_zones(register: str) -> None:
    """Orthanc (10.30.0.10) is a vendor-managed PACS in zone pacs, which the default policy
    does not isolate; the modalities are as unpatchable but in imaging, an isolated zone."""
    rows = dict(
        db_rows(register, "SELECT subject, rule FROM exceptions WHERE kind = 'asset.unpatchable'")
    )
    assert rows.get("10.30.0.10") == "unpatchable_outside_isolated_zone"
    assert not [ip for ip in rows if ip.startswith("10.20.0.")]


def test_new_devices_in_a_medical_zone_since_the_previous_run(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(PCAPS / "generic" / "cleartext.pcap")], db=db, policy=str(POLICY))
    sql = "SELECT subject FROM exceptions WHERE kind = 'asset.new_in_medical_zone'"
    assert db_rows(db, sql) == []  # the first run: nothing to compare with
    api.replay([str(PCAPS / "dicom" / "modalities.pcap")], db=db, policy=str(POLICY))
    new = {s for (s,) in db_rows(db, sql)}
    assert {f"10.20.0.{n}" for n in range(21, 31)} <= new
    assert "10.30.0.10" not in new  # pacs is no medical zone


def test_a_medical_device_reaching_the_internet() -> None:
    """No sample capture leaves the site, so this case is hand-built: a CT scanner's HTTPS
    connection to a public address."""
    from monitor.policy.findings import run_findings

    policy = load_policy(POLICY)
    ct = {"asset_id": "mac:02:00:0a:14:00:15", "ip": "10.20.0.21", "device_class": "ct"}
    service = {"client_ip": "10.20.0.21", "server_ip": "93.184.216.34", "proto": "tcp",
               "server_port": 443, "app": "tls", "vlan": None, "flows": 2,
               "first_seen": None, "last_seen": None}  # fmt: skip
    found = run_findings(
        policy, services=[service], assets={"10.20.0.21": ct}, observations=[],
        regulated=lambda c: c == "ct", previous_run=False, run_id=1,
    )  # fmt: skip
    internet = [f for f in found if f.kind == "device.internet"]
    assert len(internet) == 1 and internet[0].severity == "critical"
    assert internet[0].subject == "10.20.0.21 -> 93.184.216.34 tcp/443"
    assert internet[0].hipaa_ref == "164.312(e)(1)" and internet[0].occurrences == 2
