"""The inventory in the register: one asset per device, kept across runs, from real captures."""

from __future__ import annotations

import json
import re

import duckdb

from monitor import api

from conftest import PCAPS, tshark


def _endpoints(capture: str) -> set[str]:
    """Every device address tshark sees: IP endpoints and ARP senders."""
    out = tshark("-r", capture, "-q", "-z", "endpoints,ip")
    ips = set(re.findall(r"^(\d+\.\d+\.\d+\.\d+)\s", out, re.M))
    arp = tshark("-r", capture, "-Y", "arp", "-T", "fields", "-e", "arp.src.proto_ipv4")
    return ips | (set(arp.split()) - {"0.0.0.0"})


def _assets(db: str) -> dict[str, dict]:
    con = duckdb.connect(db, read_only=True)
    try:
        cur = con.execute("SELECT * FROM assets")
        names = [d[0] for d in cur.description]
        return {
            row[names.index("ip")]: dict(zip(names, row, strict=True)) for row in cur.fetchall()
        }
    finally:
        con.close()


def test_one_asset_per_internal_host_of_a_capture(db: str) -> None:
    capture = str(PCAPS / "generic" / "http.pcap")
    api.replay([capture], db=db)
    assets = _assets(db)
    assert set(assets) == _endpoints(capture)
    # The web server is seen on two router legs: beside its own MAC and behind the router's.
    # Its own MAC (as tshark sees it in the frames it sent on its own leg) names the asset.
    on_its_leg = "ip.src == 10.10.0.80 && eth.src[0:3] == 02:00:0a && eth.src[3] == 0x0a"
    own = tshark("-r", capture, "-Y", on_its_leg, "-T", "fields", "-e", "eth.src").split()
    assert own and assets["10.10.0.80"]["asset_id"] == f"mac:{own[0]}"
    assert assets["10.10.0.80"]["mac"] == own[0]
    # Linux in the lab's namespaces: the SYN traits say so (a generic, low-confidence rule).
    assert assets["10.20.0.11"]["os_family"] == "linux"
    evidence = json.loads(assets["10.20.0.11"]["evidence"])
    assert evidence["os_family"]["signals"]
    assert {k for k, _v in evidence["os_family"]["signals"]} >= {"tcp.syn_ttl", "tcp.syn_options"}


def test_assets_are_kept_across_runs(db: str) -> None:
    first = api.replay([str(PCAPS / "generic" / "http.pcap")], db=db)
    before = _assets(db)
    second = api.replay([str(PCAPS / "generic" / "tls.pcap")], db=db)
    after = _assets(db)
    assert first.run_id == 1 and second.run_id == 2
    assert set(after) == set(before) | _endpoints(str(PCAPS / "generic" / "tls.pcap"))
    server = after["10.10.0.80"]
    assert server["first_seen"] == before["10.10.0.80"]["first_seen"]
    assert server["first_run"] == 1 and server["last_run"] == 2
    assert server["last_seen"] > before["10.10.0.80"]["last_seen"]
    assert server["addresses"] == ["10.10.0.80"]
    # A host seen only in the first run keeps its row as it was.
    con = duckdb.connect(db, read_only=True)
    try:
        rows = con.execute(
            "SELECT asset_id, count(*) FROM assets GROUP BY asset_id HAVING count(*) > 1"
        ).fetchall()
        signals = con.execute(
            "SELECT count(*) FROM asset_signals s JOIN assets a USING (asset_id) "
            "WHERE a.ip = '10.10.0.80' AND s.kind = 'tcp.synack_ttl'"
        ).fetchall()
    finally:
        con.close()
    assert rows == []  # one row per device
    assert signals == [(1,)]  # the same fact from two runs is one signal, counted twice


def test_explain_names_the_rules_and_prints_a_match_block(db: str) -> None:
    api.replay([str(PCAPS / "generic" / "http.pcap")], db=db)
    text = api.explain("10.20.0.11", db=db)
    assert "tcp.syn_options" in text
    assert "match:" in text and "site." in text
    try:
        api.explain("10.99.99.99", db=db)
    except api.NotFound as e:
        assert str(e).startswith("10.99.99.99: no device with this address or MAC in ")
    else:
        raise AssertionError("an unknown address must be an error")


