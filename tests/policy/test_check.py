"""Evaluating flows against a policy: zones, services, rules in order, defaults, explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.policy import Decision, Policy, decide, explain, load_policy, zone_of
from monitor.policy.check import evaluator, zone_reason
from monitor.records import Flow

POLICY = """\
version: 1
zones:
  pacs: {cidrs: [10.30.0.10/32]}
  imaging: {cidrs: [10.20.0.0/24], vlans: [20], device_classes: [ct, mr]}
  clinical: {cidrs: [10.40.0.0/24], assets: ["02:dc:00:00:01:07", "mac:02:dc:00:00:00:12"]}
  it: {cidrs: [10.10.0.0/16, "fd00:10::/64"]}
  internet: {external: true}
groups:
  modalities: [imaging, clinical]
services:
  dicom: {app: dicom, tcp: [104, 11112]}
  https: {app: tls, tcp: [443]}
  web: {tcp: ["8000-8099"]}
rules:
  - id: imaging-to-pacs
    allow: imaging -> pacs
    service: dicom
  - id: modalities-no-internet
    deny: modalities -> internet
    severity: high
    why: modalities must never reach the internet
    hipaa_ref: "164.312(e)(1)"
  - id: clinical-to-pacs
    allow: clinical -> pacs
    service: [dicom, https]
  - id: anything-to-it-web
    allow: any -> it
    service: web
  - id: it-nothing-to-pacs
    deny: it -> pacs
    severity: low
    why: IT has no business on the PACS
    hipaa_ref: "164.312(a)(1)"
default: {same_zone: allow, cross_zone: deny, severity: medium, why: not allowed,
          hipaa_ref: "164.312(a)(1)"}
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("policy") / "p.yaml"
    path.write_text(POLICY)
    return load_policy(path)


def _flow(client: str, server: str, port: int, app: str | None = None, proto: str = "tcp",
          vlan: int | None = None) -> dict[str, Any]:  # fmt: skip
    return {"client_ip": client, "server_ip": server, "server_port": port, "proto": proto,
            "app": app, "vlan": vlan}  # fmt: skip


def test_zone_of_first_match_wins(policy: Policy) -> None:
    assert zone_of(policy, "10.30.0.10") == "pacs"
    assert zone_of(policy, "10.20.0.11") == "imaging"
    assert zone_of(policy, "10.10.3.4") == "it"
    assert zone_of(policy, "fd00:10::5") == "it"
    assert zone_of(policy, "10.99.0.1") == "unzoned"
    assert zone_of(policy, "192.168.1.1") == "unzoned"  # private: not external
    assert zone_of(policy, "8.8.8.8") == "internet"
    assert zone_of(policy, "2001:4860:4860::8888") == "internet"
    assert zone_of(policy, "239.255.255.250") == "unzoned"  # multicast is not the internet
    assert zone_of(policy, "not-an-ip") == "unzoned"


def test_zone_by_vlan_device_class_and_asset(policy: Policy) -> None:
    # VLAN 20 is imaging wherever the address is; an earlier zone still wins.
    assert zone_of(policy, "10.99.0.1", vlan=20) == "imaging"
    assert zone_of(policy, "10.30.0.10", vlan=20) == "pacs"
    # Device class: a CT in the IT range is imaging (imaging comes before it).
    assert zone_of(policy, "10.10.0.7", asset={"device_class": "ct"}) == "imaging"
    assert zone_of(policy, "10.10.0.7", asset={"device_class": "workstation"}) == "it"
    # The asset: by MAC, or by asset id; the zone cache keys on the asset too.
    assert zone_of(policy, "10.99.0.5", asset={"mac": "02:DC:00:00:01:07"}) == "clinical"
    assert zone_of(policy, "10.99.0.6", asset={"asset_id": "mac:02:dc:00:00:00:12"}) == "clinical"
    assert zone_of(policy, "10.99.0.5") == "unzoned"
    # The asset's VLAN counts when the flow has none.
    assert zone_of(policy, "10.99.0.7", asset={"vlan": 20}) == "imaging"


def test_zone_reason_agrees_with_zone_of(policy: Policy) -> None:
    assert zone_reason(policy, "10.20.0.11") == ("imaging", "cidr 10.20.0.0/24")
    assert zone_reason(policy, "10.99.0.1", 20) == ("imaging", "vlan 20")
    assert zone_reason(policy, "10.10.0.7", asset={"device_class": "ct"}) == (
        "imaging",
        "device class ct",
    )
    assert zone_reason(policy, "10.99.0.5", asset={"mac": "02:dc:00:00:01:07"}) == (
        "clinical",
        "asset 02:dc:00:00:01:07",
    )
    assert zone_reason(policy, "8.8.8.8") == ("internet", "external: a globally routable address")
    assert zone_reason(policy, "10.99.0.1") == ("unzoned", "no zone claims it")


