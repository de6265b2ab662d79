"""Speed of evaluation: 100,000 flows x 200 rules (target: a few seconds at most).

Run with ``pytest tests/policy/test_check_bench.py --benchmark-enable`` to see timings; by
default (``--benchmark-disable``) the body runs once, as a test.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from monitor.policy import Policy, decide, load_policy

N_ZONES = 40
N_RULES = 200
N_FLOWS = 100_000
APPS = [None, "dicom", "hl7", "tls", "http", "ssh", "dns"]


def _policy(tmp_path: Path) -> Policy:
    zones: dict[str, Any] = {f"z{i}": {"cidrs": [f"10.{i}.0.0/16"], "vlans": [100 + i]}
                             for i in range(N_ZONES)}  # fmt: skip
    zones["internet"] = {"external": True}
    services = {f"s{i}": {"tcp": [1000 + i]} for i in range(30)}
    services.update({"dicom": {"app": "dicom", "tcp": [104]}, "hl7": {"app": "hl7"},
                     "https": {"app": "tls", "tcp": [443]}})  # fmt: skip
    rng = random.Random(5)
    rules = []
    pairs = rng.sample([(a, b) for a in range(N_ZONES) for b in range(N_ZONES)], N_RULES)
    for i, (a, b) in enumerate(pairs):
        svc = [f"s{i % 30}", ["dicom", "hl7", "https"][i % 3]]
        rule: dict[str, Any] = {"id": f"r{i}", "service": svc}
        if i % 4:
            rule["allow"] = f"z{a} -> z{b}"
        else:
            rule.update(deny=f"z{a} -> z{b}", severity="high", why="w", hipaa_ref="h")
        rules.append(rule)
    default = {"same_zone": "allow", "cross_zone": "deny", "why": "w", "hipaa_ref": "h"}
    doc = {"version": 1, "zones": zones, "services": services, "rules": rules,
           "default": default}  # fmt: skip
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_policy(path, device_classes=())


def _flows() -> list[dict[str, Any]]:
    rng = random.Random(7)
    hosts = [f"10.{rng.randrange(N_ZONES + 5)}.{rng.randrange(4)}.{rng.randrange(1, 255)}"
             for _ in range(5_000)] + ["93.184.216.34", "8.8.8.8"]  # fmt: skip
    return [
        {"client_ip": rng.choice(hosts), "server_ip": rng.choice(hosts), "proto": "tcp",
         "server_port": rng.choice([104, 443, 80, 1005, 1017, 22]), "app": rng.choice(APPS),
         "vlan": rng.choice([None, None, 103])}
        for _ in range(N_FLOWS)
    ]  # fmt: skip


def test_100k_flows_200_rules(benchmark: Any, tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    flows = _flows()

    def run() -> dict[str, int]:
        policy.cache.clear()  # every round compiles from scratch
        counts: dict[str, int] = {}
        for flow in flows:
            d = decide(policy, flow)
            counts[d.action] = counts.get(d.action, 0) + 1
        return counts

    counts = benchmark(run)
    assert sum(counts.values()) == N_FLOWS
    assert counts.get("allow", 0) > 0 and counts.get("deny", 0) > 0
