"""Findings: what a run shows that the policy forbids or the built-in checks flag, each with
its HIPAA Security Rule reference (45 CFR 164), ready for the risk register (``exceptions``).

Pure: the inputs are plain rows the register stage reads (:mod:`monitor.register.exceptions`),
the output is :class:`Finding` values. A finding's ``exception_id`` is stable: the same finding
in another run (or another flush of a live run) has the same id, so its occurrences add up.

Kinds (and their references):

- ``policy.violation``: a flow a deny rule or default decides; the rule's ``hipaa_ref``
  (flows to broadcast, multicast or unspecified addresses are no conversations, and only
  TCP and UDP flows have services: the others are skipped).
- ``ephi.cleartext``: DICOM or HL7 outside TLS between two zones, 164.312(e)(1).
- ``tls.deprecated``: a server negotiating TLS/SSL below ``min_tls_version``, 164.312(e)(1).
- ``smb.v1``: SMB version 1 in use, 164.308(a)(5)(ii)(B) (protection from malicious software).
- ``auth.cleartext``: Telnet, FTP or HTTP Basic authentication in clear text, 164.312(d).
- ``snmp.default_community``: SNMP v1/v2c with a well-known community, 164.312(d).
- ``device.internet``: a regulated medical device talking to the internet, 164.312(e)(1).
- ``asset.unpatchable``: an unpatchable device outside the isolated zones, 164.308(a)(1).
- ``asset.new_in_medical_zone``: a device first seen in this run in a medical zone,
  164.310(d)(1) (device and media controls).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.fingerprint.identity import is_device_ip
from monitor.policy.check import decide, zone_of
from monitor.policy.model import Policy

#: Severities in order (the policy's closed table).
SEVERITY_ORDER = ("low", "medium", "high", "critical")

HIPAA_TRANSMISSION = "164.312(e)(1)"
HIPAA_AUTHENTICATION = "164.312(d)"
HIPAA_MALWARE = "164.308(a)(5)(ii)(B)"
HIPAA_RISK = "164.308(a)(1)"
HIPAA_DEVICES = "164.310(d)(1)"

#: TLS versions as the observations name them, oldest first.
TLS_ORDER = ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")


@dataclass
class Finding:
    """One finding of one run (``occurrences``: how often the run showed it)."""

    kind: str
    subject: str
    title: str
    hipaa_ref: str
    severity: str
    first_seen: Any = None
    last_seen: Any = None
    occurrences: int = 1
    rule: str = ""  #: the policy rule or check that made it
    evidence: dict[str, Any] = field(default_factory=dict)
    #: What scoring reads (:data:`monitor.policy.scoring.FACTORS`): device classes, exposure.
    factors: dict[str, Any] = field(default_factory=dict)
    likelihood: int | None = None  #: set by :func:`score_findings`
    impact: int | None = None
    risk: int | None = None
    risk_level: str | None = None
    risk_terms: dict[str, Any] = field(default_factory=dict)

    @property
    def exception_id(self) -> str:
        """Stable across runs: the kind, the subject and the deciding rule."""
        digest = hashlib.sha256(f"{self.kind}|{self.subject}|{self.rule}".encode()).hexdigest()
        return f"{self.kind}:{digest[:16]}"


def severity_at_least(severity: str, threshold: str) -> bool:
    """``severity`` is ``threshold`` or worse."""
    return SEVERITY_ORDER.index(severity) >= SEVERITY_ORDER.index(threshold)


def flow_subject(client: str, server: str, proto: str, port: Any) -> str:
    """The register's subject of a flow finding: ``CLIENT_IP -> SERVER_IP tcp/PORT``."""
    return f"{client} -> {server} {proto}/{port}"


class _Collector:
    """Findings keyed by exception id, their occurrences and times merged."""

    def __init__(self) -> None:
        self.found: dict[str, Finding] = {}

    def add(self, f: Finding) -> None:
        old = self.found.get(f.exception_id)
        if old is None:
            self.found[f.exception_id] = f
            return
        old.occurrences += f.occurrences
        old.first_seen = min(x for x in (old.first_seen, f.first_seen) if x is not None) if (
            old.first_seen or f.first_seen) else None  # fmt: skip
        old.last_seen = max(x for x in (old.last_seen, f.last_seen) if x is not None) if (
            old.last_seen or f.last_seen) else None  # fmt: skip