def test_first_matching_rule_decides(policy: Policy) -> None:
    d = decide(policy, _flow("10.20.0.11", "10.30.0.10", 104, "dicom"))
    assert d == Decision("allow", "imaging-to-pacs", None, "", "", "imaging", "pacs", "dicom")


def test_group_deny_with_severity(policy: Policy) -> None:
    d = decide(policy, _flow("10.40.0.31", "93.184.216.34", 443, "tls"))
    assert (d.action, d.rule_id, d.severity, d.why, d.hipaa_ref) == (
        "deny",
        "modalities-no-internet",
        "high",
        "modalities must never reach the internet",
        "164.312(e)(1)",
    )
    assert (d.client_zone, d.server_zone, d.service) == ("clinical", "internet", "https")


def test_any_matches_unzoned_too(policy: Policy) -> None:
    d = decide(policy, _flow("10.99.0.1", "10.10.0.80", 8080))
    assert (d.action, d.rule_id, d.service) == ("allow", "anything-to-it-web", "web")


def test_service_by_application_before_port(policy: Policy) -> None:
    # DICOM on 4242 is still DICOM.
    d = decide(policy, _flow("10.20.0.11", "10.30.0.10", 4242, "dicom"))
    assert (d.rule_id, d.service) == ("imaging-to-pacs", "dicom")
    # TLS on DICOM's port 104 is https, not dicom: the application decides first.
    d = decide(policy, _flow("10.20.0.11", "10.30.0.10", 104, "tls"))
    assert (d.rule_id, d.service) == ("default.cross_zone", "https")


def test_service_by_port_when_no_application(policy: Policy) -> None:
    assert decide(policy, _flow("10.20.0.11", "10.30.0.10", 11112)).service == "dicom"
    # An application no service names falls back to the port.
    assert decide(policy, _flow("10.20.0.11", "10.30.0.10", 104, "http")).service == "dicom"
    # Port ranges, and the protocol matters: udp/104 is no service.
    assert decide(policy, _flow("10.40.0.1", "10.10.0.1", 8050)).service == "web"
    assert decide(policy, _flow("10.20.0.11", "10.30.0.10", 104, proto="udp")).service is None


def test_rule_with_service_needs_a_service(policy: Policy) -> None:
    d = decide(policy, _flow("10.20.0.11", "10.30.0.10", 9999))
    assert (d.action, d.rule_id, d.service) == ("deny", "default.cross_zone", None)


def test_defaults(policy: Policy) -> None:
    same = decide(policy, _flow("10.20.0.11", "10.20.0.12", 22))
    assert (same.action, same.rule_id, same.severity) == ("allow", "default.same_zone", None)
    cross = decide(policy, _flow("10.20.0.11", "10.10.0.80", 80))
    assert (cross.action, cross.rule_id, cross.severity, cross.why, cross.hipaa_ref) == (
        "deny",
        "default.cross_zone",
        "medium",
        "not allowed",
        "164.312(a)(1)",
    )
    # Two unzoned ends are not "the same zone".
    assert decide(policy, _flow("10.99.0.1", "10.99.0.2", 22)).rule_id == "default.cross_zone"


def test_vlan_zone_in_a_decision(policy: Policy) -> None:
    d = decide(policy, _flow("10.99.0.1", "10.30.0.10", 104, "dicom", vlan=20))
    assert (d.client_zone, d.rule_id) == ("imaging", "imaging-to-pacs")


def test_device_class_zone_in_a_decision(policy: Policy) -> None:
    flow = _flow("10.10.0.7", "10.30.0.10", 104, "dicom")
    assert decide(policy, flow).rule_id == "it-nothing-to-pacs"
    d = decide(policy, flow, client_asset={"device_class": "mr"})
    assert (d.client_zone, d.rule_id) == ("imaging", "imaging-to-pacs")


def test_flow_records_are_flow_like(policy: Policy) -> None:
    flow = Flow(client_ip="10.40.0.31", server_ip="10.30.0.10", server_port=443, proto="tcp",
                app="tls")  # fmt: skip
    assert decide(policy, flow).rule_id == "clinical-to-pacs"


