"""SSDP (UPnP discovery) and WS-Discovery datagrams: what devices announce about themselves.

SSDP: UPnP Device Architecture 2.0 §1 Discovery (§1.2.2 ``NOTIFY * HTTP/1.1`` ssdp:alive,
§1.2.3 ssdp:byebye, §1.3.2 ``M-SEARCH * HTTP/1.1``, §1.3.3 search response
``HTTP/1.1 200 OK``), HTTP over UDP: a start line, then ``NAME: value`` header lines
(names case-insensitive, RFC 9112 §5), then an empty line::

    start line      'NOTIFY * HTTP/1.1' | 'M-SEARCH * HTTP/1.1' | 'HTTP/1.1 200 OK'
    headers read    SERVER      (NOTIFY alive, response)  'OS/version UPnP/2.0 product/version'
                    NT / ST     (NOTIFY / response)       notification / search target, e.g.
                                              'urn:schemas-upnp-org:device:MediaServer:1'
                    USER-AGENT  (M-SEARCH)                'OS/version UPnP/2.0 product/version'
    never read      LOCATION (a URL: its path may name a patient-facing resource), USN, ...

WS-Discovery: OASIS WS-Discovery 1.1 §4.1 Hello, §5.3 ProbeMatches and §6.3 ResolveMatches
(and the 2005/04 draft Windows and wsdd use), SOAP 1.2 envelopes whose WS-Addressing
``Action`` ends in ``/Hello``, ``/ProbeMatches`` or ``/ResolveMatches``; the ``d:Types``
element (a list of QNames) of each match is recorded, whitespace-normalised. The XML is not
parsed: two bounded regular expressions read the Action and the Types text from at most
:data:`MAX_WSD_BYTES` bytes (no entity expansion, no DTD, no XXE).

Parsers are pure and never raise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.parsers.base import DatagramContext, DatagramSpec, ParseAnomaly
from monitor.parsers.text import clean_text

ANOMALY_SSDP_MALFORMED = "ssdp.malformed"
ANOMALY_WSD_MALFORMED = "wsd.malformed"

NOTIFY = "NOTIFY"
M_SEARCH = "M-SEARCH"
RESPONSE = "RESPONSE"  #: the start line of a search response, 'HTTP/1.x 200 OK'
HTTP_VERSION_PREFIX = b"HTTP/1."
#: The part of an NT/ST value that names a device type (UDA 2.0 §1.1.2, urn:...:device:...).
DEVICE_MARKER = ":device:"
#: Header bytes read at most (an SSDP datagram is a few hundred bytes).
MAX_SSDP_BYTES = 8192
#: Header lines read at most.
MAX_HEADER_LINES = 64
#: The headers kept; LOCATION is deliberately not among them.
KEPT_HEADERS = frozenset((b"server", b"nt", b"nts", b"st", b"user-agent"))

#: WS-Discovery bytes read at most.
MAX_WSD_BYTES = 64 * 1024
_WSD_ACTION = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?Action\b[^>]{0,512}>\s*([^<]{1,512}?)\s*</")
_WSD_TYPES = re.compile(
    rb"<(?:[A-Za-z_][\w.\-]*:)?Types\b[^>]{0,512}>([^<]{0,4096})</(?:[A-Za-z_][\w.\-]*:)?Types\s*>"
)
#: Actions whose Types describe the sender (WS-Discovery 1.1 §4.1 Hello, §5.3 ProbeMatches,
#: §6.3 ResolveMatches; the 2005/04 draft uses the same last path segments).
WSD_ANNOUNCING_ACTIONS = ("/Hello", "/ProbeMatches", "/ResolveMatches")


@dataclass(frozen=True, slots=True)
class SsdpMessage:
    """One SSDP datagram: its kind and the headers medmon keeps (KEPT_HEADERS only)."""

    method: str  #: NOTIFY, M-SEARCH or RESPONSE
    server: str | None = None  #: SERVER
    nt: str | None = None  #: NT (NOTIFY)
    nts: str | None = None  #: NTS: 'ssdp:alive', 'ssdp:byebye', 'ssdp:update'
    st: str | None = None  #: ST (M-SEARCH, response)
    user_agent: str | None = None  #: USER-AGENT (M-SEARCH)


@dataclass(frozen=True, slots=True)
class WsdMessage:
    """One WS-Discovery message: its Action and the Types of its Hello/ProbeMatch elements."""

    action: str
    types: tuple[str, ...]


def parse_ssdp(buf: bytes | memoryview) -> SsdpMessage | ParseAnomaly | None:
    """Decode the start line and kept headers of one SSDP datagram. Never raises.

    None: an HTTPU message SSDP does not define here (another method or status). A datagram
    whose first line is not an HTTP/1.x request or status line is ``ssdp.malformed``.
    """
    head = bytes(buf[:MAX_SSDP_BYTES])
    end = head.find(b"\r\n\r\n")
    if end >= 0:
        head = head[:end]
    lines = head.split(b"\n", MAX_HEADER_LINES + 1)[: MAX_HEADER_LINES + 1]
    start = lines[0].rstrip(b"\r").split(b" ", 2)
    if len(start) != 3:
        return ParseAnomaly(ANOMALY_SSDP_MALFORMED, "the first line is not an HTTP/1.x start line")
    if start[0].startswith(HTTP_VERSION_PREFIX):
        if start[1] != b"200":
            return None
        method = RESPONSE
    elif start[2].startswith(HTTP_VERSION_PREFIX):
        if start[0] == b"NOTIFY":
            method = NOTIFY
        elif start[0] == b"M-SEARCH":
            method = M_SEARCH
        else:
            return None
    else:
        return ParseAnomaly(ANOMALY_SSDP_MALFORMED, "the first line is not an HTTP/1.x start line")
    found: dict[bytes, str] = {}
    for line in lines[1:]:
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].strip().lower()
        if name in KEPT_HEADERS and name not in found:
            found[name] = clean_text(line[colon + 1 :].strip())
    return SsdpMessage(
        method=method,
        server=found.get(b"server") or None,
        nt=found.get(b"nt") or None,
        nts=found.get(b"nts") or None,
        st=found.get(b"st") or None,
        user_agent=found.get(b"user-agent") or None,
    )


def handle_ssdp(payload: bytes, ctx: DatagramContext) -> None:
    """``ssdp.server`` and ``ssdp.device_type`` of announcers and responders,
    ``ssdp.user_agent`` of searchers."""
    msg = parse_ssdp(payload)
    if msg is None:
        return
    if isinstance(msg, ParseAnomaly):
        ctx.anomaly(msg.name, msg.detail)
        return
    ip, mac = ctx.src_ip, ctx.src_mac
    if msg.method == M_SEARCH:
        if msg.user_agent:
            ctx.observe(ip, mac, "ssdp.user_agent", msg.user_agent)
        return
    if msg.server:
        ctx.observe(ip, mac, "ssdp.server", msg.server)
    target = msg.nt if msg.method == NOTIFY else msg.st
    if target and DEVICE_MARKER in target:
        ctx.observe(ip, mac, "ssdp.device_type", target)


def parse_wsd(buf: bytes | memoryview) -> WsdMessage | ParseAnomaly:
    """The Action and the Types texts of one WS-Discovery message. Never raises.

    A datagram without a WS-Addressing Action element is ``wsd.malformed``.
    """
    data = bytes(buf[:MAX_WSD_BYTES])
    action = _WSD_ACTION.search(data)
    if action is None:
        return ParseAnomaly(ANOMALY_WSD_MALFORMED, "no WS-Addressing Action element")
    types: list[str] = []
    for m in _WSD_TYPES.finditer(data):
        value = clean_text(b" ".join(m.group(1).split()))
        if value and value not in types:
            types.append(value)
    return WsdMessage(action=clean_text(action.group(1)), types=tuple(types))


def handle_wsd(payload: bytes, ctx: DatagramContext) -> None:
    """``wsd.types`` of a Hello or ProbeMatches sender (a Probe's Types are the searcher's
    wishes, not its own)."""
    msg = parse_wsd(payload)
    if isinstance(msg, ParseAnomaly):
        ctx.anomaly(msg.name, msg.detail)
        return
    if not msg.action.endswith(WSD_ANNOUNCING_ACTIONS):
        return
    for types in msg.types:
        ctx.observe(ctx.src_ip, ctx.src_mac, "wsd.types", types)


SSDP_SPEC = DatagramSpec(
    name="ssdp",
    description="SSDP (UPnP Device Architecture 2.0 §1): SERVER, device types, searcher agents",
    udp_ports=(1900,),
    handler=handle_ssdp,
)
WSD_SPEC = DatagramSpec(
    name="wsd",
    description="WS-Discovery (OASIS WS-Discovery 1.1 §4, §5): Types of Hello and ProbeMatches",
    udp_ports=(3702,),
    handler=handle_wsd,
)
