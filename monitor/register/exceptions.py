"""The risk register's findings side: what a run's checks need from the register, and writing
their findings into ``exceptions`` (one row per finding, stable ``exception_id``).

A finding seen again adds its occurrences and moves ``last_seen``; a person's decisions on it
(status, owner, controls, review date) are never touched here. Writing the same run's findings
again (a live run's next flush) replaces that run's contribution instead of adding it twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from monitor.policy.findings import Finding
from monitor.register.lifecycle import MEDMON, Change, append_history, reopen_seen_again
from monitor.register.schema import Register

#: Observation kinds the built-in checks read.
CHECKED_KINDS = ("tls.version", "smb.version1", "http.basic_auth", "snmp.default_community")

_TS = pa.timestamp("ns", tz="UTC")


def _dicts(cur: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def finding_inputs(reg: Register, run_id: int) -> dict[str, Any]:
    """The run's services (flows grouped by ends, port and application), the devices by each
    of their addresses, the observations the checks read, and whether an earlier run exists."""
    con = reg.con
    services = _dicts(
        con.execute(
            """
            SELECT client_ip, server_ip, proto, server_port, app, any_value(vlan) AS vlan,
                   count(*) AS flows, min(first_seen) AS first_seen,
                   max(last_seen) AS last_seen
            FROM flows WHERE run_id = ? GROUP BY client_ip, server_ip, proto, server_port, app
            """,
            [run_id],
        )
    )
    assets: dict[str, dict[str, Any]] = {}
    for row in _dicts(con.execute("SELECT * FROM assets")):
        for address in row.get("addresses") or [row.get("ip")]:
            if address:
                assets.setdefault(address, row)
        if row.get("ip"):
            assets[row["ip"]] = row  # the current holder of an address wins
    placeholders = ", ".join("?" for _ in CHECKED_KINDS)
    observations = _dicts(
        con.execute(
            f"""
            SELECT ip, kind, value, ts, coalesce(last_ts, ts) AS last_ts, count
            FROM observations WHERE run_id = ? AND ip IS NOT NULL AND kind IN ({placeholders})
            """,
            [run_id, *CHECKED_KINDS],
        )
    )
    previous = con.execute("SELECT count(*) FROM runs WHERE run_id < ?", [run_id]).fetchall()
    return {
        "services": services,
        "assets": assets,
        "observations": observations,
        "previous_run": bool(previous[0][0]),
    }


def record_findings(reg: Register, run_id: int, findings: Sequence[Finding]) -> int:
    """Write ``findings`` of run ``run_id`` into ``exceptions`` (inside the run's transaction);
    return how many are new to the register."""
    if not findings:
        return 0
    con = reg.con
    names = ["exception_id", "kind", "subject", "title", "hipaa_ref", "severity", "rule",
             "evidence", "risk_level", "risk_factors", "first_seen", "last_seen", "occurrences",
             "likelihood", "impact", "risk"]  # fmt: skip
    types = [pa.string()] * 10 + [_TS, _TS, pa.int64(), pa.int32(), pa.int32(), pa.int32()]
    rows = [
        (f.exception_id, f.kind, f.subject, f.title, f.hipaa_ref, f.severity, f.rule,
         json.dumps(f.evidence, sort_keys=True, default=str), f.risk_level,
         json.dumps({"factors": f.factors, **f.risk_terms}, sort_keys=True, default=str)
         if f.risk_terms else None, f.first_seen, f.last_seen, f.occurrences,
         f.likelihood, f.impact, f.risk)
        for f in findings
    ]  # fmt: skip
    now = datetime.now(UTC)
    cols = list(zip(*rows, strict=True))
    table = pa.Table.from_arrays(
        [pa.array(list(c), type=t) for c, t in zip(cols, types, strict=True)], names=names
    )
    con.register("_medmon_findings", table)
    try:
        new_ids = [
            r[0]
            for r in con.execute(
                "SELECT exception_id FROM _medmon_findings f "
                "ANTI JOIN exceptions e USING (exception_id) ORDER BY exception_id"
            ).fetchall()
        ]
        rescored = con.execute(
            """
            SELECT e.exception_id, e.risk, f.risk FROM exceptions e
            JOIN _medmon_findings f USING (exception_id)
            WHERE f.risk IS NOT NULL AND e.risk IS DISTINCT FROM f.risk
            ORDER BY e.exception_id
            """
        ).fetchall()
        con.execute(
            f"""
            UPDATE exceptions e SET
                last_seen = greatest(e.last_seen, f.last_seen),
                first_seen = least(e.first_seen, f.first_seen),
                occurrences = CASE WHEN e.last_run = {int(run_id)}
                    THEN e.occurrences - coalesce(e.last_run_count, 0) + f.occurrences
                    ELSE e.occurrences + f.occurrences END,
                last_run = {int(run_id)}, last_run_count = f.occurrences,
                title = f.title, evidence = f.evidence,
                likelihood = coalesce(f.likelihood, e.likelihood),
                impact = coalesce(f.impact, e.impact), risk = coalesce(f.risk, e.risk),
                risk_level = coalesce(f.risk_level, e.risk_level),
                risk_factors = coalesce(f.risk_factors, e.risk_factors)
            FROM _medmon_findings f WHERE e.exception_id = f.exception_id
            """
        )
        con.execute(
            f"""
            INSERT INTO exceptions (exception_id, kind, subject, title, hipaa_ref, severity,
                rule, evidence, first_seen, last_seen, occurrences, status, first_run,
                last_run, last_run_count, likelihood, impact, risk, risk_level, risk_factors,
                status_changed_at, created_at)
            SELECT exception_id, kind, subject, title, hipaa_ref, severity, rule, evidence,
                first_seen, last_seen, occurrences, 'open', {int(run_id)}, {int(run_id)},
                occurrences, likelihood, impact, risk, risk_level, risk_factors, $now, $now
            FROM _medmon_findings f ANTI JOIN exceptions e USING (exception_id)
            """,
            {"now": now},
        )
        reopen_seen_again(reg, run_id, "_medmon_findings")
    finally:
        con.unregister("_medmon_findings")
    append_history(
        reg,
        [Change(eid, "status", None, "open", f"found by run {run_id}", MEDMON, run_id)
         for eid in new_ids]
        + [Change(eid, "risk", old, new, f"rescored by run {run_id}", MEDMON, run_id)
           for eid, old, new in rescored],
        now,
    )  # fmt: skip
    return len(new_ids)


def set_zones(reg: Register, zones: Mapping[str, str | None]) -> None:
    """Record each device's policy zone (``asset_id -> zone``) in ``assets.zone``."""
    if not zones:
        return
    con = reg.con
    table = pa.Table.from_arrays(
        [pa.array(list(zones)), pa.array(list(zones.values()), type=pa.string())],
        names=["asset_id", "zone"],
    )
    con.register("_medmon_zones", table)
    try:
        con.execute(
            "UPDATE assets SET zone = z.zone FROM _medmon_zones z "
            "WHERE assets.asset_id = z.asset_id"
        )
    finally:
        con.unregister("_medmon_zones")


def baseline(
    reg: Register, run_id: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The conversations of one run (or of all) grouped like :func:`finding_inputs`' services,
    and the devices by address: what ``medmon policy suggest`` builds a policy from."""
    con = reg.con
    where, params = ("WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])
    services = _dicts(
        con.execute(
            f"""
            SELECT client_ip, server_ip, proto, server_port, app, count(*) AS flows
            FROM flows {where} GROUP BY client_ip, server_ip, proto, server_port, app
            """,
            params,
        )
    )
    assets: dict[str, dict[str, Any]] = {}
    for row in _dicts(con.execute("SELECT * FROM assets")):
        for address in row.get("addresses") or [row.get("ip")]:
            if address:
                assets.setdefault(address, row)
    return services, assets
