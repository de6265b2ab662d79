"""SSH analyzer: the protocol version exchange line of each side.

RFC 4253 §4.2 Protocol Version Exchange, the first line each side sends::

    SSH-protoversion-softwareversion SP comments CR LF
    e.g. "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"  (at most 255 characters with CR LF)

The server MAY send other lines first (RFC 4253 §4.2); they are skipped, bounded to 8 KiB per
direction. A bare LF ends a line too (old implementations, RFC 4253 §4.2 "MUST be able to
process such lines"). The line without CR LF is observed as ``ssh.banner`` about its sender;
the analyzer is ``done`` when both banners were seen. A direction that sends 8 KiB without an
``SSH-`` line reports ``ssh.no_banner`` and is not read further.
"""

from __future__ import annotations

from monitor.parsers.base import FlowContext, ParserSpec, side
from monitor.parsers.detect import SSH_BANNER_PREFIX, probe_ssh
from monitor.parsers.text import clean_value

#: Bytes of one direction searched for the version line.
MAX_PREAMBLE = 8 << 10
LINE_FEED = b"\n"

ANOMALY_NO_BANNER = "ssh.no_banner"


def find_banner(buf: bytes | bytearray) -> tuple[bytes | None, int]:
    """``(banner line without CR LF, offset after it)`` of the first complete ``SSH-`` line in
    ``buf``; ``(None, offset of the first incomplete line)`` when there is none yet. Pure."""
    off = 0
    while True:
        end = buf.find(LINE_FEED, off)
        if end < 0:
            return None, off
        if buf.startswith(SSH_BANNER_PREFIX, off):
            return bytes(buf[off:end]).rstrip(b"\r"), end + 1
        off = end + 1


class SshAnalyzer:
    """SSH version exchange analyzer for one flow (:class:`monitor.parsers.base.Analyzer`)."""

    __slots__ = ("_buf", "_ctx", "_finished", "_seen", "_ts")

    def __init__(self, ctx: FlowContext) -> None:
        self._ctx = ctx
        self._buf = {True: bytearray(), False: bytearray()}
        #: bytes of each direction searched so far
        self._seen = {True: 0, False: 0}
        #: per direction: banner seen or search abandoned
        self._finished = {True: False, False: False}
        #: capture time of the last bytes taken (for a banner completed by the end of the flow)
        self._ts = 0

    @property
    def done(self) -> bool:
        return self._finished[True] and self._finished[False]

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        if self._finished[from_client]:
            return
        self._ts = ts_ns
        buf = self._buf[from_client]
        room = MAX_PREAMBLE - self._seen[from_client]
        buf += data[:room]
        self._seen[from_client] += min(len(data), room)
        line, off = find_banner(buf)
        if line is not None:
            self._banner(from_client, line, ts_ns)
            return
        del buf[:off]
        if self._seen[from_client] >= MAX_PREAMBLE:
            self._give_up(from_client)

    def gap(self, from_client: bool, size: int) -> None:
        if not self._finished[from_client]:
            self._buf[from_client].clear()
            self._seen[from_client] += size
            if self._seen[from_client] >= MAX_PREAMBLE:
                self._give_up(from_client)

    def close(self) -> None:
        for from_client in (True, False):
            buf = self._buf[from_client]
            if not self._finished[from_client] and buf.startswith(SSH_BANNER_PREFIX):
                # The stream ended inside the line: what was sent is the banner.
                self._banner(from_client, bytes(buf).rstrip(b"\r"), self._ts)
            self._finished[from_client] = True
            buf.clear()

    def _banner(self, from_client: bool, line: bytes, ts_ns: int) -> None:
        self._finished[from_client] = True
        self._buf[from_client].clear()
        if banner := clean_value(line):
            self._ctx.observe(from_client, "ssh.banner", banner, ts_ns)

    def _give_up(self, from_client: bool) -> None:
        self._finished[from_client] = True
        self._buf[from_client].clear()
        self._ctx.anomaly(
            ANOMALY_NO_BANNER, f"{side(from_client)}: no SSH- line in {MAX_PREAMBLE} bytes"
        )


SPEC = ParserSpec(
    name="ssh",
    description="SSH (RFC 4253 §4.2): the version exchange line of each side",
    tcp_ports=(22,),
    probe=probe_ssh,
    analyzer=SshAnalyzer,
)
