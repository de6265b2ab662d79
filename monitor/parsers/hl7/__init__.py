"""HL7 v2 over MLLP (HL7 Transport Specification, MLLP release 2) or raw TCP.

``mllp.py`` deframes each direction, ``msh.py`` reads the MSH segment (HL7 v2.5 Chapter 2) and
the few device fields (MSA, PRT, OBX-18), ``analyzer.py`` turns messages into
:class:`monitor.records.Hl7Message` records. No patient data is decoded (STYLE S3.5).
"""

from __future__ import annotations

from monitor.parsers.base import ParserSpec
from monitor.parsers.detect import probe_hl7
from monitor.parsers.hl7.analyzer import Hl7Analyzer

SPEC = ParserSpec(
    name="hl7",
    description="HL7 v2 over MLLP (or raw TCP): MSH header, ACK codes and device identifiers",
    tcp_ports=(2575,),
    probe=probe_hl7,
    analyzer=Hl7Analyzer,
)

__all__ = ["SPEC", "Hl7Analyzer"]
