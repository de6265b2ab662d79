"""Rule files: loading, and one test per lint error kind (exact ``path:LINE: ...`` lines)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from monitor.fingerprint import rules as rules_mod
from monitor.fingerprint.rules import RuleError, lint, load_rules, rule_files

ROOT = Path(__file__).resolve().parents[2]

VOCABULARY = """\
vendors: [GE Healthcare, Microsoft]
device_classes:
  ct: {label: CT scanner, regulated: true, category: imaging}
  workstation: {label: Workstation, regulated: false, category: it}
os_families: [windows, linux]
"""

#: A rule file that lints clean; tests copy it and break one thing. Line numbers matter.
GOOD = """\
meta: {title: GE Healthcare imaging systems, maintainer: biomed@example.org}
rules:
  - id: dicom.ge.impl-uid
    rev: 1
    description: GE's DICOM UID root in the Implementation Class UID
    references: ["GE conformance statement"]
    match:
      dicom.implementation_class_uid: '^1\\.2\\.840\\.113619\\.'
    set: {vendor: GE Healthcare, device_class: ct}
    confidence: 0.8
    examples:
      - {dicom.implementation_class_uid: '1.2.840.113619.6.94'}
    counter_examples:
      - {dicom.implementation_class_uid: '1.2.276.0.7230010.3.0.3.6.4'}
"""


def write(root: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path -> text, dedented) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A shipped rule directory with the vocabulary and one good rule file."""
    root = tmp_path / "shipped"
    write(root, {"vocabulary.yaml": VOCABULARY, "dicom/ge.yaml": GOOD})
    return root


def rule_file(shipped: Path, text: str, name: str = "x/test.yaml") -> Path:
    path = shipped / name
    write(shipped, {name: text})
    return path


def rule(body: str, rid: str = "t.rule") -> str:
    """A one-rule file; ``body`` is the rule's keys after ``id`` (4-space indented)."""
    return f"meta: {{title: Test}}\nrules:\n  - id: {rid}\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


BODY = """\
rev: 1
description: test rule
references: [test]
match: {dhcp.vendor_class_identifier: '^MSFT 5\\.0$'}
set: {os_family: windows}
confidence: 0.5
examples:
  - {dhcp.vendor_class_identifier: MSFT 5.0}
"""


# -- loading ------------------------------------------------------------------------------------


def test_good_tree_loads(shipped: Path) -> None:
    rs = load_rules([shipped])
    assert [r.id for r in rs.rules] == ["dicom.ge.impl-uid"]
    r = rs.rules[0]
    assert (r.rev, r.confidence, r.generic, r.site, r.line) == (1, 0.8, False, False, 3)
    assert r.sets == (("vendor", "GE Healthcare"), ("device_class", "ct"))
    assert [(c.kind, c.pattern) for c in r.match] == [
        ("dicom.implementation_class_uid", "^1\\.2\\.840\\.113619\\.")
    ]
    assert r.required_kinds == frozenset({"dicom.implementation_class_uid"})
    assert r.examples == ({"dicom.implementation_class_uid": ("1.2.840.113619.6.94",)},)
    assert rs.vocabulary.vendors == {"GE Healthcare", "Microsoft"}
    assert rs.vocabulary.device_classes["ct"].regulated is True
    assert rs.vocabulary.device_classes["workstation"].label == "Workstation"
    assert rs.vocabulary.os_families == {"windows", "linux"}
    assert lint([shipped]) == []


def test_rule_files_skip_vocabulary_and_lifecycle(shipped: Path) -> None:
    write(
        shipped,
        {
            "lifecycle/os.yaml": "meta: {title: x}\nentries: []\n",
            "a/b/deep.yml": "meta: {title: x}\nrules: []\n",
            "a/vocabulary.yaml": "vendors: []\n",
            ".hidden/x.yaml": "{{{",
            "notes.txt": "not yaml",
        },
    )
    assert [p.relative_to(shipped).as_posix() for p in rule_files(shipped)] == [
        "a/b/deep.yml",
        "dicom/ge.yaml",
    ]


