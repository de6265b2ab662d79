"""medmon: a passive network monitor for hospital networks.

The import package is ``monitor``; the distribution and the command are ``medmon``.

The per-packet modules (``decode``, ``flows``, ``streams``) may be compiled by mypyc at
install time (see setup.py). :data:`COMPILED` says whether this process runs the compiled
versions. They are used only when ``_compiled.json`` vouches that they were built from the
sources beside them; after an edit (or with ``MEDMON_PURE_PYTHON=1``) the plain modules are
loaded instead, so a stale build never shadows the code in the tree.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

#: Modules setup.py may compile (paths relative to this package). Keep in step with setup.py.
_NATIVE = (
    "decode.py",
    "flows.py",
    "parsers/base.py",
    "streams.py",
    "parsers/dicom/pdu.py",
    "parsers/dicom/items.py",
    "parsers/dicom/dimse.py",
    "parsers/dicom/dataset.py",
    "parsers/dicom/analyzer.py",
    "parsers/hl7/mllp.py",
    "parsers/hl7/msh.py",
    "parsers/hl7/analyzer.py",
    "observations.py",
    "parsers/text.py",
    "parsers/tls.py",
    "parsers/http.py",
    "parsers/dns.py",
    "parsers/ssh.py",
    "parsers/smb.py",
)


#: Hand-written C built with them (setup.py C_EXTENSIONS); used only when fresh, like them.
_NATIVE_C = ("_flowcore.c",)


class _PlainSources(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' plain sources ahead of the stale compiled versions."""

    def __init__(self, here: Path) -> None:
        self.files = {f"{__name__}." + rel[:-3].replace("/", "."): here / rel for rel in _NATIVE}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.files.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _choose_implementation() -> bool:
    here = Path(__file__).resolve().parent
    if not any(next(here.glob(rel[:-3] + ".*.so"), None) for rel in _NATIVE):
        return False
    fresh = False
    record = here / "_compiled.json"
    if os.environ.get("MEDMON_PURE_PYTHON") != "1" and record.is_file():
        try:
            digests = json.loads(record.read_text())
        except ValueError:
            digests = {}
        fresh = all(
            digests.get(f"monitor/{rel}") == hashlib.sha256((here / rel).read_bytes()).hexdigest()
            for rel in (*_NATIVE, *_NATIVE_C)
        )
    if not fresh:  # import the plain sources instead of the compiled modules
        sys.meta_path.insert(0, _PlainSources(here))
    return fresh


#: Whether the compiled per-packet modules are in use.
COMPILED = _choose_implementation()


def native_core() -> Any:
    """The hand-written C module (``monitor._flowcore``: the flow table's fast lane and the
    pcap record loop) when it was built with the compiled modules and they are in use; None
    otherwise (no C compiler at install, an edited checkout, ``MEDMON_PURE_PYTHON=1``), and
    its callers run the same work in Python."""
    if not COMPILED:
        return None
    try:
        from monitor import _flowcore
    except ImportError:
        return None
    return _flowcore
