"""Risk scoring: the documented formula, the shipped method, and the factors each finding
records on the sample captures."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from monitor import api
from monitor.policy.scoring import (
    DeviceClassInfo,
    ScoringError,
    load_method,
    score,
    vocabulary_classes,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY = str(ROOT / "policies" / "default.yaml")


@pytest.fixture(scope="module")
def method():
    return load_method()


@pytest.fixture(scope="module")
def classes() -> dict[str, DeviceClassInfo]:
    return vocabulary_classes()


def test_the_formula(method, classes) -> None:
    # A medium finding about an unknown device: 2 x 3.
    s = score("medium", {}, method, classes)
    assert (s.likelihood, s.impact, s.risk, s.level) == (2, 3, 6, "medium")
    assert s.terms["likelihood"] == {"severity medium": 2}
    assert s.terms["impact"] == {"class unknown": 3}
    # A high finding, cross-zone, unpatchable, ePHI in clear, an infusion pump: 3+1+1 x 5+1.
    factors = {"cross_zone": True, "unpatchable": True, "ephi_cleartext": True,
               "device_classes": ["workstation", "infusion-pump"]}  # fmt: skip
    s = score("high", factors, method, classes)
    assert (s.likelihood, s.impact, s.risk, s.level) == (5, 5, 25, "critical")
    assert s.terms["impact"] == {"class infusion-pump": 5, "ephi_cleartext": 1}
    # A class without its own criticality takes its category's (ct: imaging, 4).
    assert score("low", {"device_classes": ["ct"]}, method, classes).impact == 4
    # Internet exposure adds 2 to the likelihood; values are kept within 1..5.
    s = score("critical", {"internet": True, "unpatchable": True}, method, classes)
    assert s.likelihood == 5 and s.terms["likelihood"]["internet"] == 2
    assert score("low", {"device_classes": ["printer"]}, method, classes).risk == 1


def test_the_shipped_method_names_only_real_classes_and_categories(method, classes) -> None:
    assert set(method.classes) <= set(classes)
    assert set(method.categories) == {info.category for info in classes.values()}
    assert [name for name, _ in method.levels] == ["low", "medium", "high", "critical"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 2\n", ":1: version must be 1"),
        ("version: 1\nlikelihood: []\n", ":2: 'likelihood' must be a mapping"),
        ("version: 1\nextra: 1\n", ":2: unknown key 'extra'"),
        ("version: 1\nlikelihood:\n  severity: {low: 1}\n", "likelihood.severity: missing 'high'"),
        ("version: 1\nimpact:\n  unknown: 7\n", ":3: impact.unknown must be 1..5, got 7"),
        ("version: 1\nimpact:\n  categories: {kitchen: 2}\n", "unknown name 'kitchen'"),
        ("version: 1\nlevels: {low: 4, high: 20}\n", "the last bound must be 25"),
        ("version: 1\nlevels: [1, 2\n", "YAML syntax error"),
    ],
)
def test_method_errors_are_one_line_with_the_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "risk.yaml"
    path.write_text(text)
    with pytest.raises(ScoringError) as info:
        load_method(path)
    errors = info.value.errors
    assert any(message in e for e in errors), errors
    assert all(e.startswith(f"{path}:") for e in errors)


def test_a_missing_method_file(tmp_path: Path) -> None:
    with pytest.raises(ScoringError, match="no such risk method file"):
        load_method(tmp_path / "nope.yaml")


def test_every_finding_is_scored_from_recorded_factors(tmp_path: Path, method, classes) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(ROOT / "pcaps")], db=db, policy=POLICY)
    con = duckdb.connect(db, read_only=True)
    rows = con.execute(
        "SELECT kind, severity, likelihood, impact, risk, risk_level, risk_factors FROM exceptions"
    ).fetchall()
    con.close()
    assert rows
    seen_factors: set[str] = set()
    for kind, severity, likelihood, impact, risk, level, factors_json in rows:
        recorded = json.loads(factors_json)
        again = score(severity, recorded["factors"], method, classes)
        assert (likelihood, impact, risk, level) == (again.likelihood, again.impact,
                                                     again.risk, again.level), kind  # fmt: skip
        assert risk == likelihood * impact
        seen_factors |= {k for k, v in recorded["factors"].items() if v}
        if kind == "ephi.cleartext":
            assert recorded["factors"]["ephi_cleartext"] and recorded["factors"]["cross_zone"]
        if kind == "auth.cleartext":
            assert recorded["factors"]["cleartext_auth"]
    # The samples exercise most factors (no device talks to the internet in them).
    assert {"cross_zone", "unpatchable", "ephi_cleartext", "cleartext_auth",
            "device_classes"} <= seen_factors  # fmt: skip
