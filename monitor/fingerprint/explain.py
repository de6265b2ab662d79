"""``medmon fingerprint explain IP|MAC``: why a device got its fields, as plain text.

Shows the device's signals, the rules that fired, per field the winning rule and why the
others lost, the patchability verdict, and finally the device's signals as a ready site rule
to paste and generalize (STYLE S6 "observe -> paste -> generalize") [p0f ``raw_sig``;
datasette allow-debug].
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime

from monitor.fingerprint.engine import Device, Fingerprint, why_lost
from monitor.fingerprint.rules import FIELDS, KIND_RE, SITE_PREFIX, RuleSet

#: The id the skeleton carries until the engineer names the rule.
SKELETON_ID = SITE_PREFIX + "change-me"


def yaml_str(value: str) -> str:
    """A YAML flow scalar that reads back as exactly ``value``."""
    if value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    return json.dumps(value)


def anchored(value: str) -> str:
    """A regex matching exactly ``value`` (escaped; spaces stay readable)."""
    return "^" + re.escape(value).replace("\\ ", " ") + "$"


def _time(ts: datetime | None) -> str:
    """Capture time in UTC (``Z``), or as given when it carries no time zone."""
    if ts is None:
        return "-"
    if ts.tzinfo is not None:
        return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ts.isoformat(timespec="seconds")


def _tristate(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[value]


def site_rule_skeleton(device: Device) -> str:
    """The device's signals as a site rule to paste under ``rules:`` in a site file.

    One ``match`` key per signal kind: an anchored, escaped regex of its most frequent value
    (the first on a tie; the other values follow as comments), and one example with those
    values. Once ``set`` (and the description and references) are filled in, it lints clean.
    """
    counts: Counter[tuple[str, str]] = Counter((s.kind, s.value) for s in device.signals)
    by_kind = device.values()
    lines = [
        f"  - id: {SKELETON_ID}",
        "    rev: 1",
        f"    description: CHANGE-ME what identifies this device ({device.key})",
        "    references: ['CHANGE-ME: where and when it was observed']",
        "    match:",
    ]
    chosen: dict[str, str] = {}
    skipped: list[str] = []
    for kind in sorted(by_kind):
        if not KIND_RE.match(kind):
            skipped.append(kind)
            continue
        values = by_kind[kind]
        best = max(values, key=lambda v: (counts[(kind, v)], -values.index(v)))
        chosen[kind] = best
        lines.append(f"      {kind}: {yaml_str(anchored(best))}")
        lines.extend(f"      # {kind} also seen: {yaml_str(v)}" for v in values if v != best)
    lines.extend(f"      # not usable in a rule (not a proto.attribute kind): {k}" for k in skipped)
    lines.append("    set: {}")
    lines.extend(f"      # {name}:" for name in FIELDS)
    lines.append("    confidence: 0.9")
    lines.append("    examples:")
    first = True
    for kind, value in chosen.items():
        lead = "      - " if first else "        "
        lines.append(f"{lead}{kind}: {yaml_str(value)}")
        first = False
    if first:
        lines.append("      - {}  # no signals: nothing to match yet")
    return "\n".join(lines) + "\n"


def render(device: Device, fingerprint: Fingerprint, rules: RuleSet) -> str:
    """Plain-text explanation of one device's fingerprint (see the module docstring)."""
    out: list[str] = []
    w = out.append
    w(f"device {device.key}")
    w(f"  ip:  {device.ip or '-'}")
    w(f"  mac: {device.mac or '-'}")
    w("")

    # signals
    by_kind: dict[str, list[tuple[str, datetime | None, datetime | None, set[str]]]] = {}
    for s in device.signals:
        rows = by_kind.setdefault(s.kind, [])
        for i, (value, first, last, sources) in enumerate(rows):
            if value == s.value:
                firsts = [t for t in (first, s.first_seen) if t is not None]
                lasts = [t for t in (last, s.last_seen) if t is not None]
                rows[i] = (
                    value,
                    min(firsts) if firsts else None,
                    max(lasts) if lasts else None,
                    sources | ({s.source} if s.source else set()),
                )
                break
        else:
            rows.append((s.value, s.first_seen, s.last_seen, {s.source} if s.source else set()))
    n_values = sum(len(v) for v in by_kind.values())
    w(f"signals ({len(by_kind)} kinds, {n_values} values):" if by_kind else "signals: none")
    for kind in sorted(by_kind):
        w(f"  {kind}")
        for value, first, last, sources in by_kind[kind]:
            source = ", ".join(sorted(sources)) or "-"
            seen = f"  {_time(first)} .. {_time(last)}" if first or last else ""
            w(f"    {value!r}{seen}  ({source})")
    w("")

    # rules fired
    w(f"rules fired ({len(fingerprint.fired)}):" if fingerprint.fired else "rules fired: none")
    for hit in fingerprint.fired:
        tags = "".join([", generic" if hit.generic else "", ", site" if hit.site else ""])
        w(f"  {hit.rule_id} rev {hit.rev} (confidence {hit.confidence:g}{tags})")
        rule = rules.get(hit.rule_id)
        if rule is not None:
            w(f"    {rule.description}  [{rule.path}:{rule.line}]")
        sets = ", ".join(f"{k}={v!r}" for k, v in hit.set_values.items()) or "nothing"
        w(f"    sets: {sets}")
        for name, why in hit.unset:
            w(f"    not set: {name}: {why}")
        for kind, value in hit.matched_signals:
            w(f"    matched: {kind} = {value!r}")
    w("")

    # fields
    w("fields:")
    vocabulary = rules.vocabulary
    for name in FIELDS:
        fv = fingerprint.fields.get(name)
        cands = fingerprint.candidates.get(name, [])
        if fv is None:
            w(f"  {name}: not set (no rule that fired sets it)")
            continue
        win = cands[0] if cands else None
        keys = ""
        if win is not None:
            keys = f", {win.specificity} key{'s' if win.specificity != 1 else ''}"
        w(f"  {name}: {fv.value!r}")
        w(f"    by {fv.rule_id} rev {fv.rev} (confidence {fv.confidence:g}{keys})")
        if not vocabulary.allows(name, fv.value):
            w(
                f"    note: {name} {fv.value!r} came from a placeholder and is not in the "
                "vocabulary; add it to vocabulary.yaml or map it to a canonical name"
            )
        if win is not None:
            for loser in cands[1:]:
                w(f"    lost: {loser.rule_id} -> {loser.value!r}: {why_lost(win, loser)}")
    w("")

    # patchability
    lifecycle = f" [lifecycle {fingerprint.lifecycle_id}]" if fingerprint.lifecycle_id else ""
    w(f"patchable: {_tristate(fingerprint.patchable)}: {fingerprint.patchable_reason}{lifecycle}")
    w(f"confidence: {fingerprint.confidence:g}")
    w("")

    # skeleton
    w("site rule skeleton: paste under `rules:` in a file of your site directory, fill in")
    w("`set`, the description and references, keep the keys that identify the device, then")
    w("run `medmon fingerprint lint`:")
    w("")
    out.append(site_rule_skeleton(device).rstrip("\n"))
    return "\n".join(out) + "\n"