def run_findings(
    policy: Policy,
    *,
    services: Iterable[Mapping[str, Any]],
    assets: Mapping[str, Mapping[str, Any]],
    observations: Iterable[Mapping[str, Any]],
    regulated: Callable[[str | None], bool],
    previous_run: bool,
    run_id: int,
) -> list[Finding]:
    """Every finding of a run.

    ``services``: the run's flows grouped by (client_ip, server_ip, proto, server_port, app,
    vlan) with ``flows``, ``first_seen``, ``last_seen``; ``assets``: the devices by address
    (columns of ``assets``); ``observations``: the run's observations of the kinds the checks
    read; ``regulated(device_class)``: whether a class is a regulated medical device;
    ``previous_run``: whether the register holds an earlier run (new devices are only new
    then)."""
    checks = policy.checks
    out = _Collector()
    zone_cache: dict[str, str] = {}

    def zone(ip: str | None, vlan: Any = None) -> str:
        if not ip:
            return "unzoned"
        z = zone_cache.get(ip)
        if z is None:
            z = zone_cache[ip] = zone_of(policy, ip, vlan, assets.get(ip))
        return z

    external = _external(policy)

    def factors(
        devices: Iterable[Mapping[str, Any] | None],
        zones: Iterable[str],
        app: str | None = None,
        cross_zone: bool = False,
    ) -> dict[str, Any]:
        """A finding's scoring factors (:data:`monitor.policy.scoring.FACTORS`)."""
        present = [d for d in devices if d]
        return {
            "device_classes": sorted({str(d["device_class"]) for d in present
                                      if d.get("device_class")}),
            "unpatchable": any(d.get("patchable") is False for d in present),
            "internet": external is not None and external in zones,
            "cross_zone": cross_zone,
            "ephi_cleartext": app in ("dicom", "hl7"),
            "cleartext_auth": app in ("telnet", "ftp", "http-basic"),
        }  # fmt: skip

    for s in services:
        client, server, proto, port = s["client_ip"], s["server_ip"], s["proto"], s["server_port"]
        if not (is_device_ip(client) and is_device_ip(server)):
            continue  # broadcast, multicast, unspecified: no conversation between two devices
        subject = flow_subject(client, server, proto, port)
        times = {"first_seen": s["first_seen"], "last_seen": s["last_seen"]}
        n = int(s.get("flows") or 1)
        d = decide(policy, s, assets.get(client), assets.get(server))
        flow_factors = factors(
            (assets.get(client), assets.get(server)), (d.client_zone, d.server_zone),
            s.get("app"), d.client_zone != d.server_zone,
        )  # fmt: skip
        # Rules are about services: TCP and UDP (ICMP and the rest have no port to name).
        if d.action == "deny" and proto in ("tcp", "udp"):
            what = d.service or s.get("app") or f"{proto}/{port}"
            out.add(Finding(
                "policy.violation", subject,
                f"{what} from {d.client_zone} to {d.server_zone}: {d.why}",
                d.hipaa_ref, d.severity or "medium", occurrences=n, rule=d.rule_id,
                evidence={"client_zone": d.client_zone, "server_zone": d.server_zone,
                          "service": d.service, "app": s.get("app")},
                factors=flow_factors, **times,
            ))  # fmt: skip
        app = s.get("app")
        sev = checks.severity("cleartext_ephi_across_zones")
        if sev and app in ("dicom", "hl7") and d.client_zone != d.server_zone:
            out.add(Finding(
                "ephi.cleartext", subject,
                f"{app.upper()} without TLS from {d.client_zone} to {d.server_zone}",
                HIPAA_TRANSMISSION, sev, occurrences=n, rule="cleartext_ephi_across_zones",
                evidence={"app": app}, factors=flow_factors, **times,
            ))  # fmt: skip
        sev = checks.severity("cleartext_auth")
        if sev and app in ("telnet", "ftp"):
            out.add(Finding(
                "auth.cleartext", subject, f"{app.capitalize()} logins cross the network in clear",
                HIPAA_AUTHENTICATION, sev, occurrences=n, rule="cleartext_auth",
                evidence={"app": app}, factors=flow_factors, **times,
            ))  # fmt: skip
        sev = checks.severity("medical_device_internet")
        client_asset = assets.get(client) or {}
        if sev and regulated(client_asset.get("device_class")) and zone(server) == external:
            out.add(Finding(
                "device.internet", subject,
                f"{client_asset.get('device_class')} device talks to the internet",
                HIPAA_TRANSMISSION, sev, occurrences=n, rule="medical_device_internet",
                evidence={"device_class": client_asset.get("device_class")},
                factors=flow_factors, **times,
            ))  # fmt: skip

    minimum = f"TLS {checks.min_tls_version}"
    for o in observations:
        kind, value, ip = o["kind"], o["value"], o["ip"]
        times = {"first_seen": o["ts"], "last_seen": o["last_ts"]}
        n = int(o.get("count") or 1)
        host_factors = factors(
            [assets.get(ip)], [zone(ip)], "http-basic" if kind == "http.basic_auth" else None
        )
        if kind == "tls.version" and value in TLS_ORDER and minimum in TLS_ORDER:
            sev = checks.severity("weak_tls")
            if sev and TLS_ORDER.index(value) < TLS_ORDER.index(minimum):
                out.add(Finding(
                    "tls.deprecated", ip, f"{ip} negotiates {value} (the minimum is {minimum})",
                    HIPAA_TRANSMISSION, sev, occurrences=n, rule="weak_tls",
                    evidence={"version": value}, factors=host_factors, **times,
                ))  # fmt: skip
        elif kind == "smb.version1" and (sev := checks.severity("smbv1")):
            out.add(Finding(
                "smb.v1", ip, f"{ip} uses SMB version 1", HIPAA_MALWARE, sev, occurrences=n,
                rule="smbv1", factors=host_factors, **times,
            ))  # fmt: skip
        elif kind == "http.basic_auth" and (sev := checks.severity("cleartext_auth")):
            out.add(Finding(
                "auth.cleartext", ip, f"HTTP Basic authentication in clear text with {ip}",
                HIPAA_AUTHENTICATION, sev, occurrences=n, rule="cleartext_auth",
                evidence={"app": "http"}, factors=host_factors, **times,
            ))  # fmt: skip
        elif kind == "snmp.default_community" and (
            sev := checks.severity("snmp_default_community")
        ):
            out.add(Finding(
                "snmp.default_community", ip, f"{ip} uses SNMP's default community {value!r}",
                HIPAA_AUTHENTICATION, sev, occurrences=n, rule="snmp_default_community",
                evidence={"community": value}, factors=host_factors, **times,
            ))  # fmt: skip

    isolated = set(checks.isolated_zones)
    medical = set(checks.medical_zones)
    seen_assets: set[str] = set()
    for a in assets.values():
        aid = a["asset_id"]
        if aid in seen_assets:
            continue  # an asset is listed under each of its addresses
        seen_assets.add(aid)
        z = zone(a.get("ip"), a.get("vlan"))
        times = {"first_seen": a.get("first_seen"), "last_seen": a.get("last_seen")}
        subject = a.get("ip") or aid
        asset_factors = factors([a], [z])
        sev = checks.severity("unpatchable_outside_isolated_zone")
        if sev and a.get("patchable") is False and z not in isolated:
            out.add(Finding(
                "asset.unpatchable", subject,
                f"unpatchable {a.get('device_class') or 'device'} in zone {z}, not an isolated "
                f"one: {a.get('patchable_reason')}", HIPAA_RISK, sev,
                rule="unpatchable_outside_isolated_zone",
                evidence={"zone": z, "asset_id": aid}, factors=asset_factors, **times,
            ))  # fmt: skip
        sev = checks.severity("new_device_in_medical_zone")
        if sev and previous_run and a.get("first_run") == run_id and z in medical:
            out.add(Finding(
                "asset.new_in_medical_zone", subject, f"new device in medical zone {z}",
                HIPAA_DEVICES, sev, rule="new_device_in_medical_zone",
                evidence={"zone": z, "asset_id": aid}, factors=asset_factors, **times,
            ))  # fmt: skip
    return list(out.found.values())


def _external(policy: Policy) -> str | None:
    """The name of the policy's external zone (the internet), if it has one."""
    for z in policy.zones:
        if getattr(z, "external", False):
            return z.name
    return None
