"""Policy files: loading, and one test per lint error (exact ``path:LINE: ...`` lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.policy import load as load_mod
from monitor.policy.load import PolicyError, lint_policy, load_policy
from monitor.policy.model import SEVERITY_CHECKS, UNZONED

ROOT = Path(__file__).resolve().parents[2]

#: A policy that lints clean; tests copy it and break one thing. Line numbers matter.
GOOD = """\
version: 1
zones:
  imaging: {cidrs: [10.20.0.0/24], vlans: [20]}
  pacs: {cidrs: [10.30.0.10/32]}
  clinical: {cidrs: [10.40.0.0/24], device_classes: [infusion-pump]}
  it: {cidrs: [10.10.0.0/16]}
  internet: {external: true}
groups:
  modalities: [imaging, clinical]
services:
  dicom: {app: dicom, tcp: [104, 11112]}
  https: {app: tls, tcp: [443]}
rules:
  - id: imaging-to-pacs
    allow: imaging -> pacs
    service: dicom
  - id: modalities-no-internet
    deny: modalities -> internet
    severity: high
    why: modalities must never reach the internet
    hipaa_ref: "164.312(e)(1)"
default: {same_zone: allow, cross_zone: deny, why: not allowed, hipaa_ref: "164.312(a)(1)"}
checks:
  cleartext_ephi_across_zones: high
  min_tls_version: "1.2"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def _lint(tmp_path: Path, text: str) -> list[str]:
    return lint_policy(_write(tmp_path, text))


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


def test_good_policy_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    assert lint_policy(path) == []
    policy = load_policy(path)
    assert [z.name for z in policy.zones] == ["imaging", "pacs", "clinical", "it", "internet"]
    assert policy.zone("imaging").vlans == (20,)  # type: ignore[union-attr]
    assert policy.groups[0].zones == ("imaging", "clinical")
    assert policy.service("dicom").tcp == ((104, 104), (11112, 11112))  # type: ignore[union-attr]
    deny = policy.rules[1]
    assert (deny.id, deny.action, deny.source, deny.dest) == (
        "modalities-no-internet",
        "deny",
        "modalities",
        "internet",
    )
    assert deny.source_zones == frozenset({"imaging", "clinical"})
    assert (deny.severity, deny.hipaa_ref, deny.line) == ("high", "164.312(e)(1)", 17)
    assert policy.rules[0].severity is None and policy.rules[0].services == ("dicom",)
    assert policy.default.cross_zone == "deny" and policy.default.severity == "medium"
    assert policy.checks.severity("cleartext_ephi_across_zones") == "high"
    assert policy.checks.severity("smbv1") is None
    assert policy.checks.min_tls_version == "1.2"


def test_load_raises_with_every_line(tmp_path: Path) -> None:
    text = _replace("severity: high", "severity: urgent").replace("version: 1", "version: 2")
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    assert str(exc.value).splitlines() == [
        f"{path}:1: version must be 1, got 2",
        f"{path}:19: rule modalities-no-internet: severity 'urgent' is not one of "
        "low, medium, high, critical",
    ]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("  pacs: {cidrs: [10.30.0.10/32]}", "  pacs: {cidrs: [10.30"))
    errors = lint_policy(path)
    assert len(errors) == 1 and errors[0].startswith(f"{path}:5: YAML syntax error: ")


def test_unknown_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _replace("    service: dicom\n", "    service: dicom\n    sevrity: low\n")
    )
    assert lint_policy(path) == [f"{path}:17: unknown key 'sevrity' in rule imaging-to-pacs"]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "zone: {}\n")
    assert lint_policy(path) == [f"{path}:26: unknown key 'zone' in policy"]


def test_missing_key(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("  - id: imaging-to-pacs\n    allow", "  - allow"))
    assert lint_policy(path) == [f"{path}:14: missing required key 'id' in rule #1"]


def test_missing_default(tmp_path: Path) -> None:
    text = "".join(line for line in GOOD.splitlines(True) if not line.startswith("default:"))
    path = _write(tmp_path, text)
    assert lint_policy(path) == [f"{path}:1: missing required key 'default' in policy"]


def test_bad_version(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("version: 1", "version: 2"))
    assert lint_policy(path) == [f"{path}:1: version must be 1, got 2"]


def test_unknown_zone_in_rule(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("allow: imaging -> pacs", "allow: imaging -> pac"))
    assert lint_policy(path) == [f"{path}:15: rule imaging-to-pacs: unknown zone or group 'pac'"]