def test_site_dir_vocabulary_adds_entries(shipped: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(
        site,
        {
            "vocabulary.yaml": "vendors: [Acme Imaging]\n",
            "local.yaml": rule(
                BODY.replace("os_family: windows", "vendor: Acme Imaging"), "site.a"
            ),
        },
    )
    rs = load_rules([shipped, site])
    assert [(r.id, r.site) for r in rs.rules] == [("dicom.ge.impl-uid", False), ("site.a", True)]
    assert "Acme Imaging" in rs.vocabulary.vendors


def test_scalars_become_signal_text(shipped: Path) -> None:
    body = BODY.replace(
        "match: {dhcp.vendor_class_identifier: '^MSFT 5\\.0$'}",
        "match: {tcp.syn_ttl: 128, smb.version1: true}",
    ).replace("{dhcp.vendor_class_identifier: MSFT 5.0}", "{tcp.syn_ttl: 128, smb.version1: true}")
    rule_file(shipped, rule(body))
    rs = load_rules([shipped])
    r = rs.rules[1]
    assert [(c.kind, c.pattern) for c in r.match] == [
        ("tcp.syn_ttl", "128"),
        ("smb.version1", "true"),
    ]
    assert r.examples == ({"tcp.syn_ttl": ("128",), "smb.version1": ("true",)},)


# -- lint: one test per error kind ----------------------------------------------------------------


def test_yaml_syntax_error(shipped: Path) -> None:
    p = rule_file(shipped, "meta: {title: x}\nrules:\n  - id: a\n   rev: 1\n")
    # libyaml and PyYAML's own parser word it differently; the line is the same.
    assert lint([shipped]) in (
        [f"{p}:4: YAML syntax error: did not find expected '-' indicator"],
        [f"{p}:4: YAML syntax error: expected <block end>, but found '<block mapping start>'"],
    )


def test_duplicate_yaml_key(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY + "confidence: 0.6\n"))
    assert lint([shipped]) == [f"{p}:12: duplicate key 'confidence'"]


def test_missing_required_key(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY.replace("references: [test]\n", "")))
    assert lint([shipped]) == [f"{p}:3: rule t.rule: missing required key 'references' in rule"]


def test_unknown_key_and_no_match(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY.replace("match:", "matc:")))
    assert lint([shipped]) == [
        f"{p}:7: rule t.rule: unknown key 'matc' in rule",
        f"{p}:3: rule t.rule: needs 'match' or 'any' (or both)",
    ]


def test_missing_meta_title_and_rules(shipped: Path) -> None:
    p = rule_file(shipped, "meta: {maintainer: me}\n")
    assert lint([shipped]) == [
        f"{p}:1: missing required key 'rules' in the file",
        f"{p}:1: missing required key 'title' in meta",
    ]


def test_empty_file(shipped: Path) -> None:
    p = rule_file(shipped, "")
    assert lint([shipped]) == [
        f"{p}:1: missing required key 'meta' in the file",
        f"{p}:1: missing required key 'rules' in the file",
    ]


def test_wrong_types(shipped: Path) -> None:
    body = (
        BODY.replace("rev: 1", "rev: one")
        .replace("references: [test]", "references: test")
        .replace("confidence: 0.5", "confidence: 1.5")
        + "generic: maybe\n"
    )
    p = rule_file(shipped, rule(body))
    assert lint([shipped]) == [
        f"{p}:4: rule t.rule: 'rev' must be an integer >= 1, got 'one'",
        f"{p}:6: rule t.rule: 'references' must be a non-empty list of text",
        f"{p}:9: rule t.rule: 'confidence' must be a number with 0 < c <= 1, got 1.5",
        f"{p}:12: rule t.rule: 'generic' must be true or false, got 'maybe'",
    ]


@pytest.mark.parametrize("value", ["0", "0.0", "-0.1", "true"])
def test_confidence_bounds(shipped: Path, value: str) -> None:
    p = rule_file(shipped, rule(BODY.replace("confidence: 0.5", f"confidence: {value}")))
    got = yaml.safe_load(value)
    assert lint([shipped]) == [
        f"{p}:9: rule t.rule: 'confidence' must be a number with 0 < c <= 1, got {got!r}"
    ]


def test_confidence_one_is_allowed(shipped: Path) -> None:
    rule_file(shipped, rule(BODY.replace("confidence: 0.5", "confidence: 1")))
    assert lint([shipped]) == []


def test_bad_id(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY, rid="T_Rule"))
    assert lint([shipped]) == [f"{p}:3: rule T_Rule: id must match ^[a-z0-9][a-z0-9._-]*$"]


