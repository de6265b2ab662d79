"""Segmentation policies: the format (:mod:`.model`), loading and lint (:mod:`.load`), and
evaluating flows (:mod:`.check`) (STYLE S7; ``policies/README.md`` documents the format)."""

from monitor.policy.check import Decision, Evaluator, decide, evaluator, explain, zone_of
from monitor.policy.load import PolicyError, lint_policy, load_policy, shipped_policy
from monitor.policy.model import (
    SEVERITIES,
    UNZONED,
    Checks,
    Defaults,
    Group,
    Policy,
    Rule,
    Service,
    Zone,
)

__all__ = [
    "SEVERITIES",
    "UNZONED",
    "Checks",
    "Decision",
    "Defaults",
    "Evaluator",
    "Group",
    "Policy",
    "PolicyError",
    "Rule",
    "Service",
    "Zone",
    "decide",
    "evaluator",
    "explain",
    "lint_policy",
    "load_policy",
    "shipped_policy",
    "zone_of",
]
