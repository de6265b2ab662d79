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
import importlib.util
import json
import os
import sys
from pathlib import Path

__version__ = "0.1.0"

#: Modules setup.py may compile, in dependency order.
_NATIVE = ("decode", "flows", "streams")


def _choose_implementation() -> bool:
    here = Path(__file__).resolve().parent
    if not any(next(here.glob(f"{m}.*.so"), None) for m in _NATIVE):
        return False
    fresh = False
    record = here / "_compiled.json"
    if os.environ.get("MEDMON_PURE_PYTHON") != "1" and record.is_file():
        try:
            digests = json.loads(record.read_text())
        except ValueError:
            digests = {}
        fresh = all(
            digests.get(f"monitor/{m}.py")
            == hashlib.sha256((here / f"{m}.py").read_bytes()).hexdigest()
            for m in _NATIVE
        )
    if fresh:
        return True
    for m in _NATIVE:  # load the plain sources ahead of the compiled modules
        name = f"{__name__}.{m}"
        spec = importlib.util.spec_from_file_location(name, here / f"{m}.py")
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return False


#: Whether the compiled per-packet modules are in use.
COMPILED = _choose_implementation()
