"""The systemd unit (packaging/systemd/medmon-sensor@.service), checked offline by systemd's
own tools: it parses with no warning, its command is medmon's, and its sandbox rates as
systemd-analyze's "OK" exposure or better. (Running it needs systemd as PID 1, which a CI
container does not have; tests/test_live.py runs its privilege model: an unprivileged user
with only the two ambient capabilities.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "packaging" / "systemd" / "medmon-sensor@.service"
#: systemd-analyze security's "OK" band ends at 4.9; the unit rates 2.2 with systemd 252.
MAX_EXPOSURE = 3.0


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return path


def _instance(tmp_path: Path) -> Path:
    """The unit as an instance for eth1, its ExecStart pointing at this medmon."""
    medmon = Path(sys.executable).parent / "medmon"
    if not medmon.exists():
        pytest.skip("the medmon console script is not installed beside this Python")
    text = UNIT.read_text().replace("/usr/local/bin/medmon", str(medmon))
    (tmp_path / UNIT.name).write_text(text)
    return tmp_path / "medmon-sensor@eth1.service"


def test_the_unit_verifies_clean(tmp_path: Path) -> None:
    unit = _instance(tmp_path)
    done = subprocess.run(
        [_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "" and done.stdout.strip() == ""


def test_the_unit_runs_medmon_sniff_on_its_instance() -> None:
    exec_start = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart=")]
    assert exec_start == [
        "ExecStart=/usr/local/bin/medmon sniff -i %I --db /var/lib/medmon/%I.duckdb"
    ]
    text = UNIT.read_text()
    assert "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN" in text
    assert "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN" in text
    assert re.search(r"^User=medmon$", text, re.M) and "NoNewPrivileges=yes" in text


def test_the_sandbox_rates_ok_or_better(tmp_path: Path) -> None:
    unit = _instance(tmp_path)
    done = subprocess.run(
        [_analyze(), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout
