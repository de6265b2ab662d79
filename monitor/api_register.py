"""The Python API of the risk manager's commands (``medmon register ...`` and ``medmon
report``), beside :mod:`monitor.api`, which it extends::

    from monitor import api_register
    names, rows = api_register.list_exceptions(db="medmon.duckdb", status=["open"])
    api_register.change(db="medmon.duckdb", ident="policy.violation:1a2b", verb="accept",
                        owner="Biomed", controls=["VLAN 20 ACL"], review_by=date(2027, 6, 1))
    api_register.export(db="medmon.duckdb", fmt="xlsx", output="register.xlsx")
    api_register.report(db="medmon.duckdb", output="report.html")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from monitor.api import InputError, default_db, load_risk_method
from monitor.register import open_register
from monitor.register.lifecycle import (
    MEDMON,
    Change,
    LifecycleError,
    append_history,
    apply_verb,
    default_actor,
    resolve_id,
    verify_history,
)
from monitor.register.views import applications, exception_detail, provenance, register_rows

#: Columns ``medmon register list`` shows in a table (all columns go to json and csv).
LIST_TABLE_COLUMNS = (
    "exception_id", "status", "risk", "risk_level", "severity", "kind", "subject", "owner",
    "review_by", "overdue", "last_seen", "occurrences",
)  # fmt: skip


def list_exceptions(
    *,
    db: str | None = None,
    status: Sequence[str] = (),
    kind: Sequence[str] = (),
    severity: Sequence[str] = (),
    zone: Sequence[str] = (),
    overdue: bool = False,
    run_id: int | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The risk register, riskiest first, filtered (:func:`monitor.register.views.
    register_rows`)."""
    with open_register(db or default_db(), read_only=True) as reg:
        return register_rows(reg, status=status, kind=kind, severity=severity, zone=zone,
                             overdue=overdue, run_id=run_id, limit=limit)  # fmt: skip


def show(*, db: str | None = None, ident: str) -> dict[str, Any]:
    """One exception, its evidence and its history (``ident``: its id or a unique prefix).
    Raises :class:`InputError` when no exception (or more than one) matches."""
    with open_register(db or default_db(), read_only=True) as reg:
        try:
            eid = resolve_id(reg, ident)
        except LifecycleError as e:
            raise InputError(str(e)) from None
        return exception_detail(reg, eid)


