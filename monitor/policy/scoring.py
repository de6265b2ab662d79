"""Risk scoring: each finding's likelihood, impact and risk from documented factors, by a
method the site can change (``policies/risk.yaml``; format and formula in ``docs/risk.md``).

The findings stage records each finding's *factors* (:data:`FACTORS`: the device classes it
involves, whether one end is on the internet, crosses zones, is unpatchable, carries ePHI or
passwords in clear); the method turns them into numbers::

    likelihood = clamp(severity points + the likelihood factors that hold, 1, 5)
    impact     = clamp(the highest device criticality + the impact factors that hold, 1, 5)
    risk       = likelihood x impact, and its level from the method's bounds

The factors are kept with the score (``exceptions.risk_factors``), so a new method rescored
over the register (``medmon register rescore``) needs no capture, and each score shows how it
was reached. Pure: no I/O but reading the method's file.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.yamlfile import Map, empty_map, line_of, read

#: Severities, as the policy names them.
SEVERITIES = ("low", "medium", "high", "critical")
#: Boolean factors that add to the likelihood, and those that add to the impact.
LIKELIHOOD_FACTORS = ("internet", "cross_zone", "unpatchable", "cleartext_auth")
IMPACT_FACTORS = ("ephi_cleartext", "regulated")
#: Every factor a finding records: the booleans and ``device_classes`` (a list).
FACTORS = (*LIKELIHOOD_FACTORS, "ephi_cleartext", "device_classes")
#: The only format version so far.
VERSION = 1


class ScoringError(ValueError):
    """An invalid risk method file; ``str()`` is one ``path:LINE: message`` line a problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass(frozen=True)
class DeviceClassInfo:
    """What scoring needs of a device class: its category and whether it is regulated."""

    category: str
    regulated: bool


@dataclass
class RiskMethod:
    """A loaded risk method (``policies/risk.yaml``)."""

    path: str
    severity: dict[str, int]
    likelihood_factors: dict[str, int]
    unknown: int
    categories: dict[str, int]
    classes: dict[str, int]
    impact_factors: dict[str, int]
    levels: list[tuple[str, int]] = field(default_factory=list)

    def criticality(self, device_class: str | None, info: DeviceClassInfo | None) -> int:
        """A device class's criticality: its own, else its category's, else ``unknown``."""
        if device_class and device_class in self.classes:
            return self.classes[device_class]
        if info is not None and info.category in self.categories:
            return self.categories[info.category]
        return self.unknown

    def level(self, risk: int) -> str:
        """The level of a risk: the first level whose bound it does not exceed."""
        for name, bound in self.levels:
            if risk <= bound:
                return name
        return self.levels[-1][0]


@dataclass(frozen=True)
class Score:
    """A finding's score and how it was reached (each term's points)."""

    likelihood: int
    impact: int
    risk: int
    level: str
    terms: dict[str, Any]


def _clamp(value: int) -> int:
    return max(1, min(5, value))


def score(
    severity: str | None,
    factors: Mapping[str, Any],
    method: RiskMethod,
    classes: Mapping[str, DeviceClassInfo],
) -> Score:
    """Score one finding from its severity and factors (see the module's formula)."""
    sev = severity if severity in method.severity else "medium"
    likelihood_terms: dict[str, int] = {f"severity {sev}": method.severity[sev]}
    for name in LIKELIHOOD_FACTORS:
        points = method.likelihood_factors.get(name, 0)
        if factors.get(name) and points:
            likelihood_terms[name] = points
    device_classes = [c for c in factors.get("device_classes") or [] if c]
    if device_classes:
        crit = {c: method.criticality(c, classes.get(c)) for c in device_classes}
        worst = max(crit, key=lambda c: crit[c])
        impact_terms: dict[str, int] = {f"class {worst}": crit[worst]}
    else:
        impact_terms = {"class unknown": method.unknown}
    held = dict(factors)
    held["regulated"] = any(
        (info := classes.get(c)) is not None and info.regulated for c in device_classes
    )
    for name in IMPACT_FACTORS:
        points = method.impact_factors.get(name, 0)
        if held.get(name) and points:
            impact_terms[name] = points
    likelihood = _clamp(sum(likelihood_terms.values()))
    impact = _clamp(sum(impact_terms.values()))
    risk = likelihood * impact
    terms = {"likelihood": likelihood_terms, "impact": impact_terms, "method": method.path}
    return Score(likelihood, impact, risk, method.level(risk), terms)


# ---------------------------------------------------------------- the method file

_TOP = frozenset({"version", "description", "likelihood", "impact", "levels"})
_LIKELIHOOD = frozenset({"severity", "factors"})
_IMPACT = frozenset({"unknown", "categories", "classes", "factors"})


