"""The fingerprint engine: a device's signals + the rules -> an asset with evidence.

Pure: no I/O and no database. The caller gathers every signal about a device (observations,
``oui.vendor`` from the MAC, ``dicom.*`` and ``hl7.*`` from their tables) into a
:class:`Device`; :meth:`Engine.fingerprint` returns a :class:`Fingerprint` whose fields, each
with the rule and the signals that set it, fill an ``assets`` row.

Conflicts, per field (the first difference decides) [p0f specific/generic]:

1. a non-generic rule beats a generic one;
2. higher confidence;
3. more specific: more keys matched (``match`` keys plus those of the ``any`` branch);
4. a site rule beats a shipped one;
5. rule id order, so the result never depends on file order.

Speed: rules are indexed by one signal kind each rule requires (the rarest of its ``match``
keys; an ``any``-only rule by every kind its branches name). A device only tries the rules
indexed under its kinds, and a rule whose ``match`` kinds are not all present is skipped
before any regex runs.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from monitor.fingerprint.lifecycle import patchability
from monitor.fingerprint.rules import FIELDS, Rule, RuleSet

#: Fields whose values must come from the closed vocabulary, even when a placeholder fills them.
_CLOSED_FIELDS = ("device_class", "os_family")


@dataclass(frozen=True, slots=True)
class Signal:
    """One fact about a device: an observation kind and value, and where it came from."""

    kind: str
    value: str
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    #: Where the signal came from: 'observations', 'dicom_devices', 'oui', ...
    source: str = ""


@dataclass
class Device:
    """Everything known about one device (an IP, a MAC, or both)."""

    key: str
    ip: str | None
    mac: str | None
    signals: list[Signal] = field(default_factory=list)

    def values(self) -> dict[str, list[str]]:
        """Signal values by kind, each value once, in signal order."""
        seen: dict[str, dict[str, None]] = {}
        for s in self.signals:
            vals = seen.get(s.kind)
            if vals is None:
                seen[s.kind] = {s.value: None}
            else:
                vals[s.value] = None
        return {kind: list(vals) for kind, vals in seen.items()}


@dataclass(frozen=True, slots=True)
class FieldValue:
    """A field's value and its evidence: the rule that set it and the signals it matched."""

    value: str
    rule_id: str
    rev: int
    confidence: float
    generic: bool
    signals: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A value one fired rule proposed for one field (the winner is a candidate too)."""

    field: str
    value: str
    rule_id: str
    rev: int
    confidence: float
    generic: bool
    specificity: int
    site: bool
    signals: tuple[tuple[str, str], ...]

    def rank(self) -> tuple[bool, float, int, bool, str]:
        """Sort key: the smallest wins (see the module docstring)."""
        return (self.generic, -self.confidence, -self.specificity, not self.site, self.rule_id)

    def field_value(self) -> FieldValue:
        """This candidate as the field's value."""
        return FieldValue(
            self.value, self.rule_id, self.rev, self.confidence, self.generic, self.signals
        )


def why_lost(winner: Candidate, loser: Candidate) -> str:
    """Why ``loser`` did not set the field: the first tie-break that decided."""
    if loser.generic and not winner.generic:
        return "generic rule, and a specific rule set this field"
    if loser.confidence < winner.confidence:
        return f"lower confidence ({loser.confidence:g} < {winner.confidence:g})"
    if loser.specificity < winner.specificity:
        keys = "key" if loser.specificity == 1 else "keys"
        return f"less specific ({loser.specificity} matched {keys} < {winner.specificity})"
    if winner.site and not loser.site:
        return "shipped rule, and a site rule ranks equal"
    return f"equal rank; {winner.rule_id} comes first in id order"


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that fired on the device: what it set and which signals matched."""

    rule_id: str
    rev: int
    confidence: float
    set_values: dict[str, str]
    matched_signals: tuple[tuple[str, str], ...]
    specificity: int = 0
    generic: bool = False
    site: bool = False
    #: ``(field, why)`` for each ``set`` field the rule could not fill.
    unset: tuple[tuple[str, str], ...] = ()


@dataclass
class Fingerprint:
    """What the rules concluded about a device."""

    #: Field name -> value with evidence; a field no rule set is absent.
    fields: dict[str, FieldValue]
    patchable: bool | None
    patchable_reason: str
    lifecycle_id: str | None
    #: Mean confidence of the fields set (0.0 when none is).
    confidence: float
    fired: list[RuleHit]
    #: Field name -> every candidate value, best first (the winner is the first).
    candidates: dict[str, list[Candidate]] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        """The field's value, or None when no rule set it."""
        fv = self.fields.get(name)
        return fv.value if fv is not None else None

    def asset_fields(self) -> dict[str, str | None]:
        """Every field (:data:`~monitor.fingerprint.rules.FIELDS`) -> its value or None."""
        return {name: self.value(name) for name in FIELDS}

    def evidence(self) -> dict[str, Any]:
        """The evidence as a dict: ``{field: {value, rule, rev, confidence, signals},
        patchable: {value, reason, lifecycle}}``."""
        out: dict[str, Any] = {}
        for name in FIELDS:
            fv = self.fields.get(name)
            if fv is not None:
                out[name] = {
                    "value": fv.value,
                    "rule": fv.rule_id,
                    "rev": fv.rev,
                    "confidence": fv.confidence,
                    "signals": [[k, v] for k, v in fv.signals],
                }
        out["patchable"] = {
            "value": self.patchable,
            "reason": self.patchable_reason,
            "lifecycle": self.lifecycle_id,
        }
        return out

    def evidence_json(self) -> str:
        """:meth:`evidence` as compact JSON, for ``assets.evidence``."""
        return json.dumps(self.evidence(), separators=(",", ":"), ensure_ascii=False)


