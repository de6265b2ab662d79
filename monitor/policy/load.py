"""Policy files: load, validate and lint them (STYLE S7) [Suricata address groups, sid,
classification.config].

Every problem is one line, ``path:LINE: message`` (``path:LINE: rule ID: message`` for a
rule), so an editor can jump to it. ``policies/README.md`` documents the format and
``policies/schema.json`` is its JSON Schema; the key sets below are the same (a test checks).

Besides the schema, lint reports: an unknown zone, group or service in a rule, an unknown
device class (``fingerprints/vocabulary.yaml``), a bad CIDR, CIDRs of two zones that overlap
(first match wins, so the later zone silently loses those addresses), duplicate rule ids, deny
rules without ``why`` or ``hipaa_ref``, and rules no flow can reach because an earlier rule
with the same or a wider scope already decides every flow they match.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from monitor.policy.model import (
    ACTIONS,
    ANY,
    DEFAULT_SEVERITY,
    RESERVED,
    SERVICE_KEYS_DOC,
    SEVERITIES,
    SEVERITY_CHECKS,
    TLS_VERSIONS,
    UNZONED,
    Checks,
    Defaults,
    Group,
    Policy,
    Rule,
    Service,
    Zone,
)
from monitor.yamlfile import Map, Seq, line_of, read

#: Keys of a policy file, and the required ones.
POLICY_KEYS: frozenset[str] = frozenset(
    {"version", "description", "zones", "groups", "services", "rules", "default", "checks"}
)
POLICY_REQUIRED: frozenset[str] = frozenset({"version", "zones", "rules", "default"})
#: Keys of one zone.
ZONE_KEYS: frozenset[str] = frozenset(
    {"cidrs", "vlans", "device_classes", "assets", "external", "description"}
)
#: Keys of one service.
SERVICE_KEYS: frozenset[str] = frozenset(SERVICE_KEYS_DOC)
#: Keys of one rule, and the required one (plus exactly one of allow / deny).
RULE_KEYS: frozenset[str] = frozenset(
    {"id", "allow", "deny", "service", "severity", "why", "hipaa_ref", "description"}
)
RULE_REQUIRED: frozenset[str] = frozenset({"id"})
#: Keys of ``default``, and the required ones.
DEFAULT_KEYS: frozenset[str] = frozenset(
    {"same_zone", "cross_zone", "severity", "why", "hipaa_ref"}
)
DEFAULT_REQUIRED: frozenset[str] = frozenset({"same_zone", "cross_zone"})
#: Keys of ``checks``.
CHECK_KEYS: frozenset[str] = frozenset(SEVERITY_CHECKS) | {
    "min_tls_version",
    "isolated_zones",
    "medical_zones",
}
#: The only format version so far; version 1 files keep working from now on.
VERSION = 1

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
EDGE_RE = re.compile(r"^\s*(\S+)\s*->\s*(\S+)\s*$")
PORT_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class PolicyError(ValueError):
    """A policy does not lint clean; ``str()`` is one ``path:LINE: ...`` line per problem."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors))


