"""The optional mypyc build (setup.py): compiled and plain modules behave the same, and a
stale build never shadows edited sources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import monitor

from conftest import ROOT

PKG = Path(monitor.__file__).resolve().parent
BUILT = any(PKG.glob("flows.*.so"))


def _python(code: str, cwd: Path, **env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_compiled_modules_are_used_when_built() -> None:
    import monitor.flows

    assert monitor.COMPILED is BUILT
    assert monitor.flows.__file__.endswith(".so") is BUILT


@pytest.mark.skipif(not BUILT, reason="medmon was installed without the compiled modules")
def test_plain_python_passes_the_flow_and_decode_tests() -> None:
    """MEDMON_PURE_PYTHON=1 runs the plain modules (and no C: the flow table's fast lane and
    the pcap record loop run in Python); the hot-path tests pass with them too."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_flows.py", "tests/test_decode.py", "tests/test_anomalies.py",
         "tests/test_source.py"],
        cwd=ROOT,
        env={**os.environ, "MEDMON_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:]
    probe = "import monitor, monitor.flows as f; print(monitor.COMPILED, f.__file__)"
    assert _python(probe, ROOT, MEDMON_PURE_PYTHON="1").split()[0] == "False"


@pytest.mark.skipif(not BUILT, reason="medmon was installed without the compiled modules")
def test_an_edited_source_is_not_shadowed_by_a_stale_build(tmp_path: Path) -> None:
    copy = tmp_path / "monitor"
    shutil.copytree(PKG, copy)
    for shared in PKG.parent.glob("monitor_native__mypyc*.so"):
        shutil.copy(shared, tmp_path)
    probe = "import monitor, monitor.flows as f; print(monitor.COMPILED, f.__file__)"
    assert _python(probe, tmp_path).split()[0] == "True"
    with open(copy / "flows.py", "a") as fh:
        fh.write("\nEDITED = True\n")
    compiled, path = _python(probe, tmp_path).split()
    assert compiled == "False" and path.endswith("flows.py")
    assert _python("import monitor.flows as f; print(f.EDITED)", tmp_path) == "True"
