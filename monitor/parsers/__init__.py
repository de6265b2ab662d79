"""Protocol parsers, and the one explicit list of them that the streams stage uses.

Order matters: :class:`monitor.streams.StreamManager` tries the probes in this order and the
first match claims the flow, so the most specific probes come first (DICOM and HL7 before the
generic text protocols). A port listed by two specs goes to the first (STYLE S3.6: no import-time
registration, no name magic; grep for ``REGISTRY``).
"""

from __future__ import annotations

from monitor.parsers import (
    cleartext,
    dhcp,
    dicom,
    dns,
    hl7,
    http,
    netbios,
    smb,
    snmp,
    ssdp,
    ssh,
    tls,
)
from monitor.parsers.base import (
    Analyzer,
    DatagramContext,
    DatagramSpec,
    FlowContext,
    ParserSpec,
)

REGISTRY: tuple[ParserSpec, ...] = (
    dicom.SPEC,
    hl7.SPEC,
    tls.SPEC,
    ssh.SPEC,
    http.SPEC,
    smb.SPEC,
    cleartext.FTP_SPEC,
    cleartext.TELNET_SPEC,
)

#: UDP protocols read one datagram at a time (the flow table hands them their ports' datagrams).
DATAGRAM_REGISTRY: tuple[DatagramSpec, ...] = (
    dhcp.SPEC,
    dns.DNS_SPEC,
    dns.MDNS_SPEC,
    dns.LLMNR_SPEC,
    netbios.NBNS_SPEC,
    netbios.NBDS_SPEC,
    ssdp.SSDP_SPEC,
    ssdp.WSD_SPEC,
    snmp.SPEC,
)

__all__ = [
    "DATAGRAM_REGISTRY",
    "REGISTRY",
    "Analyzer",
    "DatagramContext",
    "DatagramSpec",
    "FlowContext",
    "ParserSpec",
]
