"""HTTP/1.x analyzer: User-Agent, Host, Server and clear-text Basic authentication, from heads only.

RFC 9112 §2.1 message format, per direction of the connection::

    start-line CRLF  *( field-line CRLF )  CRLF  [ message-body ]

    request (client), RFC 9112 §3:   method SP request-target SP HTTP-version
    response (server), RFC 9112 §4:  HTTP-version SP status-code SP [ reason-phrase ]
    field-line, RFC 9112 §5:         field-name ":" OWS field-value OWS

A bare LF is accepted as a line terminator (RFC 9112 §2.2). Bodies are skipped by
Content-Length (RFC 9112 §6.3); a request without Content-Length or Transfer-Encoding has no
body, nor has a response to HEAD or with status 1xx, 204 or 304. The analyzer is ``done`` after
the first final response that is not an authentication challenge (401, 407): what a client and
a server say of themselves does not change within a connection, and a challenge is followed to
see whether the client answers it with clear-text credentials. Also after 8 request heads and
8 response heads, and as soon as a body's length is only known by reading it
(Transfer-Encoding: chunked, a response read until close), on a protocol switch (101, a CONNECT
tunnel), when a head exceeds 16 KiB (``http.header_too_long``), when a start line is not
HTTP/1.x (``http.malformed``) or a Content-Length is unusable (``http.bad_content_length``).

Observations: ``http.user_agent`` (client), ``http.host`` (server: the Host header's name,
without port, user info or path), ``http.server`` (server), and ``http.basic_auth`` = ``true``
about both ends when an ``Authorization`` or ``Proxy-Authorization`` header with the Basic
scheme (RFC 7617) is sent. Credentials, request targets and bodies are never recorded.
Observation values follow the stream rule of :mod:`monitor.parsers.text` (:func:`clean_value`).
"""

from __future__ import annotations

from collections import deque

from monitor.parsers.base import FlowContext, ParserSpec, side, skip_pending
from monitor.parsers.detect import probe_http
from monitor.parsers.text import clean_value

#: A head (start line and fields) longer than this is abandoned.
MAX_HEAD_LENGTH = 16 << 10
#: Request/response pairs read per connection (while the server keeps challenging).
MAX_EXCHANGES = 8
#: 401 Unauthorized and 407 Proxy Authentication Required (RFC 9110 §15.5.2, §15.5.8).
AUTH_CHALLENGES = frozenset((401, 407))

ANOMALY_HEADER_TOO_LONG = "http.header_too_long"
ANOMALY_MALFORMED = "http.malformed"
ANOMALY_BAD_CONTENT_LENGTH = "http.bad_content_length"

HTTP_VERSION_PREFIX = b"HTTP/1."
HTTP2_VERSION = b"HTTP/2"
METHOD_HEAD = b"HEAD"
METHOD_CONNECT = b"CONNECT"
STATUS_SWITCHING_PROTOCOLS = 101


def host_name(value: bytes) -> str:
    """The host of a Host field value or URI authority: no user info, port or path, lower case.

    ``Example.org:8080`` -> ``example.org``; ``[2001:db8::1]:80`` -> ``2001:db8::1``.
    """
    value = value.strip()
    for sep in (b"/", b"?", b"#"):
        value = value.split(sep, 1)[0]
    value = value.rsplit(b"@", 1)[-1]
    if value.startswith(b"["):
        value = value[1:].split(b"]", 1)[0]
    elif value.count(b":") == 1:
        value = value.split(b":", 1)[0]
    return clean_value(value.lower())


def parse_head(head: bytes) -> tuple[list[bytes], dict[bytes, list[bytes]]]:
    """Split a head (without its empty last line) into start-line parts and fields.

    Field names are lower-cased; values keep their order. Obsolete line folding (RFC 9112 §5.2)
    continues the previous field. Pure, never raises.
    """
    lines = head.split(b"\n")
    start = lines[0].rstrip(b"\r").split(b" ", 2)
    fields: dict[bytes, list[bytes]] = {}
    last: list[bytes] | None = None
    # A line's CR needs no rstrip: value and folded text are stripped, a lone CR has no colon.
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in b" \t" and last:
            last[-1] += b" " + line.strip()
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        last = fields.setdefault(name.strip().lower(), [])
        last.append(value.strip())
    return start, fields


