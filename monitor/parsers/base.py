"""What a protocol parser declares and what the streams stage hands it.

A parser module exports one :class:`ParserSpec` (STYLE S3.6): its name, the TCP server ports it
claims outright, an optional content ``probe`` on the first payload bytes of a direction, and
an optional ``analyzer`` factory. :mod:`monitor.streams` claims a flow for the first spec whose
port or probe matches, reassembles the flow's two directions (RFC 9293 sequence space) and feeds
the analyzer each direction's bytes in order. A spec without an analyzer is detection only: the
flow's ``app`` is recorded and nothing is reassembled.

Nothing here imports from a later stage (STYLE S2): analyzers report through the two callables
of their :class:`FlowContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol


class Analyzer(Protocol):
    """Per-flow protocol state. Gets each direction's bytes in order.

    The stream manager calls :meth:`close` exactly once: when the flow ends (or is evicted), or
    right after :attr:`done` turned True (not after the analyzer raised: the manager then
    reports ``tcp.stream_analyzer_error`` and drops the flow). Analyzers never raise on bad
    bytes (STYLE S3.4); a malformed unit becomes an anomaly or a parse-error record.
    """

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        """Take the next contiguous bytes of one direction (``ts_ns``: the packet that completed
        them)."""
        ...

    def gap(self, from_client: bool, size: int) -> None:
        """``size`` bytes of one direction never arrived; the next :meth:`data` follows them."""
        ...

    def close(self) -> None:
        """End of flow: flush what is pending (emit what a partial unit allows)."""
        ...

    @property
    def done(self) -> bool:
        """True: wants no more bytes (the manager stops reassembling and drops its buffers)."""
        ...


class Skipping(Protocol):
    """An analyzer that can pass over bulk data (a spec with ``skips=True``).

    After each :meth:`Analyzer.data`, the stream manager calls ``take_skip(from_client)``:
    the number of the direction's next bytes the analyzer does not need and has already
    accounted for (its own framing moved past them). The manager drops exactly that many
    bytes of the direction, in stream order (bytes lost in a gap count), without delivering
    them; what follows is delivered as usual. Zeek's and Suricata's stream bypass, per unit.
    """

    def take_skip(self, from_client: bool) -> int:
        """How many of the direction's next bytes to drop (0: none)."""
        ...


def side(from_client: bool) -> str:
    """The direction named in anomaly details: ``client->server`` or ``server->client``."""
    return "client->server" if from_client else "server->client"


def skip_pending(skip: dict[bool, int], from_client: bool, data: bytes) -> bytes:
    """What is left of ``data`` after the bytes its direction still has to skip (a body, an
    over-long message); ``skip[from_client]`` counts them down. Empty: all of it is skipped."""
    pending = skip[from_client]
    if len(data) <= pending:
        skip[from_client] = pending - len(data)
        return b""
    skip[from_client] = 0
    return data[pending:]


class Value:
    """Base of the small wire-unit values a parser builds for every handshake or datagram
    (``ClientHello``, ``Question``, ...): compared, hashed and printed by their ``FIELDS``.

    They are plain classes with an explicit ``__init__`` rather than dataclasses because
    mypyc compiles such a class natively, while a dataclass keeps the interpreted ``__init__``
    that ``dataclasses`` generates (about 3% of a replay when they were dataclasses).
    Treat them as immutable."""

    FIELDS: ClassVar[tuple[str, ...]] = ()

    def values(self) -> tuple[object, ...]:
        """The fields' values, in ``FIELDS`` order."""
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self.values() == other.values()

    def __hash__(self) -> int:
        return hash(self.values())

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.FIELDS)
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True, slots=True)
class ParseAnomaly:
    """A named parse anomaly a datagram parser returns (STYLE S3.4): ``name`` is from
    :mod:`monitor.anomalies`; ``detail`` never holds message content."""

    name: str
    detail: str


def _ignore_observation(about_client: bool, kind: str, value: str, ts_ns: int) -> None:
    """Default ``FlowContext.observe``: drop it (analyzers run without a register in tests)."""


