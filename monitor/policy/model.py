"""What a segmentation policy file says, once loaded and checked (STYLE S7).

Frozen dataclasses only: :mod:`monitor.policy.load` builds them from YAML (and lints the
file), :mod:`monitor.policy.check` evaluates flows against them. ``policies/README.md``
documents the format; ``policies/schema.json`` is its JSON Schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The closed severity table, lowest first; it maps to register risk [Suricata
#: classification.config].
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
#: Severity of a deny rule (or default deny) that names none.
DEFAULT_SEVERITY = "medium"
#: The zone of an address no zone claims.
UNZONED = "unzoned"
#: In a rule: every zone, and unzoned addresses too.
ANY = "any"
#: Names a zone or group may not take.
RESERVED = frozenset({UNZONED, ANY})
#: The two actions of a rule.
ACTIONS: tuple[str, ...] = ("allow", "deny")
#: Rule ids of the two defaults, as :class:`~monitor.policy.check.Decision` names them.
DEFAULT_SAME_ZONE = "default.same_zone"
DEFAULT_CROSS_ZONE = "default.cross_zone"


@dataclass(frozen=True, slots=True)
class Zone:
    """A named set of addresses. An address is in the zone when any criterion matches: one of
    the CIDRs, the flow's VLAN, the asset's device class, the asset itself, or (``external``)
    any globally routable address."""

    name: str
    cidrs: tuple[str, ...] = ()
    vlans: tuple[int, ...] = ()
    device_classes: tuple[str, ...] = ()
    #: asset ids (``mac:...``, ``ip:...``), IP addresses or MACs, lower case
    assets: tuple[str, ...] = ()
    external: bool = False
    description: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class Group:
    """A named set of zones, so rules read as sentences [Suricata address groups]."""

    name: str
    zones: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True, slots=True)
class Service:
    """A service: a detected application (``flows.app``) and/or protocol ports. A flow is the
    first service whose ``app`` is the flow's application, else the first that lists its
    protocol and server port."""

    name: str
    app: str | None = None
    #: ``(low, high)`` port ranges, inclusive (a single port is ``(p, p)``)
    tcp: tuple[tuple[int, int], ...] = ()
    udp: tuple[tuple[int, int], ...] = ()
    description: str = ""
    line: int = 0

    def has_port(self, proto: str, port: int) -> bool:
        """Does the service list this protocol and port?"""
        ranges = self.tcp if proto == "tcp" else self.udp if proto == "udp" else ()
        return any(lo <= port <= hi for lo, hi in ranges)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ordered rule: ``allow|deny: SOURCE -> DEST`` where each end is a zone, a group or
    ``any``; optional services; deny rules carry severity, why and hipaa_ref."""

    id: str
    action: str
    source: str
    dest: str
    #: zones the source names (``None``: any, unzoned included)
    source_zones: frozenset[str] | None
    dest_zones: frozenset[str] | None
    #: services the rule is limited to (``None``: every flow, with or without a service)
    services: tuple[str, ...] | None
    severity: str | None = None
    why: str = ""
    hipaa_ref: str = ""
    description: str = ""
    line: int = 0

    @property
    def text(self) -> str:
        """The rule as written, in one line."""
        svc = "" if self.services is None else " service " + ", ".join(self.services)
        return f"{self.action} {self.source} -> {self.dest}{svc}"


@dataclass(frozen=True, slots=True)
class Defaults:
    """What happens to a flow no rule decides: within one zone, and between zones (a flow
    with an unzoned end is cross-zone)."""

    same_zone: str = "allow"
    cross_zone: str = "deny"
    severity: str = DEFAULT_SEVERITY
    why: str = ""
    hipaa_ref: str = ""
    line: int = 0


#: Built-in checks whose setting is a severity (or off), and what each finds.
SEVERITY_CHECKS: dict[str, str] = {
    "cleartext_ephi_across_zones": "DICOM or HL7 outside TLS between zones, 164.312(e)(1)",
    "weak_tls": "TLS or SSL below min_tls_version, 164.312(e)(1)",
    "smbv1": "SMB version 1 in use",
    "cleartext_auth": "Telnet, FTP or HTTP basic authentication in cleartext, 164.312(d)",
    "snmp_default_community": "SNMP v1/v2c with a default community",
    "medical_device_internet": "a medical device reaching the internet",
    "unpatchable_outside_isolated_zone": "an unpatchable asset outside isolated_zones, "
    "164.308(a)(1)",
    "new_device_in_medical_zone": "a device in medical_zones not seen in the previous run",
}
#: Keys of one service.
SERVICE_KEYS_DOC: tuple[str, ...] = ("app", "tcp", "udp", "description")
#: TLS versions ``min_tls_version`` accepts.
TLS_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", "1.3")


@dataclass(frozen=True, slots=True)
class Checks:
    """Settings of the built-in checks (run by :mod:`monitor.policy.findings`)."""

    #: check name -> severity; a check that is off is absent
    severities: tuple[tuple[str, str], ...] = ()
    min_tls_version: str = "1.2"
    #: zones (groups expanded) where unpatchable assets are acceptable
    isolated_zones: tuple[str, ...] = ()
    #: zones (groups expanded) whose new devices are reported
    medical_zones: tuple[str, ...] = ()
    line: int = 0

    def severity(self, check: str) -> str | None:
        """The severity of a check, None when it is off."""
        return dict(self.severities).get(check)


@dataclass(frozen=True)
class Policy:
    """A loaded, lint-clean policy."""

    version: int
    zones: tuple[Zone, ...]
    groups: tuple[Group, ...]
    services: tuple[Service, ...]
    rules: tuple[Rule, ...]
    default: Defaults
    checks: Checks
    path: Path | None = None
    #: compiled lookup tables (:mod:`monitor.policy.check` fills it)
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def zone(self, name: str) -> Zone | None:
        """The zone of this name, if any."""
        for z in self.zones:
            if z.name == name:
                return z
        return None

    def service(self, name: str) -> Service | None:
        """The service of this name, if any."""
        for s in self.services:
            if s.name == name:
                return s
        return None

    def rule(self, rule_id: str) -> Rule | None:
        """The rule with this id, if any."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None
