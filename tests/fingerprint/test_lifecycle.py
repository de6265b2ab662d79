"""Patchability from lifecycle entries and the device-class vocabulary."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from monitor.fingerprint.lifecycle import Patchability, find_entry, patchability
from monitor.fingerprint.rules import DeviceClass, LifecycleEntry, Vocabulary

VOCAB = Vocabulary(
    vendors={"Microsoft", "GE Healthcare"},
    device_classes={
        "ct": DeviceClass("ct", "CT scanner", True, "imaging"),
        "workstation": DeviceClass("workstation", "Workstation", False, "it"),
    },
    os_families={"windows"},
)


def entry(
    eid: str,
    match: dict[str, str],
    end: str,
    product: str,
    extended: str | None = None,
    site: bool = False,
) -> LifecycleEntry:
    return LifecycleEntry(
        id=eid,
        match=tuple((k, v, re.compile(v)) for k, v in match.items()),
        end_of_support=date.fromisoformat(end),
        extended_end=date.fromisoformat(extended) if extended else None,
        product=product,
        references=("test",),
        path=Path("lifecycle/os.yaml"),
        line=1,
        site=site,
    )


ENTRIES = [
    entry("lifecycle.windows-xp", {"os": "^Windows XP"}, "2014-04-08", "Windows XP"),
    entry("lifecycle.windows-7", {"os": "^Windows 7"}, "2020-01-14", "Windows 7", "2023-01-10"),
    entry("lifecycle.windows-10", {"os": "^Windows 10"}, "2025-10-14", "Windows 10"),
    entry(
        "lifecycle.ge-ct-xp",
        {"os": "^Windows XP", "vendor": "^GE Healthcare$"},
        "2016-01-01",
        "GE CT console on Windows XP",
    ),
    entry("lifecycle.pacs-7", {"model": "^PACS 7"}, "2030-01-01", "Acme PACS 7"),
]


def check(fields: dict[str, str], as_of: str = "2024-06-01") -> Patchability:
    return patchability(fields, date.fromisoformat(as_of), VOCAB, ENTRIES)


def test_past_end_of_support() -> None:
    assert check({"os": "Windows XP Professional"}) == (
        False,
        "Windows XP: vendor support ended 2014-04-08",
        "lifecycle.windows-xp",
    )


def test_extended_security_updates_are_mentioned_not_counted() -> None:
    assert check({"os": "Windows 7"}, "2021-06-01") == (
        False,
        "Windows 7: vendor support ended 2020-01-14 (extended security updates available "
        "until 2023-01-10)",
        "lifecycle.windows-7",
    )
    assert check({"os": "Windows 7"}).reason == (
        "Windows 7: vendor support ended 2020-01-14 (extended security updates ended 2023-01-10)"
    )


def test_supported() -> None:
    assert check({"os": "Windows 10", "device_class": "workstation"}) == (
        True,
        "Windows 10: supported until 2025-10-14",
        "lifecycle.windows-10",
    )


def test_last_day_of_support_is_supported() -> None:
    assert check({"os": "Windows 10"}, "2025-10-14").patchable is True
    assert check({"os": "Windows 10"}, "2025-10-15").reason == (
        "Windows 10: vendor support ended 2025-10-14"
    )


def test_regulated_device_is_vendor_managed() -> None:
    assert check({"os": "Windows 10", "device_class": "ct"}) == (
        False,
        "vendor-managed regulated device (CT scanner): only the manufacturer may patch it; "
        "OS Windows 10 supported until 2025-10-14",
        "lifecycle.windows-10",
    )


def test_regulated_device_software_entry_is_not_called_os() -> None:
    assert check({"model": "PACS 7.2", "device_class": "ct"}).reason == (
        "vendor-managed regulated device (CT scanner): only the manufacturer may patch it; "
        "Acme PACS 7 supported until 2030-01-01"
    )


def test_regulated_device_past_support_says_support_ended() -> None:
    assert check({"os": "Windows 7", "device_class": "ct"}, "2021-01-01") == (
        False,
        "Windows 7: vendor support ended 2020-01-14 (extended security updates available "
        "until 2023-01-10)",
        "lifecycle.windows-7",
    )


def test_regulated_device_without_lifecycle_data() -> None:
    assert check({"os": "VxWorks 6.9", "device_class": "ct"}) == (
        False,
        "vendor-managed regulated device (CT scanner): only the manufacturer may patch it",
        None,
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"os": "VxWorks 6.9"}, "unknown: no lifecycle data for VxWorks 6.9"),
        ({"vendor": "Microsoft"}, "unknown: no lifecycle data for unidentified OS"),
        ({"device_class": "toaster"}, "unknown: no lifecycle data for unidentified OS"),
        ({}, "unknown: no lifecycle data for unidentified OS"),
    ],
)
def test_unknown(fields: dict[str, str], reason: str) -> None:
    assert check(fields) == (None, reason, None)


def test_most_specific_entry_wins() -> None:
    fields = {"os": "Windows XP Embedded", "vendor": "GE Healthcare"}
    assert check(fields) == (
        False,
        "GE CT console on Windows XP: vendor support ended 2016-01-01",
        "lifecycle.ge-ct-xp",
    )


def test_site_entry_wins_a_tie_then_file_order() -> None:
    site = entry(
        "site.xp-contract", {"os": "^Windows XP"}, "2030-01-01", "Windows XP (contract)", site=True
    )
    later = entry("lifecycle.xp-dup", {"os": "XP"}, "2015-01-01", "XP again")
    fields = {"os": "Windows XP"}
    assert find_entry(fields, [*ENTRIES, later]) is ENTRIES[0]
    assert find_entry(fields, [*ENTRIES, later, site]) is site
    assert patchability(fields, date(2024, 6, 1), VOCAB, [*ENTRIES, site]) == (
        True,
        "Windows XP (contract): supported until 2030-01-01",
        "site.xp-contract",
    )
