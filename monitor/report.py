"""The audit report (``medmon report``) and the register's HTML export: one self-contained,
offline HTML file each, for auditors, printable to PDF.

Everything in them comes from the network (host names, AE titles, HL7 application names) or
from people (owners, controls, comments), so the templates are rendered by Jinja2 with
autoescaping on: every value is text, never markup. The page also carries a Content Security
Policy that allows no script and no fetch at all (styles inline, pictures as data: URIs), so
even a value that got through could not run or call out. The communication graph is an SVG
picture in an ``<img>``, where a browser never runs script either.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jinja2

from monitor import __version__, hipaa

#: No script, no fetch, no frame: styles inline and pictures as data: URIs only.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)

#: What medmon shows for each reference the report always lists.
SECTION_NOTES: dict[str, str] = {
    "164.308(a)(1)(ii)(A)": (
        "Risk analysis: the device inventory (what is on the network, what it is, whether it "
        "can be patched) and each exception's likelihood, impact and risk, scored by the "
        "documented risk method below."
    ),
    "164.308(a)(1)(ii)(B)": (
        "Risk management: each exception's status, owner, compensating controls and review "
        "date; accepted exceptions past their review date are marked overdue."
    ),
    "164.312(a)(1)": (
        "Access control: flows the segmentation policy denies between zones (policy "
        "violations) show where network access to devices holding ePHI is not limited."
    ),
    "164.312(b)": (
        "Audit controls: every analysis run (source, sensor, time, packets) and every change "
        "to an exception (who, when, what, why) is recorded; see scope and history."
    ),
    "164.312(c)(1)": (
        "Integrity: capture files are identified by their SHA-256; the exception history is "
        "append-only and hash-chained, and its chain was verified for this report."
    ),
    "164.312(d)": (
        "Person or entity authentication: logins that cross the network in clear text "
        "(Telnet, FTP, HTTP Basic) and SNMP default communities."
    ),
    "164.312(e)(1)": (
        "Transmission security: ePHI (DICOM, HL7) without TLS between zones, deprecated "
        "TLS versions, medical devices talking to the internet."
    ),
    "164.316(b)": (
        "Documentation: this report, the register export (medmon register export) and the "
        "policy and risk method files are the written record; the history keeps each "
        "decision with its author and date."
    ),
}

_ENV: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    """The templates (``monitor/templates``), autoescaped."""
    global _ENV
    if _ENV is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["when"] = _when
        env.filters["day"] = _day
        env.filters["num"] = lambda v: "" if v is None else f"{v:,}"
        env.filters["yesno"] = lambda v: "unknown" if v is None else ("yes" if v else "no")
        _ENV = env
    return _ENV


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _day(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    return str(value)


def render_register_html(names: Sequence[str], rows: Sequence[Sequence[Any]], db: str) -> str:
    """The register export as one HTML table (``medmon register export --format html``)."""
    items = [dict(zip(names, row, strict=True)) for row in rows]
    return environment().get_template("register.html.j2").render(
        csp=CSP, columns=list(names), rows=items, db=db, version=__version__,
        generated=datetime.now(UTC),
    )  # fmt: skip


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def group_by_reference(exceptions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's HIPAA sections: the references it always lists, then every other
    reference an exception names (in the regulation's order), each with its exceptions."""
    by_ref: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in exceptions:
        by_ref[hipaa.normalize(e.get("hipaa_ref")) or "unreferenced"].append(e)
    order = list(hipaa.REPORT_SECTIONS)
    order += sorted(r for r in by_ref if r not in order)
    sections = []
    for ref in order:
        items = by_ref.get(ref, [])
        sections.append({
            "ref": ref,
            "title": hipaa.title(ref) or ("No HIPAA reference" if ref == "unreferenced" else ""),
            "note": SECTION_NOTES.get(ref, ""),
            "exceptions": items,
            "open": sum(1 for e in items if e["status"] == "open"),
        })  # fmt: skip
    return sections


def graph_picture(svg: str | None) -> str | None:
    """An SVG drawing as a data: URI for an ``<img>`` (no script runs in an image)."""
    if not svg:
        return None
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render_report(context: dict[str, Any]) -> str:
    """The audit report's HTML from what :func:`monitor.api_register.report` gathered."""
    return (
        environment()
        .get_template("report.html.j2")
        .render(csp=CSP, version=__version__, generated=datetime.now(UTC), **context)
    )