def test_unknown_set_field_and_empty_set(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY.replace("set: {os_family: windows}", "set: {colour: red}")))
    assert lint([shipped]) == [
        f"{p}:8: rule t.rule: set: unknown field 'colour' (one of vendor, model, device_class, "
        "os, os_family, software_version, hostname)"
    ]
    rule_file(shipped, rule(BODY.replace("set: {os_family: windows}", "set: {}")))
    assert lint([shipped]) == [f"{p}:8: rule t.rule: 'set' must name at least one field"]


def test_bad_signal_kind(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY.replace("match: {dhcp.vendor", "match: {DHCP-vendor")))
    assert lint([shipped]) == [
        f"{p}:7: rule t.rule: match: signal kind 'DHCP-vendor_class_identifier' is not dotted "
        "proto.attribute"
    ]


def test_duplicate_id_names_the_other_file(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY, rid="dicom.ge.impl-uid"), name="z/again.yaml")
    assert lint([shipped]) == [
        f"{p}:3: rule dicom.ge.impl-uid: duplicate id, first defined at "
        f"{shipped / 'dicom/ge.yaml'}:3"
    ]


def test_duplicate_id_across_directories(shipped: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(site, {"a.yaml": rule(BODY, "site.x"), "b/b.yaml": rule(BODY, "site.x")})
    assert lint([shipped, site]) == [
        f"{site / 'b/b.yaml'}:3: rule site.x: duplicate id, first defined at {site / 'a.yaml'}:3"
    ]


def test_site_rule_without_prefix(shipped: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(site, {"local.yaml": rule(BODY, "local.mx450")})
    assert lint([shipped, site]) == [
        f"{site / 'local.yaml'}:3: rule local.mx450: site rule ids must start with 'site.'"
    ]


def test_site_prefix_in_shipped_dir(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY, "site.x"))
    assert lint([shipped]) == [
        f"{p}:3: rule site.x: 'site.' ids are reserved for the site rule directory"
    ]


def test_bad_regex(shipped: Path) -> None:
    body = BODY.replace(
        "match: {dhcp.vendor_class_identifier: '^MSFT 5\\.0$'}",
        "match:\n  dhcp.vendor_class_identifier: '^MSFT (5'",
    )
    p = rule_file(shipped, rule(body))
    assert lint([shipped]) == [
        f"{p}:8: rule t.rule: match.dhcp.vendor_class_identifier: bad regex '^MSFT (5': "
        "missing ), unterminated subpattern at position 6"
    ]


def test_bad_regex_in_any_branch(shipped: Path) -> None:
    body = BODY.replace(
        "match: {dhcp.vendor_class_identifier: '^MSFT 5\\.0$'}",
        "any:\n  - {dhcp.vendor_class_identifier: '^MSFT 5\\.0$'}\n  - {dhcp.hostname: '['}",
    )
    p = rule_file(shipped, rule(body))
    assert lint([shipped]) == [
        f"{p}:9: rule t.rule: any[1].dhcp.hostname: bad regex '[': "
        "unterminated character set at position 0"
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("vendor: GE", "unknown vendor 'GE' (not in vocabulary.yaml)"),
        ("device_class: scanner", "unknown device class 'scanner' (not in vocabulary.yaml)"),
        ("os_family: win", "unknown os family 'win' (not in vocabulary.yaml)"),
    ],
)
def test_unknown_vocabulary_value(shipped: Path, setting: str, message: str) -> None:
    p = rule_file(shipped, rule(BODY.replace("set: {os_family: windows}", f"set: {{{setting}}}")))
    assert lint([shipped]) == [f"{p}:8: rule t.rule: {message}"]


def test_free_fields_are_not_vocabulary_checked(shipped: Path) -> None:
    rule_file(shipped, rule(BODY.replace("os_family: windows", "os: Windows 2000, model: X1")))
    assert lint([shipped]) == []


def test_example_that_does_not_fire(shipped: Path) -> None:
    body = BODY + "  - {dhcp.vendor_class_identifier: MSFT 98}\n  - {dhcp.hostname: x}\n"
    p = rule_file(shipped, rule(body))
    assert lint([shipped]) == [
        f"{p}:12: rule t.rule: example 2 does not make the rule fire "
        "(match.dhcp.vendor_class_identifier does not match)",
        f"{p}:13: rule t.rule: example 3 does not make the rule fire "
        "(match.dhcp.vendor_class_identifier does not match)",
    ]


