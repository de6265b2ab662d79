"""Evaluating flows against a policy: which zone each end is in, which service the flow is,
which rule (or default) decides, and why (STYLE S7) [datasette allow-debug].

Pure functions of a loaded :class:`~monitor.policy.model.Policy`; nothing here reads files or
the register. Evaluation is per flow (or graph edge), so it is made cheap: the zone CIDRs
become integer ranges, each address's CIDR zone is cached, the service of a
(protocol, port, application) is cached, and a decision depends only on (client zone, server
zone, service), so it is computed once per such triple and then looked up.

Flows and assets are *flow-like*: objects or mappings with the register's column names (a
:class:`~monitor.records.Flow` row, a dict from ``--format json``, ...). A flow needs
``client_ip``, ``server_ip``, ``server_port``, ``proto``, and uses ``app`` and ``vlan`` when
present; an asset uses ``asset_id``, ``ip``, ``mac``, ``vlan`` and ``device_class``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.policy.model import (
    DEFAULT_CROSS_ZONE,
    DEFAULT_SAME_ZONE,
    UNZONED,
    Policy,
    Rule,
    Zone,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decides about one flow."""

    action: str  #: 'allow' or 'deny'
    rule_id: str  #: the deciding rule's id, or 'default.same_zone' / 'default.cross_zone'
    severity: str | None  #: of a deny (closed table), None for an allow
    why: str
    hipaa_ref: str
    client_zone: str
    server_zone: str
    service: str | None  #: the flow's service, None when no service describes it


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def is_external(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Is this address on the internet: globally routable, and not multicast (SSDP's
    239.255.255.250 is not the internet)?"""
    return addr.is_global and not addr.is_multicast


def _lower(value: Any) -> str | None:
    return str(value).strip().lower() if value not in (None, "") else None


class Evaluator:
    """A policy compiled for fast evaluation; :func:`evaluator` keeps one per policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        zones = policy.zones
        #: (version, low, high, zone index), in zone order: the first hit is the first zone
        self._ranges: list[tuple[int, int, int, int]] = []
        self._vlans: dict[int, int] = {}
        self._classes: dict[str, int] = {}
        self._assets: dict[str, int] = {}
        self._external: int | None = None
        for i, zone in enumerate(zones):
            for cidr in zone.cidrs:
                net = ipaddress.ip_network(cidr)
                self._ranges.append(
                    (net.version, int(net.network_address), int(net.broadcast_address), i)
                )
            for vlan in zone.vlans:
                self._vlans.setdefault(vlan, i)
            for cls in zone.device_classes:
                self._classes.setdefault(cls, i)
            for key in zone.assets:
                self._assets.setdefault(key, i)
            if zone.external and self._external is None:
                self._external = i
        self._names = [z.name for z in zones]
        self._none = len(zones)  # "no zone" index: larger than every zone's
        self._ip_cache: dict[str, tuple[int, bool]] = {}
        self._zone_cache: dict[tuple[Any, ...], str] = {}
        self._service_cache: dict[tuple[Any, Any, Any], str | None] = {}
        self._apps: dict[str, str] = {}
        for svc in policy.services:
            if svc.app is not None:
                self._apps.setdefault(svc.app, svc.name)
        self._decisions: dict[tuple[str, str, str | None], Decision] = {}

    # -- zones -------------------------------------------------------------------------------

    def _address(self, ip: str) -> tuple[int, bool]:
        """(index of the first zone whose CIDRs hold ``ip``, is it globally routable)."""
        got = self._ip_cache.get(ip)
        if got is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                got = (self._none, False)
            else:
                if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                    addr = addr.ipv4_mapped
                value, version = int(addr), addr.version
                best = self._none
                for v, lo, hi, idx in self._ranges:
                    if v == version and lo <= value <= hi:
                        best = idx
                        break
                got = (best, is_external(addr))
            self._ip_cache[ip] = got
        return got

    def zone_of(self, ip: str, vlan: int | None = None, asset: Any = None) -> str:
        """The first zone that claims this address (by CIDR, the VLAN, the asset's device
        class, the asset itself, or ``external`` for a global address), else 'unzoned'."""
        if vlan is None:
            vlan = _get(asset, "vlan")
        cls = _get(asset, "device_class")
        asset_id = _lower(_get(asset, "asset_id"))
        mac = _lower(_get(asset, "mac"))
        asset_ip = _lower(_get(asset, "ip"))
        key = (ip, vlan, cls, asset_id, mac, asset_ip)
        name = self._zone_cache.get(key)
        if name is not None:
            return name
        best, is_global = self._address(ip)
        if vlan is not None:
            best = min(best, self._vlans.get(vlan, best))
        if cls is not None:
            best = min(best, self._classes.get(cls, best))
        if self._assets:
            for k in (_lower(ip), asset_id, mac, asset_ip):
                if k is not None:
                    best = min(best, self._assets.get(k, best))
        if is_global and self._external is not None:
            best = min(best, self._external)
        name = self._names[best] if best < self._none else UNZONED
        self._zone_cache[key] = name
        return name

    # -- services ----------------------------------------------------------------------------

    def service_of(self, proto: str | None, port: int | None, app: str | None) -> str | None:
        """The flow's service: the first whose ``app`` is the flow's application, else the
        first that lists its protocol and server port, else None."""
        key = (proto, port, app)
        if key in self._service_cache:
            return self._service_cache[key]
        name = self._apps.get(app.lower()) if app else None
        if name is None and proto is not None and port is not None:
            for svc in self.policy.services:
                if svc.has_port(proto, port):
                    name = svc.name
                    break
        self._service_cache[key] = name
        return name

    # -- decisions ---------------------------------------------------------------------------

    def decide_zones(self, client_zone: str, server_zone: str, service: str | None) -> Decision:
        """The decision for a flow between these zones, of this service."""
        key = (client_zone, server_zone, service)
        got = self._decisions.get(key)
        if got is None:
            got = self._decide(client_zone, server_zone, service)
            self._decisions[key] = got
        return got

    def _decide(self, cz: str, sz: str, service: str | None) -> Decision:
        for rule in self.policy.rules:
            if rule_matches(rule, cz, sz, service):
                return Decision(
                    action=rule.action,
                    rule_id=rule.id,
                    severity=rule.severity,
                    why=rule.why,
                    hipaa_ref=rule.hipaa_ref,
                    client_zone=cz,
                    server_zone=sz,
                    service=service,
                )
        d = self.policy.default
        same = cz == sz and cz != UNZONED
        action = d.same_zone if same else d.cross_zone
        return Decision(
            action=action,
            rule_id=DEFAULT_SAME_ZONE if same else DEFAULT_CROSS_ZONE,
            severity=d.severity if action == "deny" else None,
            why=d.why,
            hipaa_ref=d.hipaa_ref,
            client_zone=cz,
            server_zone=sz,
            service=service,
        )

    def decide(self, flow: Any, client_asset: Any = None, server_asset: Any = None) -> Decision:
        """The decision for one flow (and the assets at its two ends, when known)."""
        vlan = _get(flow, "vlan")
        cz = self.zone_of(str(_get(flow, "client_ip")), vlan, client_asset)
        sz = self.zone_of(str(_get(flow, "server_ip")), vlan, server_asset)
        proto = _get(flow, "proto")
        service = self.service_of(
            str(proto).lower() if proto else None, _get(flow, "server_port"), _get(flow, "app")
        )
        return self.decide_zones(cz, sz, service)


def rule_matches(rule: Rule, client_zone: str, server_zone: str, service: str | None) -> bool:
    """Does the rule match a flow between these zones, of this service?"""
    return (
        (rule.source_zones is None or client_zone in rule.source_zones)
        and (rule.dest_zones is None or server_zone in rule.dest_zones)
        and (rule.services is None or (service is not None and service in rule.services))
    )


def evaluator(policy: Policy) -> Evaluator:
    """The policy's compiled :class:`Evaluator` (made once, kept with the policy)."""
    got = policy.cache.get("evaluator")
    if got is None:
        got = policy.cache["evaluator"] = Evaluator(policy)
    assert isinstance(got, Evaluator)
    return got


def zone_of(policy: Policy, ip: str, vlan: int | None = None, asset: Any = None) -> str:
    """The first zone of ``policy`` that claims ``ip`` (see :meth:`Evaluator.zone_of`)."""
    return evaluator(policy).zone_of(ip, vlan, asset)


def decide(
    policy: Policy, flow: Any, client_asset: Any = None, server_asset: Any = None
) -> Decision:
    """Which rule, or default, decides this flow: first matching rule wins."""
    return evaluator(policy).decide(flow, client_asset, server_asset)


# -- explanation ------------------------------------------------------------------------------


def zone_reason(
    policy: Policy, ip: str, vlan: int | None = None, asset: Any = None
) -> tuple[str, str]:
    """The zone of an address and why (the first criterion of the first zone that matched)."""
    if vlan is None:
        vlan = _get(asset, "vlan")
    cls = _get(asset, "device_class")
    keys = [
        k
        for k in (
            _lower(ip),
            _lower(_get(asset, "asset_id")),
            _lower(_get(asset, "mac")),
            _lower(_get(asset, "ip")),
        )
        if k is not None
    ]
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(ip)
    except ValueError:
        addr = None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for zone in policy.zones:
        why = _zone_criterion(zone, addr, vlan, cls, keys)
        if why is not None:
            return zone.name, why
    return UNZONED, "no zone claims it"


def _zone_criterion(
    zone: Zone,
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    vlan: int | None,
    cls: str | None,
    keys: list[str],
) -> str | None:
    if addr is not None:
        for cidr in zone.cidrs:
            if addr in ipaddress.ip_network(cidr):
                return f"cidr {cidr}"
    if vlan is not None and vlan in zone.vlans:
        return f"vlan {vlan}"
    if cls is not None and cls in zone.device_classes:
        return f"device class {cls}"
    for key in keys:
        if key in zone.assets:
            return f"asset {key}"
    if zone.external and addr is not None and is_external(addr):
        return "external: a globally routable address"
    return None


def _why_not(rule: Rule, cz: str, sz: str, service: str | None) -> str:
    if rule.source_zones is not None and cz not in rule.source_zones:
        return f"client zone {cz} is not {rule.source}"
    if rule.dest_zones is not None and sz not in rule.dest_zones:
        return f"server zone {sz} is not {rule.dest}"
    assert rule.services is not None
    wanted = ", ".join(rule.services)
    if service is None:
        return f"the flow has no service; the rule needs {wanted}"
    return f"service {service} is not {wanted}"


def explain(policy: Policy, flow: Any, client_asset: Any = None, server_asset: Any = None) -> str:
    """Why the policy decides this flow as it does: each end's zone and why, the flow's
    service and how it was found, every rule tried and why it did or did not match, and the
    rule or default that decided (text, one fact per line)."""
    ev = evaluator(policy)
    decision = ev.decide(flow, client_asset, server_asset)
    vlan = _get(flow, "vlan")
    client, server = str(_get(flow, "client_ip")), str(_get(flow, "server_ip"))
    proto = str(_get(flow, "proto") or "tcp").lower()
    port = _get(flow, "server_port")
    app = _get(flow, "app")
    where = f" in {policy.path}" if policy.path is not None else ""
    head = f"flow {client} -> {server} {proto}/{port}"
    head += f", application {app}" if app else ", application unknown"
    head += f", vlan {vlan}" if vlan is not None else ""
    lines = [head]
    for role, ip, asset in (("client", client, client_asset), ("server", server, server_asset)):
        zone, why = zone_reason(policy, ip, vlan, asset)
        cls = _get(asset, "device_class")
        extra = f"; device class {cls}" if cls else ""
        lines.append(f"{role} {ip}: zone {zone} ({why}){extra}")
    service = decision.service
    if service is None:
        lines.append("service: none (no service has this application, protocol and port)")
    else:
        svc = policy.service(service)
        by_app = svc is not None and app is not None and svc.app == str(app).lower()
        how = f"by application {app}" if by_app else f"by port {proto}/{port}"
        lines.append(f"service: {service} ({how})")
    lines.append(f"rules{where}, in order (first match decides):")
    cz, sz = decision.client_zone, decision.server_zone
    for rule in policy.rules:
        head = f"  {rule.id} (line {rule.line}): {rule.text}: "
        if rule_matches(rule, cz, sz, service):
            lines.append(head + "MATCH")
            break
        lines.append(head + "no, " + _why_not(rule, cz, sz, service))
    if decision.rule_id in (DEFAULT_SAME_ZONE, DEFAULT_CROSS_ZONE):
        kind = decision.rule_id.split(".", 1)[1]
        lines.append(f"  no rule matched: default {kind} is {decision.action}")
    verdict = f"decision: {decision.action} by {decision.rule_id}"
    if decision.severity:
        verdict += f", severity {decision.severity}"
    lines.append(verdict)
    if decision.why:
        lines.append(f"why: {decision.why}")
    if decision.hipaa_ref:
        lines.append(f"hipaa_ref: {decision.hipaa_ref}")
    return "\n".join(lines)
