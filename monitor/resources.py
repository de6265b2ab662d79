"""Where medmon's shipped data lives: ``fingerprints/`` and ``policies/``.

In a checkout (and an editable install) they are the repository's top-level folders; in a
wheel, ``setup.py`` copies them into the package as ``monitor/data/<name>`` (ARCHITECTURE:
they must be found when medmon is installed as a wheel, not only from a checkout). Site
fingerprint rules live in a folder of their own that upgrades never touch:
``$MEDMON_SITE_FINGERPRINTS``, else ``/etc/medmon/fingerprints`` when it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: Default folder of site fingerprint rules (loaded after the shipped ones).
SITE_FINGERPRINTS = Path("/etc/medmon/fingerprints")


def data_dir(name: str) -> Path:
    """The shipped folder ``name`` ('fingerprints' or 'policies')."""
    for candidate in (_HERE / "data" / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"medmon's {name}/ folder is missing from this installation")


def site_fingerprints(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The site rules folder: ``explicit``, ``$MEDMON_SITE_FINGERPRINTS``, or the default when
    it exists (None otherwise)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MEDMON_SITE_FINGERPRINTS")
    if env:
        return Path(env)
    return SITE_FINGERPRINTS if SITE_FINGERPRINTS.is_dir() else None
