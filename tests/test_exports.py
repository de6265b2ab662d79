"""``medmon register export`` and ``medmon report``: every export format re-read and compared
with the register, values from the wire neutralised in spreadsheets and escaped in HTML, and
the audit report rendered by headless Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from monitor import api, api_register, hipaa
from monitor.cli import cli
from monitor.register import open_register
from monitor.register.export import FORMULA_START, export_rows, neutralize

from conftest import chromium

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
POLICY = str(ROOT / "policies" / "default.yaml")
LATER = date.today() + timedelta(days=90)
#: A person's values can be hostile too (a pasted formula).
OWNER = "@biomed-team"
CONTROL = '=HYPERLINK("http://x.invalid","VLAN 20 ACL")'


@pytest.fixture(scope="module")
def register(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample captures with the default policy; one exception accepted, one closed."""
    db = str(tmp_path_factory.mktemp("exports") / "medmon.duckdb")
    api.replay([str(PCAPS)], db=db, policy=POLICY)
    _names, rows = api_register.list_exceptions(db=db)
    api_register.change(db=db, ident=rows[0][0], verb="accept", owner=OWNER, controls=[CONTROL],
                        review_by=LATER, comment="-1 budget", actor="rm1")  # fmt: skip
    api_register.change(db=db, ident=rows[-1][0], verb="close", comment="gone", actor="rm1")
    return db


def _export(db: str, fmt: str, out: Path, *extra: str) -> Path:
    r = CliRunner().invoke(cli, ["register", "export", "--db", db, "--format", fmt, "-o",
                                 str(out), *extra])  # fmt: skip
    assert r.exit_code == 0, r.output
    return out


