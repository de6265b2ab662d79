"""Speed of the engine: 5,000 devices x 500 rules (target: well under 2 s).

Run with ``pytest tests/fingerprint/test_engine_bench.py --benchmark-enable`` to see timings;
by default (``--benchmark-disable``) the body runs once, as a test.
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from monitor.fingerprint.engine import Device, Engine, Fingerprint, Signal
from monitor.fingerprint.rules import load_rules

N_RULES = 500
N_DEVICES = 5_000
#: Signal kinds the rules use; devices also carry kinds no rule uses.
RULE_KINDS = [f"proto{i}.attribute" for i in range(50)]
OTHER_KINDS = [f"other{i}.attribute" for i in range(20)]


def _rules() -> list[dict[str, Any]]:
    rules = []
    for i in range(N_RULES):
        kind = RULE_KINDS[i % len(RULE_KINDS)]
        value = f"vendor{i % 37}-{i}"
        rule: dict[str, Any] = {
            "id": f"bench.rule-{i:03d}",
            "rev": 1,
            "description": "generated",
            "references": ["test_engine_bench.py"],
            "match": {kind: rf"(?i)^vendor{i % 37}-(?P<n>\d+)$"},
            "set": {"model": "Model {n}", "os": f"OS {i % 11}"},
            "confidence": round(0.1 + (i % 9) / 10, 1),
            "examples": [{kind: value}],
        }
        if i % 5 == 0:  # a second AND key
            other = RULE_KINDS[(i + 7) % len(RULE_KINDS)]
            rule["match"][other] = r"\d"
            rule["examples"][0][other] = "x1"
        if i % 7 == 0:  # an OR
            rule["any"] = [{RULE_KINDS[(i + 3) % 50]: "a"}, {RULE_KINDS[(i + 4) % 50]: "b"}]
            rule["examples"][0][RULE_KINDS[(i + 3) % 50]] = "a"
        if i % 13 == 0:
            rule["generic"] = True
        rules.append(rule)
    return rules


def _devices() -> list[Device]:
    rng = random.Random(42)
    devices = []
    for d in range(N_DEVICES):
        signals = []
        for kind in rng.sample(RULE_KINDS, 8) + rng.sample(OTHER_KINDS, 4):
            for _ in range(rng.choice((1, 1, 1, 2))):
                value = f"Vendor{rng.randrange(40)}-{rng.randrange(1000)}"
                signals.append(Signal(kind, value, source="observations"))
        devices.append(Device(f"ip:10.0.{d // 256}.{d % 256}", None, None, signals))
    return devices


def test_engine_speed(benchmark: Any, tmp_path: Path) -> None:
    root = tmp_path / "fp"
    (root / "bench").mkdir(parents=True)
    (root / "bench" / "rules.yaml").write_text(
        yaml.safe_dump({"meta": {"title": "bench"}, "rules": _rules()}, sort_keys=False)
    )
    engine = Engine(load_rules([root]))
    devices = _devices()
    as_of = date(2024, 6, 1)

    def run() -> list[Fingerprint]:
        return [engine.fingerprint(d, as_of) for d in devices]

    result = benchmark(run)
    assert len(result) == N_DEVICES
    identified = sum(1 for fp in result if fp.fields)
    assert 0 < identified < N_DEVICES
    # every model came from a placeholder, never a literal "{n}"
    assert all(not fp.value("model") or "{" not in str(fp.value("model")) for fp in result)