def test_decisions_are_cached_per_zone_pair_and_service(policy: Policy) -> None:
    ev = evaluator(policy)
    assert evaluator(policy) is ev
    a = decide(policy, _flow("10.20.0.11", "10.30.0.10", 104, "dicom"))
    b = decide(policy, _flow("10.20.0.99", "10.30.0.10", 11112))
    assert a is b


EXPLAIN_DENY = [
    "flow 10.40.0.31 -> 8.8.8.8 tcp/443, application tls",
    "client 10.40.0.31: zone clinical (cidr 10.40.0.0/24); device class workstation",
    "server 8.8.8.8: zone internet (external: a globally routable address)",
    "service: https (by application tls)",
    "rules in {path}, in order (first match decides):",
    "  imaging-to-pacs (line 15): allow imaging -> pacs service dicom: "
    "no, client zone clinical is not imaging",
    "  modalities-no-internet (line 18): deny modalities -> internet: MATCH",
    "decision: deny by modalities-no-internet, severity high",
    "why: modalities must never reach the internet",
    "hipaa_ref: 164.312(e)(1)",
]

EXPLAIN_DEFAULT = [
    "flow 10.20.0.11 -> 10.30.0.10 tcp/9999, application unknown, vlan 20",
    "client 10.20.0.11: zone imaging (cidr 10.20.0.0/24)",
    "server 10.30.0.10: zone pacs (cidr 10.30.0.10/32)",
    "service: none (no service has this application, protocol and port)",
    "rules in {path}, in order (first match decides):",
    "  imaging-to-pacs (line 15): allow imaging -> pacs service dicom: "
    "no, the flow has no service; the rule needs dicom",
    "  modalities-no-internet (line 18): deny modalities -> internet: "
    "no, server zone pacs is not internet",
    "  clinical-to-pacs (line 23): allow clinical -> pacs service dicom, https: "
    "no, client zone imaging is not clinical",
    "  anything-to-it-web (line 26): allow any -> it service web: no, server zone pacs is not it",
    "  it-nothing-to-pacs (line 29): deny it -> pacs: no, client zone imaging is not it",
    "  no rule matched: default cross_zone is deny",
    "decision: deny by default.cross_zone, severity medium",
    "why: not allowed",
    "hipaa_ref: 164.312(a)(1)",
]


def test_explain_a_deny(policy: Policy) -> None:
    text = explain(
        policy,
        _flow("10.40.0.31", "8.8.8.8", 443, "tls"),
        client_asset={"device_class": "workstation"},
    )
    assert text.splitlines() == [line.format(path=policy.path) for line in EXPLAIN_DENY]


def test_explain_the_default(policy: Policy) -> None:
    text = explain(policy, _flow("10.20.0.11", "10.30.0.10", 9999, vlan=20))
    assert text.splitlines() == [line.format(path=policy.path) for line in EXPLAIN_DEFAULT]


def test_explain_service_by_port(policy: Policy) -> None:
    text = explain(policy, _flow("10.20.0.11", "10.30.0.10", 11112))
    assert "service: dicom (by port tcp/11112)" in text.splitlines()
    assert text.splitlines()[-1] == "decision: allow by imaging-to-pacs"


def test_shipped_default_policy_decides_the_sample_network() -> None:
    from monitor.policy import shipped_policy

    policy = load_policy(shipped_policy())
    ct_to_pacs = decide(policy, _flow("10.20.0.11", "10.30.0.10", 4242, "dicom"))
    assert (ct_to_pacs.action, ct_to_pacs.rule_id) == ("allow", "imaging-to-pacs")
    pump_out = decide(policy, _flow("10.40.0.130", "93.184.216.34", 443, "tls"))
    assert (pump_out.action, pump_out.rule_id, pump_out.severity) == (
        "deny",
        "medical-no-internet",
        "critical",
    )
    telnet = decide(policy, _flow("10.10.0.20", "10.20.0.40", 23, "telnet"))
    assert (telnet.action, telnet.rule_id) == ("deny", "no-telnet-ftp-internal")


def test_an_empty_rule_list_uses_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nzones: {a: {cidrs: [10.0.0.0/8]}}\nrules: []\n"
        "default: {same_zone: deny, cross_zone: allow, why: w, hipaa_ref: h}\n"
    )
    policy = load_policy(path)
    d = decide(policy, _flow("10.0.0.1", "10.0.0.2", 80))
    assert (d.action, d.rule_id, d.severity) == ("deny", "default.same_zone", "medium")
    assert decide(policy, _flow("10.0.0.1", "8.8.8.8", 80)).action == "allow"
