"""Per-flow DICOM analyzer: association state -> DicomAssociation and DicomDevice records.

Fed each direction's bytes in order by :mod:`monitor.streams`, it frames PDUs
(:mod:`.pdu`, PS3.8 §9.3), decodes association, release and abort PDUs (:mod:`.items`),
reassembles DIMSE command sets per presentation context (:mod:`.dimse`, PS3.7) and reads device
attributes from data sets with the transfer syntax the acceptor chose for their context
(:mod:`.dataset`). Association life cycle (PS3.8 §7, §9.1)::

    A-ASSOCIATE-RQ (requestor) -> A-ASSOCIATE-AC | A-ASSOCIATE-RJ (acceptor)
    P-DATA-TF both ways ... -> A-RELEASE-RQ -> A-RELEASE-RP      (or A-ABORT from either side)

One :class:`~monitor.records.DicomAssociation` is emitted per association when it ends
(release, reject, abort, or the end of the flow); the analyzer is ``done`` from then on. One
:class:`~monitor.records.DicomDevice` is emitted per data set that carried a device attribute,
as soon as the data set's walk stops (normally at group 0020, long before the pixel data), with
the sender's address. Query/retrieve identifiers (C-FIND, C-GET, C-MOVE requests and
responses) are walked the same way but yield no device record: their attributes are matching
keys or describe stored studies, not the sender. Bad bytes never raise; they become anomalies.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.flows import ip_text
from monitor.parsers.base import FlowContext
from monitor.parsers.dicom.dataset import DeviceReader
from monitor.parsers.dicom.dimse import COMMAND_INVALID, CommandAssembler, CommandSet
from monitor.parsers.dicom.items import (
    Abort,
    AssociateRJ,
    AssociateRQ,
    parse_abort,
    parse_associate_ac,
    parse_associate_rj,
    parse_associate_rq,
)
from monitor.parsers.dicom.pdu import (
    EV_ANOMALY,
    EV_PDATA,
    EV_PDU,
    EV_PDV_DATA,
    EV_PDV_END,
    EV_PDV_START,
    MCH_COMMAND,
    MCH_LAST,
    PDU_HEADER_LENGTH,
    Anomaly,
    Framer,
    PduHeader,
    PduType,
    PdvHeader,
)
from monitor.records import DicomAssociation, DicomDevice

PDU_UNEXPECTED = "dicom.pdu_unexpected"

#: Commands whose data set is an identifier (query keys or matches), not the sender's own data.
QUERY_COMMANDS = frozenset(
    (
        "C-FIND-RQ",
        "C-FIND-RSP",
        "C-GET-RQ",
        "C-GET-RSP",
        "C-MOVE-RQ",
        "C-MOVE-RSP",
    )
)
#: PDUs only the acceptor sends (PS3.8 §9.1).
_FROM_ACCEPTOR = (PduType.A_ASSOCIATE_AC, PduType.A_ASSOCIATE_RJ)


class _Association:
    """What is known of the current association, while it lasts."""

    def __init__(self, ts: int) -> None:
        self.ts = ts
        self.ts_end = ts
        self.rq: AssociateRQ | None = None
        self.ac: AssociateRQ | None = None
        self.result = "unknown"
        self.result_raw: int | None = None
        self.reason: str | None = None
        self.reason_raw: int | None = None
        self.command_counts: dict[str, int] = {}
        self.statuses: dict[str, dict[str, int]] = {}
        self.move_destinations: list[str] = []
        self.pdus = 0
        self.bytes_to_server = 0
        self.bytes_to_client = 0
        self.release_requested = False


class _Side:
    """Per-direction state: framing, command reassembly and data set walks."""

    __slots__ = ("assembler", "commands", "framer", "pdv", "readers", "spent")

    def __init__(self) -> None:
        self.framer = Framer()
        self.assembler = CommandAssembler()
        self.pdv: PdvHeader | None = None
        #: Last command with a data set to follow, per presentation context.
        self.commands: dict[int, CommandSet] = {}
        #: Data set walks in progress, per presentation context (with their command).
        self.readers: dict[int, tuple[DeviceReader, CommandSet | None]] = {}
        #: Contexts whose current data set is finished (the rest of it is discarded).
        self.spent: set[int] = set()


class DicomAnalyzer:
    """The Analyzer (see :class:`monitor.parsers.base.Analyzer`) of one DICOM TCP connection."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self._client = _Side()
        self._server = _Side()
        self._assoc: _Association | None = None
        #: Accepted transfer syntax per presentation context ID (from the A-ASSOCIATE-AC).
        self._syntaxes: dict[int, str] = {}
        self._done = False
        self._client_ip = ip_text(ctx.client_ip)
        self._server_ip = ip_text(ctx.server_ip)

    # -- Analyzer protocol -------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._done

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        if self._done:
            return
        side = self._client if from_client else self._server
        for event in side.framer.feed(data):
            kind = event[0]
            if kind == EV_PDV_DATA:
                self._pdv_data(side, from_client, event[1], ts_ns)
            elif kind == EV_PDV_START:
                side.pdv = event[1]
            elif kind == EV_PDV_END:
                self._pdv_end(side, from_client, event[1], ts_ns)
            elif kind == EV_PDATA:
                self._count(from_client, event[1], ts_ns)
            elif kind == EV_PDU:
                header: PduHeader = event[1]
                self._count(from_client, header, ts_ns)
                self._pdu(from_client, header, event[2], ts_ns)
            elif kind == EV_ANOMALY:
                self._report(event[1], from_client)
            if self._done:
                break

    def take_skip(self, from_client: bool) -> int:
        """The rest of a data PDV whose data set walk is over (pixel data after the device
        attributes): the stream manager drops it unseen (``ParserSpec.skips``). Its last byte
        is still fed, so the framer ends the PDV as usual."""
        side = self._client if from_client else self._server
        pdv = side.pdv
        if (
            self._done
            or pdv is None
            or pdv.control & MCH_COMMAND
            or pdv.context_id not in side.spent
        ):
            return 0
        return side.framer.skip_value(1)

    def gap(self, from_client: bool, size: int) -> None:
        """Bytes were lost: this direction's PDU framing is lost with them (no resync guess)."""
        side = self._client if from_client else self._server
        self._finish_readers(side, from_client, None)
        side.framer.kill()
        side.pdv = None
        side.assembler.clear()
        side.commands.clear()

    def close(self) -> None:
        for from_client, side in ((True, self._client), (False, self._server)):
            self._finish_readers(side, from_client, None)
        self._end_association()
        self._done = True

    # -- PDUs ----------------------------------------------------------------------------------

    def _association(self, ts_ns: int) -> _Association:
        assoc = self._assoc
        if assoc is None:
            assoc = self._assoc = _Association(ts_ns)
        return assoc

    def _count(self, from_client: bool, header: PduHeader, ts_ns: int) -> None:
        assoc = self._association(ts_ns)
        assoc.pdus += 1
        assoc.ts_end = ts_ns
        if from_client:
            assoc.bytes_to_server += PDU_HEADER_LENGTH + header.length
        else:
            assoc.bytes_to_client += PDU_HEADER_LENGTH + header.length

    def _pdu(self, from_client: bool, header: PduHeader, body: bytes, ts_ns: int) -> None:
        t = header.pdu_type
        if (t == PduType.A_ASSOCIATE_RQ and not from_client) or (
            t in _FROM_ACCEPTOR and from_client
        ):
            self.ctx.anomaly(PDU_UNEXPECTED, f"{header.name} from the {_side(from_client)}")
        assoc = self._association(ts_ns)
        if t == PduType.A_ASSOCIATE_RQ:
            unit, _ = parse_associate_rq(body)
            if assoc.rq is not None or assoc.ac is not None or assoc.release_requested:
                # PS3.8 allows one association per connection; be defensive anyway: the PDU
                # just counted starts a new association.
                self.ctx.anomaly(PDU_UNEXPECTED, "a second A-ASSOCIATE-RQ on the connection")
                assoc.pdus -= 1
                assoc.bytes_to_server -= PDU_HEADER_LENGTH + header.length
                self._end_association()
                self._syntaxes.clear()
                self._count(from_client, header, ts_ns)
                assoc = self._association(ts_ns)
            assoc.ts = ts_ns
            if isinstance(unit, Anomaly):
                self._report(unit, from_client)
                return
            self._report_all(unit.anomalies, from_client)
            assoc.rq = unit
        elif t == PduType.A_ASSOCIATE_AC:
            unit, _ = parse_associate_ac(body)
            if isinstance(unit, Anomaly):
                self._report(unit, from_client)
                return
            self._report_all(unit.anomalies, from_client)
            assoc.ac = unit
            assoc.result = "accepted"
            for pc in unit.presentation_results:
                if pc.result == 0 and pc.transfer_syntax:
                    self._syntaxes[pc.context_id] = pc.transfer_syntax
        elif t == PduType.A_ASSOCIATE_RJ:
            rj, _ = parse_associate_rj(body)
            if isinstance(rj, Anomaly):
                self._report(rj, from_client)
                return
            assert isinstance(rj, AssociateRJ)
            assoc.result = "rejected"
            assoc.result_raw = rj.result
            assoc.reason = f"{rj.result_name}: {rj.reason_name}"
            assoc.reason_raw = rj.reason
            self._end_association()
            self._done = True
        elif t == PduType.A_RELEASE_RQ:
            assoc.release_requested = True
        elif t == PduType.A_RELEASE_RP:
            self._end_association()
            self._done = True
        elif t == PduType.A_ABORT:
            ab, _ = parse_abort(body)
            if isinstance(ab, Anomaly):
                self._report(ab, from_client)
            else:
                assert isinstance(ab, Abort)
                assoc.result_raw = ab.source
                assoc.reason = ab.reason_name
                assoc.reason_raw = ab.reason
            assoc.result = "aborted"
            for fc, side in ((True, self._client), (False, self._server)):
                self._finish_readers(side, fc, ts_ns)
            self._end_association()
            self._done = True

    # -- P-DATA-TF -----------------------------------------------------------------------------

    def _pdv_data(self, side: _Side, from_client: bool, chunk: memoryview, ts_ns: int) -> None:
        pdv = side.pdv
        if pdv is None:
            return
        cid = pdv.context_id
        if pdv.control & MCH_COMMAND:
            a = side.assembler.add(cid, chunk)
            if a is not None:
                self._report(a, from_client)
            return
        if cid in side.spent:
            return  # the rest of a data set whose walk stopped: discarded unread
        entry = side.readers.get(cid)
        if entry is None:
            reader = DeviceReader(self._syntaxes.get(cid))
            entry = side.readers[cid] = (reader, side.commands.pop(cid, None))
        reader = entry[0]
        reader.feed(chunk)
        if reader.anomalies:
            self._report_all(reader.anomalies, from_client)
            reader.anomalies.clear()
        if reader.finished:
            del side.readers[cid]
            side.spent.add(cid)
            self._emit_device(entry[0], entry[1], from_client, ts_ns)

    def _pdv_end(self, side: _Side, from_client: bool, pdv: PdvHeader, ts_ns: int) -> None:
        side.pdv = None
        if not pdv.control & MCH_LAST:
            return
        cid = pdv.context_id
        if pdv.control & MCH_COMMAND:
            unit, damaged = side.assembler.finish(cid)
            if unit is None:
                return
            if isinstance(unit, Anomaly):
                self._report(unit, from_client)
                return
            if damaged:
                self.ctx.anomaly(COMMAND_INVALID, f"{_side(from_client)}: {unit.name} damaged")
            self._command(unit, ts_ns)
            if unit.has_data_set:
                side.commands[cid] = unit
                side.spent.discard(cid)
            return
        side.spent.discard(cid)
        entry = side.readers.pop(cid, None)
        if entry is None:
            side.commands.pop(cid, None)
            return
        self._emit_device(entry[0], entry[1], from_client, ts_ns)

    def _command(self, cmd: CommandSet, ts_ns: int) -> None:
        assoc = self._association(ts_ns)
        name = cmd.name
        assoc.command_counts[name] = assoc.command_counts.get(name, 0) + 1
        if cmd.status is not None and cmd.command_field is not None and cmd.command_field & 0x8000:
            per = assoc.statuses.setdefault(name, {})
            key = f"0x{cmd.status:04x}"
            per[key] = per.get(key, 0) + 1
        if cmd.move_destination and cmd.move_destination not in assoc.move_destinations:
            assoc.move_destinations.append(cmd.move_destination)

    def _finish_readers(self, side: _Side, from_client: bool, ts_ns: int | None) -> None:
        """Emit what partial data set walks found (gap, abort, end of flow)."""
        for reader, cmd in side.readers.values():
            self._emit_device(reader, cmd, from_client, ts_ns)
        side.readers.clear()
        side.spent.clear()

    # -- records -------------------------------------------------------------------------------

    def _emit_device(
        self, reader: DeviceReader, cmd: CommandSet | None, from_client: bool, ts_ns: int | None
    ) -> None:
        if cmd is not None and cmd.name in QUERY_COMMANDS:
            return
        attrs = reader.device()
        if not attrs:
            return
        if ts_ns is None:
            ts_ns = self._assoc.ts_end if self._assoc is not None else None
        device: dict[str, Any] = {
            "flow_uid": self.ctx.flow_uid,
            "ts": ts_ns,
            "ip": self._client_ip if from_client else self._server_ip,
            **attrs,
            "sop_class_uid": cmd.sop_class_uid if cmd is not None else None,
            "transfer_syntax": reader.transfer_syntax,
        }
        self.ctx.emit(DicomDevice(**device))

    def _end_association(self) -> None:
        assoc = self._assoc
        if assoc is None:
            return
        self._assoc = None
        self.ctx.emit(self._association_record(assoc))

    def _association_record(self, assoc: _Association) -> DicomAssociation:
        ctx = self.ctx
        rq, ac = assoc.rq, assoc.ac
        contexts: list[dict[str, Any]] = []
        results = {pc.context_id: pc for pc in ac.presentation_results} if ac else {}
        if rq is not None:
            for pc in rq.presentation_contexts:
                res = results.pop(pc.context_id, None)
                contexts.append(
                    {
                        "id": pc.context_id,
                        "abstract_syntax": pc.abstract_syntax,
                        "transfer_syntaxes": list(pc.transfer_syntaxes),
                        "result": res.result_name if res else None,
                        "result_raw": res.result if res else None,
                        "transfer_syntax": res.transfer_syntax if res and res.result == 0 else None,
                    }
                )
        for res in results.values():  # answers to contexts whose RQ was not seen
            contexts.append(
                {
                    "id": res.context_id,
                    "abstract_syntax": None,
                    "transfer_syntaxes": [],
                    "result": res.result_name,
                    "result_raw": res.result,
                    "transfer_syntax": res.transfer_syntax if res.result == 0 else None,
                }
            )
        roles: list[dict[str, Any]] = []
        for who, unit in (("requestor", rq), ("acceptor", ac)):
            if unit is not None:
                for r in unit.user_info.role_selections:
                    roles.append(
                        {
                            "abstract_syntax": r.sop_class_uid,
                            "scu": r.scu_role,
                            "scp": r.scp_role,
                            "from": who,
                        }
                    )
        abstract = (
            list(dict.fromkeys(pc.abstract_syntax for pc in rq.presentation_contexts)) if rq else []
        )
        ui_rq = rq.user_info if rq else None
        ui_ac = ac.user_info if ac else None
        first = rq or ac
        record: dict[str, Any] = {
            "flow_uid": ctx.flow_uid,
            "ts": assoc.ts,
            "client_ip": self._client_ip,
            "client_port": ctx.client_port,
            "server_ip": self._server_ip,
            "server_port": ctx.server_port,
            "calling_ae": first.calling_ae if first else None,
            "called_ae": first.called_ae if first else None,
            "implementation_class_uid": ui_rq.implementation_class_uid if ui_rq else None,
            "implementation_version_name": ui_rq.implementation_version_name if ui_rq else None,
            "acceptor_implementation_class_uid": (
                ui_ac.implementation_class_uid if ui_ac else None
            ),
            "acceptor_implementation_version_name": (
                ui_ac.implementation_version_name if ui_ac else None
            ),
            "result": assoc.result,
            "abstract_syntaxes": abstract,
            "commands": list(assoc.command_counts),
            "ts_end": assoc.ts_end,
            "result_raw": assoc.result_raw,
            "reason": assoc.reason,
            "reason_raw": assoc.reason_raw,
            "max_pdu_length": ui_rq.max_length if ui_rq else None,
            "acceptor_max_pdu_length": ui_ac.max_length if ui_ac else None,
            "application_context": first.application_context if first else None,
            "presentation_contexts": json.dumps(contexts),
            "role_selection": json.dumps(roles),
            "user_identity_type": ui_rq.user_identity_name if ui_rq else None,
            "command_counts": json.dumps(assoc.command_counts),
            "statuses": json.dumps(assoc.statuses),
            "move_destinations": assoc.move_destinations,
            "pdus": assoc.pdus,
            "bytes_to_server": assoc.bytes_to_server,
            "bytes_to_client": assoc.bytes_to_client,
            "tls": False,
        }
        return DicomAssociation(**record)

    # -- anomalies -----------------------------------------------------------------------------

    def _report(self, a: Anomaly, from_client: bool) -> None:
        self.ctx.anomaly(a.name, f"{_side(from_client)} offset {a.offset}: {a.detail}")

    def _report_all(self, anomalies: Any, from_client: bool) -> None:
        for a in anomalies:
            self._report(a, from_client)


def _side(from_client: bool) -> str:
    return "requestor" if from_client else "acceptor"


__all__ = ["DicomAnalyzer"]