def _truth(db: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with open_register(db, read_only=True) as reg:
        return export_rows(reg)


def _text(value: Any) -> str:
    """A value as CSV and HTML print it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


TEXT_COLUMNS = ("exception_id", "status", "risk_level", "severity", "kind", "subject", "devices",
                "zones", "title", "hipaa_ref", "hipaa_standard", "owner",
                "compensating_controls", "rule")  # fmt: skip
NUMBER_COLUMNS = ("risk", "likelihood", "impact", "occurrences", "first_run", "last_run",
                  "history_entries")  # fmt: skip


def test_the_export_holds_every_exception_with_its_hipaa_standard(register: str) -> None:
    names, rows = _truth(register)
    count = duckdb.connect(register, read_only=True).execute(
        "SELECT count(*) FROM exceptions").fetchall()[0][0]  # fmt: skip
    assert len(rows) == count > 10
    for row in rows:
        item = dict(zip(names, row, strict=True))
        assert item["hipaa_ref"] and item["hipaa_standard"] == hipaa.title(item["hipaa_ref"])
        assert item["risk"] == item["likelihood"] * item["impact"]
        assert item["history_entries"] >= 1


def test_csv_is_duckdb_copy_re_read_and_neutralised(register: str, tmp_path: Path) -> None:
    names, rows = _truth(register)
    path = _export(register, "csv", tmp_path / "register.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == names and len(table) == len(rows) + 1
    for got, want in zip(table[1:], rows, strict=True):
        item = dict(zip(names, want, strict=True))
        cells = dict(zip(names, got, strict=True))
        for col in TEXT_COLUMNS:
            assert cells[col] == _text(neutralize(item[col])), col
        for col in NUMBER_COLUMNS:
            assert cells[col] == _text(item[col]), col
        assert not any(cell.startswith(FORMULA_START) for cell in got), got
    accepted = next(dict(zip(names, r, strict=True)) for r in table[1:] if r[1] == "accepted")
    assert accepted["owner"] == "'" + OWNER and accepted["compensating_controls"] == "'" + CONTROL
    # DuckDB reads it back as the same table shape.
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM read_csv('{path}')").fetchall() == [(len(rows),)]


def test_json_is_an_array_of_the_register_values(register: str, tmp_path: Path) -> None:
    names, rows = _truth(register)
    items = json.loads(_export(register, "json", tmp_path / "register.json").read_text())
    assert isinstance(items, list) and len(items) == len(rows)
    for got, want in zip(items, rows, strict=True):
        assert list(got) == names
        item = dict(zip(names, want, strict=True))
        for col in (*TEXT_COLUMNS, *NUMBER_COLUMNS, "overdue"):
            assert got[col] == item[col], col  # unchanged: JSON is typed, not a spreadsheet
        assert datetime.fromisoformat(got["last_seen"]) == item["last_seen"]
    assert OWNER in {i["owner"] for i in items}


def test_parquet_keeps_every_type(register: str, tmp_path: Path) -> None:
    names, rows = _truth(register)
    path = _export(register, "parquet", tmp_path / "register.parquet")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cur = con.execute(f"SELECT * FROM read_parquet('{path}')")
    assert [d[0] for d in cur.description] == names
    assert cur.fetchall() == rows


def test_xlsx_sheets_hold_strings_never_formulas(register: str, tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    names, rows = _truth(register)
    path = _export(register, "xlsx", tmp_path / "register.xlsx")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Exceptions", "History", "Assets"]
    sheet = book["Exceptions"]
    table = [[c for c in row] for row in sheet.iter_rows()]
    assert [c.value for c in table[0]] == names and len(table) == len(rows) + 1
    for cells, want in zip(table[1:], rows, strict=True):
        item = dict(zip(names, want, strict=True))
        got = {n: c for n, c in zip(names, cells, strict=True)}
        for col in TEXT_COLUMNS:
            assert (got[col].value or None) == (neutralize(item[col]) or None), col
        for col in NUMBER_COLUMNS:
            assert got[col].value == item[col], col
        # Excel keeps times to the millisecond, in UTC.
        seen = item["last_seen"].astimezone(UTC).replace(tzinfo=None)
        assert abs(got["last_seen"].value - seen) <= timedelta(milliseconds=1)
        for c in cells:
            assert c.data_type != "f", (c.coordinate, c.value)
            assert not (isinstance(c.value, str) and c.value.startswith(FORMULA_START))
    history = book["History"]
    n = duckdb.connect(register, read_only=True).execute(
        "SELECT count(*) FROM exception_history").fetchall()[0][0]  # fmt: skip
    assert history.max_row == n + 1


class _Cells(HTMLParser):
    """The text of each table row with ``data-exception-id``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.current: list[str] | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and a.get("data-exception-id"):
            self.current = self.rows.setdefault(str(a["data-exception-id"]), [])
        elif tag == "td" and self.current is not None:
            self.current.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None and self.current:
            self.current[-1] += data


def test_html_export_is_one_escaped_table(register: str, tmp_path: Path) -> None:
    names, rows = _truth(register)
    text = _export(register, "html", tmp_path / "register.html").read_text()
    parser = _Cells()
    parser.feed(text)
    assert parser.scripts == 0 and "Content-Security-Policy" in text
    assert len(parser.rows) == len(rows)
    for want in rows:
        item = dict(zip(names, want, strict=True))
        cells = dict(zip(names, parser.rows[item["exception_id"]], strict=True))
        for col in ("subject", "title", "owner", "compensating_controls", "hipaa_standard"):
            assert cells[col] == _text(item[col]), col


def test_export_filters_and_errors(register: str, tmp_path: Path) -> None:
    items = json.loads(_export(register, "json", tmp_path / "open.json", "--status", "open",
                               "--kind", "ephi").read_text())  # fmt: skip
    assert items and {(i["status"], i["kind"]) for i in items} == {("open", "ephi.cleartext")}
    runner = CliRunner()
    for out, message in ((tmp_path / "no" / "x.csv", "does not exist"),
                         (tmp_path, "is a directory")):  # fmt: skip
        r = runner.invoke(cli, ["register", "export", "--db", register, "--format", "csv",
                                "-o", str(out)])  # fmt: skip
        assert r.exit_code == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1
    r = runner.invoke(cli, ["report", "--db", register, "-o", str(tmp_path / "no" / "r.html")])
    assert r.exit_code == 2 and "does not exist" in r.stderr


# ---------------------------------------------------------------- the audit report


def _dom(page: Path) -> str:
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
            page.as_uri()]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout


def _screenshot(page: Path, shot: Path) -> None:
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1300,2000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_the_audit_report_renders_offline_in_a_browser(register: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["report", "--db", register, "-o", str(page), "--policy", POLICY])
    assert r.exit_code == 0, r.output
    text = page.read_text()
    assert "<script" not in text and "Content-Security-Policy" in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # nothing to fetch
    dom = _dom(page)
    for section in ("summary", "scope", "hipaa", "inventory", "graph", "method"):
        assert f'id="{section}"' in dom, section
    for ref in hipaa.REPORT_SECTIONS:
        assert f'data-ref="{ref}"' in dom, ref
    n_exceptions, n_assets, shas = (
        duckdb.connect(register, read_only=True).execute(
            "SELECT (SELECT count(*) FROM exceptions), (SELECT count(*) FROM assets), "
            "(SELECT list(sha256) FROM captures)").fetchall()[0]
    )  # fmt: skip
    assert dom.count('<article class="exception"') == n_exceptions
    assert all(sha in dom for sha in shas)  # capture provenance
    assert dom.count("<tr>") >= n_assets
    if shutil.which("dot"):
        assert 'src="data:image/svg+xml;base64,' in dom
    assert "The hash chain verifies" in dom
    assert "review overdue since" not in dom
    # The accepted exception carries its owner, controls and history.
    assert OWNER in dom and "rm1" in dom and "VLAN 20 ACL" in dom
    _screenshot(page, tmp_path / "report.png")
    # Printable: Chromium prints it to a PDF of several pages (a page break per section).
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
         f"--print-to-pdf={pdf}", page.as_uri()],
        capture_output=True, timeout=120,
    )  # fmt: skip
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(re.findall(rb"/Type\s*/Page\b", data)) >= 6


