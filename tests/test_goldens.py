"""Capture cases (STYLE S9): each sample capture under pcaps/generic, pcaps/dicom and pcaps/hl7
sits beside its expected output, and a replay into a fresh register must produce it.

``<case>.expect.yaml`` holds partial checks written by hand [suricata-verify ``test.yaml``]::

    canonicalize: [drop_run_ids, drop_wall_clock, utc_timestamps, sort_rows]  # optional
    checks:
      - {table: dicom_associations, count: 2, match: {calling_ae: CT01, result: accepted}}
      - {table: dicom_associations, count: 1, match: {command_counts.C-STORE-RQ: 3}}
      - {table: flows, min_count: 1, match: {app: dicom}}

``count`` (or ``min_count``) is the number of rows matching every ``match`` key. A key is a
column, or a dotted path into a JSON column; values are compared as text, lists item by item.

``<case>.golden/<table>.jsonl`` is the full canonical output of every table below that has
rows [Zeek btest baselines]: a header line, then one JSON object per row. Canonicalization is
a few small named functions the case opts into (``canonicalize``, all of them by default)
[btest ``diff-*`` canonifiers]; JSON columns are always parsed and written with sorted keys.
``pytest --update-golden`` rewrites the golden files [``btest -U``]; without it a difference
fails with a unified diff. No golden file may hold a PHI canary.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from monitor import api
from monitor.records import TABLES

from conftest import PCAPS, ROOT

FOLDERS = ("generic", "dicom", "hl7")
#: Tables written to golden files (only those with rows) and checked by expect files.
GOLDEN_TABLES = (
    "flows",
    "dicom_associations",
    "dicom_devices",
    "hl7_messages",
    "observations",
    "assets",
    "anomalies",
)
#: The PHI canaries make_captures.py plants (pcaps/README.md); "CANARY" covers every variant.
CANARIES = ("CANARY", "PHI-CANARY-0001", "19000101")
GENERATED = "do not edit; pytest --update-golden"
DIFF_LINES = 60
UPDATE_HINT = (
    "Check that the change is intended, then rewrite the golden files with: "
    "python -m pytest tests/test_goldens.py --update-golden"
)

Row = dict[str, Any]
RECORDS: dict[str, type] = dict(TABLES)
COLUMNS = {table: [f.name for f in fields(RECORDS[table])] for table in GOLDEN_TABLES}
JSON_COLUMNS = {
    table: {f.name for f in fields(RECORDS[table]) if f.metadata["sql"] == "JSON"}
    for table in GOLDEN_TABLES
}
#: Columns that depend on the machine or the moment medmon ran, not on the capture. The tables
#: above hold capture times only; these keep the canonicalizer right for the run tables.
WALL_CLOCK = {
    "runs": ("started_at", "finished_at", "sensor", "version"),
    "captures": ("path",),
    "assets": ("updated_at",),
}


# Canonicalizers: (table, rows) -> rows. Applied in the order of CANONICALIZERS.


def drop_run_ids(table: str, rows: list[Row]) -> list[Row]:
    """Remove ``run_id``: it numbers runs of a register, not facts of the capture."""
    return [{k: v for k, v in row.items() if k != "run_id"} for row in rows]


def drop_wall_clock(table: str, rows: list[Row]) -> list[Row]:
    """Remove the columns that are wall-clock or machine-dependent (WALL_CLOCK)."""
    drop = set(WALL_CLOCK.get(table, ()))
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def utc_timestamps(table: str, rows: list[Row]) -> list[Row]:
    """Render timestamps as ISO 8601 UTC with microseconds (``2026-12-04T22:12:12.188488Z``)
    whatever the time zone of the machine and of the DuckDB session."""
    return [{k: _utc(v) for k, v in row.items()} for row in rows]


def sort_rows(table: str, rows: list[Row]) -> list[Row]:
    """Sort rows by their JSON text: the register's row order is not part of the output."""
    return sorted(rows, key=_dumps)


CANONICALIZERS: dict[str, Callable[[str, list[Row]], list[Row]]] = {
    f.__name__: f for f in (drop_run_ids, drop_wall_clock, utc_timestamps, sort_rows)
}


