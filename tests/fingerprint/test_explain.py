"""``medmon fingerprint explain``: the text, and the site rule skeleton that lints once filled."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from monitor.fingerprint.engine import Device, Engine, Signal
from monitor.fingerprint.explain import anchored, render, site_rule_skeleton, yaml_str
from monitor.fingerprint.rules import lint, load_rules

VOCABULARY = """\
vendors: [GE Healthcare]
device_classes:
  ct: {label: CT scanner, regulated: true, category: imaging}
os_families: [windows]
"""

RULES = """\
meta: {title: test}
rules:
  - id: dicom.ge.impl-uid
    rev: 2
    description: GE's DICOM UID root
    references: [GE conformance statement]
    match: {dicom.implementation_class_uid: '^1\\.2\\.840\\.113619\\.'}
    set: {vendor: GE Healthcare, device_class: ct}
    confidence: 0.8
    examples: [{dicom.implementation_class_uid: 1.2.840.113619.6.94}]
  - id: oui.ge
    rev: 1
    description: GE OUI
    references: [IEEE]
    match: {oui.vendor: '^GE '}
    set: {vendor: GE Healthcare}
    confidence: 0.5
    generic: true
    examples: [{oui.vendor: GE Medical}]
  - id: dicom.vendor-name
    rev: 1
    description: Manufacturer as sent
    references: [PS3.3]
    match: {dicom.manufacturer: '(?P<m>.+)'}
    set: {vendor: '{m}', model: '{dicom.model}'}
    any: [{dicom.model: '.'}]
    confidence: 0.3
    examples: [{dicom.manufacturer: x, dicom.model: y}]
  - id: os.xp
    rev: 1
    description: SMB native OS of XP
    references: [p0f]
    match: {smb.native_os: 'Windows 5\\.1'}
    set: {os: Windows XP, os_family: windows}
    confidence: 0.6
    examples: [{smb.native_os: Windows 5.1}]
"""

LIFECYCLE = """\
meta: {title: lc}
entries:
  - id: lifecycle.windows-xp
    match: {os: '^Windows XP'}
    end_of_support: 2014-04-08
    product: Windows XP
    references: [Microsoft]
"""

T1 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
T2 = datetime(2024, 5, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "fp"
    (root / "t").mkdir(parents=True)
    (root / "lifecycle").mkdir()
    (root / "vocabulary.yaml").write_text(VOCABULARY)
    (root / "t" / "rules.yaml").write_text(RULES)
    (root / "lifecycle" / "os.yaml").write_text(LIFECYCLE)
    return root


DEVICE = Device(
    "mac:00:00:0c:aa:bb:cc",
    "10.20.0.5",
    "00:00:0c:aa:bb:cc",
    [
        Signal("oui.vendor", "GE Medical", source="oui"),
        Signal(
            "dicom.implementation_class_uid", "1.2.840.113619.6.94", T1, T1, "dicom_associations"
        ),
        Signal(
            "dicom.implementation_class_uid", "1.2.840.113619.6.94", T2, T2, "dicom_associations"
        ),
        Signal("smb.native_os", "Windows 5.1", T1, T2, "observations"),
        Signal("smb.native_os", "Windows 2000 LAN Manager", T2, T2, "observations"),
        Signal("smb.native_os", "Windows 5.1", T2, T2, "observations"),
        Signal("dicom.manufacturer", "GEMS", T1, T1, "dicom_devices"),
    ],
)


def test_render(root: Path) -> None:
    rs = load_rules([root])
    fp = Engine(rs).fingerprint(DEVICE, date(2024, 6, 1))
    f = root / "t" / "rules.yaml"
    assert (
        render(DEVICE, fp, rs)
        == f"""\
device mac:00:00:0c:aa:bb:cc
  ip:  10.20.0.5
  mac: 00:00:0c:aa:bb:cc

