"""The shipped fingerprint database (fingerprints/): it lints clean with the engine's own lint
(every rule's examples fire, no counter-example does, every value is in the vocabulary), and
it covers what the issue asks for."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.fingerprint.rules import RuleSet, lint, load_rules
from monitor.resources import data_dir

FINGERPRINTS = data_dir("fingerprints")


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return load_rules([FINGERPRINTS])


def test_the_shipped_database_lints_clean() -> None:
    assert lint([FINGERPRINTS]) == []
    result = CliRunner().invoke(cli, ["fingerprint", "lint"])
    assert (result.exit_code, result.output) == (0, "")


def test_every_family_is_there(shipped: RuleSet) -> None:
    families = Counter(r.id.split(".")[0] for r in shipped.rules)
    assert families["dicom"] >= 80 and families["hl7"] >= 40
    assert families["oui"] >= 100 and families["os"] >= 100
    ids = {r.id for r in shipped.rules}
    assert len(ids) == len(shipped.rules)
    assert all(r.references and r.examples for r in shipped.rules)


def test_vocabulary_has_the_device_classes_of_a_hospital(shipped: RuleSet) -> None:
    classes = shipped.vocabulary.device_classes
    for name in ("ct", "mr", "us", "cr", "dx", "mg", "nm", "pt", "xa", "pacs", "ris", "ehr",
                 "interface-engine", "lis", "lab-analyzer", "patient-monitor", "infusion-pump",
                 "ventilator", "workstation", "server", "printer", "network-device"):  # fmt: skip
        assert name in classes, name
    assert classes["ct"].regulated and classes["infusion-pump"].regulated
    assert not classes["workstation"].regulated and not classes["printer"].regulated
    assert {"windows", "linux", "macos", "vxworks", "qnx"} <= set(shipped.vocabulary.os_families)


def test_lifecycle_dates_are_consistent(shipped: RuleSet) -> None:
    entries = shipped.lifecycle
    assert len(entries) >= 30
    for e in entries:
        assert e.id.startswith("lifecycle.") and e.references, e.id
        assert isinstance(e.end_of_support, dt.date), e.id
        if e.extended_end is not None:
            assert e.extended_end >= e.end_of_support, e.id
    windows_xp = next(e for e in entries if e.id == "lifecycle.windows-xp")
    assert windows_xp.end_of_support == dt.date(2014, 4, 8)
    windows_7 = next(e for e in entries if e.id == "lifecycle.windows-7")
    assert windows_7.end_of_support == dt.date(2020, 1, 14)


def test_every_os_a_rule_names_has_lifecycle_data(shipped: RuleSet) -> None:
    """Every Windows/Linux release an OS rule names as a literal has an end-of-support entry,
    so that patchability is decided for it, not left unknown."""
    named = {
        value
        for r in shipped.rules
        for field, value in r.sets
        if field == "os" and "{" not in value
    }
    missing = [
        name
        for name in sorted(named)
        if re.match(r"^(Windows|Debian|Ubuntu|CentOS|Red Hat)", name)
        and not any(
            all(regex.search(name) for field, _p, regex in e.match if field == "os")
            and any(field == "os" for field, _p, _r in e.match)
            for e in shipped.lifecycle
        )
    ]
    assert not missing
