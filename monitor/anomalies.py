"""The catalogue of named anomalies: things on the wire (or in a capture) that are not as they
should be, and that medmon counts instead of raising.

Every name a stage can emit is listed here with one sentence of meaning [Zeek weirds; Suricata
``*-events.rules``]. Each has a test that makes it fire (``tests/test_anomalies.py``). Names are
dotted ``layer.what`` in lower snake case. They are recorded per run in the register's
``anomalies`` table with a count and the first example.
"""

from __future__ import annotations

CATALOGUE: dict[str, str] = {
    # link layer
    "frame.linktype_unsupported": "The frame's link type is not one medmon decodes; it is counted and skipped.",
    "eth.truncated": "The frame is shorter than its Ethernet header.",
    "vlan.truncated": "The frame ends inside an 802.1Q/802.1ad VLAN tag.",
    "mpls.truncated": "The frame ends inside an MPLS label stack.",
    "sll.truncated": "The frame is shorter than its Linux cooked-capture (SLL/SLL2) header.",
    "null.unknown_family": "A BSD loopback/null header names an address family other than IPv4/IPv6.",
    "nflog.bad_tlv": "An NFLOG TLV has a length that runs past the frame or below its own header.",
    "nflog.no_payload": "An NFLOG frame carries no packet payload TLV.",
    "pktap.bad_header": "An Apple PKTAP header length is shorter than the header or runs past the frame.",
    # network layer
    "ipv4.truncated": "The frame ends inside the IPv4 header.",
    "ipv4.bad_header_length": "The IPv4 IHL field is below 5 words or runs past the captured bytes.",
    "ipv4.bad_total_length": "The IPv4 total length is smaller than the IPv4 header itself.",
    "ipv6.truncated": "The frame ends inside the IPv6 header or one of its extension headers.",
    "ip.bad_version": "The IP version nibble is neither 4 nor 6 where an IP packet was expected.",
    "ip.fragment_orphan": "A non-first IP fragment arrived with no first fragment to attribute it to.",
    # transport layer
    "tcp.truncated": "The frame ends inside the TCP header (snaplen); the fields present are used.",
    "tcp.bad_header_length": "The TCP data offset is below 5 words or beyond the packet.",
    "udp.truncated": "The frame ends inside the UDP header.",
    "udp.bad_length": "The UDP length field is below 8 or larger than the IP payload.",
    "icmp.truncated": "The frame ends inside the ICMP/ICMPv6 header.",
    # streams
    "tcp.stream_gap": "TCP bytes never arrived (capture loss); the stream skipped over the gap.",
    "tcp.stream_buffer_full": "Out-of-order TCP data exceeded the per-stream buffer; the stream skipped ahead.",
    "tcp.stream_overlap_mismatch": "A retransmitted TCP segment carried different bytes than the first copy.",
    "tcp.stream_analyzer_error": "A protocol analyzer raised on a stream's bytes (a bug); the flow's analysis stopped there.",
    # hl7 (HL7 v2 over MLLP)
    "hl7.mllp_missing_end_block": "An MLLP start block began before the open block's end block; the open block was taken as a message.",
    "hl7.mllp_bytes_outside_block": "Bytes between MLLP blocks were neither a start block nor the CR after an end block; they were skipped.",
    "hl7.message_too_large": "An HL7 message exceeded the maximum size; only its first bytes were read for the MSH.",
    "hl7.message_incomplete": "An HL7 message was cut by a capture gap or the end of the stream; the fields read before the cut are kept.",
    "hl7.invalid_msh": "The MSH segment's delimiters or required fields are unusable or missing; the fields that could be read are kept.",
    "hl7.no_msh": "An HL7 message does not start with an MSH segment; only its segment names are recorded.",
    "hl7.invalid_segment": "A segment does not start with a 3-character name and the field separator; it is listed as '???' and not read.",
    # dicom (PS3.8 Upper Layer, PS3.7 DIMSE)
    "dicom.pdu_unknown_type": "A PDU header names a type other than 0x01-0x07; the direction's framing is abandoned.",
    "dicom.pdu_length_absurd": "A PDU-length exceeds the plausible bound (16 MiB, P-DATA-TF 256 MiB); the direction's framing is abandoned.",
    "dicom.pdu_truncated": "A PDU body is shorter than the fixed part of its type (e.g. an A-ASSOCIATE-RQ under 68 bytes).",
    "dicom.pdu_unexpected": "A PDU came from the wrong side (an A-ASSOCIATE-AC from the requestor) or a second association started on one connection.",
    "dicom.pdv_length_invalid": "A PDV item length is below 2, or too few bytes are left in the P-DATA-TF for a PDV header; the rest of the PDU is skipped.",
    "dicom.pdv_length_overrun": "A PDV item runs past the end of its P-DATA-TF PDU; the rest of that PDU is skipped.",
    "dicom.item_truncated": "A variable item or sub-item of an association PDU is cut short (header or fixed fields).",
    "dicom.item_length_overrun": "A variable item's length runs past its enclosing item or PDU; the remaining items are not read.",
    "dicom.item_unknown_type": "An association PDU carries an item or sub-item type PS3.8/PS3.7 do not define there; it is skipped.",
    "dicom.ae_title_control_chars": "An AE title contains control characters; they are recorded as '?'.",
    "dicom.command_invalid": "A DIMSE command set has an element outside group 0000 or one that overruns it.",
    "dicom.command_too_long": "A DIMSE command set grew beyond 64 KiB; it is dropped.",
    "dicom.dataset_invalid": "A data set's element walk met an invalid VR, item tag or nesting depth; the rest of the data set is skipped.",
    "dicom.deflate_error": "A Deflated Explicit VR Little Endian data set failed to inflate; the rest of it is skipped.",
    "dicom.device_value_too_long": "A whitelisted device element is longer than 1 KiB; it is skipped unread.",
    # tls, http, ssh, smb, ftp (handshakes and headers read for observations)
    "tls.malformed": "A TLS record or handshake message could not be decoded (not a record header, a length past the message, a truncated hello); the flow's analysis stops.",
    "tls.handshake_too_large": "64 KiB of one direction went by without the handshake messages needed; the flow's analysis stops.",
    "tls.bad_certificate": "The server's leaf certificate is not decodable X.509 DER.",
    "http.header_too_long": "An HTTP head exceeded 16 KiB without its empty line; the flow's analysis stops.",
    "http.malformed": "A request or status line is not HTTP/1.x; the flow's analysis stops.",
    "http.bad_content_length": "Content-Length values are not numbers or disagree; message boundaries are unknown, so the flow's analysis stops.",
    "ssh.no_banner": "A side sent 8 KiB without an SSH version exchange line.",
    "smb.malformed": "An SMB session packet type, SMB1/SMB2 command layout or NTLMSSP message is invalid or truncated.",
    "ftp.malformed": "The FTP server's first line is not an RFC 959 reply.",
    # udp datagrams (dhcp, dns, mdns, llmnr, netbios, ssdp, ws-discovery, snmp)
    "dhcp.malformed": "A DHCP datagram is under 240 bytes, has a bad magic cookie, or an op other than 1 or 2.",
    "dhcp.truncated_option": "A DHCP option runs past the end of its area; the options before it are kept.",
    "dhcp.bad_option_length": "DHCP option 50, 52, 53 or 54 has the wrong fixed length; it is dropped.",
    "dhcp.bad_fqdn": "A DHCP option 81 name in wire format has a label running past the option, or the option is under 3 bytes.",
    "dns.malformed": "A DNS, mDNS or LLMNR message is cut short in its header, a question, a record or its RDATA.",
    "dns.bad_name": "A DNS name has a compression pointer loop or a pointer outside the message, a reserved label type, or exceeds 255 octets.",
    "netbios.malformed": "An NBNS or NetBIOS datagram is cut short, carries user data that is not SMB, or a browser announcement is too short.",
    "netbios.bad_name": "A NetBIOS name is not a 32-byte encoded label, has a byte outside 'A'..'P', or its pointer is cut or loops.",
    "ssdp.malformed": "A datagram on port 1900 does not start with an HTTP/1.x start line.",
    "wsd.malformed": "A datagram on port 3702 has no WS-Addressing Action element.",
    "snmp.malformed": "SNMP BER is unreadable: a wrong tag, a length overrun, an indefinite length, a multi-byte tag or an unknown PDU tag.",
    # flows
    "flow.evicted": "The flow table was full; the least recently seen flows were flushed early.",
    # observations
    "observation.table_full": "The run's distinct observations reached their bound; new facts were dropped (facts already kept are still counted).",
    "udp.datagram_handler_error": "A datagram parser raised on a UDP payload (a bug); that datagram was skipped.",
}


def describe(name: str) -> str:
    """The one-sentence meaning of anomaly ``name`` (KeyError if it is not catalogued)."""
    return CATALOGUE[name]
