"""Clear-text login protocols: the FTP greeting and Telnet option negotiation.

FTP, RFC 959 §4.2 (replies) and §5.4 (the server greets with 220 on connection)::

    reply line: 3-digit code, then SP (last line) or "-" (a multi-line reply goes on), text, CR LF
    e.g. "220 (vsFTPd 3.0.3)" or "220-Welcome" ... "220 ready"

The server's first reply line with code 220, without CR LF, is ``ftp.banner`` (about the server);
the analyzer is then ``done``. Lines before it with other 1xx codes (120 "service ready in nnn
minutes") are skipped; a 4xx/5xx greeting ends the analysis; a line that is not a reply
(``ftp.malformed``) too. At most 4 KiB of the server's bytes are searched. Client bytes are
never read (they carry USER and PASS).

Telnet, RFC 854 ("TELNET COMMAND STRUCTURE") and RFC 855 option negotiation::

    IAC 0xff, then a command: 0xfb WILL, 0xfc WONT, 0xfd DO, 0xfe DONT (+ option code),
    0xfa SB (subnegotiation) ... IAC 0xf0 SE

When either side sends IAC followed by WILL, WONT, DO, DONT or SB, ``telnet.server`` = ``true``
is observed about the server and the analyzer is ``done`` right away: the session's text (log-in
prompts, passwords) is never read. A side that sends 1 KiB without negotiating stops being read.
"""

from __future__ import annotations

from monitor.parsers.base import FlowContext, ParserSpec
from monitor.parsers.text import clean_value

# -- FTP -----------------------------------------------------------------------------------------

REPLY_SERVICE_READY = b"220"
#: Server bytes searched for the greeting.
MAX_GREETING = 4 << 10
LINE_FEED = b"\n"

ANOMALY_FTP_MALFORMED = "ftp.malformed"


def parse_reply_line(line: bytes) -> tuple[bytes, str] | None:
    """``(code, text of the whole line)`` of an RFC 959 reply line, None when it is not one."""
    line = line.rstrip(b"\r")
    if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3:4] not in b" -"):
        return None
    return line[:3], clean_value(line)


class FtpAnalyzer:
    """FTP greeting analyzer for one flow (:class:`monitor.parsers.base.Analyzer`)."""

    __slots__ = ("_buf", "_ctx", "_done", "_seen")

    def __init__(self, ctx: FlowContext) -> None:
        self._ctx = ctx
        self._done = False
        self._buf = bytearray()
        self._seen = 0

    @property
    def done(self) -> bool:
        return self._done

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        if from_client or self._done:
            return
        room = MAX_GREETING - self._seen
        self._seen += min(len(data), room)
        buf = self._buf
        buf += data[:room]
        off = 0
        while not self._done:
            end = buf.find(LINE_FEED, off)
            if end < 0:
                break
            reply = parse_reply_line(bytes(buf[off:end]))
            size = end - off
            off = end + 1
            if reply is None:
                self._ctx.anomaly(
                    ANOMALY_FTP_MALFORMED, f"server->client: {size}-byte line that is not a reply"
                )
                self._done = True
            elif reply[0] == REPLY_SERVICE_READY:
                self._ctx.observe(False, "ftp.banner", reply[1], ts_ns)
                self._done = True
            elif reply[0][:1] in b"45":
                self._done = True  # 421 service not available: no greeting to record
        del buf[:off]
        if self._seen >= MAX_GREETING:
            self._done = True

    def gap(self, from_client: bool, size: int) -> None:
        if not from_client:
            self._done = True

    def close(self) -> None:
        self._done = True
        self._buf.clear()


FTP_SPEC = ParserSpec(
    name="ftp",
    description="FTP control connection (RFC 959): the server's 220 greeting",
    tcp_ports=(21,),
    analyzer=FtpAnalyzer,
)

# -- Telnet -------------------------------------------------------------------------------------

IAC = 0xFF
SB = 0xFA
WILL = 0xFB
WONT = 0xFC
DO = 0xFD
DONT = 0xFE
#: Bytes of each side searched for option negotiation.
MAX_TELNET_SEARCH = 1 << 10


def has_negotiation(data: bytes) -> bool:
    """Whether ``data`` holds IAC followed by SB, WILL, WONT, DO or DONT (RFC 854, RFC 855)."""
    i = data.find(IAC)
    while 0 <= i < len(data) - 1:
        if SB <= data[i + 1] <= DONT:
            return True
        i = data.find(IAC, i + 2)
    return False


class TelnetAnalyzer:
    """Telnet detection for one flow (:class:`monitor.parsers.base.Analyzer`)."""

    __slots__ = ("_ctx", "_done", "_last", "_seen")

    def __init__(self, ctx: FlowContext) -> None:
        self._ctx = ctx
        self._done = False
        self._seen = {True: 0, False: 0}
        #: last byte of each side (an IAC may end one segment and its command start the next)
        self._last = {True: b"", False: b""}

    @property
    def done(self) -> bool:
        return self._done

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        seen = self._seen[from_client]
        if seen >= MAX_TELNET_SEARCH:
            return
        chunk = data[: MAX_TELNET_SEARCH - seen]
        self._seen[from_client] = seen + len(chunk)
        if has_negotiation(self._last[from_client] + chunk):
            self._ctx.observe(False, "telnet.server", "true", ts_ns)
            self._done = True
            return
        self._last[from_client] = chunk[-1:]
        if self._seen[True] >= MAX_TELNET_SEARCH and self._seen[False] >= MAX_TELNET_SEARCH:
            self._done = True

    def gap(self, from_client: bool, size: int) -> None:
        self._last[from_client] = b""

    def close(self) -> None:
        self._done = True


TELNET_SPEC = ParserSpec(
    name="telnet",
    description="Telnet (RFC 854): IAC option negotiation from either side",
    tcp_ports=(23,),
    analyzer=TelnetAnalyzer,
)
