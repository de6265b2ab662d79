"""How often the shipped rules name a device right, on real traffic with a known truth.

Targets (issue 4): >= 95% of modalities sending real DICOM datasets get the right vendor and
device class; >= 90% of the hosts of an IT mix that completed a TCP handshake or a DHCP
exchange get the right OS family. The figures are printed (``pytest -s``) for the notes.
"""

from __future__ import annotations

import duckdb
import yaml

from monitor import api

from conftest import PCAPS


def _assets(db: str) -> dict[str, dict]:
    con = duckdb.connect(db, read_only=True)
    try:
        cur = con.execute("SELECT * FROM assets")
        names = [d[0] for d in cur.description]
        return {r[names.index("ip")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    finally:
        con.close()


def test_modalities_get_their_vendor_and_device_class(db: str) -> None:
    truth = yaml.safe_load((PCAPS / "dicom" / "modalities.truth.yaml").read_text())["hosts"]
    api.replay([str(PCAPS / "dicom" / "modalities.pcap")], db=db)
    assets = _assets(db)
    right = 0
    wrong: list[str] = []
    for ip, want in truth.items():
        got = assets.get(ip, {})
        if got.get("vendor") == want["vendor"] and got.get("device_class") == want["device_class"]:
            right += 1
            assert got["model"] == want["model"]
        else:
            wrong.append(f"{ip}: {got.get('vendor')}/{got.get('device_class')} != {want}")
    share = right / len(truth)
    print(f"modalities: {right}/{len(truth)} = {share:.0%} right vendor and device class")
    assert share >= 0.95, wrong
    # The archive they sent to stores images: it is not taken for any of them.
    pacs = [a for a in assets.values() if a["ip"] not in truth and a["device_class"]]
    assert all(a["device_class"] != "ct" for a in pacs)


#: The IT mix: every host of these captures runs Linux (the lab's network namespaces share the
#: machine's Linux kernel). A host counts when it completed a TCP handshake or a DHCP exchange.
IT_MIX = ("http", "tls", "ssh", "dns", "dhcp", "smb", "cleartext", "tls-legacy", "snmp")


def test_it_mix_os_family(db: str) -> None:
    api.replay([str(PCAPS / "generic" / f"{name}.pcap") for name in IT_MIX], db=db)
    con = duckdb.connect(db, read_only=True)
    try:
        hosts = {
            r[0]
            for r in con.execute(
                """
                SELECT client_ip FROM flows WHERE state IN ('established', 'closed')
                UNION SELECT server_ip FROM flows WHERE state IN ('established', 'closed')
                UNION SELECT ip FROM observations WHERE kind = 'dhcp.lease'
                """
            ).fetchall()
        }
    finally:
        con.close()
    assets = _assets(db)
    right = sum(1 for ip in hosts if assets.get(ip, {}).get("os_family") == "linux")
    share = right / len(hosts)
    print(f"IT mix: {right}/{len(hosts)} = {share:.0%} right OS family")
    missing = sorted(ip for ip in hosts if assets.get(ip, {}).get("os_family") != "linux")
    assert share >= 0.90, missing
