"""DHCPv4 messages: the client's identifying options and the server's lease, nothing else.

RFC 2131 §2 (Figure 1) message format, §3 (magic cookie), §4.1 (option overload order);
RFC 2132 option formats; RFC 4702 §2 Client FQDN option; RFC 3004 §4 User Class option;
RFC 3396 §7 (an option split over several instances is their concatenation). Offsets::

     0 op(1) 1 BOOTREQUEST, 2 BOOTREPLY     1 htype(1) 1 = Ethernet   2 hlen(1)   3 hops(1)
     4 xid(4)                               8 secs(2)                10 flags(2)
    12 ciaddr(4) client IP (set when the client is BOUND/RENEWING, and in DHCPINFORM)
    16 yiaddr(4) 'your' IP (the address the server assigns)
    20 siaddr(4) next server                24 giaddr(4) relay agent
    28 chaddr(16) client hardware address (the first hlen bytes)
    44 sname(64)  server host name, or options when option 52 says so
   108 file(128)  boot file name, or options when option 52 says so
   236 magic cookie 99.130.83.99            240 options

    option (RFC 2132 §2): code(1) [len(1) value(len)]; code 0 (pad) and 255 (end) have no len
    52 option overload (RFC 2132 §9.3): 1 file, 2 sname, 3 both carry more options, read after
       the options field in the order options, file, sname (RFC 2131 §4.1)
    53 DHCP message type (RFC 2132 §9.6): 1 DISCOVER 2 OFFER 3 REQUEST 4 DECLINE 5 ACK
       6 NAK 7 RELEASE 8 INFORM
    81 client FQDN (RFC 4702 §2): flags(1) rcode1(1) rcode2(1) domain name; flag E (0x04):
       the name is in canonical wire format (RFC 1035 §3.1 labels, no compression),
       otherwise ASCII

:func:`parse_dhcp` is pure and never raises; :func:`handle_dhcp` turns a message into the
observations of ``docs/observations.md`` (``dhcp.*``) about the client's ``chaddr`` and, for a
DHCPACK, about the lease and the server.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from monitor.parsers.base import DatagramContext, DatagramSpec, ParseAnomaly
from monitor.parsers.text import MAX_VALUE_CHARS, clean_text

ANOMALY_MALFORMED = "dhcp.malformed"
ANOMALY_TRUNCATED_OPTION = "dhcp.truncated_option"
ANOMALY_BAD_OPTION_LENGTH = "dhcp.bad_option_length"
ANOMALY_BAD_FQDN = "dhcp.bad_fqdn"

# RFC 2131 §2 fixed header up to chaddr: op htype hlen hops xid secs flags ciaddr yiaddr siaddr
# giaddr chaddr(16).
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s")
UNPACK_HEADER = HEADER.unpack_from
SNAME_OFFSET = 44
SNAME_LENGTH = 64
FILE_OFFSET = 108
FILE_LENGTH = 128
MAGIC_COOKIE_OFFSET = 236
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # 99.130.83.99 (RFC 2131 §3)
OPTIONS_OFFSET = 240

BOOTREQUEST = 1
BOOTREPLY = 2
HTYPE_ETHERNET = 1

# RFC 2132 option codes (standard names, STYLE S4).
PAD = 0
END = 255
OPTION_HOST_NAME = 12
OPTION_REQUESTED_IP_ADDRESS = 50
OPTION_OVERLOAD = 52
OPTION_DHCP_MESSAGE_TYPE = 53
OPTION_SERVER_IDENTIFIER = 54
OPTION_PARAMETER_REQUEST_LIST = 55
OPTION_VENDOR_CLASS_IDENTIFIER = 60
OPTION_CLIENT_IDENTIFIER = 61
OPTION_USER_CLASS = 77  # RFC 3004
OPTION_CLIENT_FQDN = 81  # RFC 4702

# RFC 2132 §9.6 DHCP message types.
DHCPDISCOVER = 1
DHCPOFFER = 2
DHCPREQUEST = 3
DHCPDECLINE = 4
DHCPACK = 5
DHCPNAK = 6
DHCPRELEASE = 7
DHCPINFORM = 8
#: Client messages whose options describe the client (RELEASE/DECLINE carry none worth it).
CLIENT_MESSAGE_TYPES = frozenset((DHCPDISCOVER, DHCPREQUEST, DHCPINFORM))

#: RFC 4702 §2.1 flag E: the domain name is in canonical wire format.
FQDN_FLAG_E = 0x04
#: Options the message keeps; the others are skipped unread (STYLE S3.5).
KEPT_OPTIONS = frozenset(
    (
        OPTION_HOST_NAME,
        OPTION_REQUESTED_IP_ADDRESS,
        OPTION_OVERLOAD,
        OPTION_DHCP_MESSAGE_TYPE,
        OPTION_SERVER_IDENTIFIER,
        OPTION_PARAMETER_REQUEST_LIST,
        OPTION_VENDOR_CLASS_IDENTIFIER,
        OPTION_CLIENT_IDENTIFIER,
        OPTION_USER_CLASS,
        OPTION_CLIENT_FQDN,
    )
)
#: Options whose value has a fixed length (RFC 2132 §9.1, §9.6, §9.7).
FIXED_LENGTHS = {OPTION_REQUESTED_IP_ADDRESS: 4, OPTION_DHCP_MESSAGE_TYPE: 1,
                 OPTION_SERVER_IDENTIFIER: 4, OPTION_OVERLOAD: 1}  # fmt: skip

_ZERO_IP = b"\x00\x00\x00\x00"


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """The fields medmon reads of one DHCP message (RFC 2131 §2 names)."""

    op: int  #: 1 BOOTREQUEST, 2 BOOTREPLY
    htype: int  #: hardware address type (1 Ethernet)
    hlen: int  #: hardware address length
    xid: int  #: transaction id
    ciaddr: str | None  #: client IP, None when 0.0.0.0
    yiaddr: str | None  #: assigned IP, None when 0.0.0.0
    giaddr: str | None  #: relay agent IP, None when 0.0.0.0
    chaddr: str | None  #: Ethernet address ``aa:bb:..``; None when not Ethernet or all zero
    message_type: int | None  #: option 53, None when absent (BOOTP)
    #: Kept options (KEPT_OPTIONS) as ``(code, value)``, instances of one code concatenated
    #: (RFC 3396), in order of first appearance.
    options: tuple[tuple[int, bytes], ...]
    #: Non-fatal problems met while reading the options.
    anomalies: tuple[ParseAnomaly, ...] = ()

    def option(self, code: int) -> bytes | None:
        """The value of option ``code``, None when absent."""
        for c, v in self.options:
            if c == code:
                return v
        return None


def parse_dhcp(buf: bytes | memoryview) -> DhcpMessage | ParseAnomaly:
    """Decode one DHCP message (see the module docstring). Never raises.

    A datagram shorter than the fixed header and cookie, with a bad magic cookie or an op other
    than 1/2 is ``dhcp.malformed``; an option running past its area is kept up to there and
    noted as ``dhcp.truncated_option`` in :attr:`DhcpMessage.anomalies`.
    """
    buf = bytes(buf)
    if len(buf) < OPTIONS_OFFSET:
        return ParseAnomaly(
            ANOMALY_MALFORMED, f"{len(buf)} bytes, shorter than the 240-byte header"
        )
    if buf[MAGIC_COOKIE_OFFSET:OPTIONS_OFFSET] != MAGIC_COOKIE:
        return ParseAnomaly(ANOMALY_MALFORMED, "bad magic cookie " + buf[236:240].hex())
    op, htype, hlen, _hops, xid, _secs, _flags, ci, yi, _si, gi, ch = UNPACK_HEADER(buf)
    if op != BOOTREQUEST and op != BOOTREPLY:
        return ParseAnomaly(ANOMALY_MALFORMED, f"op {op} is neither BOOTREQUEST nor BOOTREPLY")

    found: dict[int, bytes] = {}
    anomalies: list[ParseAnomaly] = []
    _read_options(buf, OPTIONS_OFFSET, len(buf), "options", found, anomalies)
    overload = found.get(OPTION_OVERLOAD)
    if overload is not None and len(overload) == 1:
        # RFC 2131 §4.1: options, then file, then sname.
        if overload[0] & 1:
            _read_options(buf, FILE_OFFSET, FILE_OFFSET + FILE_LENGTH, "file", found, anomalies)
        if overload[0] & 2:
            end = SNAME_OFFSET + SNAME_LENGTH
            _read_options(buf, SNAME_OFFSET, end, "sname", found, anomalies)

    for code, size in FIXED_LENGTHS.items():
        value = found.get(code)
        if value is not None and len(value) != size:
            anomalies.append(
                ParseAnomaly(
                    ANOMALY_BAD_OPTION_LENGTH, f"option {code}: {len(value)} bytes, not {size}"
                )
            )
            del found[code]
    mtype = found.get(OPTION_DHCP_MESSAGE_TYPE)
    chaddr = None
    if htype == HTYPE_ETHERNET and hlen == 6 and ch[:6] != b"\x00" * 6:
        chaddr = ch[:6].hex(":")
    return DhcpMessage(
        op=op,
        htype=htype,
        hlen=hlen,
        xid=xid,
        ciaddr=_ip(ci),
        yiaddr=_ip(yi),
        giaddr=_ip(gi),
        chaddr=chaddr,
        message_type=mtype[0] if mtype else None,
        options=tuple(found.items()),
        anomalies=tuple(anomalies),
    )


def _read_options(
    buf: bytes,
    pos: int,
    end: int,
    area: str,
    found: dict[int, bytes],
    anomalies: list[ParseAnomaly],
) -> None:
    """Read ``code len value`` options of ``buf[pos:end]`` into ``found`` (kept codes only)."""
    while pos < end:
        code = buf[pos]
        if code == PAD:
            pos += 1
            continue
        if code == END:
            return
        if pos + 2 > end or pos + 2 + buf[pos + 1] > end:
            anomalies.append(
                ParseAnomaly(
                    ANOMALY_TRUNCATED_OPTION, f"option {code} runs past the end of the {area} area"
                )
            )
            return
        size = buf[pos + 1]
        if code in KEPT_OPTIONS:
            value = buf[pos + 2 : pos + 2 + size]
            old = found.get(code)
            found[code] = value if old is None else old + value
        pos += 2 + size


def _ip(raw: bytes) -> str | None:
    """Dotted IPv4 text, None for 0.0.0.0."""
    if raw == _ZERO_IP:
        return None
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"


def _text(raw: bytes) -> str:
    """Recorded text of an option value: trailing NUL padding dropped (many clients terminate
    names with a NUL), then the datagram rule of :mod:`monitor.parsers.text`."""
    return clean_text(raw.rstrip(b"\x00"))


def fqdn_name(value: bytes) -> str | ParseAnomaly:
    """The domain name of a Client FQDN option value (RFC 4702 §2), without a trailing dot.

    Flag E set: canonical wire format (length-prefixed labels, no compression); a label running
    past the option is ``dhcp.bad_fqdn``. Flag E clear: ASCII (deprecated, still common).
    """
    if len(value) < 3:
        return ParseAnomaly(ANOMALY_BAD_FQDN, f"option 81 has {len(value)} bytes, fewer than 3")
    name = value[3:]
    if not value[0] & FQDN_FLAG_E:
        return _text(name).rstrip(".")
    labels: list[str] = []
    pos = 0
    while pos < len(name):
        size = name[pos]
        if size == 0:
            break
        if size > 63 or pos + 1 + size > len(name):
            return ParseAnomaly(ANOMALY_BAD_FQDN, f"label of {size} bytes runs past option 81")
        labels.append(_text(name[pos + 1 : pos + 1 + size]))
        pos += 1 + size
    return ".".join(labels)[:MAX_VALUE_CHARS]


def user_class(value: bytes) -> str:
    """Option 77: RFC 3004 instances (``len data``...) joined by ','; a value that is not a
    well-formed instance list (many clients send bare text) is taken whole."""
    parts: list[str] = []
    pos = 0
    while pos < len(value):
        size = value[pos]
        if size == 0 or pos + 1 + size > len(value):
            return _text(value)
        parts.append(_text(value[pos + 1 : pos + 1 + size]))
        pos += 1 + size
    return ",".join(parts)[:MAX_VALUE_CHARS]


def handle_dhcp(payload: bytes, ctx: DatagramContext) -> None:
    """Observations of one DHCP datagram (``docs/observations.md``, ``dhcp.*``)."""
    msg = parse_dhcp(payload)
    if isinstance(msg, ParseAnomaly):
        ctx.anomaly(msg.name, msg.detail)
        return
    for a in msg.anomalies:
        ctx.anomaly(a.name, a.detail)
    if msg.op == BOOTREQUEST:
        if msg.message_type in CLIENT_MESSAGE_TYPES:
            _client(msg, ctx)
    elif msg.message_type == DHCPACK:
        _ack(msg, ctx)


def _client(msg: DhcpMessage, ctx: DatagramContext) -> None:
    """The client's identifying options, about its chaddr (and ciaddr when it has one)."""
    mac, ip = msg.chaddr, msg.ciaddr
    if mac is None and ip is None:
        return
    observe = ctx.observe
    for code, value in msg.options:
        if code == OPTION_HOST_NAME:
            observe(ip, mac, "dhcp.hostname", _text(value))
        elif code == OPTION_VENDOR_CLASS_IDENTIFIER:
            observe(ip, mac, "dhcp.vendor_class_identifier", _text(value))
        elif code == OPTION_PARAMETER_REQUEST_LIST:
            observe(
                ip, mac, "dhcp.parameter_request_list", ",".join(map(str, value))[:MAX_VALUE_CHARS]
            )
        elif code == OPTION_CLIENT_IDENTIFIER:
            observe(ip, mac, "dhcp.client_identifier", value.hex(":")[:MAX_VALUE_CHARS])
        elif code == OPTION_CLIENT_FQDN:
            name = fqdn_name(value)
            if isinstance(name, ParseAnomaly):
                ctx.anomaly(name.name, name.detail)
            elif name:
                observe(ip, mac, "dhcp.fqdn", name)
        elif code == OPTION_USER_CLASS:
            observe(ip, mac, "dhcp.user_class", user_class(value))
        elif code == OPTION_REQUESTED_IP_ADDRESS:
            requested = _ip(value)
            if requested is not None:
                observe(ip, mac, "dhcp.requested_ip", requested)


def _ack(msg: DhcpMessage, ctx: DatagramContext) -> None:
    """A DHCPACK: the lease (yiaddr bound to chaddr) and the server.

    The server is option 54 (server identifier) when present, else the datagram's source. Its
    MAC is the source MAC only when the source is the server itself: a relayed ACK comes from
    the relay agent's interface, whose MAC is not the server's.
    """
    if msg.yiaddr is not None and msg.chaddr is not None:
        ctx.observe(msg.yiaddr, msg.chaddr, "dhcp.lease", msg.yiaddr)
    server_id = msg.option(OPTION_SERVER_IDENTIFIER)
    server = _ip(server_id) if server_id is not None else None
    if server is None:
        server = ctx.src_ip
    ctx.observe(server, ctx.src_mac if server == ctx.src_ip else None, "dhcp.server", "true")


SPEC = DatagramSpec(
    name="dhcp",
    description="DHCPv4 (RFC 2131, RFC 2132): client options, DHCPACK leases and servers",
    udp_ports=(67, 68),
    handler=handle_dhcp,
)