signals (4 kinds, 5 values):
  dicom.implementation_class_uid
    '1.2.840.113619.6.94'  2024-05-01T08:00:00Z .. 2024-05-02T09:30:00Z  (dicom_associations)
  dicom.manufacturer
    'GEMS'  2024-05-01T08:00:00Z .. 2024-05-01T08:00:00Z  (dicom_devices)
  oui.vendor
    'GE Medical'  (oui)
  smb.native_os
    'Windows 5.1'  2024-05-01T08:00:00Z .. 2024-05-02T09:30:00Z  (observations)
    'Windows 2000 LAN Manager'  2024-05-02T09:30:00Z .. 2024-05-02T09:30:00Z  (observations)

rules fired (3):
  dicom.ge.impl-uid rev 2 (confidence 0.8)
    GE's DICOM UID root  [{f}:3]
    sets: vendor='GE Healthcare', device_class='ct'
    matched: dicom.implementation_class_uid = '1.2.840.113619.6.94'
  oui.ge rev 1 (confidence 0.5, generic)
    GE OUI  [{f}:11]
    sets: vendor='GE Healthcare'
    matched: oui.vendor = 'GE Medical'
  os.xp rev 1 (confidence 0.6)
    SMB native OS of XP  [{f}:29]
    sets: os='Windows XP', os_family='windows'
    matched: smb.native_os = 'Windows 5.1'

fields:
  vendor: 'GE Healthcare'
    by dicom.ge.impl-uid rev 2 (confidence 0.8, 1 key)
    lost: oui.ge -> 'GE Healthcare': generic rule, and a specific rule set this field
  model: not set (no rule that fired sets it)
  device_class: 'ct'
    by dicom.ge.impl-uid rev 2 (confidence 0.8, 1 key)
  os: 'Windows XP'
    by os.xp rev 1 (confidence 0.6, 1 key)
  os_family: 'windows'
    by os.xp rev 1 (confidence 0.6, 1 key)
  software_version: not set (no rule that fired sets it)
  hostname: not set (no rule that fired sets it)

patchable: no: Windows XP: vendor support ended 2014-04-08 [lifecycle lifecycle.windows-xp]
confidence: 0.7

site rule skeleton: paste under `rules:` in a file of your site directory, fill in
`set`, the description and references, keep the keys that identify the device, then
run `medmon fingerprint lint`:

  - id: site.change-me
    rev: 1
    description: CHANGE-ME what identifies this device (mac:00:00:0c:aa:bb:cc)
    references: ['CHANGE-ME: where and when it was observed']
    match:
      dicom.implementation_class_uid: '^1\\.2\\.840\\.113619\\.6\\.94$'
      dicom.manufacturer: '^GEMS$'
      oui.vendor: '^GE Medical$'
      smb.native_os: '^Windows 5\\.1$'
      # smb.native_os also seen: 'Windows 2000 LAN Manager'
    set: {{}}
      # vendor:
      # model:
      # device_class:
      # os:
      # os_family:
      # software_version:
      # hostname:
    confidence: 0.9
    examples:
      - dicom.implementation_class_uid: '1.2.840.113619.6.94'
        dicom.manufacturer: 'GEMS'
        oui.vendor: 'GE Medical'
        smb.native_os: 'Windows 5.1'
