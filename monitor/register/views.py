"""Read-side queries of the risk register: the exceptions as the risk manager sees them (with
the devices and zones they involve and whether their review is overdue), one exception's
evidence, and the provenance of the captures behind a register.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from monitor.register.lifecycle import OVERDUE_SQL
from monitor.register.schema import Register

#: Severities worst first, for ordering.
_SEVERITY_RANK = """CASE e.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1
                    WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END"""

#: The register view: every column of ``exceptions``, and ``overdue``, ``zones`` (the zones
#: of the devices it involves) and ``devices`` (each device as 'IP (name, class)').
REGISTER_SQL = f"""
WITH ends AS (
    SELECT exception_id,
           unnest(CASE WHEN contains(subject, ' -> ')
                       THEN [split_part(subject, ' -> ', 1),
                             split_part(split_part(subject, ' -> ', 2), ' ', 1)]
                       ELSE [subject] END) AS address,
           generate_subscripts(CASE WHEN contains(subject, ' -> ') THEN [1, 2] ELSE [1] END, 1)
               AS position
    FROM exceptions
),
involved AS (
    SELECT n.exception_id,
           list(a.zone ORDER BY n.position) FILTER (WHERE a.zone IS NOT NULL) AS zones,
           list(n.address || coalesce(' (' || nullif(concat_ws(', ',
                    coalesce(a.hostname, nullif(trim(concat_ws(' ', a.vendor, a.model)), '')),
                    a.device_class), '') || ')', '') ORDER BY n.position) AS devices
    FROM ends n
    LEFT JOIN assets a ON a.ip = n.address OR a.asset_id = n.address
    GROUP BY n.exception_id
)
SELECT e.*, {OVERDUE_SQL.replace("status", "e.status").replace("review_by", "e.review_by")}
           AS overdue,
       coalesce(i.zones, []) AS zones, coalesce(i.devices, []) AS devices
FROM exceptions e LEFT JOIN involved i USING (exception_id)
"""

ORDER_SQL = f" ORDER BY e.risk DESC NULLS LAST, {_SEVERITY_RANK}, e.last_seen DESC, e.exception_id"


def register_rows(
    reg: Register,
    *,
    status: Sequence[str] = (),
    kind: Sequence[str] = (),
    severity: Sequence[str] = (),
    zone: Sequence[str] = (),
    overdue: bool = False,
    run_id: int | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The exceptions (:data:`REGISTER_SQL`), riskiest first, filtered: each filter is a set
    of accepted values (a kind also matches by its prefix: ``policy`` is every
    ``policy.*``)."""
    where: list[str] = []
    params: list[Any] = []
    if status:
        where.append("list_contains(?, e.status)")
        params.append(list(status))
    if kind:
        where.append(
            "(" + " OR ".join("(e.kind = ? OR starts_with(e.kind, ?))" for _ in kind) + ")"
        )
        for k in kind:
            params.extend([k, k.rstrip(".") + "."])
    if severity:
        where.append("list_contains(?, e.severity)")
        params.append(list(severity))
    if zone:
        where.append("len(list_intersect(coalesce(i.zones, []), ?)) > 0")
        params.append(list(zone))
    if overdue:
        where.append(OVERDUE_SQL.replace("status", "e.status").replace("review_by", "e.review_by"))
    if run_id is not None:
        where.append("e.last_run = ?")
        params.append(run_id)
    sql = REGISTER_SQL + (" WHERE " + " AND ".join(where) if where else "") + ORDER_SQL
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return reg.query(sql, params)


def _dicts(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in rows]


#: For a finding about a host, the observation kinds that show it.
_KIND_SIGNALS = {
    "tls.deprecated": ("tls.version", "tls.cipher", "tls.cert_not_after"),
    "smb.v1": ("smb.version1", "smb.dialect", "smb.dialects_offered", "smb.native_os"),
    "auth.cleartext": ("http.basic_auth",),
    "snmp.default_community": ("snmp.default_community", "snmp.version"),
}