def test_unknown_group_in_rule(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("deny: modalities -> internet", "deny: modality -> internet"))
    assert lint_policy(path) == [
        f"{path}:18: rule modalities-no-internet: unknown zone or group 'modality'"
    ]


def test_unknown_zone_in_group(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _replace("modalities: [imaging, clinical]", "modalities: [imaging, lab]")
    )
    errors = lint_policy(path)
    assert errors == [f"{path}:9: group 'modalities': unknown zone 'lab'"]


def test_unknown_service(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("    service: dicom", "    service: [dicom, hl7]"))
    assert lint_policy(path) == [f"{path}:16: rule imaging-to-pacs: unknown service 'hl7'"]


def test_bad_severity(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("severity: high", "severity: urgent"))
    assert lint_policy(path) == [
        f"{path}:19: rule modalities-no-internet: severity 'urgent' is not one of "
        "low, medium, high, critical"
    ]


def test_severity_on_allow(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _replace("    service: dicom\n", "    service: dicom\n    severity: low\n")
    )
    assert lint_policy(path) == [f"{path}:17: rule imaging-to-pacs: 'severity' is for deny rules"]


@pytest.mark.parametrize(
    ("key", "line"), [("why", '    why: modalities must never reach the internet\n'),
                      ("hipaa_ref", '    hipaa_ref: "164.312(e)(1)"\n')]
)  # fmt: skip
def test_deny_without_why_or_hipaa_ref(tmp_path: Path, key: str, line: str) -> None:
    path = _write(tmp_path, _replace(line, ""))
    assert lint_policy(path) == [
        f"{path}:17: rule modalities-no-internet: a deny rule needs '{key}'"
    ]


def test_default_deny_without_why(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("why: not allowed, ", ""))
    assert lint_policy(path) == [f"{path}:22: default: a default deny needs 'why'"]


def test_duplicate_rule_id(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("id: modalities-no-internet", "id: imaging-to-pacs"))
    assert lint_policy(path) == [
        f"{path}:17: rule imaging-to-pacs: duplicate id (first at line 14)"
    ]


def test_overlapping_cidrs(tmp_path: Path) -> None:
    # A /32 of `it` inside the /24 of `imaging`: first match wins, so `it` never gets it.
    path = _write(
        tmp_path, _replace("cidrs: [10.10.0.0/16]", "cidrs: [10.10.0.0/16, 10.20.0.5/32]")
    )
    assert lint_policy(path) == [
        f"{path}:6: zone 'it': 10.20.0.5/32 overlaps 10.20.0.0/24 of zone 'imaging' (line 3); "
        "first match wins, so zone 'imaging' takes these addresses"
    ]


def test_overlap_reported_on_its_own_line(tmp_path: Path) -> None:
    text = _replace(
        "  it: {cidrs: [10.10.0.0/16]}",
        "  it:\n    cidrs:\n      - 10.10.0.0/16\n      - 10.0.0.0/8",
    )
    path = _write(tmp_path, text)
    assert lint_policy(path) == [
        f"{path}:9: zone 'it': 10.0.0.0/8 overlaps 10.20.0.0/24 of zone 'imaging' (line 3); "
        "first match wins, so zone 'imaging' takes these addresses"
    ]


@pytest.mark.parametrize(
    ("cidr", "detail"),
    [
        ("10.20.0.0/33", "'10.20.0.0/33' does not appear to be an IPv4 or IPv6 network"),
        ("10.20.0.1/24", "10.20.0.1/24 has host bits set"),
    ],
)
def test_bad_cidr(tmp_path: Path, cidr: str, detail: str) -> None:
    path = _write(tmp_path, _replace("cidrs: [10.20.0.0/24]", f"cidrs: ['{cidr}']"))
    assert lint_policy(path) == [f"{path}:3: zone 'imaging': bad CIDR '{cidr}': {detail}"]


def test_unreachable_rule(tmp_path: Path) -> None:
    text = GOOD.replace(
        "default:",
        "  - id: ct-no-internet\n"
        "    deny: imaging -> internet\n"
        "    why: duplicate of the group rule\n"
        '    hipaa_ref: "164.312(e)(1)"\n'
        "default:",
    )
    path = _write(tmp_path, text)
    assert lint_policy(path) == [
        f"{path}:22: rule ct-no-internet is unreachable: rule modalities-no-internet "
        f"({path}:17) decides every flow it matches"
    ]


