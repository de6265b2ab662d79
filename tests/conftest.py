"""Shared test fixtures: where the robustness captures are, the tshark oracle, registers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Public captures from Zeek's, tcpdump's and a pcapng generator's test suites. Read in place,
#: never copied into the repository.
ROBUSTNESS = ROOT.parent / "shared" / "captures" / "robustness"
PCAPS = ROOT / "pcaps"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the capture cases' golden files (pcaps/<folder>/<case>.golden/) from "
        "the current output instead of comparing with them",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when pytest runs with ``--update-golden``."""
    return bool(request.config.getoption("--update-golden"))


def robustness_files() -> list[Path]:
    """Every capture under ../shared/captures/robustness (empty when it is absent)."""
    if not ROBUSTNESS.is_dir():
        return []
    return sorted(
        p for p in ROBUSTNESS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file()
    )


def robustness_ids() -> list[str]:
    return [str(p.relative_to(ROBUSTNESS)) for p in robustness_files()]


@pytest.fixture
def robustness() -> Path:
    """The robustness captures folder; skips the test when it is absent."""
    if not ROBUSTNESS.is_dir():
        pytest.skip(f"{ROBUSTNESS} is absent (it comes with the shared/ folder)")
    return ROBUSTNESS


def need_tshark() -> str:
    """tshark's path; skips the test when tshark is not installed."""
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (apt-get install tshark); it is the oracle here")
    return path


def tshark(*args: str) -> str:
    """Run tshark (the oracle) and return its standard output."""
    exe = need_tshark()
    out = subprocess.run(
        [exe, "-n", *args], capture_output=True, text=True, check=False, timeout=120
    )
    return out.stdout


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A fresh register path in a temporary directory."""
    return str(tmp_path / "medmon.duckdb")


def expected(capture: str) -> dict:
    """The tshark facts make_captures.py recorded for a sample capture (pcaps/generic)."""
    import json

    data = json.loads((PCAPS / "generic" / "expected.json").read_text())
    return data["captures"][capture]


def db_rows(db: str, sql: str, params: list | None = None) -> list[tuple]:
    """The rows of a read query on the register file ``db`` (opened read-only, then closed)."""
    import duckdb

    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def chromium() -> str:
    """Headless Chromium's program (the test skips when it is not installed)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")
