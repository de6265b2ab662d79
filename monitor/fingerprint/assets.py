"""From a device's signals to its ``assets`` row: the engine's verdict plus a host name.

:func:`fingerprinter` adapts :class:`~monitor.fingerprint.engine.Engine` to the register's
inventory update (:func:`monitor.register.inventory.update_inventory`). When no rule names
the host, the name a device gives itself is used, in the order of
:data:`HOSTNAME_SIGNALS`, with that signal as its evidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from monitor.fingerprint.engine import Device, Engine, Fingerprint, Signal
from monitor.fingerprint.rules import RuleSet

#: Signals a device names itself with, most trusted first, and how to clean each.
HOSTNAME_SIGNALS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("dhcp.hostname", re.compile(r"^(.+)$")),
    ("dhcp.fqdn", re.compile(r"^(.+?)\.?$")),
    ("netbios.name", re.compile(r"^(.+?)\s*<[0-9a-fA-F]{2}>$")),
    ("ntlm.hostname", re.compile(r"^(.+)$")),
    ("mdns.name", re.compile(r"^(.+?)(?:\.local)?\.?$")),
    ("snmp.sys_name", re.compile(r"^(.+)$")),
    ("dicom.station_name", re.compile(r"^(.+)$")),
)

#: (kind, value, first_seen, last_seen, source), as the register keeps them.
SignalTuple = tuple[str, str, datetime | None, datetime | None, str]


def device(key: str, ip: str | None, mac: str | None, signals: Sequence[SignalTuple]) -> Device:
    """An engine :class:`Device` from the register's signal tuples."""
    return Device(
        key=key,
        ip=ip,
        mac=mac,
        signals=[Signal(k, v, first, last, source) for k, v, first, last, source in signals],
    )


def hostname_from_signals(dev: Device) -> tuple[str, str, str] | None:
    """``(hostname, kind, value)`` from the first naming signal present, or None."""
    values = dev.values()
    for kind, pattern in HOSTNAME_SIGNALS:
        for value in values.get(kind, ()):
            m = pattern.match(value.strip())
            if m and m.group(1).strip():
                return m.group(1).strip(), kind, value
    return None


def asset_fields(dev: Device, fp: Fingerprint) -> dict[str, Any]:
    """The asset columns the engine decides, with the evidence as JSON."""
    fields: dict[str, Any] = dict(fp.asset_fields())
    evidence = fp.evidence()
    if not fields.get("hostname"):
        named = hostname_from_signals(dev)
        if named is not None:
            fields["hostname"] = named[0]
            evidence["hostname"] = {
                "value": named[0],
                "rule": f"signal:{named[1]}",
                "signals": [[named[1], named[2]]],
            }
    fields["patchable"] = fp.patchable
    fields["patchable_reason"] = fp.patchable_reason
    fields["confidence"] = round(fp.confidence, 3)
    fields["evidence"] = json.dumps(evidence, separators=(",", ":"), ensure_ascii=False)
    return fields


def fingerprinter(
    engine: Engine, as_of: date
) -> Callable[[str, str | None, str | None, list[tuple[Any, ...]]], dict[str, Any]]:
    """The ``fingerprint`` callable of :func:`monitor.register.inventory.update_inventory`.

    The verdict depends only on the device's signal kinds and values, in order (not on its
    address, nor on when each signal was seen), and a network has many devices of one make
    that say the same things (a fleet of workstations, a ward of pumps): each distinct list
    of signals is fingerprinted once (on the benchmark's 4,000 hosts, 264 times)."""
    verdicts: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    def run(asset_id: str, ip: str | None, mac: str | None, signals: list[Any]) -> dict[str, Any]:
        key = tuple([(s[0], s[1]) for s in signals])
        fields = verdicts.get(key)
        if fields is None:
            dev = device(asset_id, ip, mac, signals)
            fields = verdicts[key] = asset_fields(dev, engine.fingerprint(dev, as_of))
        return dict(fields)

    return run


def signal_kinds(rules: RuleSet) -> frozenset[str]:
    """Every signal kind the rules or the host name fallback look at: the rest of a device's
    signals (every DNS name it asked for...) need not be read to fingerprint it."""
    kinds = {kind for kind, _pattern in HOSTNAME_SIGNALS}
    for rule in rules.rules:
        kinds.update(c.kind for c in rule.match)
        kinds.update(c.kind for c in rule.not_)
        kinds.update(c.kind for branch in rule.any_ for c in branch)
    return frozenset(kinds)