"""
    )


def test_render_flags_placeholder_vendor_and_unset_fields(root: Path) -> None:
    rs = load_rules([root])
    dev = Device("ip:10.0.0.9", "10.0.0.9", None, [Signal("dicom.manufacturer", "Acme")])
    fp = Engine(rs).fingerprint(dev, date(2024, 6, 1))
    text = render(dev, fp, rs)
    assert fp.value("vendor") is None  # the any-branch (dicom.model) is missing
    dev.signals.append(Signal("dicom.model", "Scan 9"))
    fp = Engine(rs).fingerprint(dev, date(2024, 6, 1))
    text = render(dev, fp, rs)
    assert (
        "  vendor: 'Acme'\n"
        "    by dicom.vendor-name rev 1 (confidence 0.3, 2 keys)\n"
        "    note: vendor 'Acme' came from a placeholder and is not in the vocabulary; add it to "
        "vocabulary.yaml or map it to a canonical name\n"
    ) in text
    assert "  model: 'Scan 9'\n" in text
    assert "patchable: unknown: unknown: no lifecycle data for unidentified OS\n" in text


def test_render_without_signals(root: Path) -> None:
    rs = load_rules([root])
    dev = Device("ip:10.0.0.9", "10.0.0.9", None, [])
    text = render(dev, Engine(rs).fingerprint(dev, date(2024, 6, 1)), rs)
    assert "signals: none\n" in text
    assert "rules fired: none\n" in text
    assert text.endswith("    examples:\n      - {}  # no signals: nothing to match yet\n")


def _site_file(skeleton: str, set_line: str | None) -> str:
    if set_line is not None:
        skeleton = skeleton.replace("    set: {}\n", f"    {set_line}\n")
    return "meta: {title: local}\nrules:\n" + skeleton


def test_skeleton_lints_clean_once_set_is_filled(root: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    path = site / "local.yaml"
    skeleton = site_rule_skeleton(DEVICE)
    path.write_text(_site_file(skeleton, None))
    assert lint([root, site]) == [
        f"{path}:13: rule site.change-me: 'set' must name at least one field"
    ]
    path.write_text(_site_file(skeleton, "set: {vendor: GE Healthcare, device_class: ct}"))
    assert lint([root, site]) == []
    rs = load_rules([root, site])
    fp = Engine(rs).fingerprint(DEVICE, date(2024, 6, 1))
    assert "site.change-me" in [h.rule_id for h in fp.fired]
    # the uncommented field lines work too
    path.write_text(
        _site_file(skeleton.replace("      # model:", "      model: Revolution"), "set:")
    )
    assert lint([root, site]) == []


AWKWARD = [
    "it's",
    'say "hi"',
    "C:\\Program Files\\x",
    "a: b # c",
    "  padded  ",
    "tab\there",
    "line1\nline2",
    "ünïcödé ✓",
    "[brackets]{braces}*+?^$|()",
    "- dash",
    "",
    "true",
    "0123",
]


@pytest.mark.parametrize("value", AWKWARD)
def test_skeleton_round_trips_awkward_values(value: str, root: Path, tmp_path: Path) -> None:
    dev = Device("d", None, None, [Signal("http.user_agent", value), Signal("tcp.syn_ttl", "64")])
    skeleton = site_rule_skeleton(dev)
    rule = yaml.safe_load(_site_file(skeleton, "set: {os: Something}"))["rules"][0]
    assert re.search(rule["match"]["http.user_agent"], value)
    assert rule["match"]["http.user_agent"] == anchored(value)
    assert rule["examples"] == [{"http.user_agent": value, "tcp.syn_ttl": "64"}]
    site = tmp_path / "site"
    site.mkdir()
    (site / "local.yaml").write_text(_site_file(skeleton, "set: {os: Something}"))
    assert lint([root, site]) == []


def test_yaml_str_and_anchored() -> None:
    assert yaml_str("it's") == "'it''s'"
    assert yaml_str("a\nb") == '"a\\nb"'
    assert anchored("Windows 5.1 (x)") == r"^Windows 5\.1 \(x\)$"


def test_skeleton_picks_the_most_frequent_value() -> None:
    dev = Device(
        "d",
        None,
        None,
        [Signal("dhcp.hostname", "a"), Signal("dhcp.hostname", "b"), Signal("dhcp.hostname", "b")],
    )
    skeleton = site_rule_skeleton(dev)
    assert "      dhcp.hostname: '^b$'\n      # dhcp.hostname also seen: 'a'\n" in skeleton
    assert "      - dhcp.hostname: 'b'\n" in skeleton


def test_skeleton_skips_kinds_a_rule_cannot_use() -> None:
    dev = Device("d", None, None, [Signal("Weird Kind", "x"), Signal("dhcp.hostname", "h")])
    skeleton = site_rule_skeleton(dev)
    assert "      # not usable in a rule (not a proto.attribute kind): Weird Kind\n" in skeleton
    assert "Weird Kind:" not in skeleton