def test_example_blocked_by_not_or_any(shipped: Path) -> None:
    body = BODY.replace(
        "set:",
        "any: [{dhcp.hostname: '^WKS'}, {netbios.name: '^WKS'}]\n"
        "not: {dhcp.hostname: 'TEST'}\nset:",
    ).replace(
        "  - {dhcp.vendor_class_identifier: MSFT 5.0}\n",
        "  - {dhcp.vendor_class_identifier: MSFT 5.0, dhcp.hostname: WKS-1}\n"
        "  - {dhcp.vendor_class_identifier: MSFT 5.0, dhcp.hostname: WKS-TEST}\n"
        "  - {dhcp.vendor_class_identifier: MSFT 5.0}\n",
    )
    p = rule_file(shipped, rule(body))
    assert lint([shipped]) == [
        f"{p}:14: rule t.rule: example 2 does not make the rule fire ('not' matches)",
        f"{p}:15: rule t.rule: example 3 does not make the rule fire (no 'any' branch matches)",
    ]


def test_counter_example_that_fires(shipped: Path) -> None:
    body = BODY + "counter_examples:\n  - {dhcp.vendor_class_identifier: MSFT 4.0}\n"
    body += "  - {dhcp.vendor_class_identifier: [MSFT 4.0, MSFT 5.0]}\n"
    p = rule_file(shipped, rule(body))
    assert lint([shipped]) == [f"{p}:14: rule t.rule: counter_example 2 makes the rule fire"]


def test_placeholder_refers_to_nothing(shipped: Path) -> None:
    body = BODY.replace(
        "set: {os_family: windows}",
        "set:\n  os_family: windows\n  os: 'Windows {version}'\n  model: '{dhcp.hostname}'",
    )
    p = rule_file(shipped, rule(body))
    assert lint([shipped]) == [
        f"{p}:10: rule t.rule: set.os: placeholder {{version}} refers to nothing in match/any "
        "(neither a named group nor a matched signal kind)",
        f"{p}:11: rule t.rule: set.model: placeholder {{dhcp.hostname}} refers to nothing in "
        "match/any (neither a named group nor a matched signal kind)",
    ]


def test_placeholders_from_groups_and_kinds_lint_clean(shipped: Path) -> None:
    body = (
        BODY.replace(
            "match: {dhcp.vendor_class_identifier: '^MSFT 5\\.0$'}",
            "match: {dhcp.vendor_class_identifier: '^MSFT (?P<ver>5\\.0)$'}\n"
            "any: [{dhcp.hostname: '.'}]",
        )
        .replace(
            "set: {os_family: windows}",
            "set: {os: 'MSFT {ver}', hostname: '{dhcp.hostname}', vendor: '{dhcp.hostname}'}",
        )
        .replace("MSFT 5.0}", "MSFT 5.0, dhcp.hostname: h}")
    )
    rule_file(shipped, rule(body))
    assert lint([shipped]) == []


def test_vocabulary_errors(tmp_path: Path) -> None:
    root = tmp_path / "v"
    write(
        root,
        {
            "vocabulary.yaml": """\
                vendors: [GE Healthcare, 3]
                device_classes:
                  ct: {label: CT scanner, regulated: yes please, category: imaging}
                  mr: {label: MR scanner, category: imaging}
                  Bad Id: {label: x, regulated: false, category: it}
                colours: [red]
                """
        },
    )
    p = root / "vocabulary.yaml"
    assert lint([root]) == [
        f"{p}:6: unknown key 'colours' in vocabulary",
        f"{p}:1: 'vendors' entries must be non-empty text",
        f"{p}:3: device class 'ct': 'regulated' must be a bool",
        f"{p}:4: missing required key 'regulated' in device class 'mr'",
        f"{p}:5: device class id 'Bad Id' must match ^[a-z0-9][a-z0-9._-]*$",
    ]