@dataclass(frozen=True, slots=True)
class ParserSpec:
    """How a parser claims flows and what it runs on them (STYLE S3.6)."""

    #: Application name recorded in ``flows.app``: 'dicom', 'hl7', 'http', 'tls', 'ssh'.
    name: str
    #: One line for ``--help``-style listings and docs.
    description: str
    #: TCP server ports claimed without probing.
    tcp_ports: tuple[int, ...] = ()
    #: ``(first payload bytes of a direction, from_client) -> claim?``; pure, never raises.
    probe: Callable[[bytes, bool], bool] | None = None
    #: Builds the per-flow analyzer; None: detection only (app recorded, no reassembly).
    analyzer: Callable[[FlowContext], Analyzer] | None = None
    #: The analyzer has ``take_skip(from_client) -> int`` (see :class:`Skipping`): bulk data
    #: it does not read is dropped before it, without being delivered.
    skips: bool = False


class FlowContext:
    """What an analyzer knows about its flow and how it reports (one per claimed flow: a
    plain class, compiled natively, see :class:`Value`).

    - ``flow_uid`` joins every record derived from the flow (ARCHITECTURE ``flows.flow_uid``);
    - ``client_ip``, ``server_ip``: raw addresses (4 or 16 bytes) of initiator and responder;
    - ``emit(record)`` emits a typed record (a dataclass from ``monitor.records``);
    - ``anomaly(name, detail)`` reports a name from ``anomalies.CATALOGUE``; the flow uid is
      added for you;
    - ``observe(about_client, kind, value, ts_ns)`` records an observation about one end of
      the flow: ``about_client`` True, the fact is about the client (``http.user_agent``);
      False, about the server (``http.server``). The manager adds the address, MAC and flow
      uid and keeps each distinct (host, kind, value) once per run with its first/last time
      and count.
    """

    def __init__(
        self,
        flow_uid: str,
        client_ip: bytes,
        server_ip: bytes,
        client_port: int,
        server_port: int,
        emit: Callable[[object], None],
        anomaly: Callable[[str, str | None], None],
        observe: Callable[[bool, str, str, int], None] = _ignore_observation,
    ) -> None:
        self.flow_uid = flow_uid
        self.client_ip = client_ip
        self.server_ip = server_ip
        self.client_port = client_port
        self.server_port = server_port
        self.emit = emit
        self.anomaly = anomaly
        self.observe = observe


class DatagramContext:
    """What a datagram handler knows about one UDP datagram and how it reports (one per
    datagram parsed: a plain class, compiled natively, see :class:`Value`).

    Addresses are text (``10.20.0.5``, ``fe80::1``), MACs ``aa:bb:cc:dd:ee:ff`` or None when
    the link layer has none. ``observe(ip, mac, kind, value)`` records a fact about the host
    named by ``ip`` and/or ``mac`` (either may be None, not both): a DHCP request is about its
    ``chaddr`` MAC before the client has an address; a DHCP ACK binds ``yiaddr`` to it.
    ``anomaly(name, detail)`` reports a name from ``anomalies.CATALOGUE``.
    """

    def __init__(
        self,
        flow_uid: str,
        ts_ns: int,
        src_ip: str,
        dst_ip: str,
        src_mac: str | None,
        dst_mac: str | None,
        sport: int,
        dport: int,
        observe: Callable[[str | None, str | None, str, str], None],
        anomaly: Callable[[str, str | None], None],
    ) -> None:
        self.flow_uid = flow_uid
        self.ts_ns = ts_ns
        self.src_ip = src_ip
        self.dst_ip = dst_ip
        self.src_mac = src_mac
        self.dst_mac = dst_mac
        self.sport = sport
        self.dport = dport
        self.observe = observe
        self.anomaly = anomaly


@dataclass(frozen=True, slots=True)
class DatagramSpec:
    """A UDP protocol read one datagram at a time (DHCP, DNS, mDNS, NBNS, SSDP, SNMP, ...).

    The flow table calls ``handler`` for each datagram whose source or destination port is in
    ``udp_ports`` (only those: it is per packet). Handlers are pure and never raise on bad
    bytes (STYLE S3.4); they read what they need and report observations through the context.
    """

    #: Application name recorded in ``flows.app``: 'dhcp', 'dns', 'mdns', 'snmp', ...
    name: str
    #: One line for listings and docs.
    description: str
    #: UDP ports (either end) whose datagrams go to ``handler``.
    udp_ports: tuple[int, ...]
    #: ``(payload, context) -> None``.
    handler: Callable[[bytes, DatagramContext], None]
    #: Leading bytes that only number the message (the 2-byte ID of DNS-format messages):
    #: datagrams from one sender to one receiver that are equal but for them say the same
    #: things, so the collector parses them once per run. 0: parse every datagram.
    id_bytes: int = 0
