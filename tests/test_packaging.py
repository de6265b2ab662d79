"""An installed wheel finds its shipped data (ARCHITECTURE: ``fingerprints/`` and ``policies/``
must be found when medmon is installed as a wheel, not only from a checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

#: Not part of a source tree to build from.
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so", "_compiled.json",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".benchmarks", "*.duckdb*",
)  # fmt: skip


WHERE_IS_THE_DATA = "from monitor.resources import data_dir; print(data_dir('fingerprints'))"


def test_a_wheel_ships_and_finds_the_fingerprint_database(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)  # a copy: building must not touch the checkout
    env = {**os.environ, "MEDMON_PURE_PYTHON": "1"}  # no compiler needed for this check
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if built.returncode != 0 and "No matching distribution" in built.stderr:
        pytest.skip("the build requirements cannot be installed here (no package index)")
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("medmon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "monitor/data/fingerprints/vocabulary.yaml" in names
    assert "monitor/data/fingerprints/oui/manuf.tsv.gz" in names
    assert any(n.startswith("monitor/data/fingerprints/dicom/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    # The wheel's dependencies are this environment's: after the venv's own packages (so the
    # wheel's monitor wins), the running interpreter's site-packages (not processed for
    # .pth files, so an editable checkout of monitor stays out).
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_medmon_test_deps.pth").write_text("\n".join(sorted(outer)) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(
        [str(python), "-c", WHERE_IS_THE_DATA],
        cwd=elsewhere, capture_output=True, text=True, check=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.strip()  # fmt: skip
    assert out.startswith(str(venv)) and out.endswith("monitor/data/fingerprints")
    lint = subprocess.run(
        [str(venv / "bin" / "medmon"), "fingerprint", "lint"],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (lint.returncode, lint.stdout) == (0, "")
    assert {"monitor/templates/report.html.j2", "monitor/data/policies/risk.yaml"} <= names
    # The risk register's commands find their templates and risk method in the wheel.
    medmon = str(venv / "bin" / "medmon")
    db = str(tmp_path / "w.duckdb")
    capture = str(ROOT / "pcaps" / "generic" / "smb.pcap")
    policy = str(ROOT / "policies" / "default.yaml")
    for argv in (["replay", capture, "--db", db, "--policy", policy, "-q"],
                 ["report", "--db", db, "-o", str(tmp_path / "r.html")],
                 ["register", "export", "--db", db, "--format", "xlsx",
                  "-o", str(tmp_path / "r.xlsx")]):  # fmt: skip
        run = subprocess.run([medmon, *argv], cwd=elsewhere, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr
    assert "smb.v1" in (tmp_path / "r.html").read_text()
