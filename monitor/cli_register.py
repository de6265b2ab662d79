"""The risk manager's commands: ``medmon register list|show|accept|mitigate|close|reopen|
rescore|verify|export`` and ``medmon report`` (click only; the work is in
:mod:`monitor.api_register`). Added to the ``medmon`` group by :mod:`monitor.cli`."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import click

from monitor import api, api_register
from monitor.cli import _fail, _jsonable, db_option, emit_rows, output_options

log = logging.getLogger("medmon")

STATUSES = ("open", "accepted", "mitigated", "closed")
SEVERITIES = ("low", "medium", "high", "critical")


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--status --kind --severity --zone``: which exceptions (each repeatable)."""
    for option in reversed((
        click.option("--status", multiple=True, type=click.Choice(STATUSES),
                     help="Only exceptions with this status (repeatable)."),
        click.option("--kind", multiple=True, metavar="KIND",
                     help="Only this kind, e.g. policy.violation, or a prefix: tls (repeatable)."),
        click.option("--severity", multiple=True, type=click.Choice(SEVERITIES),
                     help="Only this severity (repeatable)."),
        click.option("--zone", multiple=True, metavar="ZONE",
                     help="Only exceptions involving a device in this zone (repeatable)."),
    )):  # fmt: skip
        fn = option(fn)
    return fn


def actor_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--actor NAME``: who makes the change (default: the OS user)."""
    return click.option(
        "--actor", metavar="NAME", default=None,
        help="Who makes the change, for the history [the OS user who runs medmon].",
    )(fn)  # fmt: skip


def _review_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def review_option(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--review-by DATE``."""
    return click.option(
        "--review-by", "review_by", metavar="YYYY-MM-DD", required=required,
        callback=_review_date, help="When to review this decision again.",
    )  # fmt: skip


@click.group("register")
def register() -> None:
    """The risk register: list and show exceptions, record decisions on them, export it.

    Each exception (a policy violation, an unpatchable device, ePHI in clear text, ...) has a
    risk (likelihood x impact), a status (open, accepted, mitigated, closed), an owner,
    compensating controls and a review date. Every change is appended to its history, with
    who made it, when and why.

    Example:

        medmon register list --status open --severity high --severity critical
    """