def exception_detail(reg: Register, exception_id: str) -> dict[str, Any]:
    """One exception as ``medmon register show`` gives it: the row (as the register view),
    its evidence (the flows or observations that show it, with first and last seen; the
    captures they came from, with their hashes), and its history, oldest first."""
    names, rows = reg.query(REGISTER_SQL + " WHERE e.exception_id = ?", [exception_id])
    row = _dicts(names, rows)[0]
    for key in ("evidence", "risk_factors"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    subject: str = row["subject"]
    flows: list[dict[str, Any]] = []
    observations: list[dict[str, Any]] = []
    signals: list[dict[str, Any]] = []
    if " -> " in subject:
        client, rest = subject.split(" -> ", 1)
        server, _, service = rest.partition(" ")
        proto, _, port = service.partition("/")
        flows = _dicts(*reg.query(
            """
            SELECT run_id, app, vlan, count(*) AS flows, min(first_seen) AS first_seen,
                   max(last_seen) AS last_seen,
                   sum(packets_to_server + packets_to_client) AS packets,
                   sum(bytes_to_server + bytes_to_client) AS bytes,
                   list(flow_uid ORDER BY first_seen)[:5] AS example_flow_uids
            FROM flows WHERE client_ip = ? AND server_ip = ? AND proto = ? AND server_port = ?
            GROUP BY run_id, app, vlan ORDER BY run_id, app
            """,
            [client, server, proto, int(port) if port.isdigit() else -1],
        ))  # fmt: skip
        spans = [(f["run_id"], f["first_seen"], f["last_seen"]) for f in flows]
    else:
        kinds = list(_KIND_SIGNALS.get(row["kind"], ()))
        if kinds:
            observations = _dicts(*reg.query(
                """
                SELECT run_id, kind, value, min(ts) AS first_seen,
                       max(coalesce(last_ts, ts)) AS last_seen, sum(count) AS count
                FROM observations WHERE ip = ? AND list_contains(?, kind)
                GROUP BY run_id, kind, value ORDER BY run_id, kind, value
                """,
                [subject, kinds],
            ))  # fmt: skip
        asset_id = (row.get("evidence") or {}).get("asset_id")
        if asset_id:
            signals = _dicts(*reg.query(
                """
                SELECT kind, value, source, first_seen, last_seen, count, first_run, last_run
                FROM asset_signals WHERE asset_id = ? ORDER BY kind, value
                """,
                [asset_id],
            ))  # fmt: skip
        spans = [(o["run_id"], o["first_seen"], o["last_seen"]) for o in observations]
        if not spans and row.get("first_run") is not None:
            last = int(row["last_run"] or row["first_run"])
            spans = [(r, row["first_seen"], row["last_seen"])
                     for r in range(int(row["first_run"]), last + 1)]  # fmt: skip
    # The capture files behind the evidence: those of its runs whose frames span its times.
    captures: list[dict[str, Any]] = []
    for run_id, first, last in spans:
        for c in _dicts(*reg.query(
            """
            SELECT run_id, path, sha256, size, format, packets, first_ts, last_ts
            FROM captures WHERE run_id = ?
              AND (? IS NULL OR last_ts IS NULL OR last_ts >= ?)
              AND (? IS NULL OR first_ts IS NULL OR first_ts <= ?)
            ORDER BY path
            """,
            [run_id, first, first, last, last],
        )):  # fmt: skip
            if c not in captures:
                captures.append(c)
    runs = sorted({s[0] for s in spans})
    live = _dicts(*reg.query(
        "SELECT run_id, source, sensor, started_at, finished_at FROM runs "
        "WHERE list_contains(?, run_id) AND command = 'sniff' ORDER BY run_id",
        [runs],
    ))  # fmt: skip
    history = _dicts(*reg.query(
        'SELECT seq, "at", actor, field, old, new, comment, run_id FROM exception_history '
        'WHERE exception_id = ? ORDER BY seq NULLS FIRST, "at"',
        [exception_id],
    ))  # fmt: skip
    return {
        "exception": row,
        "evidence": {
            "rule": row.get("rule"),
            "flows": flows,
            "observations": observations,
            "signals": signals,
            "captures": captures,
            "live_runs": live,
        },
        "history": history,
    }


def provenance(reg: Register) -> dict[str, Any]:
    """What the register was built from: the runs (sources, sensors, times, packets) and the
    capture files with their hashes and time spans."""
    runs = _dicts(*reg.query(
        "SELECT run_id, command, source, sensor, version, started_at, finished_at, packets, "
        "bytes, dropped, first_ts, last_ts FROM runs ORDER BY run_id"
    ))  # fmt: skip
    captures = _dicts(*reg.query(
        "SELECT run_id, path, sha256, size, format, packets, first_ts, last_ts, warnings "
        "FROM captures ORDER BY run_id, path"
    ))  # fmt: skip
    span = reg.query("SELECT min(first_ts), max(last_ts) FROM runs")[1][0]
    return {"runs": runs, "captures": captures, "first_ts": span[0], "last_ts": span[1]}


#: Each device's DICOM application entities and HL7 applications, as seen on the wire.
APPLICATIONS_SQL = """
SELECT ip, protocol, role, name, sum(n) AS times, min(first_seen) AS first_seen,
       max(last_seen) AS last_seen
FROM (
    SELECT client_ip AS ip, 'DICOM' AS protocol, 'calling AE' AS role, calling_ae AS name,
           count(*) AS n, min(ts) AS first_seen, max(coalesce(ts_end, ts)) AS last_seen
    FROM dicom_associations WHERE calling_ae IS NOT NULL GROUP BY ALL
    UNION ALL
    SELECT server_ip, 'DICOM', 'called AE', called_ae, count(*), min(ts),
           max(coalesce(ts_end, ts))
    FROM dicom_associations WHERE called_ae IS NOT NULL GROUP BY ALL
    UNION ALL
    SELECT CASE direction WHEN 'to_client' THEN server_ip ELSE client_ip END, 'HL7',
           'sending application', concat_ws(' / ', sending_application, sending_facility),
           count(*), min(ts), max(ts)
    FROM hl7_messages
    WHERE sending_application IS NOT NULL OR sending_facility IS NOT NULL GROUP BY ALL
)
GROUP BY ip, protocol, role, name
ORDER BY ip, protocol, role, name
"""


def applications(reg: Register) -> list[dict[str, Any]]:
    """Each device's DICOM AE titles and HL7 sending applications (:data:`APPLICATIONS_SQL`)."""
    return _dicts(*reg.query(APPLICATIONS_SQL))
