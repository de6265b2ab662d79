"""Per-flow HL7 v2 state: MLLP-deframed messages in, one ``Hl7Message`` record per message out.

Each direction of the flow has its own :class:`~monitor.parsers.hl7.mllp.Deframer` (HL7
Transport Specification, MLLP release 2, or raw HL7); each message's MSH and device fields are
read by :func:`~monitor.parsers.hl7.msh.parse_message` (HL7 v2.5 Chapter 2, MSH). Messages from
the client are ``to_server`` (orders, results, ADT), messages from the server ``to_client``
(usually the ACKs). The record's ``ts`` is the capture time (ns) of the data that completed
the message. HL7 flows are small, so the analyzer never reports ``done``.
"""

from __future__ import annotations

from typing import Any

from monitor.flows import ip_text
from monitor.parsers.base import FlowContext
from monitor.parsers.hl7.mllp import MAX_MESSAGE_SIZE, Anomaly, Deframer, Event, Frame
from monitor.parsers.hl7.msh import parse_message
from monitor.records import Hl7Message

TO_SERVER = "to_server"
TO_CLIENT = "to_client"


class Hl7Analyzer:
    """HL7 v2 analyzer for one flow (:class:`monitor.parsers.base.Analyzer`)."""

    __slots__ = ("_client_ip", "_ctx", "_deframers", "_server_ip")

    def __init__(self, ctx: FlowContext, *, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._ctx = ctx
        self._client_ip = ip_text(ctx.client_ip)
        self._server_ip = ip_text(ctx.server_ip)
        self._deframers = {
            True: Deframer(max_message_size),
            False: Deframer(max_message_size),
        }

    @property
    def done(self) -> bool:
        """Never: HL7 flows are small, every message is read."""
        return False

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        self._handle(from_client, self._deframers[from_client].feed(data, ts_ns))

    def gap(self, from_client: bool, size: int) -> None:
        self._handle(from_client, self._deframers[from_client].gap(size))

    def close(self) -> None:
        for from_client in (True, False):
            self._handle(from_client, self._deframers[from_client].flush())

    def _handle(self, from_client: bool, events: list[Event]) -> None:
        ctx = self._ctx
        for event in events:
            if isinstance(event, Anomaly):
                ctx.anomaly(event.name, f"{_side(from_client)}: {event.detail}")
            else:
                self._message(from_client, event)

    def _message(self, from_client: bool, frame: Frame) -> None:
        ctx = self._ctx
        msg, anomalies = parse_message(frame.data, truncated=frame.truncated or not frame.complete)
        for a in anomalies:
            where = f"{_side(from_client)}: message at stream offset {frame.offset}"
            ctx.anomaly(a.name, f"{where}: {a.detail}")
        # Hl7Message declares its columns as ``str``; absent fields are NULL (None) in the register.
        columns: dict[str, Any] = {
            "flow_uid": ctx.flow_uid,
            "ts": frame.ts_ns,
            "client_ip": self._client_ip,
            "server_ip": self._server_ip,
            "server_port": ctx.server_port,
            "direction": TO_SERVER if from_client else TO_CLIENT,
            "sending_application": msg.sending_application,
            "sending_facility": msg.sending_facility,
            "receiving_application": msg.receiving_application,
            "receiving_facility": msg.receiving_facility,
            "message_type": msg.message_type,
            "trigger_event": msg.trigger_event,
            "version": msg.version,
            "ack_code": msg.ack_code,
            "client_port": ctx.client_port,
            "message_datetime": msg.message_datetime,
            "message_structure": msg.message_structure,
            "control_id": msg.control_id,
            "processing_id": msg.processing_id,
            "delimiters": msg.delimiters,
            "segments": list(msg.segments),
            "acknowledged_control_id": msg.acknowledged_control_id,
            "device_ids": list(msg.device_ids),
            "framing": frame.framing,
        }
        ctx.emit(Hl7Message(**columns))


def _side(from_client: bool) -> str:
    return "client->server" if from_client else "server->client"