class _Reader:
    def __init__(self, path: Path, device_classes: Collection[str], categories: Collection[str]):
        self.path = path
        self.device_classes = device_classes
        self.category_names = categories
        self.errors: list[str] = []

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.path}:{line}: {message}")

    def mapping(self, parent: Map, key: str, allowed: Collection[str] | None) -> Map:
        value = parent.get(key)
        if value is None:
            self.error(line_of(parent), f"missing required key {key!r}")
            return empty_map()
        if not isinstance(value, Map):
            self.error(line_of(parent, key), f"{key!r} must be a mapping")
            return empty_map()
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    self.error(line_of(value, k), f"unknown key {k!r} in {key}")
        return value

    def points(self, where: Map, what: str, names: Collection[str] | None, low: int) -> dict:
        out: dict[str, int] = {}
        for name, value in where.items():
            line = line_of(where, name)
            if names is not None and name not in names:
                self.error(line, f"{what}: unknown name {name!r} (one of {', '.join(names)})")
            elif not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 5:
                self.error(line, f"{what}: {name} must be a whole number {low}..5, got {value!r}")
            else:
                out[str(name)] = value
        return out

    def run(self) -> RiskMethod | None:
        data, problems = read(self.path)
        for line, message in problems:
            self.error(line, message)
        if data is None:
            return None
        if not isinstance(data, Map):
            self.error(1, "a risk method is a mapping (version, likelihood, impact, levels)")
            return None
        for key in data:
            if key not in _TOP:
                self.error(line_of(data, key), f"unknown key {key!r}")
        if data.get("version") != VERSION:
            self.error(line_of(data, "version"), f"version must be {VERSION}")
        lk = self.mapping(data, "likelihood", _LIKELIHOOD)
        im = self.mapping(data, "impact", _IMPACT)
        severity = self.points(self.mapping(lk, "severity", SEVERITIES), "likelihood.severity",
                               SEVERITIES, 1) if lk else {}  # fmt: skip
        for sev in SEVERITIES:
            if lk and isinstance(lk.get("severity"), Map) and sev not in lk["severity"]:
                self.error(line_of(lk, "severity"), f"likelihood.severity: missing {sev!r}")
        lf = self.points(
            lk.get("factors") or empty_map(), "likelihood.factors", LIKELIHOOD_FACTORS, 0
        )
        unknown = im.get("unknown", 3) if im else 3
        if not isinstance(unknown, int) or isinstance(unknown, bool) or not 1 <= unknown <= 5:
            self.error(line_of(im, "unknown"), f"impact.unknown must be 1..5, got {unknown!r}")
            unknown = 3
        cats = self.points(im.get("categories") or empty_map(), "impact.categories",
                           sorted(self.category_names), 1)  # fmt: skip
        classes = self.points(im.get("classes") or empty_map(), "impact.classes",
                              None, 1)  # fmt: skip
        for name in classes:
            if name not in self.device_classes:
                message = f"impact.classes: unknown device class {name!r} (vocabulary.yaml)"
                self.error(line_of(im["classes"], name), message)
        imf = self.points(im.get("factors") or empty_map(), "impact.factors", IMPACT_FACTORS, 0)
        levels: list[tuple[str, int]] = []
        lv = self.mapping(data, "levels", None)
        last = 0
        for name, bound in lv.items():
            line = line_of(lv, name)
            if not isinstance(bound, int) or isinstance(bound, bool) or not 1 <= bound <= 25:
                self.error(line, f"levels: {name} must be a risk bound 1..25, got {bound!r}")
            elif bound <= last:
                self.error(line, f"levels: {name}'s bound {bound} must exceed the one before")
            else:
                levels.append((str(name), bound))
                last = bound
        if lv and levels and last != 25:
            self.error(line_of(data, "levels"), "levels: the last bound must be 25 (5 x 5)")
        if self.errors:
            return None
        return RiskMethod(str(self.path), severity, lf, unknown, cats, classes, imf, levels)


def vocabulary_classes() -> dict[str, DeviceClassInfo]:
    """The shipped vocabulary's device classes (category, regulated)."""
    from monitor.fingerprint.rules import load_rules
    from monitor.resources import data_dir

    vocab = load_rules([data_dir("fingerprints")]).vocabulary
    return {name: DeviceClassInfo(dc.category, dc.regulated)
            for name, dc in vocab.device_classes.items()}  # fmt: skip


def shipped_method() -> Path:
    """The shipped ``policies/risk.yaml``."""
    from monitor.resources import data_dir

    return data_dir("policies") / "risk.yaml"


def load_method(
    path: str | Path | None = None, classes: Mapping[str, DeviceClassInfo] | None = None
) -> RiskMethod:
    """Load and check a risk method file (the shipped one when ``path`` is None). Raises
    :class:`ScoringError`, one ``path:LINE: message`` line a problem."""
    p = Path(path) if path is not None else shipped_method()
    if not p.is_file():
        raise ScoringError([f"{p}: no such risk method file"])
    classes = classes if classes is not None else vocabulary_classes()
    categories = {info.category for info in classes.values()}
    reader = _Reader(p, set(classes), categories)
    method = reader.run()
    if method is None:
        raise ScoringError(reader.errors or [f"{p}:1: not a risk method"])
    return method


def score_findings(
    findings: Iterable[Any], method: RiskMethod, classes: Mapping[str, DeviceClassInfo]
) -> None:
    """Set each finding's ``likelihood``, ``impact``, ``risk``, ``risk_level`` and
    ``risk_terms`` (:class:`monitor.policy.findings.Finding`) from its factors."""
    for f in findings:
        s = score(f.severity, f.factors, method, classes)
        f.likelihood, f.impact, f.risk, f.risk_level = s.likelihood, s.impact, s.risk, s.level
        f.risk_terms = s.terms
