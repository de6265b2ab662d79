"""The shipped fingerprint database (fingerprints/): structure, examples and vocabulary.

A stand-in for the engine's lint (``medmon fingerprint lint``) until it exists: it evaluates
rules with plain ``re.search`` semantics (AND over ``match``, OR over ``any``, ``not``) and
checks that every example fires, every counter-example does not, every placeholder in ``set``
resolves, and every vendor/device_class/os_family literal is in ``vocabulary.yaml``.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FINGERPRINTS = ROOT / "fingerprints"
RULE_DIRS = ("dicom", "hl7", "oui", "os", "it")
SET_FIELDS = {"vendor", "model", "device_class", "os", "os_family", "software_version", "hostname"}
RULE_KEYS = {
    "id",
    "rev",
    "description",
    "references",
    "match",
    "any",
    "not",
    "set",
    "confidence",
    "generic",
    "examples",
    "counter_examples",
    "requires_peer",
}
LIFECYCLE_FIELDS = {"os", "os_family", "vendor", "model", "software_version", "device_class"}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
Signals = dict[str, Any]


def _values(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _match_map(conds: dict[str, str], signals: Signals, groups: dict[str, str]) -> bool:
    """AND of ``re.search`` over the signals; a multi-valued signal matches if any value does."""
    for kind, pattern in conds.items():
        if kind not in signals:
            return False
        for value in _values(signals[kind]):
            m = re.search(pattern, value)
            if m:
                groups.update({k: v for k, v in m.groupdict().items() if v is not None})
                break
        else:
            return False
    return True


def fires(rule: dict[str, Any], signals: Signals) -> dict[str, str] | None:
    """The named groups if ``rule`` fires on ``signals``, else ``None``."""
    groups: dict[str, str] = {}
    if "match" in rule and not _match_map(rule["match"], signals, groups):
        return None
    if "any" in rule and not any(_match_map(alt, signals, groups) for alt in rule["any"]):
        return None
    if "not" in rule and _match_map(rule["not"], signals, {}):
        return None
    return groups


def _rule_files() -> list[Path]:
    return sorted(p for d in RULE_DIRS for p in (FINGERPRINTS / d).glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


VOCAB = _load(FINGERPRINTS / "vocabulary.yaml")
RULES = [(path, rule) for path in _rule_files() for rule in _load(path).get("rules", [])]


def _rid(item: tuple[Path, dict[str, Any]]) -> str:
    return str(item[1].get("id"))


def test_vocabulary_shape() -> None:
    vendors = VOCAB["vendors"]
    assert len(vendors) == len(set(vendors))
    classes = VOCAB["device_classes"]
    required = [
        "ct",
        "mr",
        "us",
        "xr",
        "cr",
        "dx",
        "mg",
        "nm",
        "pt",
        "xa",
        "rf",
        "endoscopy",
        "ophthalmic",
        "dental",
        "modality-other",
        "pacs",
        "vna",
        "dicom-router",
        "dicom-workstation",
        "ris",
        "ehr",
        "interface-engine",
        "lis",
        "lab-analyzer",
        "patient-monitor",
        "central-station",
        "infusion-pump",
        "ventilator",
        "anesthesia",
        "imaging-printer",
        "printer",
        "workstation",
        "server",
        "network-device",
        "iot-other",
        "phone",
        "medical-other",
    ]
    assert set(required) <= set(classes)
    for name, spec in classes.items():
        assert set(spec) == {"label", "regulated", "category"}, name
        assert isinstance(spec["regulated"], bool), name
        assert spec["category"] in {"imaging", "clinical", "lab", "it", "network", "iot"}, name
    assert VOCAB["os_families"] == [
        "windows",
        "linux",
        "macos",
        "ios",
        "android",
        "unix",
        "vxworks",
        "qnx",
        "rtos",
        "embedded",
    ]


def test_every_file_has_meta_and_rules() -> None:
    files = _rule_files()
    assert len(files) >= 10
    for path in files:
        data = _load(path)
        assert set(data) == {"meta", "rules"}, path
        assert data["meta"].get("title") and data["meta"].get("maintainer"), path
        assert data["rules"], path


def test_rule_ids_unique() -> None:
    ids = [rule["id"] for _, rule in RULES]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes
    assert 150 <= len(ids) <= 600


@pytest.mark.parametrize(("path", "rule"), RULES, ids=[_rid(r) for r in RULES])
def test_rule(path: Path, rule: dict[str, Any]) -> None:
    where = f"{path.relative_to(ROOT)}: rule {rule.get('id')}"
    assert set(rule) <= RULE_KEYS, f"{where}: unknown keys {set(rule) - RULE_KEYS}"
    assert ID_RE.match(rule["id"]), where
    assert isinstance(rule["rev"], int) and rule["rev"] >= 1, where
    assert isinstance(rule["description"], str) and rule["description"].strip(), where
    refs = rule["references"]
    assert isinstance(refs, list) and refs and all(isinstance(r, str) and r for r in refs), where
    assert "match" in rule or "any" in rule, where
    for conds in [rule.get("match", {}), rule.get("not", {}), *rule.get("any", [])]:
        assert isinstance(conds, dict) and all(isinstance(v, str) for v in conds.values()), where
        for pattern in conds.values():
            re.compile(pattern)
    assert 0 < rule["confidence"] <= 1, where
    if rule.get("generic"):
        assert rule["generic"] is True, where
    sets = rule["set"]
    assert sets and set(sets) <= SET_FIELDS, f"{where}: set fields {set(sets) - SET_FIELDS}"
    for field, vocab_key in (
        ("vendor", "vendors"),
        ("device_class", "device_classes"),
        ("os_family", "os_families"),
    ):
        value = sets.get(field)
        if value is not None and "{" not in str(value):
            assert value in VOCAB[vocab_key], f"{where}: {field} {value!r} not in vocabulary"
    assert rule["examples"], where
    for example in rule["examples"]:
        groups = fires(rule, example)
        assert groups is not None, f"{where}: example does not fire: {example}"
        for value in sets.values():
            for _, name, _, _ in string.Formatter().parse(str(value)):
                if name is not None:
                    assert name in groups or name in example, (
                        f"{where}: placeholder {{{name}}} unresolved for {example}"
                    )
    for counter in rule.get("counter_examples", []):
        assert fires(rule, counter) is None, f"{where}: counter-example fires: {counter}"


def _lifecycle_entries() -> list[tuple[Path, dict[str, Any]]]:
    out: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted((FINGERPRINTS / "lifecycle").glob("*.yaml")):
        data = _load(path)
        assert set(data) == {"meta", "entries"} and data["meta"].get("title"), path
        out.extend((path, entry) for entry in data["entries"])
    return out


def test_lifecycle_entries() -> None:
    entries = _lifecycle_entries()
    assert len(entries) >= 30
    ids = [e["id"] for _, e in entries]
    assert len(ids) == len(set(ids))
    for path, entry in entries:
        where = f"{path.name}: {entry.get('id')}"
        assert set(entry) <= {
            "id",
            "match",
            "product",
            "end_of_support",
            "extended_end",
            "references",
            "examples",
        }, where
        assert entry["id"].startswith("lifecycle."), where
        assert entry["match"] and set(entry["match"]) <= LIFECYCLE_FIELDS, where
        for pattern in entry["match"].values():
            re.compile(pattern)
        assert isinstance(entry["end_of_support"], dt.date), where
        if "extended_end" in entry:
            assert isinstance(entry["extended_end"], dt.date), where
            assert entry["extended_end"] >= entry["end_of_support"], where
        assert entry["references"] and entry["product"], where
        for example in entry.get("examples", []):
            assert fires({"match": entry["match"]}, example) is not None, f"{where}: {example}"


def test_lifecycle_covers_os_rules() -> None:
    """Every Windows/Linux version an OS rule names as a literal has a lifecycle entry."""
    entries = [e for _, e in _lifecycle_entries()]
    named = {
        str(rule["set"]["os"])
        for _, rule in RULES
        if "os" in rule["set"] and "{" not in str(rule["set"]["os"])
    }
    missing = [
        os_name
        for os_name in sorted(named)
        if re.match(r"^(Windows|Debian|Ubuntu|CentOS|Red Hat)", os_name)
        and not any(fires({"match": e["match"]}, {"os": os_name}) is not None for e in entries)
    ]
    assert not missing