class Engine:
    """Applies a :class:`~monitor.fingerprint.rules.RuleSet` to devices."""

    def __init__(self, rules: RuleSet) -> None:
        """Index the rules by the signal kinds they need."""
        self.rules = rules
        self._rules: tuple[Rule, ...] = rules.rules
        popularity = Counter(c.kind for r in self._rules for c in r.match)
        index: dict[str, list[int]] = {}
        for i, rule in enumerate(self._rules):
            if rule.match:
                keys = [min((c.kind for c in rule.match), key=lambda k: (popularity[k], k))]
            else:
                keys = sorted({c.kind for branch in rule.any_ for c in branch})
            for kind in keys:
                index.setdefault(kind, []).append(i)
        self._index = index

    def candidate_rules(self, kinds: set[str] | dict[str, Any]) -> list[Rule]:
        """Rules worth trying on a device with these signal kinds, in rule order."""
        picked: set[int] = set()
        for kind in kinds:
            hit = self._index.get(kind)
            if hit is not None:
                picked.update(hit)
        out = []
        for i in sorted(picked):
            rule = self._rules[i]
            if all(k in kinds for k in rule.required_kinds):
                out.append(rule)
        return out

    def fingerprint(self, device: Device, as_of: date) -> Fingerprint:
        """Run the rules on one device; patchability as of ``as_of``."""
        values = device.values()
        vocabulary = self.rules.vocabulary
        fired: list[RuleHit] = []
        candidates: dict[str, list[Candidate]] = {}
        for rule in self.candidate_rules(values):
            m = rule.evaluate(values)
            if m is None:
                continue
            set_values, unset = rule.fill(m)
            for name in _CLOSED_FIELDS:
                if name in set_values and not vocabulary.allows(name, set_values[name]):
                    value = set_values.pop(name)
                    unset.append((name, f"{value!r} is not in the vocabulary"))
            fired.append(
                RuleHit(
                    rule.id,
                    rule.rev,
                    rule.confidence,
                    set_values,
                    m.signals,
                    m.specificity,
                    rule.generic,
                    rule.site,
                    tuple(unset),
                )
            )
            for name, value in set_values.items():
                candidates.setdefault(name, []).append(
                    Candidate(
                        name,
                        value,
                        rule.id,
                        rule.rev,
                        rule.confidence,
                        rule.generic,
                        m.specificity,
                        rule.site,
                        m.signals,
                    )
                )
        fields: dict[str, FieldValue] = {}
        for name in FIELDS:
            cands = candidates.get(name)
            if cands:
                cands.sort(key=Candidate.rank)
                fields[name] = cands[0].field_value()
        ordered = {name: candidates[name] for name in FIELDS if name in candidates}
        confidence = (
            round(sum(fv.confidence for fv in fields.values()) / len(fields), 4) if fields else 0.0
        )
        asset = {name: fv.value for name, fv in fields.items()}
        patch = patchability(asset, as_of, vocabulary, self.rules.lifecycle)
        return Fingerprint(
            fields=fields,
            patchable=patch.patchable,
            patchable_reason=patch.reason,
            lifecycle_id=patch.entry_id,
            confidence=confidence,
            fired=fired,
            candidates=ordered,
        )