class HttpAnalyzer:
    """HTTP/1.x head analyzer for one flow (:class:`monitor.parsers.base.Analyzer`)."""

    __slots__ = ("_buf", "_ctx", "_done", "_heads", "_methods", "_settled", "_skip")

    def __init__(self, ctx: FlowContext) -> None:
        self._ctx = ctx
        self._done = False
        #: A final response that is not a challenge was read: nothing more to learn.
        self._settled = False
        self._buf = {True: bytearray(), False: bytearray()}
        #: body bytes still to skip, per direction
        self._skip = {True: 0, False: 0}
        #: heads read, per direction
        self._heads = {True: 0, False: 0}
        #: methods of requests not answered yet (a HEAD response has no body)
        self._methods: deque[bytes] = deque()

    @property
    def done(self) -> bool:
        return self._done

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        if self._skip[from_client]:
            data = skip_pending(self._skip, from_client, data)
            if not data:
                return
        if self._heads[from_client] >= MAX_EXCHANGES:
            return
        buf = self._buf[from_client]
        buf += data
        while buf and not self._done:
            end = buf.find(b"\r\n\r\n", 0, MAX_HEAD_LENGTH + 4)
            size = 4
            # A bare-LF end of head counts only before the CRLF one: search no further.
            lf = buf.find(b"\n\n", 0, end + 1 if end >= 0 else MAX_HEAD_LENGTH + 2)
            if lf >= 0:
                end, size = lf, 2
            if end < 0:
                if len(buf) > MAX_HEAD_LENGTH:
                    self._stop(
                        ANOMALY_HEADER_TOO_LONG,
                        f"{side(from_client)}: no end of head in {len(buf)} bytes",
                    )
                return
            head = bytes(buf[:end])
            del buf[: end + size]
            body = self._head(from_client, head, ts_ns)
            self._heads[from_client] += 1
            if self._settled:
                self._done = True
                return
            if self._heads[True] >= MAX_EXCHANGES and self._heads[False] >= MAX_EXCHANGES:
                self._done = True
            if self._done or body is None:
                self._done = True
                return
            if self._heads[from_client] >= MAX_EXCHANGES:
                buf.clear()
                return
            if body:
                if len(buf) <= body:
                    self._skip[from_client] = body - len(buf)
                    buf.clear()
                    return
                del buf[:body]

    def gap(self, from_client: bool, size: int) -> None:
        skip = self._skip[from_client]
        if skip >= size and not self._buf[from_client]:
            self._skip[from_client] = skip - size  # the gap fell inside a skipped body
            return
        self._done = True  # message boundaries are lost

    def close(self) -> None:
        self._done = True
        self._buf[True].clear()
        self._buf[False].clear()

    def _stop(self, name: str, detail: str) -> None:
        self._ctx.anomaly(name, detail)
        self._done = True

    def _head(self, from_client: bool, head: bytes, ts_ns: int) -> int | None:
        """Record one head's observations; return its body length (None: stop reading)."""
        start, fields = parse_head(head.lstrip(b"\r\n"))
        observe = self._ctx.observe
        if from_client:
            if len(start) == 3 and start[2].startswith(HTTP2_VERSION):
                return None  # the HTTP/2 connection preface (RFC 9113 §3.4): not HTTP/1.x
            if len(start) != 3 or not start[2].startswith(HTTP_VERSION_PREFIX):
                self._stop(ANOMALY_MALFORMED, f"client->server: request line {_clip(start)}")
                return None
            method = start[0]
            self._methods.append(method)
            for value in fields.get(b"user-agent", ()):
                if agent := clean_value(value):
                    observe(True, "http.user_agent", agent, ts_ns)
            hosts = fields.get(b"host") or []
            if not hosts and start[1][:7].lower() == b"http://":
                hosts = [start[1][7:]]  # absolute-form request target (RFC 9112 §3.2.2)
            for value in hosts:
                if host := host_name(value):
                    observe(False, "http.host", host, ts_ns)
            for name in (b"authorization", b"proxy-authorization"):
                for value in fields.get(name, ()):
                    if value[:6].lower() == b"basic " or value.lower() == b"basic":
                        observe(True, "http.basic_auth", "true", ts_ns)
                        observe(False, "http.basic_auth", "true", ts_ns)
            if method == METHOD_CONNECT:
                return None  # a tunnel follows the head
            return self._body_length(True, fields, default=0)
        if not start[0].startswith(HTTP_VERSION_PREFIX) or len(start) < 2:
            self._stop(ANOMALY_MALFORMED, f"server->client: status line {_clip(start)}")
            return None
        for value in fields.get(b"server", ()):
            if server := clean_value(value):
                observe(False, "http.server", server, ts_ns)
        status = int(start[1]) if start[1].isdigit() else 0
        if status == STATUS_SWITCHING_PROTOCOLS:
            return None
        if 100 <= status < 200:
            self._heads[False] -= 1  # an interim response: the final one follows
            return 0
        method = self._methods.popleft() if self._methods else b""
        if status not in AUTH_CHALLENGES:
            self._settled = True
        if method == METHOD_HEAD or status in (204, 304):
            return 0
        if method == METHOD_CONNECT and 200 <= status < 300:
            return None
        return self._body_length(False, fields, default=None)

    def _body_length(
        self, from_client: bool, fields: dict[bytes, list[bytes]], default: int | None
    ) -> int | None:
        """RFC 9112 §6.3: the body length, or None when it is not known from the head."""
        if b"transfer-encoding" in fields:
            return None
        values = fields.get(b"content-length")
        if not values:
            return default
        lengths = {v.strip() for value in values for v in value.split(b",")}
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            self._stop(
                ANOMALY_BAD_CONTENT_LENGTH,
                f"{side(from_client)}: Content-Length {b', '.join(values)[:64]!r}",
            )
            return None
        return int(next(iter(lengths)))


def _clip(start: list[bytes]) -> str:
    """A start line for an anomaly detail: its first and (of three) last part, never the target."""
    return repr(start[0][:32]) + (f" ... {start[2][:16]!r}" if len(start) == 3 else "")


SPEC = ParserSpec(
    name="http",
    description="HTTP/1.x (RFC 9112): User-Agent, Host, Server and Basic auth from the heads",
    tcp_ports=(80, 8080),
    probe=probe_http,
    analyzer=HttpAnalyzer,
)