@register.command("list")
@db_option
@output_options
@filter_options
@click.option("--overdue", is_flag=True, help="Only accepted or mitigated ones past review.")
@click.option("--run", "run_id", type=int, default=None, help="Only those the run saw.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
def list_(
    db: str, fmt: str, status: tuple[str, ...], kind: tuple[str, ...],
    severity: tuple[str, ...], zone: tuple[str, ...], overdue: bool, run_id: int | None,
    limit: int | None,
) -> None:  # fmt: skip
    """The exceptions, riskiest first: status, risk, severity, subject, owner, review date.

    Example:

        medmon register list --zone imaging --format csv
    """
    names, rows = api_register.list_exceptions(
        db=db, status=status, kind=kind, severity=severity, zone=zone, overdue=overdue,
        run_id=run_id, limit=limit,
    )  # fmt: skip
    emit_rows(names, rows, fmt, api_register.LIST_TABLE_COLUMNS, title="risk register")
    if not rows and not (status or kind or severity or zone or overdue or run_id):
        log.info("the risk register is empty: 'medmon replay --policy FILE' records findings")


@register.command("show")
@click.argument("ident", metavar="ID")
@db_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def show(ident: str, db: str, fmt: str) -> None:
    """One exception: the finding, how it was scored, its evidence (the flows or observations
    that show it, with first and last seen, and the capture files with their SHA-256), the
    rule that decided, and its history. ID may be a unique prefix.

    Example:

        medmon register show policy.violation:1a2b
    """
    detail = api_register.show(db=db, ident=ident)
    if fmt == "json":
        click.echo(json.dumps(detail, default=_jsonable, indent=2, ensure_ascii=False))
        return
    _print_detail(detail)


def _print_detail(detail: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = sys.stdout
    console = Console(file=out, highlight=False, width=None if out.isatty() else 200)
    e = detail["exception"]
    console.print(Text(f"{e['exception_id']}  {e['title']}", style="bold"))
    fields = [
        ("status", e["status"] + ("  (review overdue)" if e.get("overdue") else "")),
        ("risk", f"{e.get('risk')} {e.get('risk_level') or ''} = likelihood "
                 f"{e.get('likelihood')} x impact {e.get('impact')}"),
        ("severity", e.get("severity")), ("kind", e["kind"]), ("subject", e["subject"]),
        ("devices", "; ".join(e.get("devices") or [])),
        ("zones", ", ".join(dict.fromkeys(e.get("zones") or []))),
        ("HIPAA", e.get("hipaa_ref")), ("rule", e.get("rule")), ("owner", e.get("owner")),
        ("controls", e.get("compensating_controls")), ("review by", e.get("review_by")),
        ("seen", f"{e.get('first_seen')} .. {e.get('last_seen')}, {e.get('occurrences')} "
                 f"times, runs {e.get('first_run')}..{e.get('last_run')}"),
    ]  # fmt: skip
    for name, value in fields:
        console.print(Text(f"  {name:10} ") + Text("" if value is None else str(value)))
    terms = e.get("risk_factors") or {}
    for part in ("likelihood", "impact"):
        if terms.get(part):
            text = " + ".join(f"{k} {v}" for k, v in terms[part].items())
            console.print(Text(f"  {part:10} {text}", style="dim"))
    if e.get("evidence"):
        console.print(Text("  evidence   " + json.dumps(e["evidence"], sort_keys=True)))
    ev = detail["evidence"]
    for title, rows in (
        ("flows", ev["flows"]),
        ("observations", ev["observations"]),
        ("device signals", ev["signals"]),
        ("capture files", ev["captures"]),
        ("live runs", ev["live_runs"]),
        ("history", detail["history"]),
    ):
        if not rows:
            continue
        table = Table(title=title, title_justify="left", header_style="bold")
        names = list(rows[0])
        for n in names:
            table.add_column(n, overflow="fold")
        for row in rows:
            table.add_row(*(_show_cell(row[n]) for n in names))
        console.print(table)


def _show_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


@register.command("accept")
@click.argument("ident", metavar="ID")
@db_option
@click.option("--owner", metavar="WHO", default=None, help="Who answers for this risk.")
@click.option("--control", "controls", metavar="TEXT", multiple=True,
              help="A compensating control in place, e.g. 'VLAN 20 ACL' (repeatable).")  # fmt: skip
@review_option(required=True)
@click.option("--comment", metavar="TEXT", default=None, help="Why it is accepted.")
@actor_option
def accept(
    ident: str, db: str, owner: str | None, controls: tuple[str, ...], review_by: date,
    comment: str | None, actor: str | None,
) -> None:  # fmt: skip
    """Accept an exception's risk: an owner, compensating controls and a review date (all
    needed). Accepting again renews the review.

    Example:

    \b
        medmon register accept policy.violation:1a2b --owner "Biomed (J. Doe)" \\
            --control "VLAN 20 ACL" --control "vendor remote access disabled" \\
            --review-by 2027-06-30 --comment "CT console cannot be patched; replacement FY27"
    """
    _change(db, ident, "accept", actor, owner=owner, controls=controls, review_by=review_by,
            comment=comment)  # fmt: skip


@register.command("mitigate")
@click.argument("ident", metavar="ID")
@db_option
@click.option("--control", "controls", metavar="TEXT", multiple=True, required=True,
              help="A control put in place (repeatable).")  # fmt: skip
@click.option("--owner", metavar="WHO", default=None, help="Who answers for this risk.")
@review_option(required=False)
@click.option("--comment", metavar="TEXT", default=None, help="What was done.")
@actor_option
def mitigate(
    ident: str, db: str, controls: tuple[str, ...], owner: str | None,
    review_by: date | None, comment: str | None, actor: str | None,
) -> None:  # fmt: skip
    """Record controls put in place that reduce an exception's risk.

    Example:

        medmon register mitigate smb.v1:77aa --control "SMB1 disabled on the file server"
    """
    _change(db, ident, "mitigate", actor, owner=owner, controls=controls, review_by=review_by,
            comment=comment)  # fmt: skip


@register.command("close")
@click.argument("ident", metavar="ID")
@db_option
@click.option("--comment", metavar="TEXT", required=True, help="Why it is gone.")
@actor_option
def close(ident: str, db: str, comment: str, actor: str | None) -> None:
    """Close an exception that is gone (device replaced, flow stopped). A later run that
    shows it again reopens it.

    Example:

        medmon register close tls.deprecated:9f01 --comment "web server upgraded to TLS 1.3"
    """
    _change(db, ident, "close", actor, comment=comment)


@register.command("reopen")
@click.argument("ident", metavar="ID")
@db_option
@click.option("--comment", metavar="TEXT", default=None, help="Why.")
@actor_option
def reopen(ident: str, db: str, comment: str | None, actor: str | None) -> None:
    """Reopen an accepted, mitigated or closed exception.

    Example:

        medmon register reopen asset.unpatchable:5fc2 --comment "vendor withdrew support"
    """
    _change(db, ident, "reopen", actor, comment=comment)


def _change(db: str, ident: str, verb: str, actor: str | None, **values: Any) -> None:
    try:
        row = api_register.change(db=db, ident=ident, verb=verb, actor=actor, **values)
    except api.InputError as e:
        _fail(e)
    extra = f", review by {row['review_by']}" if row.get("review_by") else ""
    click.echo(f"{row['exception_id']}: {row['status']}{extra}")


@register.command("rescore")
@db_option
@click.option("--risk", "risk_file", metavar="FILE", envvar="MEDMON_RISK", default=None,
              help="Risk method [$MEDMON_RISK, else the shipped policies/risk.yaml].")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Only list what would change.")
@actor_option
def rescore(db: str, risk_file: str | None, dry_run: bool, actor: str | None) -> None:
    """Score every exception again with a risk method, from the factors kept with each;
    each change of risk goes to the history.

    Example:

        medmon register rescore --risk site-risk.yaml --dry-run
    """
    changed = api_register.rescore(db=db, risk=risk_file, dry_run=dry_run, actor=actor)
    for eid, old, new in changed:
        click.echo(f"{eid}: risk {old} -> {new}")
    verb = "would change" if dry_run else "changed"
    click.echo(f"{len(changed)} exception(s) {verb}", err=True)


@register.command("verify")
@db_option
def verify(db: str) -> None:
    """Check that the history was not altered: each entry's hash and its chain to the entry
    before it. Exit 1 when an entry was changed, removed or reordered.

    Example:

        medmon register verify --db site.duckdb
    """
    entries, problems = api_register.verify(db=db)
    for line in problems:
        log.error("%s", line)
    if problems:
        raise click.exceptions.Exit(1)
    click.echo(f"history verified: {entries} entries, chain intact")


@register.command("export")
@db_option
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "parquet", "xlsx", "html"]),
    required=True, help="csv, json, parquet (DuckDB COPY), xlsx (a workbook), html.",
)  # fmt: skip
@click.option("-o", "--output", metavar="FILE", required=True, help="The file to write.")
@filter_options
def export(
    db: str, fmt: str, output: str, status: tuple[str, ...], kind: tuple[str, ...],
    severity: tuple[str, ...], zone: tuple[str, ...],
) -> None:  # fmt: skip
    """Export the register for auditors, with each exception's HIPAA reference and
    standard, risk, status, owner, controls and review date. In csv and xlsx a value from
    the network that a spreadsheet would run as a formula (= + - @) is made text.

    Example:

        medmon register export --format xlsx -o register.xlsx
    """
    n = api_register.export(db=db, fmt=fmt, output=output, status=status, kind=kind,
                            severity=severity, zone=zone)  # fmt: skip
    click.echo(f"{output}: {n} exception(s)", err=True)


@click.command("report")
@db_option
@click.option("-o", "--output", metavar="FILE", required=True, help="The HTML file to write.")
@click.option(
    "--policy", "policy_file", metavar="FILE", default=None,
    help="Draw zones and violations with this policy (and name it in the scope).",
)  # fmt: skip
@click.option("--risk", "risk_file", metavar="FILE", envvar="MEDMON_RISK", default=None,
              help="Risk method to describe [$MEDMON_RISK, else the shipped one].")  # fmt: skip
def report(db: str, output: str, policy_file: str | None, risk_file: str | None) -> None:
    """The audit report: one offline HTML file (print it to PDF from a browser) with the
    scope and capture provenance, the device inventory with patchability, the communication
    graph, and the exceptions grouped by HIPAA reference with status, owner, controls and
    history.

    Example:

        medmon report -o audit-2026-q4.html --policy policies/default.yaml
    """
    summary = api_register.report(db=db, output=output, policy=policy_file, risk=risk_file)
    click.echo(
        f"{output}: {summary['exceptions']} exceptions, {summary['assets']} devices"
        + ("" if summary["history_ok"] else "; WARNING: the history's hash chain is broken"),
        err=True,
    )
