"""The policy commands' Python API: what ``medmon policy ...`` calls [sqlite-utils db.py].

Thin: lint a file, or look a flow and its two devices up in the register and explain how a
policy decides it::

    from monitor.policy import api
    print("\\n".join(api.lint_policy_file("policies/default.yaml")))
    print(api.explain_flow("medmon.duckdb", None, "10.20.0.11", "10.30.0.10", 4242))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monitor.policy.check import explain
from monitor.policy.load import PolicyError, lint_policy, load_policy, shipped_policy
from monitor.register import open_register

__all__ = [
    "PolicyError",
    "check_run",
    "explain_flow",
    "lint_policy_file",
    "policy_path",
    "suggest_policy",
]


def policy_path(path: str | os.PathLike[str] | None) -> Path:
    """The policy file to use: ``path``, else the shipped ``policies/default.yaml``."""
    return Path(path) if path else shipped_policy()


def lint_policy_file(path: str | os.PathLike[str]) -> list[str]:
    """``medmon policy lint``: one ``file:LINE: message`` line per problem (none: clean)."""
    return lint_policy(Path(path))


def explain_flow(
    db: str,
    policy: str | os.PathLike[str] | None,
    client: str,
    server: str,
    port: int,
    proto: str = "tcp",
) -> str:
    """``medmon policy check --explain``: how ``policy`` (default: the shipped one) decides
    the flow CLIENT -> SERVER PROTO/PORT, with the flow's application and VLAN and both
    devices (device class, MAC, asset id) taken from the register when it has them.

    Raises :class:`PolicyError` when the policy does not lint clean.
    """
    pol = load_policy(policy_path(policy))
    proto = proto.lower()
    flow: dict[str, Any] = {
        "client_ip": client,
        "server_ip": server,
        "server_port": port,
        "proto": proto,
        "app": None,
        "vlan": None,
    }
    with open_register(db, read_only=True) as reg:
        _names, rows = reg.query(
            """
            SELECT app, vlan FROM flows
            WHERE client_ip = ? AND server_ip = ? AND server_port = ? AND proto = ?
            ORDER BY app IS NULL, last_seen DESC LIMIT 1
            """,
            [client, server, port, proto],
        )
        seen = bool(rows)
        if rows:
            flow["app"], flow["vlan"] = rows[0]
        assets = [_asset(reg, ip) for ip in (client, server)]
    text = explain(pol, flow, assets[0], assets[1])
    if not seen:
        text += f"\nnote: no such flow in {db}; decided by port alone, with no application"
    return text


def _asset(reg: Any, ip: str) -> dict[str, Any] | None:
    names, rows = reg.query(
        """
        SELECT asset_id, ip, mac, vlan, device_class FROM assets
        WHERE ip = ? OR list_contains(addresses, ?)
        ORDER BY last_seen DESC NULLS LAST LIMIT 1
        """,
        [ip, ip],
    )
    return dict(zip(names, rows[0], strict=True)) if rows else None


def suggest_policy(db: str, run_id: int | None = None) -> str:
    """``medmon policy suggest``: a least-privilege policy (commented YAML) from the
    conversations of one run, or of every run."""
    from monitor.policy.suggest import suggest
    from monitor.register.exceptions import baseline

    with open_register(db, read_only=True) as reg:
        services, assets = baseline(reg, run_id)
    where = f"run {run_id} of {db}" if run_id is not None else f"every run of {db}"
    return suggest(services, assets, source=where)


def check_run(db: str, policy: str | os.PathLike[str] | None, run_id: int | None = None) -> list:
    """``medmon policy check``: the findings the policy gives a run of the register (the last
    run by default), computed without writing anything."""
    from monitor.fingerprint.rules import load_rules
    from monitor.policy.findings import run_findings
    from monitor.register.exceptions import finding_inputs
    from monitor.resources import data_dir

    pol = load_policy(policy_path(policy))
    classes = load_rules([data_dir("fingerprints")]).vocabulary.device_classes
    with open_register(db, read_only=True) as reg:
        if run_id is None:
            last = reg.con.execute("SELECT max(run_id) FROM runs").fetchall()[0][0]
            if last is None:
                return []
            run_id = int(last)
        inputs = finding_inputs(reg, run_id)

    def regulated(device_class: str | None) -> bool:
        dc = classes.get(device_class or "")
        return bool(dc is not None and dc.regulated)

    return run_findings(pol, regulated=regulated, run_id=run_id, **inputs)