def test_unreachable_by_any_and_services(tmp_path: Path) -> None:
    text = _replace(
        "  - id: imaging-to-pacs\n    allow: imaging -> pacs\n    service: dicom\n",
        "  - id: web-anywhere\n    allow: any -> any\n    service: [https, dicom]\n"
        "  - id: imaging-to-pacs\n    allow: imaging -> pacs\n    service: dicom\n",
    )
    path = _write(tmp_path, text)
    assert lint_policy(path) == [
        f"{path}:17: rule imaging-to-pacs is unreachable: rule web-anywhere "
        f"({path}:14) decides every flow it matches"
    ]


def test_narrower_service_earlier_is_not_shadowing(tmp_path: Path) -> None:
    text = GOOD.replace(
        "default:",
        "  - id: imaging-to-pacs-any\n    allow: imaging -> pacs\ndefault:",
    )
    assert _lint(tmp_path, text) == []


def test_unknown_device_class(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("device_classes: [infusion-pump]", "device_classes: [pump]"))
    assert lint_policy(path) == [
        f"{path}:5: zone 'clinical': unknown device class 'pump' (see fingerprints/vocabulary.yaml)"
    ]


def test_bad_edge(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("allow: imaging -> pacs", "allow: imaging to pacs"))
    assert lint_policy(path) == [
        f"{path}:15: rule imaging-to-pacs: 'allow' must read 'SOURCE -> DEST', "
        "got 'imaging to pacs'"
    ]


def test_bad_check_setting(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace('min_tls_version: "1.2"', 'min_tls_version: "1.4"'))
    assert lint_policy(path) == [
        f"{path}:25: checks: min_tls_version must be one of 1.0, 1.1, 1.2, 1.3, got '1.4'"
    ]


def test_reserved_zone_name(tmp_path: Path) -> None:
    path = _write(tmp_path, _replace("  it: {cidrs", f"  {UNZONED}: {{cidrs"))
    assert lint_policy(path) == [f"{path}:6: zone name 'unzoned' is reserved"]


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _replace(
            "  it: {cidrs: [10.10.0.0/16]}",
            "  it: {cidrs: [10.10.0.0/16]}\n  it: {cidrs: [10.11.0.0/16]}",
        ),
    )
    assert lint_policy(path) == [f"{path}:7: duplicate key 'it'"]


def test_flows_given_report_rules_none_reaches(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    flows = [{"client_ip": "10.20.0.11", "server_ip": "10.30.0.10", "server_port": 104,
              "proto": "tcp", "app": "dicom"}]  # fmt: skip
    assert lint_policy(path, flows) == [
        f"{path}:17: rule modalities-no-internet: none of the 1 flows given reaches it"
    ]


# -- the shipped policies and the schema ------------------------------------------------------


def _shipped() -> list[Path]:
    """Every shipped policy (``policies/risk.yaml`` is the risk method, not a policy)."""
    return sorted(p for p in (ROOT / "policies").rglob("*.yaml") if p.name != "risk.yaml")


def test_there_are_shipped_policies() -> None:
    names = {p.relative_to(ROOT / "policies").as_posix() for p in _shipped()}
    assert {"default.yaml", "examples/small-clinic.yaml",
            "examples/radiology-department.yaml"} <= names  # fmt: skip


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: p.name)
def test_shipped_policy_lints_clean(path: Path) -> None:
    assert lint_policy(path) == []


def _schema() -> dict:  # type: ignore[type-arg]
    return json.loads((ROOT / "policies" / "schema.json").read_text())


def test_schema_keys_match_the_loader() -> None:
    schema = _schema()
    defs = schema["$defs"]
    assert set(schema["properties"]) == load_mod.POLICY_KEYS
    assert set(schema["required"]) == load_mod.POLICY_REQUIRED
    assert set(defs["zone"]["properties"]) == load_mod.ZONE_KEYS
    assert set(defs["service"]["properties"]) == load_mod.SERVICE_KEYS
    assert set(defs["rule"]["properties"]) == load_mod.RULE_KEYS
    assert set(defs["rule"]["required"]) == load_mod.RULE_REQUIRED
    assert set(defs["default"]["properties"]) == load_mod.DEFAULT_KEYS
    assert set(defs["default"]["required"]) == load_mod.DEFAULT_REQUIRED
    assert set(defs["checks"]["properties"]) == load_mod.CHECK_KEYS
    assert defs["severity"]["enum"] == ["low", "medium", "high", "critical"]
    for name in SEVERITY_CHECKS:
        assert defs["checks"]["properties"][name] == {"$ref": "#/$defs/check_severity"}


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: p.name)
def test_shipped_policy_validates_against_the_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    jsonschema.validate(yaml.safe_load(path.read_text()), _schema())