@lru_cache(maxsize=1)
def shipped_device_classes() -> frozenset[str]:
    """The device classes of the shipped ``fingerprints/vocabulary.yaml``."""
    from monitor.fingerprint.rules import load_rules
    from monitor.resources import data_dir

    return frozenset(load_rules([data_dir("fingerprints")]).vocabulary.device_classes)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Linter:
    """Reads one policy file, collects one-line errors, builds the :class:`Policy`."""

    def __init__(self, path: Path, device_classes: Collection[str] | None) -> None:
        self.path = path
        self._device_classes = device_classes
        self.errors: list[str] = []
        self.zones: list[Zone] = []
        self.groups: dict[str, Group] = {}
        self.services: dict[str, Service] = {}
        self.rules: list[Rule] = []

    @property
    def device_classes(self) -> Collection[str]:
        if self._device_classes is None:
            self._device_classes = shipped_device_classes()
        return self._device_classes

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.path}:{line}: {message}")

    def keys(self, obj: Map, allowed: frozenset[str], required: frozenset[str], what: str) -> bool:
        """Report unknown and missing keys; True when none is missing."""
        ok = True
        for key in obj:
            if key not in allowed:
                self.error(line_of(obj, key), f"unknown key {key!r} in {what}")
        for key in sorted(required - set(obj)):
            self.error(line_of(obj), f"missing required key {key!r} in {what}")
            ok = False
        return ok

    # -- the file ----------------------------------------------------------------------------

    def run(self) -> Policy | None:
        data, problems = read(self.path)
        for line, message in problems:
            self.error(line, message)
        if data is None:
            return None
        if not isinstance(data, Map):
            self.error(line_of(data), "a policy file is a mapping (version, zones, rules, ...)")
            return None
        self.keys(data, POLICY_KEYS, POLICY_REQUIRED, "policy")
        version = data.get("version")
        if "version" in data and (not _is_int(version) or version != VERSION):
            self.error(line_of(data, "version"), f"version must be {VERSION}, got {version!r}")
        self.zones_section(data.get("zones"), line_of(data, "zones"))
        self.groups_section(data.get("groups"), line_of(data, "groups"))
        self.services_section(data.get("services"), line_of(data, "services"))
        self.rules_section(data.get("rules"), line_of(data, "rules"))
        default = self.default_section(data.get("default"), line_of(data, "default"))
        checks = self.checks_section(data.get("checks"), line_of(data, "checks"))
        if self.errors or default is None:
            return None
        return Policy(
            version=VERSION,
            zones=tuple(self.zones),
            groups=tuple(self.groups.values()),
            services=tuple(self.services.values()),
            rules=tuple(self.rules),
            default=default,
            checks=checks,
            path=self.path,
        )

    # -- zones -------------------------------------------------------------------------------

    def _name(self, name: Any, line: int, what: str) -> bool:
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.error(line, f"{what} name {name!r} must match {NAME_RE.pattern}")
            return False
        if name in RESERVED:
            self.error(line, f"{what} name {name!r} is reserved")
            return False
        return True

    def zones_section(self, zones: Any, line: int) -> None:
        if zones is None:
            return
        if not isinstance(zones, Map):
            self.error(line, "'zones' must be a mapping of zone name -> definition")
            return
        networks: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network, int]] = []
        for name, spec in zones.items():
            zline = line_of(zones, name)
            if not self._name(name, zline, "zone"):
                continue
            what = f"zone {name!r}"
            if not isinstance(spec, Map):
                self.error(zline, f"{what} must be a mapping (cidrs, vlans, ...)")
                continue
            self.keys(spec, ZONE_KEYS, frozenset(), what)
            cidrs: list[str] = []
            own: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]] = []
            for i, item in self._list(spec, "cidrs", what):
                iline = line_of(spec["cidrs"], i)
                try:
                    net = ipaddress.ip_network(str(item), strict=True)
                except ValueError as exc:
                    self.error(iline, f"{what}: bad CIDR {item!r}: {exc}")
                    continue
                cidrs.append(str(net))
                own.append((net, iline))
            for net, iline in own:
                for other, onet, oline in networks:
                    if other != name and net.version == onet.version and net.overlaps(onet):
                        self.error(
                            iline,
                            f"{what}: {net} overlaps {onet} of zone {other!r} (line {oline}); "
                            f"first match wins, so zone {other!r} takes these addresses",
                        )
                        break
            networks.extend((name, net, iline) for net, iline in own)
            vlans: list[int] = []
            for i, item in self._list(spec, "vlans", what):
                if not _is_int(item) or not 0 <= item <= 4095:
                    self.error(line_of(spec["vlans"], i), f"{what}: VLAN {item!r} is not 0-4095")
                else:
                    vlans.append(item)
            classes: list[str] = []
            for i, item in self._list(spec, "device_classes", what):
                if not isinstance(item, str) or item not in self.device_classes:
                    self.error(
                        line_of(spec["device_classes"], i),
                        f"{what}: unknown device class {item!r} (see fingerprints/vocabulary.yaml)",
                    )
                else:
                    classes.append(item)
            assets: list[str] = []
            for i, item in self._list(spec, "assets", what):
                if not _text(item):
                    self.error(
                        line_of(spec["assets"], i),
                        f"{what}: an asset is an asset id, an IP address or a MAC, got {item!r}",
                    )
                else:
                    assets.append(str(item).strip().lower())
            external = spec.get("external", False)
            if not isinstance(external, bool):
                self.error(line_of(spec, "external"), f"{what}: 'external' must be true or false")
                external = False
            description = spec.get("description", "")
            if "description" in spec and not isinstance(description, str):
                self.error(line_of(spec, "description"), f"{what}: 'description' must be text")
            criteria = ("cidrs", "vlans", "device_classes", "assets")
            if not external and not any(spec.get(k) for k in criteria):
                self.error(
                    zline,
                    f"{what} matches nothing: give cidrs, vlans, device_classes, assets "
                    "or external: true",
                )
            self.zones.append(
                Zone(
                    name=name,
                    cidrs=tuple(cidrs),
                    vlans=tuple(vlans),
                    device_classes=tuple(classes),
                    assets=tuple(assets),
                    external=external,
                    description=description if isinstance(description, str) else "",
                    line=zline,
                )
            )

    def _list(self, spec: Map, key: str, what: str) -> list[tuple[int, Any]]:
        """The items of a list-valued key, with their index (an error if not a list)."""
        if key not in spec:
            return []
        value = spec[key]
        if not isinstance(value, Seq):
            self.error(line_of(spec, key), f"{what}: {key!r} must be a list")
            return []
        return list(enumerate(value))

    # -- groups ------------------------------------------------------------------------------

    def groups_section(self, groups: Any, line: int) -> None:
        if groups is None:
            return
        if not isinstance(groups, Map):
            self.error(line, "'groups' must be a mapping of group name -> list of zones")
            return
        zone_names = {z.name for z in self.zones}
        for name, members in groups.items():
            gline = line_of(groups, name)
            if not self._name(name, gline, "group"):
                continue
            what = f"group {name!r}"
            if name in zone_names:
                self.error(gline, f"{what}: a zone has this name already")
                continue
            if not isinstance(members, Seq) or not members:
                self.error(gline, f"{what} must be a non-empty list of zones")
                continue
            zones: list[str] = []
            for i, zone in enumerate(members):
                if zone not in zone_names:
                    self.error(line_of(members, i), f"{what}: unknown zone {zone!r}")
                elif zone not in zones:
                    zones.append(zone)
            self.groups[name] = Group(name=name, zones=tuple(zones), line=gline)

    # -- services ----------------------------------------------------------------------------

    def services_section(self, services: Any, line: int) -> None:
        if services is None:
            return
        if not isinstance(services, Map):
            self.error(line, "'services' must be a mapping of service name -> definition")
            return
        for name, spec in services.items():
            sline = line_of(services, name)
            if not self._name(name, sline, "service"):
                continue
            what = f"service {name!r}"
            if not isinstance(spec, Map):
                self.error(sline, f"{what} must be a mapping (app, tcp, udp)")
                continue
            self.keys(spec, SERVICE_KEYS, frozenset(), what)
            app = spec.get("app")
            if "app" in spec and not _text(app):
                self.error(line_of(spec, "app"), f"{what}: 'app' must be an application name")
                app = None
            ports: dict[str, list[tuple[int, int]]] = {"tcp": [], "udp": []}
            for proto, out in ports.items():
                for i, item in self._list(spec, proto, what):
                    got = _port_range(item)
                    if got is None:
                        self.error(
                            line_of(spec[proto], i),
                            f"{what}: {proto} port {item!r} is not 1-65535 or LOW-HIGH",
                        )
                    else:
                        out.append(got)
            if not any(k in spec for k in ("app", "tcp", "udp")):
                self.error(sline, f"{what} matches nothing: give app, tcp or udp")
            description = spec.get("description", "")
            self.services[name] = Service(
                name=name,
                app=str(app).strip().lower() if app else None,
                tcp=tuple(ports["tcp"]),
                udp=tuple(ports["udp"]),
                description=description if isinstance(description, str) else "",
                line=sline,
            )

    # -- rules -------------------------------------------------------------------------------

    def _end(self, name: str, line: int, rid: str) -> tuple[bool, frozenset[str] | None]:
        """The zones a rule end names (None: any); False when unknown (reported)."""
        if name == ANY:
            return True, None
        if name == UNZONED:
            return True, frozenset({UNZONED})
        if any(z.name == name for z in self.zones):
            return True, frozenset({name})
        if name in self.groups:
            return True, frozenset(self.groups[name].zones)
        self.error(line, f"rule {rid}: unknown zone or group {name!r}")
        return False, None

    def rules_section(self, rules: Any, line: int) -> None:
        if rules is None:
            return
        if not isinstance(rules, Seq):
            self.error(line, "'rules' must be a list of rules")
            return
        seen: dict[str, int] = {}
        for i, raw in enumerate(rules):
            rline = line_of(rules, i)
            if not isinstance(raw, Map):
                self.error(rline, "a rule must be a mapping (id, allow or deny, ...)")
                continue
            rid_raw = raw.get("id")
            rid = str(rid_raw) if rid_raw is not None else f"#{i + 1}"
            before = len(self.errors)
            self.keys(raw, RULE_KEYS, RULE_REQUIRED, f"rule {rid}")
            if "id" in raw:
                if not isinstance(rid_raw, str) or not ID_RE.match(rid_raw):
                    self.error(line_of(raw, "id"), f"rule {rid}: id must match {ID_RE.pattern}")
                elif rid in seen:
                    self.error(
                        line_of(raw, "id"),
                        f"rule {rid}: duplicate id (first at line {seen[rid]})",
                    )
                else:
                    seen[rid] = line_of(raw, "id")
            actions = [a for a in ACTIONS if a in raw]
            if len(actions) != 1:
                self.error(rline, f"rule {rid}: give exactly one of 'allow' or 'deny'")
                continue
            action = actions[0]
            edge = raw[action]
            m = EDGE_RE.match(edge) if isinstance(edge, str) else None
            source_zones: frozenset[str] | None = None
            dest_zones: frozenset[str] | None = None
            if m is None:
                self.error(
                    line_of(raw, action),
                    f"rule {rid}: '{action}' must read 'SOURCE -> DEST', got {edge!r}",
                )
                source = dest = ""
            else:
                source, dest = m.group(1), m.group(2)
                _ok, source_zones = self._end(source, line_of(raw, action), rid)
                _ok, dest_zones = self._end(dest, line_of(raw, action), rid)
            services: tuple[str, ...] | None = None
            if "service" in raw:
                value = raw["service"]
                names = [value] if isinstance(value, str) else value
                sl = line_of(raw, "service")
                if not isinstance(names, list) or not names:
                    self.error(sl, f"rule {rid}: 'service' must be a name or a list of names")
                else:
                    for j, svc in enumerate(names):
                        if svc not in self.services:
                            where = line_of(names, j, sl) if isinstance(names, Seq) else sl
                            self.error(where, f"rule {rid}: unknown service {svc!r}")
                    services = tuple(dict.fromkeys(str(s) for s in names))
            severity = raw.get("severity")
            if "severity" in raw:
                sl = line_of(raw, "severity")
                if action != "deny":
                    self.error(sl, f"rule {rid}: 'severity' is for deny rules")
                elif severity not in SEVERITIES:
                    self.error(
                        sl,
                        f"rule {rid}: severity {severity!r} is not one of " + ", ".join(SEVERITIES),
                    )
            for key in ("why", "hipaa_ref", "description"):
                if key in raw and not _text(raw[key]):
                    self.error(line_of(raw, key), f"rule {rid}: '{key}' must be non-empty text")
            if action == "deny":
                for key in ("why", "hipaa_ref"):
                    if key not in raw:
                        self.error(rline, f"rule {rid}: a deny rule needs '{key}'")
            if len(self.errors) != before:
                continue
            self.rules.append(
                Rule(
                    id=rid,
                    action=action,
                    source=source,
                    dest=dest,
                    source_zones=source_zones,
                    dest_zones=dest_zones,
                    services=services,
                    severity=(severity or DEFAULT_SEVERITY) if action == "deny" else None,
                    why=str(raw.get("why", "")).strip(),
                    hipaa_ref=str(raw.get("hipaa_ref", "")).strip(),
                    description=str(raw.get("description", "")).strip(),
                    line=rline,
                )
            )
        self.shadowed()

    def shadowed(self) -> None:
        """Report each rule an earlier rule (same or wider scope) decides entirely."""
        for j, rule in enumerate(self.rules):
            for earlier in self.rules[:j]:
                if covers(earlier, rule):
                    self.error(
                        rule.line,
                        f"rule {rule.id} is unreachable: rule {earlier.id} "
                        f"({self.path}:{earlier.line}) decides every flow it matches",
                    )
                    break

    # -- default and checks ------------------------------------------------------------------

    def default_section(self, default: Any, line: int) -> Defaults | None:
        if default is None:
            return None
        if not isinstance(default, Map):
            self.error(line, "'default' must be a mapping (same_zone, cross_zone, ...)")
            return None
        before = len(self.errors)
        self.keys(default, DEFAULT_KEYS, DEFAULT_REQUIRED, "default")
        for key in ("same_zone", "cross_zone"):
            if key in default and default[key] not in ACTIONS:
                self.error(
                    line_of(default, key),
                    f"default: {key} must be allow or deny, got {default[key]!r}",
                )
        severity = default.get("severity", DEFAULT_SEVERITY)
        if severity not in SEVERITIES:
            self.error(
                line_of(default, "severity"),
                f"default: severity {severity!r} is not one of " + ", ".join(SEVERITIES),
            )
        for key in ("why", "hipaa_ref"):
            if key in default and not _text(default[key]):
                self.error(line_of(default, key), f"default: '{key}' must be non-empty text")
        if "deny" in (default.get("same_zone"), default.get("cross_zone")):
            for key in ("why", "hipaa_ref"):
                if key not in default:
                    self.error(line_of(default), f"default: a default deny needs '{key}'")
        if len(self.errors) != before:
            return None
        return Defaults(
            same_zone=default["same_zone"],
            cross_zone=default["cross_zone"],
            severity=severity,
            why=str(default.get("why", "")).strip(),
            hipaa_ref=str(default.get("hipaa_ref", "")).strip(),
            line=line_of(default),
        )

    def checks_section(self, checks: Any, line: int) -> Checks:
        if checks is None:
            return Checks()
        if not isinstance(checks, Map):
            self.error(line, "'checks' must be a mapping of check -> setting")
            return Checks()
        self.keys(checks, CHECK_KEYS, frozenset(), "checks")
        severities: list[tuple[str, str]] = []
        for name in SEVERITY_CHECKS:
            if name not in checks:
                continue
            value = checks[name]
            if value is False or value == "off":
                continue
            if value not in SEVERITIES:
                self.error(
                    line_of(checks, name),
                    f"checks: {name} must be off or one of {', '.join(SEVERITIES)}, got {value!r}",
                )
                continue
            severities.append((name, value))
        tls = checks.get("min_tls_version", "1.2")
        tls_text = f"{tls:.1f}" if isinstance(tls, float) else str(tls)
        if tls_text not in TLS_VERSIONS:
            self.error(
                line_of(checks, "min_tls_version"),
                f"checks: min_tls_version must be one of {', '.join(TLS_VERSIONS)}, got {tls!r}",
            )
        zone_lists: dict[str, tuple[str, ...]] = {}
        for key in ("isolated_zones", "medical_zones"):
            names: list[str] = []
            for i, item in self._list(checks, key, "checks"):
                if any(z.name == item for z in self.zones):
                    names.append(item)
                elif item in self.groups:
                    names.extend(self.groups[item].zones)
                else:
                    self.error(
                        line_of(checks[key], i), f"checks: {key}: unknown zone or group {item!r}"
                    )
            zone_lists[key] = tuple(dict.fromkeys(names))
        return Checks(
            severities=tuple(severities),
            min_tls_version=tls_text if tls_text in TLS_VERSIONS else "1.2",
            isolated_zones=zone_lists["isolated_zones"],
            medical_zones=zone_lists["medical_zones"],
            line=line_of(checks),
        )