# ---------------------------------------------------------------- hostile values from the wire

HOSTILE = PCAPS / "generic" / "hostile.pcap"
#: What pcaps/generic/hostile.pcap carries (pcaps/README.md), by where it lands.
AE_TITLE = "@SUM(1+1)"
HL7_APP = "=cmd|' /C calc'!A0"
HL7_FACILITY = "<script>document.body.setAttribute('data-pwned','1')</script>"
DHCP_NAME = "-2+3<b>bold</b>"
STATION = "<script>alert(1)"
MODEL = "<img src=x onerror=alert(1)>"
SOFTWARE = "+1-2"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = str(tmp_path_factory.mktemp("hostile") / "medmon.duckdb")
    api.replay([str(HOSTILE)], db=db, policy=POLICY)
    return db


def test_the_hostile_values_reach_the_register(hostile: str) -> None:
    """So that the injection tests below test something: every value arrived as sent."""
    con = duckdb.connect(hostile, read_only=True)
    assert con.execute("SELECT calling_ae FROM dicom_associations").fetchall() == [(AE_TITLE,)]
    apps = con.execute("SELECT DISTINCT sending_application, sending_facility "
                       "FROM hl7_messages WHERE direction = 'to_server'").fetchall()  # fmt: skip
    assert apps == [(HL7_APP, HL7_FACILITY)]
    assets = con.execute("SELECT hostname, model, software_version FROM assets").fetchall()
    assert (DHCP_NAME, None, None) in [(h, m, s) for h, m, s in assets if h == DHCP_NAME]
    assert (STATION, MODEL, SOFTWARE) in assets
    assert con.execute("SELECT count(*) FROM exceptions").fetchall()[0][0] >= 2
    con.close()


def _cells_of_csv(text: str) -> list[str]:
    return [cell for row in csv.reader(text.splitlines()) for cell in row]


def test_no_csv_cell_starts_a_formula(hostile: str, tmp_path: Path) -> None:
    runner = CliRunner()
    texts = [_export(hostile, "csv", tmp_path / "register.csv").read_text()]
    for command in ("assets", "dicom", "hl7", "flows"):
        r = runner.invoke(cli, [command, "--db", hostile, "--format", "csv"])
        assert r.exit_code == 0, r.output
        texts.append(r.stdout)
    r = runner.invoke(cli, ["dicom", "--devices", "--db", hostile, "--format", "csv"])
    texts.append(r.stdout)
    cells = [c for text in texts for c in _cells_of_csv(text)]
    assert not [c for c in cells if c.startswith(FORMULA_START)]
    for value in (AE_TITLE, HL7_APP, DHCP_NAME, SOFTWARE):
        assert "'" + value in cells, value  # there, as text
    assert any(MODEL in c for c in cells) and any(c == HL7_FACILITY for c in cells)


def test_no_xlsx_cell_is_a_formula(hostile: str, tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.load_workbook(_export(hostile, "xlsx", tmp_path / "register.xlsx"))
    values = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for c in row:
                assert c.data_type != "f", (sheet.title, c.coordinate, c.value)
                assert c.hyperlink is None
                if isinstance(c.value, str):
                    assert not c.value.startswith(FORMULA_START), c.value
                    values.append(c.value)
    assert "'" + DHCP_NAME in values and "'" + SOFTWARE in values and MODEL in values


def test_the_report_shows_hostile_values_as_text_and_runs_no_script(
    hostile: str, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["report", "--db", hostile, "-o", str(page), "--policy", POLICY])
    assert r.exit_code == 0, r.output
    export = _export(hostile, "html", tmp_path / "register.html")
    for html in (page, export):
        dom = _dom(html)
        assert "<title>" in dom and 'data-pwned="1"' not in dom  # nothing ran ...
        assert "<b>bold</b>" not in dom and '<img src="x"' not in dom  # ... no markup
    dom = _dom(page)
    # ... and the values are all there, as text.
    for value in (AE_TITLE, HL7_APP, HL7_FACILITY, DHCP_NAME, STATION, MODEL, SOFTWARE):
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in dom, value
    _screenshot(page, tmp_path / "hostile-report.png")
