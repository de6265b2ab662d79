"""The fingerprint engine: match semantics, placeholders, conflict resolution, evidence."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.fingerprint.engine import Device, Engine, Fingerprint, Signal, why_lost
from monitor.fingerprint.rules import RuleSet, load_rules

AS_OF = date(2024, 6, 1)

VOCABULARY = {
    "vendors": ["GE Healthcare", "Siemens Healthineers", "Microsoft"],
    "device_classes": {
        "ct": {"label": "CT scanner", "regulated": True, "category": "imaging"},
        "workstation": {"label": "Workstation", "regulated": False, "category": "it"},
    },
    "os_families": ["windows", "linux"],
}


def make_rule(rid: str, examples: list[dict[str, Any]], **keys: Any) -> dict[str, Any]:
    """A rule dict with the boilerplate keys filled in."""
    out: dict[str, Any] = {
        "id": rid,
        "rev": 1,
        "description": f"test rule {rid}",
        "references": ["test"],
        "confidence": 0.5,
    }
    out.update(keys)
    out["examples"] = examples
    return out


def ruleset(
    tmp_path: Path,
    shipped: list[dict[str, Any]],
    site: list[dict[str, Any]] | None = None,
    lifecycle: list[dict[str, Any]] | None = None,
) -> RuleSet:
    """Write the rules as YAML files and load them (shipped dir, then a site dir)."""
    root = tmp_path / "shipped"
    (root / "t").mkdir(parents=True)
    (root / "vocabulary.yaml").write_text(yaml.safe_dump(VOCABULARY))
    (root / "t" / "rules.yaml").write_text(
        yaml.safe_dump({"meta": {"title": "test"}, "rules": shipped}, sort_keys=False)
    )
    if lifecycle:
        (root / "lifecycle").mkdir()
        (root / "lifecycle" / "os.yaml").write_text(
            yaml.safe_dump({"meta": {"title": "lc"}, "entries": lifecycle}, sort_keys=False)
        )
    dirs = [root]
    if site is not None:
        site_dir = tmp_path / "site"
        site_dir.mkdir()
        (site_dir / "local.yaml").write_text(
            yaml.safe_dump({"meta": {"title": "site"}, "rules": site}, sort_keys=False)
        )
        dirs.append(site_dir)
    return load_rules(dirs)


def device(*pairs: tuple[str, str]) -> Device:
    return Device("10.0.0.1", "10.0.0.1", None, [Signal(k, v) for k, v in pairs])


def run(rs: RuleSet, *pairs: tuple[str, str]) -> Fingerprint:
    return Engine(rs).fingerprint(device(*pairs), AS_OF)


def fired(fp: Fingerprint) -> list[str]:
    return [h.rule_id for h in fp.fired]


# -- match semantics ----------------------------------------------------------------------------


def test_match_keys_are_anded(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        [
            make_rule(
                "r",
                [{"a.x": "1", "a.y": "2"}],
                match={"a.x": "^1$", "a.y": "^2$"},
                set={"os": "X"},
            )
        ],
    )
    assert fired(run(rs, ("a.x", "1"))) == []
    assert fired(run(rs, ("a.x", "1"), ("a.y", "3"))) == []
    fp = run(rs, ("a.x", "1"), ("a.y", "2"))
    assert fired(fp) == ["r"]
    assert fp.fired[0].matched_signals == (("a.x", "1"), ("a.y", "2"))
    assert fp.fired[0].specificity == 2


def test_any_value_of_a_kind_matches(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, [make_rule("r", [{"a.x": "1"}], match={"a.x": "^1$"}, set={"os": "X"})])
    fp = run(rs, ("a.x", "0"), ("a.x", "1"), ("a.x", "1"))
    assert fp.fired[0].matched_signals == (("a.x", "1"),)
    assert fp.fields["os"].signals == (("a.x", "1"),)


def test_any_branches(tmp_path: Path) -> None:
    rule = make_rule(
        "r",
        [{"a.x": "1", "b.y": "foo"}],
        match={"a.x": "1"},
        any=[{"b.y": "foo"}, {"c.z": "bar", "d.w": "baz"}],
        set={"os": "X"},
    )
    rs = ruleset(tmp_path, [rule])
    assert fired(run(rs, ("a.x", "1"))) == []
    assert fired(run(rs, ("b.y", "foo"))) == []
    assert fired(run(rs, ("a.x", "1"), ("c.z", "bar"))) == []
    assert run(rs, ("a.x", "1"), ("b.y", "foo")).fired[0].specificity == 2
    hit = run(rs, ("a.x", "1"), ("c.z", "bar"), ("d.w", "baz")).fired[0]
    assert (hit.specificity, hit.matched_signals) == (
        3,
        (("a.x", "1"), ("c.z", "bar"), ("d.w", "baz")),
    )
    # both branches match: the one with more keys counts
    both = run(rs, ("a.x", "1"), ("b.y", "foo"), ("c.z", "bar"), ("d.w", "baz")).fired[0]
    assert both.specificity == 3


def test_any_only_rule(tmp_path: Path) -> None:
    rule = make_rule("r", [{"b.y": "foo"}], any=[{"b.y": "foo"}, {"c.z": "bar"}], set={"os": "X"})
    rs = ruleset(tmp_path, [rule])
    assert fired(run(rs, ("c.z", "bar"))) == ["r"]
    assert fired(run(rs, ("b.y", "foo"))) == ["r"]
    assert fired(run(rs, ("d.w", "foo"))) == []


def test_not(tmp_path: Path) -> None:
    rule = make_rule(
        "r",
        [{"a.x": "1"}, {"a.x": "1", "b.y": "test"}],
        match={"a.x": "1"},
        **{"not": {"b.y": "test", "c.z": "lab"}},
        set={"os": "X"},
    )
    rs = ruleset(tmp_path, [rule])
    assert fired(run(rs, ("a.x", "1"), ("b.y", "test"))) == ["r"]  # not needs both keys
    assert fired(run(rs, ("a.x", "1"), ("b.y", "test"), ("c.z", "lab"))) == []
    assert fired(run(rs, ("a.x", "1"), ("b.y", "prod"), ("c.z", "lab"))) == ["r"]


def test_rules_without_their_kinds_are_not_tried(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        [
            make_rule(
                "ab", [{"a.x": "1", "b.y": "2"}], match={"a.x": ".", "b.y": "."}, set={"os": "A"}
            ),
            make_rule("a", [{"a.x": "1"}], match={"a.x": "."}, set={"os": "B"}),
            make_rule("any", [{"c.z": "1"}], any=[{"c.z": "."}, {"b.y": "."}], set={"os": "C"}),
        ],
    )
    engine = Engine(rs)
    assert [r.id for r in engine.candidate_rules({"a.x"})] == ["a"]
    assert [r.id for r in engine.candidate_rules({"a.x", "b.y"})] == ["ab", "a", "any"]
    assert [r.id for r in engine.candidate_rules({"c.z"})] == ["any"]
    assert engine.candidate_rules({"d.w"}) == []


# -- placeholders ------------------------------------------------------------------------------


def test_placeholders_from_named_groups_and_kinds(tmp_path: Path) -> None:
    rule = make_rule(
        "r",
        [{"smb.native_os": "Windows 5.1", "dhcp.hostname": "WKS-1"}],
        match={"smb.native_os": r"^Windows (?P<ver>\d+\.\d+)$", "dhcp.hostname": "^WKS"},
        set={"os": "Windows NT {ver}", "hostname": "{dhcp.hostname}", "os_family": "windows"},
    )
    rs = ruleset(tmp_path, [rule])
    fp = run(
        rs, ("dhcp.hostname", "PRN-2"), ("dhcp.hostname", "WKS-1"), ("smb.native_os", "Windows 5.1")
    )
    assert fp.asset_fields() == {
        "vendor": None,
        "model": None,
        "device_class": None,
        "os": "Windows NT 5.1",
        "os_family": "windows",
        "software_version": None,
        "hostname": "WKS-1",
    }
    assert fp.fired[0].set_values == {
        "os": "Windows NT 5.1",
        "hostname": "WKS-1",
        "os_family": "windows",
    }


def test_unfilled_placeholder_leaves_the_field_unset(tmp_path: Path) -> None:
    rule = make_rule(
        "r",
        [{"a.x": "1", "b.y": "v2"}],
        match={"a.x": "1"},
        any=[{"b.y": r"v(?P<ver>\d)"}, {"c.z": r"(?P<empty>x*)"}],
        set={"os": "X", "software_version": "{ver}", "model": "{empty}"},
    )
    rs = ruleset(tmp_path, [rule])
    fp = run(rs, ("a.x", "1"), ("c.z", "zz"))
    assert fp.asset_fields()["os"] == "X"
    assert "software_version" not in fp.fields
    assert "model" not in fp.fields
    assert fp.fired[0].unset == (
        ("software_version", "placeholder {ver} not filled"),
        ("model", "placeholders filled to an empty value"),
    )
    assert run(rs, ("a.x", "1"), ("b.y", "v2")).value("software_version") == "2"


def test_placeholder_vocabulary(tmp_path: Path) -> None:
    rule = make_rule(
        "r",
        [{"a.x": "ct/GE Healthcare"}],
        match={"a.x": "^(?P<cls>[^/]+)/(?P<vendor>.+)$"},
        set={"device_class": "{cls}", "vendor": "{vendor}"},
    )
    rs = ruleset(tmp_path, [rule])
    assert run(rs, ("a.x", "ct/GE Healthcare")).asset_fields()["device_class"] == "ct"
    fp = run(rs, ("a.x", "toaster/Acme"))
    # a closed-vocabulary field stays unset; an unknown vendor is kept (explain flags it)
    assert (fp.value("device_class"), fp.value("vendor")) == (None, "Acme")
    assert fp.fired[0].unset == (("device_class", "'toaster' is not in the vocabulary"),)


# -- conflict resolution -------------------------------------------------------------------------


def test_specific_beats_generic(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        [
            make_rule(
                "g",
                [{"a.x": "1"}],
                match={"a.x": "1"},
                set={"os": "G", "model": "M"},
                generic=True,
                confidence=1.0,
            ),
            make_rule("s", [{"b.y": "1"}], match={"b.y": "1"}, set={"os": "S"}, confidence=0.2),
        ],
    )
    fp = run(rs, ("a.x", "1"), ("b.y", "1"))
    assert (fp.fields["os"].value, fp.fields["os"].rule_id, fp.fields["os"].generic) == (
        "S",
        "s",
        False,
    )
    # the generic rule still sets the fields nobody else set
    assert (fp.fields["model"].value, fp.fields["model"].generic) == ("M", True)
    assert run(rs, ("a.x", "1")).value("os") == "G"
    cands = fp.candidates["os"]
    assert [c.rule_id for c in cands] == ["s", "g"]
    assert why_lost(cands[0], cands[1]) == "generic rule, and a specific rule set this field"


def test_higher_confidence_wins(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        [
            make_rule(
                "a",
                [{"a.x": "1", "b.y": "1"}],
                match={"a.x": "1", "b.y": "1"},
                set={"os": "A"},
                confidence=0.6,
            ),
            make_rule("b", [{"a.x": "1"}], match={"a.x": "1"}, set={"os": "B"}, confidence=0.7),
        ],
    )
    fp = run(rs, ("a.x", "1"), ("b.y", "1"))
    assert fp.value("os") == "B"
    a, b = fp.candidates["os"][1], fp.candidates["os"][0]
    assert why_lost(b, a) == "lower confidence (0.6 < 0.7)"


def test_more_specific_wins_at_equal_confidence(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        [
            make_rule("a", [{"a.x": "1"}], match={"a.x": "1"}, set={"os": "A"}),
            make_rule(
                "b",
                [{"a.x": "1", "b.y": "1"}],
                match={"a.x": "1"},
                any=[{"b.y": "1"}],
                set={"os": "B"},
            ),
        ],
    )
    fp = run(rs, ("a.x", "1"), ("b.y", "1"))
    assert fp.value("os") == "B"
    assert why_lost(*fp.candidates["os"]) == "less specific (1 matched key < 2)"


def test_site_rule_wins_a_tie(tmp_path: Path) -> None:
    shipped = [make_rule("a", [{"a.x": "1"}], match={"a.x": "1"}, set={"os": "Shipped"})]
    site = [
        make_rule("site.z", [{"a.x": "1"}], match={"a.x": "1"}, set={"os": "Site", "model": "SM"}),
        make_rule(
            "site.y", [{"a.x": "1"}], match={"a.x": "1"}, set={"model": "Low"}, confidence=0.4
        ),
    ]
    rs = ruleset(tmp_path, shipped, site)
    fp = run(rs, ("a.x", "1"))
    assert fp.value("os") == "Site"
    assert why_lost(*fp.candidates["os"]) == "shipped rule, and a site rule ranks equal"
    assert fp.value("model") == "SM"
    # a site rule does not win on being a site rule alone
    rs2 = ruleset(tmp_path / "2", shipped, [{**site[0], "confidence": 0.4}])
    assert run(rs2, ("a.x", "1")).value("os") == "Shipped"


def test_rule_id_breaks_the_last_tie(tmp_path: Path) -> None:
    rules = [
        make_rule("b", [{"a.x": "1"}], match={"a.x": "1"}, set={"os": "B"}),
        make_rule("a", [{"a.x": "1"}], match={"a.x": "1"}, set={"os": "A"}),
    ]
    fp = run(ruleset(tmp_path, rules), ("a.x", "1"))
    assert fp.value("os") == "A"
    assert fired(fp) == ["b", "a"]  # fired in file order
    assert why_lost(*fp.candidates["os"]) == "equal rank; a comes first in id order"
    assert run(ruleset(tmp_path / "2", rules[::-1]), ("a.x", "1")).value("os") == "A"


# -- evidence ------------------------------------------------------------------------------------


def test_evidence_json_exact(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        [
            make_rule(
                "dicom.ge.impl-uid",
                [{"dicom.implementation_class_uid": "1.2.840.113619.6.94"}],
                match={"dicom.implementation_class_uid": r"^1\.2\.840\.113619\."},
                set={"vendor": "GE Healthcare", "device_class": "ct"},
                confidence=0.8,
                rev=3,
            ),
            make_rule(
                "os.windows",
                [{"smb.native_os": "Windows 10.0", "tcp.syn_ttl": "128"}],
                match={"smb.native_os": "Windows 10", "tcp.syn_ttl": "^128$"},
                set={"os": "Windows 10", "os_family": "windows"},
                confidence=0.7,
                generic=True,
            ),
        ],
        lifecycle=[
            {
                "id": "lifecycle.windows-10",
                "match": {"os": "^Windows 10"},
                "end_of_support": "2025-10-14",
                "product": "Windows 10",
                "references": ["Microsoft Lifecycle"],
            }
        ],
    )
    fp = run(
        rs,
        ("tcp.syn_ttl", "128"),
        ("smb.native_os", "Windows 10.0"),
        ("dicom.implementation_class_uid", "1.2.840.113619.6.94"),
    )
    assert fp.evidence_json() == (
        '{"vendor":{"value":"GE Healthcare","rule":"dicom.ge.impl-uid","rev":3,"confidence":0.8,'
        '"signals":[["dicom.implementation_class_uid","1.2.840.113619.6.94"]]},'
        '"device_class":{"value":"ct","rule":"dicom.ge.impl-uid","rev":3,"confidence":0.8,'
        '"signals":[["dicom.implementation_class_uid","1.2.840.113619.6.94"]]},'
        '"os":{"value":"Windows 10","rule":"os.windows","rev":1,"confidence":0.7,'
        '"signals":[["smb.native_os","Windows 10.0"],["tcp.syn_ttl","128"]]},'
        '"os_family":{"value":"windows","rule":"os.windows","rev":1,"confidence":0.7,'
        '"signals":[["smb.native_os","Windows 10.0"],["tcp.syn_ttl","128"]]},'
        '"patchable":{"value":false,"reason":"vendor-managed regulated device (CT scanner): only '
        'the manufacturer may patch it; OS Windows 10 supported until 2025-10-14",'
        '"lifecycle":"lifecycle.windows-10"}}'
    )
    assert fp.confidence == 0.75
    assert (fp.patchable, fp.lifecycle_id) == (False, "lifecycle.windows-10")


def test_nothing_fires(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, [make_rule("r", [{"a.x": "1"}], match={"a.x": "1"}, set={"os": "X"})])
    fp = run(rs, ("b.y", "1"))
    assert (fp.fields, fp.fired, fp.confidence) == ({}, [], 0.0)
    assert fp.evidence_json() == (
        '{"patchable":{"value":null,"reason":"unknown: no lifecycle data for unidentified OS",'
        '"lifecycle":null}}'
    )


def test_confidence_is_the_mean_of_the_fields(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        [
            make_rule(
                "a",
                [{"a.x": "1"}],
                match={"a.x": "1"},
                set={"os": "A", "model": "M"},
                confidence=0.9,
            ),
            make_rule(
                "b", [{"a.x": "1"}], match={"a.x": "1"}, set={"hostname": "h"}, confidence=0.3
            ),
        ],
    )
    assert run(rs, ("a.x", "1")).confidence == pytest.approx(0.7)