def _port_range(item: Any) -> tuple[int, int] | None:
    if _is_int(item):
        return (item, item) if 1 <= item <= 65535 else None
    if isinstance(item, str):
        m = PORT_RANGE_RE.match(item)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if 1 <= lo <= hi <= 65535:
                return lo, hi
    return None


def covers(earlier: Rule, later: Rule) -> bool:
    """Does ``earlier`` match every flow ``later`` matches (same or wider scope)?"""

    def wider(a: Collection[str] | None, b: Collection[str] | None) -> bool:
        return a is None or (b is not None and set(b) <= set(a))

    return (
        wider(earlier.source_zones, later.source_zones)
        and wider(earlier.dest_zones, later.dest_zones)
        and wider(earlier.services, later.services)
    )


def _lint(
    path: str | Path, device_classes: Collection[str] | None
) -> tuple[list[str], Policy | None]:
    linter = _Linter(Path(path), device_classes)
    policy = linter.run()
    return linter.errors, policy


def lint_policy(
    path: str | Path,
    flows: Iterable[Any] | None = None,
    *,
    device_classes: Collection[str] | None = None,
) -> list[str]:
    """Every problem in a policy file, one ``path:LINE: message`` line each.

    With ``flows`` (flow-like records: ``client_ip``, ``server_ip``, ``server_port``,
    ``proto``, ``app``, ``vlan``, as objects or mappings), also each rule that none of them
    reaches. ``device_classes`` defaults to the shipped fingerprint vocabulary.
    """
    errors, policy = _lint(path, device_classes)
    if policy is not None and flows is not None:
        from monitor.policy.check import decide

        flows = list(flows)
        reached = {decide(policy, f).rule_id for f in flows}
        for rule in policy.rules:
            if rule.id not in reached:
                errors.append(
                    f"{policy.path}:{rule.line}: rule {rule.id}: none of the {len(flows)} "
                    "flows given reaches it"
                )
    return errors


def load_policy(path: str | Path, *, device_classes: Collection[str] | None = None) -> Policy:
    """Load and validate a policy file. Raises :class:`PolicyError` (one line per problem)
    when :func:`lint_policy` finds anything."""
    errors, policy = _lint(path, device_classes)
    if errors or policy is None:
        raise PolicyError(errors or [f"{path}:1: not a policy"])
    return policy


def shipped_policy() -> Path:
    """The shipped ``policies/default.yaml``."""
    from monitor.resources import data_dir

    return data_dir("policies") / "default.yaml"
