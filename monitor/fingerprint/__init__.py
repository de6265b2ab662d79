"""Device fingerprinting: rule files -> a pure engine -> asset fields with evidence (STYLE S6).

- :mod:`.rules`: load, validate and lint rule directories (``fingerprints/`` and site dirs).
- :mod:`.engine`: apply the rules to a device's signals.
- :mod:`.lifecycle`: patchability from end-of-support data.
- :mod:`.explain`: ``medmon fingerprint explain`` text and the paste-ready site rule.
- :mod:`.identity`: which device is behind an address; :mod:`.oui`: MAC vendor prefixes.

No DuckDB here and no I/O beyond reading rule files: the register gathers the signals.
"""

from __future__ import annotations

from monitor.fingerprint.engine import (
    Candidate,
    Device,
    Engine,
    FieldValue,
    Fingerprint,
    RuleHit,
    Signal,
)
from monitor.fingerprint.lifecycle import Patchability, patchability
from monitor.fingerprint.rules import (
    FIELDS,
    Rule,
    RuleError,
    RuleSet,
    Vocabulary,
    lint,
    load_rules,
    shipped_dir,
)

__all__ = [
    "FIELDS",
    "Candidate",
    "Device",
    "Engine",
    "FieldValue",
    "Fingerprint",
    "Patchability",
    "Rule",
    "RuleError",
    "RuleHit",
    "RuleSet",
    "Signal",
    "Vocabulary",
    "lint",
    "load_rules",
    "patchability",
    "shipped_dir",
]
