"""Patchability from lifecycle data: is the device's OS or software still supported?

Lifecycle files (``<dir>/lifecycle/*.yaml``, loaded and linted by
:mod:`monitor.fingerprint.rules`) list products with their vendor end-of-support date. An entry
matches an asset when each of its ``match`` regexes finds its field (``re.search``); the most
specific entry wins (most match keys, then site over shipped, then file order).

The answer is three-valued [ARCHITECTURE ``assets.patchable``]: False when support has ended or
the device class is regulated (only the manufacturer may patch a medical device, FDA
premarket cybersecurity guidance), True when the product is supported, None when nothing is
known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import NamedTuple

from monitor.fingerprint.rules import LifecycleEntry, Vocabulary


class Patchability(NamedTuple):
    """``(patchable, reason, lifecycle entry id)``."""

    patchable: bool | None
    reason: str
    entry_id: str | None


def find_entry(
    fields: Mapping[str, str | None], entries: Sequence[LifecycleEntry]
) -> LifecycleEntry | None:
    """The most specific lifecycle entry whose every ``match`` regex finds its field."""
    best: LifecycleEntry | None = None
    best_rank: tuple[int, int] = (0, 0)
    for entry in entries:
        ok = True
        for name, _pattern, regex in entry.match:
            value = fields.get(name)
            if not value or regex.search(value) is None:
                ok = False
                break
        if not ok:
            continue
        rank = (len(entry.match), 1 if entry.site else 0)
        if best is None or rank > best_rank:
            best, best_rank = entry, rank
    return best


def _support(entry: LifecycleEntry, as_of: date) -> tuple[bool, str]:
    """Whether the entry's product is past end of support, and the sentence saying so."""
    end = entry.end_of_support
    if as_of > end:
        reason = f"{entry.product}: vendor support ended {end.isoformat()}"
        if entry.extended_end is not None:
            verb = "ended" if as_of > entry.extended_end else "available until"
            reason += f" (extended security updates {verb} {entry.extended_end.isoformat()})"
        return True, reason
    return False, f"{entry.product}: supported until {end.isoformat()}"


def patchability(
    fields: Mapping[str, str | None],
    as_of: date,
    vocabulary: Vocabulary,
    entries: Sequence[LifecycleEntry],
) -> Patchability:
    """Can this asset be patched, as of ``as_of``, and why.

    ``fields`` are the asset's fields (``os``, ``os_family``, ``vendor``, ``model``,
    ``software_version``, ``device_class``). Past end of support: False, "Windows XP: vendor
    support ended 2014-04-08" (extended security updates are mentioned, not counted). Supported:
    True, unless the device class is regulated (then False: vendor-managed). No entry: False for
    a regulated class, else None, "unknown: no lifecycle data for ...".
    """
    device_class = fields.get("device_class")
    klass = vocabulary.device_classes.get(device_class) if device_class else None
    regulated = klass is not None and klass.regulated
    vendor_managed = (
        f"vendor-managed regulated device ({klass.label}): only the manufacturer may patch it"
        if klass is not None
        else ""
    )
    entry = find_entry(fields, entries)
    if entry is None:
        if regulated:
            return Patchability(False, vendor_managed, None)
        os_name = fields.get("os") or "unidentified OS"
        return Patchability(None, f"unknown: no lifecycle data for {os_name}", None)
    ended, reason = _support(entry, as_of)
    if ended:
        return Patchability(False, reason, entry.id)
    if regulated:
        is_os = any(name in ("os", "os_family") for name, _, _ in entry.match)
        what = f"OS {entry.product}" if is_os else entry.product
        until = entry.end_of_support.isoformat()
        return Patchability(False, f"{vendor_managed}; {what} supported until {until}", entry.id)
    return Patchability(True, reason, entry.id)
