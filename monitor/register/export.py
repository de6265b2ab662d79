"""Exporting the risk register for auditors: CSV, JSON and Parquet with DuckDB's own ``COPY``,
XLSX with XlsxWriter, and a self-contained HTML table.

Values from the wire (AE titles, host names, HL7 application names, titles built from them)
reach these files. A spreadsheet evaluates a cell that starts with ``=``, ``+``, ``-`` or
``@`` (and, in some, a tab or carriage return) as a formula [OWASP CSV injection], so in CSV
and XLSX every text value that starts with one of them is *neutralised*: prefixed with a
single quote, which makes it text (the register keeps the value as seen). XLSX cells are also
written as strings, never as formulas or links. JSON and Parquet are typed and carry the
values unchanged; HTML escapes every value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from monitor import hipaa
from monitor.register.schema import Register
from monitor.register.views import ORDER_SQL, REGISTER_SQL

FORMATS = ("csv", "json", "parquet", "xlsx", "html")
#: What starts a formula in a spreadsheet.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: The export's columns, in order: (name, SQL over the register view ``e``).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("exception_id", "e.exception_id"),
    ("status", "e.status"),
    ("overdue", "e.overdue"),
    ("risk", "e.risk"),
    ("risk_level", "e.risk_level"),
    ("likelihood", "e.likelihood"),
    ("impact", "e.impact"),
    ("severity", "e.severity"),
    ("kind", "e.kind"),
    ("subject", "e.subject"),
    ("devices", "array_to_string(e.devices, '; ')"),
    (
        "zones",
        "CASE WHEN len(e.zones) = 2 THEN array_to_string(e.zones, ' -> ') "
        "ELSE array_to_string(e.zones, ', ') END",
    ),
    ("title", "e.title"),
    ("hipaa_ref", "e.hipaa_ref"),
    ("hipaa_standard", "h.title"),
    ("owner", "e.owner"),
    ("compensating_controls", "e.compensating_controls"),
    ("review_by", "e.review_by"),
    ("first_seen", "e.first_seen"),
    ("last_seen", "e.last_seen"),
    ("occurrences", "e.occurrences"),
    ("rule", "e.rule"),
    ("evidence", "CAST(e.evidence AS VARCHAR)"),
    ("first_run", "e.first_run"),
    ("last_run", "e.last_run"),
    ("status_changed_at", "e.status_changed_at"),
    ("history_entries", "coalesce(hc.entries, 0)"),
    ("last_change_at", "hc.last_at"),
)
#: The history sheet's columns.
HISTORY_COLUMNS = ("exception_id", "seq", "at", "actor", "field", "old", "new", "comment",
                   "run_id", "hash")  # fmt: skip


#: The assets sheet's columns (the device inventory).
ASSET_COLUMNS = ("asset_id", "ip", "mac", "zone", "hostname", "vendor", "model", "device_class",
                 "os", "software_version", "patchable", "patchable_reason", "first_seen",
                 "last_seen")  # fmt: skip


def _quote(name: str) -> str:
    return f'"{name}"'


class ExportError(Exception):
    """The export cannot be written; ``str()`` is one line naming the file and the fault."""


def neutralize(value: Any) -> Any:
    """A text value that a spreadsheet would read as a formula, made text (``'`` prefixed)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _register_hipaa(reg: Register) -> None:
    table = pa.table({"ref": list(hipaa.STANDARDS), "title": list(hipaa.STANDARDS.values())})
    reg.con.register("_medmon_hipaa", table)


def export_sql(where: str = "") -> str:
    """The export's SELECT (``where``: a condition over the register view ``e``)."""
    cols = ",\n    ".join(f'{sql} AS "{name}"' for name, sql in COLUMNS)
    view = REGISTER_SQL.strip()
    return f"""
WITH e AS ({view}),
hc AS (SELECT exception_id, count(*) AS entries, max("at") AS last_at
       FROM exception_history GROUP BY exception_id)
SELECT
    {cols}
FROM e LEFT JOIN _medmon_hipaa h ON h.ref = replace(e.hipaa_ref, ' ', '')
LEFT JOIN hc USING (exception_id)
{("WHERE " + where) if where else ""}
{ORDER_SQL}
"""


def _neutralized_sql(reg: Register, inner: str) -> str:
    """``inner`` with every text column neutralised (:func:`neutralize`) in SQL."""
    cur = reg.con.execute(f"SELECT * FROM ({inner}) LIMIT 0")
    description = cur.description or []
    cur.fetchall()
    outs = []
    for name, type_code, *_ in description:
        if str(type_code) in ("VARCHAR", "STRING") or "VARCHAR" in str(type_code):
            outs.append(
                f"""CASE WHEN regexp_matches("{name}", '^[=+\\-@\\t\\r]')
                    THEN '''' || "{name}" ELSE "{name}" END AS "{name}\""""
            )
        else:
            outs.append(f'"{name}"')
    return f"SELECT {', '.join(outs)} FROM ({inner})"


def export_rows(reg: Register, where: str = "") -> tuple[list[str], list[tuple[Any, ...]]]:
    """The export's rows, values as the register holds them."""
    _register_hipaa(reg)
    try:
        return reg.query(export_sql(where))
    finally:
        reg.con.unregister("_medmon_hipaa")


def export(reg: Register, fmt: str, output: str | Path, where: str = "") -> int:
    """Write the register (the exceptions matching ``where``) to ``output`` as ``fmt``;
    return the number of exceptions written. Raises :class:`ExportError`."""
    if fmt not in FORMATS:
        raise ExportError(f"{fmt}: unknown export format (one of {', '.join(FORMATS)})")
    out = Path(output)
    if out.is_dir():
        raise ExportError(f"{output}: is a directory, not a file")
    if not out.parent.is_dir():
        raise ExportError(f"{output}: directory {out.parent} does not exist")
    _register_hipaa(reg)
    try:
        inner = export_sql(where)
        count = int(reg.con.execute(f"SELECT count(*) FROM ({inner})").fetchall()[0][0])
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            if fmt in ("csv", "json", "parquet"):
                _copy(reg, inner, fmt, tmp)
            else:
                names, rows = reg.query(inner)
                if fmt == "xlsx":
                    history = reg.query(
                        f"SELECT {', '.join(map(_quote, HISTORY_COLUMNS))} "
                        'FROM exception_history ORDER BY seq NULLS FIRST, "at"'
                    )
                    assets = reg.query(
                        f"SELECT {', '.join(map(_quote, ASSET_COLUMNS))} FROM assets "
                        "ORDER BY ip NULLS LAST, asset_id"
                    )
                    write_xlsx(tmp, [("Exceptions", names, rows), ("History", *history),
                                     ("Assets", *assets)])  # fmt: skip
                else:
                    from monitor.report import render_register_html

                    tmp.write_text(render_register_html(names, rows, reg.path), encoding="utf-8")
            tmp.replace(out)
        except OSError as e:
            raise ExportError(f"{output}: {(e.strerror or str(e)).lower()}") from None
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        reg.con.unregister("_medmon_hipaa")
    return count


def _copy(reg: Register, inner: str, fmt: str, path: Path) -> None:
    """DuckDB's own COPY: CSV (neutralised, with a header), a JSON array, Parquet."""
    target = str(path).replace("'", "''")
    if fmt == "csv":
        reg.con.execute(
            f"COPY ({_neutralized_sql(reg, inner)}) TO '{target}' (FORMAT csv, HEADER true)"
        )
    elif fmt == "json":
        reg.con.execute(f"COPY ({inner}) TO '{target}' (FORMAT json, ARRAY true)")
    else:
        reg.con.execute(f"COPY ({inner}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return neutralize(value)


def write_xlsx(
    path: Path, sheets: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]]
) -> None:
    """A workbook of ``(title, column names, rows)`` sheets (the register's: ``Exceptions``,
    ``History``, ``Assets``), each a filterable table with a frozen header. Text cells are
    strings, never formulas or links, and neutralised; times are UTC."""
    import xlsxwriter

    options = {
        "strings_to_formulas": False,
        "strings_to_urls": False,
        "strings_to_numbers": False,
        "remove_timezone": True,
    }
    with xlsxwriter.Workbook(str(path), options) as book:
        book.set_properties({"title": "medmon risk register", "comments": "times in UTC"})
        stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        day = book.add_format({"num_format": "yyyy-mm-dd"})
        bold = book.add_format({"bold": True})
        for title, cols, data in sheets:
            sheet = book.add_worksheet(title)
            for c, name in enumerate(cols):
                sheet.write_string(0, c, name, bold)
            for r, row in enumerate(data, start=1):
                for c, value in enumerate(row):
                    v = _cell(value)
                    if v is None:
                        sheet.write_blank(r, c, None)
                    elif isinstance(v, bool):
                        sheet.write_boolean(r, c, v)
                    elif isinstance(v, int | float):
                        sheet.write_number(r, c, v)
                    elif isinstance(v, datetime):
                        sheet.write_datetime(r, c, v, stamp)
                    elif isinstance(v, date):
                        sheet.write_datetime(r, c, datetime(v.year, v.month, v.day), day)
                    else:
                        sheet.write_string(r, c, str(v))
            sheet.freeze_panes(1, 0)
            if cols:
                sheet.autofilter(0, 0, max(len(data), 1), len(cols) - 1)
            sheet.set_column(0, max(len(cols) - 1, 0), 18)
