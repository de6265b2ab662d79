"""Build script: compiles the per-packet modules with mypyc when it can.

medmon is a Python package; this only makes it faster. ``decode.py``, ``flows.py``,
``streams.py`` and the DICOM and HL7 parsers run once per packet or PDU, and compiled with
mypyc (the compiler that ships with mypy, using the modules' own type hints) they run about
twice as fast. When compiling is not
possible (no C compiler or Python headers) or not wanted (``MEDMON_PURE_PYTHON=1``), the
build goes on without it and medmon runs the same code as plain Python. ``monitor/_flowcore.c``,
the flow table's fast lane (docs/architecture.md), is hand-written C built with them under
the same conditions.

The SHA-256 of each compiled source is written to ``monitor/_compiled.json``; at import,
``monitor/__init__.py`` falls back to the plain modules when a source no longer matches what
was compiled (an edited checkout), so a stale build can never shadow new code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

#: Compiled together; monitor/__init__.py keeps the same list (_NATIVE).
COMPILED = (
    "monitor/decode.py",
    "monitor/flows.py",
    "monitor/parsers/base.py",
    "monitor/streams.py",
    "monitor/parsers/dicom/pdu.py",
    "monitor/parsers/dicom/items.py",
    "monitor/parsers/dicom/dimse.py",
    "monitor/parsers/dicom/dataset.py",
    "monitor/parsers/dicom/analyzer.py",
    "monitor/parsers/hl7/mllp.py",
    "monitor/parsers/hl7/msh.py",
    "monitor/parsers/hl7/analyzer.py",
    "monitor/observations.py",
    "monitor/parsers/text.py",
    "monitor/parsers/tls.py",
    "monitor/parsers/http.py",
    "monitor/parsers/dns.py",
    "monitor/parsers/ssh.py",
    "monitor/parsers/smb.py",
)
#: Hand-written C extensions, built with the compiled modules (their digests are checked too).
C_EXTENSIONS = {"monitor._flowcore": "monitor/_flowcore.c"}
HERE = Path(__file__).resolve().parent


class OptionalBuildExt(build_ext):
    """A failed compilation is a warning, not a failed install.

    Always compiles (``force``): mypyc regenerates the C of every module on each build, and a
    build that reused an older object file would pair new source digests with old code.
    """

    def finalize_options(self) -> None:
        super().finalize_options()
        self.force = True

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:
            _skip(f"compiling failed ({e})")

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)  # type: ignore[arg-type]
        except Exception as e:
            _skip(f"compiling {getattr(ext, 'name', ext)} failed ({e})")
            raise


#: Top-level data folders shipped inside the package as monitor/data/<name> (see
#: monitor/resources.py: a wheel has no checkout around it).
DATA_DIRS = ("fingerprints", "policies")


class BuildPyWithData(build_py):
    """Copies the data folders into the built package."""

    def run(self) -> None:
        super().run()
        for name in DATA_DIRS:
            src = HERE / name
            if src.is_dir():
                dst = Path(self.build_lib) / "monitor" / "data" / name
                shutil.copytree(src, dst, dirs_exist_ok=True)


def _skip(why: str) -> None:
    (HERE / "monitor" / "_compiled.json").unlink(missing_ok=True)
    print(f"medmon: {why}; installing as plain Python", file=sys.stderr)


def _ext_modules() -> list:
    if os.environ.get("MEDMON_PURE_PYTHON") == "1":
        (HERE / "monitor" / "_compiled.json").unlink(missing_ok=True)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _skip("mypyc is not available")
        return []
    from setuptools import Extension

    sources = (*COMPILED, *C_EXTENSIONS.values())
    digests = {name: hashlib.sha256((HERE / name).read_bytes()).hexdigest() for name in sources}
    (HERE / "monitor" / "_compiled.json").write_text(json.dumps(digests, indent=1) + "\n")
    native = [
        Extension(name, [source], extra_compile_args=["-O2"])
        for name, source in C_EXTENSIONS.items()
    ]
    return mypycify(list(COMPILED), opt_level="3", group_name="monitor_native") + native


setup(
    ext_modules=_ext_modules(),
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithData},
)
