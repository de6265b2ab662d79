"""``medmon policy suggest``: a least-privilege policy from what the register saw.

The baseline is every conversation between two devices (broadcast, multicast and unspecified
addresses are no conversations). Zones are the /24 (IPv4) or /64 (IPv6) subnets of the site's
devices, named after the device classes they hold when one class dominates (``imaging`` style
names are the engineer's to choose: the comment lists what each zone holds), plus ``internet``
for every public address. Services are the detected applications, and ``tcp-PORT`` /
``udp-PORT`` where none was detected. Every observed (client zone, server zone, service) is one
allow rule; everything else is denied by the defaults. So a suggested policy, adopted as is,
finds no violation in the traffic it came from; a person then removes what should not be
there, merges zones and gives them names.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from monitor.fingerprint.identity import is_device_ip

INTERNET = "internet"


def _is_site(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return a.is_private or a.is_link_local


def _subnet(ip: str) -> str:
    a = ipaddress.ip_address(ip)
    prefix = 24 if a.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def suggest(
    services: Iterable[Mapping[str, Any]],
    assets: Mapping[str, Mapping[str, Any]],
    *,
    source: str = "the register",
) -> str:
    """The suggested policy as commented YAML text.

    ``services``: conversations grouped by (client_ip, server_ip, proto, server_port, app)
    with ``flows``; ``assets``: devices by address (``device_class``, ``vendor``, ``hostname``)."""
    convs = [
        s
        for s in services
        if is_device_ip(s["client_ip"])
        and is_device_ip(s["server_ip"])
        and s["proto"] in ("tcp", "udp")  # what the rules check (findings.py)
    ]
    devices: dict[str, set[str]] = defaultdict(set)
    for s in convs:
        for ip in (s["client_ip"], s["server_ip"]):
            if _is_site(ip):
                devices[_subnet(ip)].add(ip)
    # A zone per subnet, named after its main device class (or its address).
    zone_of_subnet: dict[str, str] = {}
    used: set[str] = {INTERNET}
    for net in sorted(devices):
        classes = Counter(
            (assets.get(ip) or {}).get("device_class") or "unidentified" for ip in devices[net]
        )
        main, n = classes.most_common(1)[0]
        named = main != "unidentified" and n * 2 > len(devices[net])
        base = f"{_slug(main) if named else 'net'}-{_slug(net.split('/')[0])}"
        name = base
        while name in used:
            name += "-x"
        used.add(name)
        zone_of_subnet[net] = name

    def zone(ip: str) -> str:
        return zone_of_subnet[_subnet(ip)] if _is_site(ip) else INTERNET

    services_used: dict[str, dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], int] = Counter()
    for s in convs:
        proto, port, app = s["proto"], s["server_port"], s.get("app")
        name = _slug(app) if app else f"{proto}-{port}"
        svc = services_used.setdefault(name, {"app": app, "tcp": set(), "udp": set()})
        if proto in ("tcp", "udp") and port is not None:
            svc[proto].add(int(port))
        rules[(zone(s["client_ip"]), zone(s["server_ip"]), name)] += int(s.get("flows") or 1)

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"# Suggested by `medmon policy suggest` from {source} on {now}.",
        "# A least-privilege start: every conversation seen is allowed, nothing else is.",
        "# Adopt it as is and medmon finds no violation in this traffic; then remove what",
        "# should not be there, merge and rename the zones, and check it with",
        "# `medmon policy lint FILE`.",
        "version: 1",
        "",
        "zones:",
    ]
    for net, name in sorted(zone_of_subnet.items(), key=lambda kv: kv[1]):
        held = Counter(
            (assets.get(ip) or {}).get("device_class") or "unidentified" for ip in devices[net]
        )
        ranked = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
        what = ", ".join(f"{n} {c}" for c, n in ranked)
        out.append(f"  {name}:  # {len(devices[net])} devices: {what}")
        out.append(f"    cidrs: [{net}]")
    if any(not _is_site(ip) for s in convs for ip in (s["client_ip"], s["server_ip"])):
        out.append(f"  {INTERNET}:")
        out.append("    external: true")
    out += ["", "services:"]
    for name in sorted(services_used):
        svc = services_used[name]
        parts = []
        if svc["app"]:
            parts.append(f"app: {svc['app']}")
        for proto in ("tcp", "udp"):
            if svc[proto]:
                parts.append(f"{proto}: [{', '.join(str(p) for p in sorted(svc[proto]))}]")
        out.append(f"  {name}: {{{', '.join(parts)}}}")
    out += ["", "rules:"]
    for (client, server, service), flows in sorted(rules.items()):
        rid = f"allow-{client}-to-{server}-{service}"
        out.append(f"  - id: {rid}  # {flows} flows seen")
        out.append(f"    allow: {client} -> {server}")
        out.append(f"    service: {service}")
    out += [
        "",
        "default:",
        "  same_zone: deny",
        "  cross_zone: deny",
        "  severity: medium",
        "  why: not in the baseline this policy was suggested from",
        '  hipaa_ref: "164.312(a)(1)"',
        "",
    ]
    return "\n".join(out)
