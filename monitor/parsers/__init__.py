"""Protocol parsers, and the one explicit list of them that the streams stage uses.

Order matters: :class:`monitor.streams.StreamManager` tries the probes in this order and the
first match claims the flow, so the most specific probes come first (DICOM and HL7 before the
generic text protocols). A port listed by two specs goes to the first (STYLE S3.6: no import-time
registration, no name magic; grep for ``REGISTRY``).
"""

from __future__ import annotations

from monitor.parsers import detect, dicom, hl7
from monitor.parsers.base import Analyzer, FlowContext, ParserSpec

REGISTRY: tuple[ParserSpec, ...] = (
    dicom.SPEC,
    hl7.SPEC,
    detect.TLS_SPEC,
    detect.SSH_SPEC,
    detect.HTTP_SPEC,
)

__all__ = ["REGISTRY", "Analyzer", "FlowContext", "ParserSpec"]