def change(
    *,
    db: str | None = None,
    ident: str,
    verb: str,
    actor: str | None = None,
    owner: str | None = None,
    controls: Sequence[str] = (),
    review_by: date | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Apply ``verb`` (accept, mitigate, close, reopen) to one exception and record it in its
    history (:func:`monitor.register.lifecycle.apply_verb`); return the exception as it is
    now. Raises :class:`InputError` when the verb cannot apply."""
    with open_register(db or default_db()) as reg:
        try:
            return apply_verb(reg, ident, verb, actor=actor, owner=owner, controls=controls,
                              review_by=review_by, comment=comment)  # fmt: skip
        except LifecycleError as e:
            raise InputError(str(e)) from None


def rescore(
    *, db: str | None = None, risk: str | None = None, dry_run: bool = False,
    actor: str | None = None,
) -> list[tuple[str, int | None, int]]:  # fmt: skip
    """Score every exception again with the risk method ``risk`` (default: the shipped one)
    from the factors kept with it; record each change of risk in the history (not with
    ``dry_run``). Return ``(exception_id, old risk, new risk)`` for each that changes."""
    from monitor.policy.scoring import score, vocabulary_classes

    classes = vocabulary_classes()
    method = load_risk_method(risk)
    changed: list[tuple[str, int | None, int]] = []
    with open_register(db or default_db(), read_only=dry_run) as reg:
        rows = reg.con.execute(
            "SELECT exception_id, severity, risk, risk_factors FROM exceptions "
            "WHERE risk_factors IS NOT NULL ORDER BY exception_id"
        ).fetchall()
        updates = []
        for eid, severity, old, factors_json in rows:
            factors = json.loads(factors_json).get("factors") or {}
            s = score(severity, factors, method, classes)
            terms = json.dumps({"factors": factors, **s.terms}, sort_keys=True, default=str)
            updates.append((s.likelihood, s.impact, s.risk, s.level, terms, eid))
            if old != s.risk:
                changed.append((eid, old, s.risk))
        if dry_run or not updates:
            return changed
        reg.con.begin()
        try:
            reg.con.executemany(
                "UPDATE exceptions SET likelihood = ?, impact = ?, risk = ?, risk_level = ?, "
                "risk_factors = ? WHERE exception_id = ?",
                updates,
            )
            who = actor or default_actor()
            why = f"rescored with {method.path}"
            append_history(reg, [Change(eid, "risk", old, new, why, who) for eid, old, new
                                 in changed])  # fmt: skip
            reg.con.commit()
        except BaseException:
            reg.con.rollback()
            raise
    return changed


def verify(*, db: str | None = None) -> tuple[int, list[str]]:
    """Check the history's hash chain: (entries checked, problems)."""
    with open_register(db or default_db(), read_only=True) as reg:
        return verify_history(reg)


def _where(
    status: Sequence[str], kind: Sequence[str], severity: Sequence[str], zone: Sequence[str]
) -> str:
    def quoted(values: Sequence[str]) -> str:
        return ", ".join("'" + v.replace("'", "''") + "'" for v in values)

    where = []
    if status:
        where.append(f"e.status IN ({quoted(status)})")
    if kind:
        where.append("(" + " OR ".join(
            f"e.kind = {quoted([k])} OR starts_with(e.kind, {quoted([k.rstrip('.') + '.'])})"
            for k in kind) + ")")  # fmt: skip
    if severity:
        where.append(f"e.severity IN ({quoted(severity)})")
    if zone:
        where.append(f"len(list_intersect(e.zones, [{quoted(zone)}])) > 0")
    return " AND ".join(where)


def export(
    *,
    db: str | None = None,
    fmt: str,
    output: str,
    status: Sequence[str] = (),
    kind: Sequence[str] = (),
    severity: Sequence[str] = (),
    zone: Sequence[str] = (),
) -> int:
    """``medmon register export``: the register (filtered) as ``fmt`` (csv, json, parquet,
    xlsx, html) into ``output``; return how many exceptions it holds. Raises
    :class:`InputError`."""
    from monitor.register.export import ExportError
    from monitor.register.export import export as write

    with open_register(db or default_db(), read_only=True) as reg:
        try:
            return write(reg, fmt, output, _where(status, kind, severity, zone))
        except ExportError as e:
            raise InputError(str(e)) from None


def report(
    *, db: str | None = None, output: str, policy: str | None = None, risk: str | None = None
) -> dict[str, Any]:
    """``medmon report``: the audit report as one offline HTML file at ``output``; return a
    summary (counts). ``policy`` draws the graph's zones and violations and is named (with
    its hash) in the scope; ``risk`` is the risk method named in it. Raises
    :class:`InputError`."""
    from monitor import api_graph
    from monitor.graph import GraphError, to_svg
    from monitor.report import file_sha256, graph_picture, group_by_reference, render_report

    out = Path(output)
    if out.is_dir():
        raise InputError(f"{output}: is a directory, not a file")
    if not out.parent.is_dir():
        raise InputError(f"{output}: directory {out.parent} does not exist")
    method = load_risk_method(risk)
    dbpath = db or default_db()
    with open_register(dbpath, read_only=True) as reg:
        names, rows = register_rows(reg)
        exceptions = [dict(zip(names, r, strict=True)) for r in rows]
        hnames, hrows = reg.query(
            'SELECT exception_id, seq, "at", actor, field, old, new, comment FROM '
            'exception_history ORDER BY seq NULLS FIRST, "at"'
        )
        history: dict[str, list[dict[str, Any]]] = {}
        for h in hrows:
            item = dict(zip(hnames, h, strict=True))
            history.setdefault(item["exception_id"], []).append(item)
        for e in exceptions:
            e["history"] = history.get(e["exception_id"], [])
        anames, arows = reg.query("SELECT * FROM assets ORDER BY ip NULLS LAST, asset_id")
        assets = [dict(zip(anames, r, strict=True)) for r in arows]
        apps = applications(reg)
        prov = provenance(reg)
        entries, problems = verify_history(reg)
    graph_note = ""
    svg = None
    try:
        svg = to_svg(api_graph.build(db=dbpath, policy=policy))
    except GraphError as e:
        graph_note = f"No picture: {e}."
    by_status = {s: sum(1 for e in exceptions if e["status"] == s)
                 for s in ("open", "accepted", "mitigated", "closed")}  # fmt: skip
    by_level: dict[str, int] = {}
    for name, _bound in reversed(method.levels):
        by_level[name] = sum(
            1 for e in exceptions if e["status"] == "open" and e.get("risk_level") == name
        )
    summary = {
        "exceptions": len(exceptions),
        "by_status": by_status,
        "by_level": by_level,
        "overdue": sum(1 for e in exceptions if e.get("overdue")),
        "assets": len(assets),
        "unpatchable": sum(1 for a in assets if a.get("patchable") is False),
    }
    context = {
        "register": dbpath,
        "sensors": sorted({r["sensor"] for r in prov["runs"] if r.get("sensor")}),
        "policy": {"path": policy, "sha256": file_sha256(policy)} if policy else None,
        "method": {
            "path": method.path, "sha256": file_sha256(method.path),
            "severity": method.severity, "likelihood_factors": method.likelihood_factors,
            "impact_factors": method.impact_factors, "unknown": method.unknown,
            "levels": method.levels,
        },
        "provenance": prov,
        "summary": summary,
        "sections": group_by_reference(exceptions),
        "assets": assets,
        "applications": apps,
        "graph": graph_picture(svg),
        "graph_note": graph_note,
        "integrity": {"entries": entries, "problems": problems},
    }  # fmt: skip
    html = render_report(context)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{output}: {(e.strerror or str(e)).lower()}") from None
    return {**summary, "generated": datetime.now(UTC), "history_ok": not problems}


__all__ = [
    "MEDMON",
    "change",
    "export",
    "list_exceptions",
    "report",
    "rescore",
    "show",
    "verify",
]
