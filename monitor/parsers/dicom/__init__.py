"""DICOM Upper Layer (PS3.8) and DIMSE (PS3.7) analyzer, PHI-free (STYLE S1 protocol folder).

``pdu`` frames PDUs and PDV items, ``items`` decodes association/release/abort PDUs, ``dimse``
reads command sets, ``dataset`` walks data sets for device attributes only, ``consts`` holds
the generated UID tables and ``analyzer`` turns one connection into records.
"""

from __future__ import annotations

from monitor.parsers.base import ParserSpec
from monitor.parsers.detect import probe_dicom
from monitor.parsers.dicom.analyzer import DicomAnalyzer

SPEC = ParserSpec(
    name="dicom",
    description=(
        "DICOM Upper Layer (PS3.8) and DIMSE (PS3.7): associations, commands and device "
        "attributes (no patient data)"
    ),
    tcp_ports=(104, 11112),
    probe=probe_dicom,
    analyzer=DicomAnalyzer,
    skips=True,
)

__all__ = ["SPEC", "DicomAnalyzer"]