def json_columns(table: str, rows: list[Row]) -> list[Row]:
    """Parse the JSON columns (strings holding JSON) so they are written with sorted keys."""
    names = JSON_COLUMNS.get(table, set())
    return [
        {k: _sorted_keys(json.loads(v)) if k in names and isinstance(v, str) else v
         for k, v in row.items()}
        for row in rows
    ]  # fmt: skip


def _utc(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# Captures and their case files.


def sample_captures() -> list[Path]:
    return sorted(
        p
        for folder in FOLDERS
        for p in (PCAPS / folder).iterdir()
        if p.suffix in (".pcap", ".pcapng") and p.is_file()
    )


CAPTURES = sample_captures()
IDS = [p.relative_to(PCAPS).as_posix() for p in CAPTURES]


def _shown(path: Path) -> str:
    """A path as the messages show it: relative to the repository when it is inside."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def expect_file(capture: Path) -> Path:
    return capture.with_name(capture.stem + ".expect.yaml")


def golden_dir(capture: Path) -> Path:
    return capture.with_name(capture.stem + ".golden")


def golden_lines(capture: Path, table: str, rows: list[Row], canonicalize: list[str]) -> list[str]:
    """The golden file of one table: the header line, then one canonical JSON line per row."""
    header = {"_generated": GENERATED, "capture": _shown(capture), "table": table}
    rows = json_columns(table, rows)
    for name, canonicalizer in CANONICALIZERS.items():
        if name in canonicalize:
            rows = canonicalizer(table, rows)
    return [_dumps(header)] + [_dumps(row) for row in rows]


# Expect files.


class ExpectError(Exception):
    """A malformed expect file. ``str()`` is one line naming the file."""


CHECK_KEYS = {"table", "count", "min_count", "match"}


def load_expect(path: Path) -> dict[str, Any]:
    """Read and validate an expect file; raise ExpectError on anything malformed."""

    def bad(why: str) -> ExpectError:
        return ExpectError(f"{_shown(path)}: malformed expect file: {' '.join(why.split())}")

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExpectError(
            f"{_shown(path)}: missing; every sample capture needs an expect file"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise bad(str(e)) from None
    if not isinstance(data, dict):
        raise bad("the top level must be a mapping with a 'checks' list")
    if unknown := set(data) - {"checks", "canonicalize"}:
        raise bad(f"unknown keys {sorted(map(str, unknown))}")
    canonicalize = data.setdefault("canonicalize", list(CANONICALIZERS))
    if not isinstance(canonicalize, list) or not set(canonicalize) <= set(CANONICALIZERS):
        raise bad(f"canonicalize must be a list of {list(CANONICALIZERS)}")
    checks = data.get("checks")
    if not isinstance(checks, list) or not checks:
        raise bad("'checks' must be a non-empty list")
    for i, check in enumerate(checks, 1):
        where = f"check {i}"
        if not isinstance(check, dict):
            raise bad(f"{where} is not a mapping")
        if unknown := set(check) - CHECK_KEYS:
            raise bad(f"{where}: unknown keys {sorted(map(str, unknown))}")
        table = check.get("table")
        if table not in GOLDEN_TABLES:
            raise bad(f"{where}: table must be one of {list(GOLDEN_TABLES)}, not {table!r}")
        counts = [k for k in ("count", "min_count") if k in check]
        if len(counts) != 1:
            raise bad(f"{where}: needs exactly one of count and min_count")
        n = check[counts[0]]
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise bad(f"{where}: {counts[0]} must be a non-negative integer, not {n!r}")
        match = check.setdefault("match", {})
        if not isinstance(match, dict):
            raise bad(f"{where}: match must be a mapping")
        for key, value in match.items():
            if not isinstance(key, str) or key.split(".")[0] not in COLUMNS[table]:
                raise bad(f"{where}: {table} has no column {key!r}")
            if isinstance(value, dict) or (
                isinstance(value, list) and any(isinstance(v, dict | list) for v in value)
            ):
                raise bad(f"{where}: {key} must be a value or a list of values")
    return data


def _expect(capture: Path) -> dict[str, Any]:
    try:
        return load_expect(expect_file(capture))
    except ExpectError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)  # outside the except: one line, no chained traceback


_MISSING = object()


def _lookup(row: Row, path: str) -> Any:
    """A column's value, or a value inside a JSON column by dotted path."""
    column, *keys = path.split(".")
    value = row[column]
    for key in keys:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return _MISSING
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, list):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(_same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if actual is _MISSING or isinstance(actual, dict | list | tuple):
        return False
    return _text(actual) == _text(expected)


def matching(rows: list[Row], match: dict[str, Any]) -> list[Row]:
    return [r for r in rows if all(_same(_lookup(r, k), v) for k, v in match.items())]


def check_failures(checks: list[dict[str, Any]], tables: dict[str, list[Row]]) -> Iterator[str]:
    for i, check in enumerate(checks, 1):
        rows = tables[check["table"]]
        n = len(matching(rows, check["match"]))
        if "count" in check and n != check["count"]:
            want = f"{check['count']}"
        elif "min_count" in check and n < check["min_count"]:
            want = f"at least {check['min_count']}"
        else:
            continue
        seen = sorted({_dumps([_lookup(r, k) for k in check["match"]]) for r in rows})
        yield (
            f"check {i} {_dumps(check)}: {n} matching rows, want {want}; "
            f"values of {list(check['match'])} in {check['table']}: {seen or 'no rows'}"
        )


# The register of each capture, replayed once per module.


def _read_tables(db: str) -> dict[str, list[Row]]:
    con = duckdb.connect(db, read_only=True)
    try:
        tables = {}
        for table in GOLDEN_TABLES:
            cur = con.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            tables[table] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return tables
    finally:
        con.close()


@pytest.fixture(scope="module")
def register(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[Path], dict[str, list[Row]]]:
    """``register(capture)``: the golden tables' rows after replaying the capture alone into
    a fresh register."""
    cache: dict[Path, dict[str, list[Row]]] = {}

    def tables(capture: Path) -> dict[str, list[Row]]:
        if capture not in cache:
            db = tmp_path_factory.mktemp("golden") / "medmon.duckdb"
            api.replay([str(capture)], db=str(db))
            cache[capture] = _read_tables(str(db))
        return cache[capture]

    return tables


def _canaries(lines: list[str]) -> list[str]:
    return [line[:200] for line in lines if any(c in line for c in CANARIES)]


def _diff(path: Path, want: list[str], got: list[str]) -> str:
    diff = list(
        difflib.unified_diff(
            want, got, fromfile=_shown(path), tofile="replay now", lineterm="", n=1
        )
    )
    more = len(diff) - DIFF_LINES
    tail = [f"... {more} more diff lines"] if more > 0 else []
    return "\n".join(diff[:DIFF_LINES] + tail)


@pytest.mark.parametrize("capture", CAPTURES, ids=IDS)
def test_capture_output_equals_its_golden_files(
    capture: Path, register: Callable[[Path], dict[str, list[Row]]], update_golden: bool
) -> None:
    canonicalize = _expect(capture)["canonicalize"]
    tables = register(capture)
    folder = golden_dir(capture)
    problems: list[str] = []
    for table in GOLDEN_TABLES:
        path = folder / f"{table}.jsonl"
        got = golden_lines(capture, table, tables[table], canonicalize) if tables[table] else []
        assert not _canaries(got), f"PHI canary in the output for {_shown(path)}"
        if update_golden:
            if got:
                folder.mkdir(exist_ok=True)
                path.write_text("\n".join(got) + "\n", encoding="utf-8")
            else:
                path.unlink(missing_ok=True)
            continue
        if not path.exists():
            if got:
                problems.append(f"{_shown(path)} is missing: {table} has {len(got) - 1} rows")
            continue
        want = path.read_text(encoding="utf-8").splitlines()
        assert not _canaries(want), f"PHI canary in {_shown(path)}"
        if not got:
            problems.append(f"{_shown(path)} exists but {table} has no rows now")
        elif want != got:
            problems.append(_diff(path, want, got))
    if update_golden and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    if problems:
        pytest.fail("\n\n".join([*problems, UPDATE_HINT]), pytrace=False)


@pytest.mark.parametrize("capture", CAPTURES, ids=IDS)
def test_capture_meets_its_expect_file(
    capture: Path, register: Callable[[Path], dict[str, list[Row]]]
) -> None:
    expect = _expect(capture)
    failures = list(check_failures(expect["checks"], register(capture)))
    if failures:
        pytest.fail("\n".join([f"{_shown(expect_file(capture))}:", *failures]), pytrace=False)


def test_no_golden_file_holds_a_phi_canary() -> None:
    golden = sorted(PCAPS.glob("*/*.golden/*.jsonl"))
    assert golden, "no golden files: run pytest tests/test_goldens.py --update-golden"
    for path in golden:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert not _canaries(lines), f"PHI canary in {_shown(path)}: {_canaries(lines)}"


def test_every_golden_file_starts_with_its_header() -> None:
    for path in sorted(PCAPS.glob("*/*.golden/*.jsonl")):
        header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
        capture = path.parent.name.removesuffix(".golden")
        assert header["_generated"] == GENERATED
        assert header["table"] == path.stem
        assert Path(header["capture"]).stem == capture


# The mechanism itself.

MALFORMED = {
    "not-yaml": "checks: [table: flows",
    "not-a-mapping": "- table: flows",
    "no-checks": "canonicalize: [sort_rows]\n",
    "unknown-key": "checks: [{table: flows, count: 1}]\nextra: 1\n",
    "unknown-table": "checks: [{table: nope, count: 1}]\n",
    "no-count": "checks: [{table: flows, match: {app: http}}]\n",
    "both-counts": "checks: [{table: flows, count: 1, min_count: 1}]\n",
    "bad-count": "checks: [{table: flows, count: two}]\n",
    "unknown-column": "checks: [{table: flows, count: 1, match: {colour: red}}]\n",
    "unknown-canonicalizer": "canonicalize: [shuffle]\nchecks: [{table: flows, count: 1}]\n",
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_expect_file_fails_with_one_line_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "case.expect.yaml"
    path.write_text(text)
    with pytest.raises(ExpectError) as info:
        load_expect(path)
    message = str(info.value)
    assert message.startswith(f"{path}: malformed expect file: ")
    assert "\n" not in message


def test_checks_count_rows_matching_every_key() -> None:
    rows: list[Row] = [
        {"app": "dicom", "server_port": 4242, "commands": ["C-ECHO-RQ"], "counts": '{"A": 3}'},
        {"app": "dicom", "server_port": 104, "commands": [], "counts": "{}"},
        {"app": "hl7", "server_port": 2575, "commands": None, "counts": None},
    ]
    assert len(matching(rows, {"app": "dicom"})) == 2
    assert len(matching(rows, {"app": "dicom", "server_port": "4242"})) == 1
    assert len(matching(rows, {"commands": ["C-ECHO-RQ"]})) == 1
    assert len(matching(rows, {"commands": []})) == 1
    assert len(matching(rows, {"counts.A": 3})) == 1
    assert len(matching(rows, {"commands": None})) == 1
    assert matching(rows, {"counts.B": 3}) == []


def test_canonicalizers() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    rows: list[Row] = [
        {"run_id": 2, "ts": dt.datetime(2024, 1, 2, 13, 0, 0, 5, tzinfo=cet), "n": 2},
        {"run_id": 2, "ts": dt.datetime(2024, 1, 2, 11, 0, 0, tzinfo=dt.UTC), "n": 1},
    ]
    got = sort_rows("flows", utc_timestamps("flows", drop_run_ids("flows", rows)))
    assert got == [
        {"ts": "2024-01-02T11:00:00.000000Z", "n": 1},
        {"ts": "2024-01-02T12:00:00.000005Z", "n": 2},
    ]
    run = [{"run_id": 1, "started_at": 0, "sensor": "host", "source": "x.pcap"}]
    assert drop_wall_clock("runs", run) == [{"run_id": 1, "source": "x.pcap"}]
    assocs = [{"command_counts": '{"C-STORE-RQ": 3, "C-ECHO-RQ": 1}', "pdus": 6}]
    assert _dumps(json_columns("dicom_associations", assocs)[0]) == (
        '{"command_counts": {"C-ECHO-RQ": 1, "C-STORE-RQ": 3}, "pdus": 6}'
    )