def test_a_device_whose_address_changes_keeps_one_asset(db: str) -> None:
    """busybox udhcpc leases 10.40.0.130 from dnsmasq, then (a reservation later) 10.40.0.141,
    and talks from both (pcaps/generic/dhcp-renumber.pcap); dhcp.pcap has its first lease."""
    pump = "mac:02:dc:00:00:01:07"
    api.replay([str(PCAPS / "generic" / "dhcp.pcap")], db=db)
    first = {a["asset_id"]: a for a in _assets(db).values()}[pump]
    assert (first["ip"], first["addresses"]) == ("10.40.0.130", ["10.40.0.130"])
    api.replay([str(PCAPS / "generic" / "dhcp-renumber.pcap")], db=db)
    assets = _assets(db)
    rows = [a for a in assets.values() if a["mac"] == "02:dc:00:00:01:07"]
    assert len(rows) == 1
    (row,) = rows
    assert row["asset_id"] == pump
    assert row["ip"] == "10.40.0.141" and row["addresses"] == ["10.40.0.130", "10.40.0.141"]
    assert (row["first_run"], row["last_run"]) == (1, 2)
    assert row["first_seen"] == first["first_seen"]
    assert row["hostname"] == "infpump-0107"
    # Neither address is a device of its own.
    assert "ip:10.40.0.130" not in {a["asset_id"] for a in assets.values()}


def test_updating_a_run_again_counts_its_signals_once(db: str) -> None:
    """A live run updates the inventory at each flush: doing it again for the same run must
    not add the run's counts twice."""
    from datetime import date

    from monitor.fingerprint.assets import fingerprinter
    from monitor.fingerprint.engine import Engine
    from monitor.register import open_register
    from monitor.register.ingest import RunWriter
    from monitor.register.inventory import update_inventory

    api.replay([str(PCAPS / "generic" / "http.pcap")], db=db)
    query = "SELECT asset_id, kind, value, count, last_run_count FROM asset_signals ORDER BY ALL"
    con = duckdb.connect(db, read_only=True)
    before = con.execute(query).fetchall()
    con.close()
    rules = api.fingerprint_rules()
    with open_register(db) as reg:
        writer = RunWriter(reg)
        reg.con.begin()
        update_inventory(writer, 1, fingerprint=fingerprinter(Engine(rules), date.today()))
        reg.con.commit()
        after = reg.con.execute(query).fetchall()
    assert after == before and all(c == n for *_rest, c, n in before)


def test_devices_that_say_the_same_things_are_fingerprinted_once() -> None:
    """The fingerprinter remembers each distinct list of signals: the same list gives the same
    verdict without running the rules again, each caller gets its own copy, and a device that
    says one thing more is fingerprinted afresh."""
    from datetime import date

    from monitor.fingerprint.assets import fingerprinter
    from monitor.fingerprint.engine import Engine

    engine = Engine(api.fingerprint_rules())
    calls = []
    real = engine.fingerprint

    def counted(dev, as_of):  # type: ignore[no-untyped-def]
        calls.append(dev.key)
        return real(dev, as_of)

    engine.fingerprint = counted  # type: ignore[method-assign]
    run = fingerprinter(engine, date(2026, 12, 5))
    pump = [("http.user_agent", "Alaris-PCU/9.33", None, None, "observations")]
    first = run("ip:10.0.0.1", "10.0.0.1", None, pump)
    first["hostname"] = "changed by the caller"
    second = run("ip:10.0.0.2", "10.0.0.2", None, list(pump))
    assert calls == ["ip:10.0.0.1"]
    assert second["hostname"] != "changed by the caller"
    assert second == run("ip:10.0.0.3", "10.0.0.3", None, pump)
    named = pump + [("dhcp.hostname", "pump-7", None, None, "observations")]
    assert run("ip:10.0.0.4", "10.0.0.4", None, named)["hostname"] == "pump-7"
    assert calls == ["ip:10.0.0.1", "ip:10.0.0.4"]