def test_site_vocabulary_cannot_redefine_a_class(shipped: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(
        site,
        {"vocabulary.yaml": "device_classes:\n  ct: {label: C, regulated: false, category: x}\n"},
    )
    assert lint([shipped, site]) == [
        f"{site / 'vocabulary.yaml'}:2: device class 'ct' already defined at "
        f"{shipped / 'vocabulary.yaml'}:3"
    ]


LIFECYCLE = """\
meta: {title: OS end of support}
entries:
  - id: lifecycle.windows-xp
    match: {os: '^Windows XP'}
    end_of_support: 2014-04-08
    product: Windows XP
    references: ["Microsoft Lifecycle: Windows XP"]
"""


def test_lifecycle_loads(shipped: Path) -> None:
    write(shipped, {"lifecycle/os.yaml": LIFECYCLE + "    extended_end: '2019-04-09'\n"})
    (entry,) = load_rules([shipped]).lifecycle
    assert (entry.id, entry.product, entry.line) == ("lifecycle.windows-xp", "Windows XP", 3)
    assert [(f, p) for f, p, _ in entry.match] == [("os", "^Windows XP")]
    assert (entry.end_of_support.isoformat(), str(entry.extended_end)) == (
        "2014-04-08",
        "2019-04-09",
    )


def test_lifecycle_errors(shipped: Path) -> None:
    text = (
        LIFECYCLE.replace("2014-04-08", "April 2014")
        .replace("{os: '^Windows XP'}", "{os: '(', colour: red}")
        .replace("    product: Windows XP\n", "")
    )
    text += LIFECYCLE.split("entries:\n")[1].replace(
        "\n    references", "\n    note: x\n    references"
    )
    write(shipped, {"lifecycle/os.yaml": text})
    p = shipped / "lifecycle/os.yaml"
    assert lint([shipped]) == [
        f"{p}:3: lifecycle lifecycle.windows-xp: missing required key 'product'",
        f"{p}:4: lifecycle lifecycle.windows-xp: match.os: bad regex '(': "
        "missing ), unterminated subpattern at position 0",
        f"{p}:4: lifecycle lifecycle.windows-xp: match: unknown field 'colour' (one of os, "
        "os_family, vendor, model, software_version, device_class)",
        f"{p}:5: lifecycle lifecycle.windows-xp: 'end_of_support' must be a date YYYY-MM-DD, "
        "got 'April 2014'",
        f"{p}:11: lifecycle lifecycle.windows-xp: unknown key 'note'",
        f"{p}:7: lifecycle lifecycle.windows-xp: duplicate id, first defined at {p}:3",
    ]


def test_load_rules_raises_with_the_lint_lines(shipped: Path) -> None:
    p = rule_file(shipped, rule(BODY.replace("os_family: windows", "vendor: GE")))
    with pytest.raises(RuleError) as exc:
        load_rules([shipped])
    line = f"{p}:8: rule t.rule: unknown vendor 'GE' (not in vocabulary.yaml)"
    assert str(exc.value) == line
    assert exc.value.errors == [line]


def test_shipped_dir_holds_the_schema() -> None:
    assert (rules_mod.shipped_dir() / "schema.json").is_file()


# -- schema.json ----------------------------------------------------------------------------------


def _schema() -> dict:
    return json.loads((ROOT / "fingerprints" / "schema.json").read_text(encoding="utf-8"))


def test_schema_keys_match_the_linter() -> None:
    schema = _schema()
    defs = schema["$defs"]
    assert set(schema["properties"]) == rules_mod.FILE_KEYS
    assert set(defs["meta"]["properties"]) == rules_mod.META_KEYS
    assert set(defs["meta"]["required"]) == rules_mod.META_REQUIRED
    assert set(defs["rule"]["properties"]) == rules_mod.RULE_KEYS
    assert set(defs["rule"]["required"]) == rules_mod.RULE_REQUIRED
    assert tuple(defs["rule"]["properties"]["set"]["properties"]) == rules_mod.FIELDS
    assert defs["id"]["pattern"] == rules_mod.ID_RE.pattern
    assert defs["kind"]["pattern"] == rules_mod.KIND_RE.pattern
    assert set(defs["vocabulary"]["properties"]) == rules_mod.VOCABULARY_KEYS
    klass = defs["vocabulary"]["properties"]["device_classes"]["additionalProperties"]
    assert set(klass["properties"]) == rules_mod.DEVICE_CLASS_KEYS
    entry = defs["lifecycle"]["properties"]["entries"]["items"]
    assert set(entry["properties"]) == rules_mod.LIFECYCLE_KEYS
    assert set(entry["required"]) == rules_mod.LIFECYCLE_REQUIRED
    assert tuple(entry["properties"]["match"]["properties"]) == rules_mod.LIFECYCLE_FIELDS


def test_schema_validates_rule_files() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(GOOD))) == []
    bad = yaml.safe_load(GOOD.replace("confidence: 0.8", "confidence: 0"))
    assert [e.message for e in validator.iter_errors(bad)] == [
        "0 is less than or equal to the minimum of 0"
    ]
