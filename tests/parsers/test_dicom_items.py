"""PS3.8 §9.3.2-§9.3.8 PDU contents (monitor.parsers.dicom.items) and PS3.7 command sets
(monitor.parsers.dicom.dimse), on PDUs encoded by pynetdicom (tests/wire/dicom_pdus.py)."""

from __future__ import annotations

from wire import dicom_pdus as w

from monitor.parsers.dicom.dimse import CommandSet, parse_command_set
from monitor.parsers.dicom.items import (
    Abort,
    AssociateRJ,
    AssociateRQ,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    parse_abort,
    parse_ae_title,
    parse_associate_ac,
    parse_associate_rj,
    parse_associate_rq,
)
from monitor.parsers.dicom.pdu import Anomaly


def test_associate_rq() -> None:
    rq, nxt = parse_associate_rq(w.ASSOCIATE_RQ[6:])
    assert isinstance(rq, AssociateRQ)
    assert nxt == len(w.ASSOCIATE_RQ) - 6
    assert (rq.protocol_version, rq.called_ae, rq.calling_ae) == (1, "ANY-SCP", "STORESCU")
    assert rq.application_context == w.APPLICATION_CONTEXT
    assert rq.presentation_contexts == tuple(
        PresentationContextRQ(cid, abstract, tuple(transfers))
        for cid, (abstract, transfers, _r, _a) in w.CONTEXTS.items()
    )
    ui = rq.user_info
    assert ui.max_length == 16382
    assert ui.implementation_class_uid == w.RQ_IMPLEMENTATION_CLASS_UID
    assert ui.implementation_version_name == w.RQ_IMPLEMENTATION_VERSION
    assert ui.async_ops == (3, 1)
    assert ui.role_selections == (RoleSelection(w.CT_IMAGE_STORAGE, 1, 0),)
    assert (ui.user_identity_type, ui.user_identity_name) == (2, "username+passcode")
    assert rq.anomalies == ()
    assert "CANARY" not in repr(rq)


def test_associate_ac() -> None:
    ac, _ = parse_associate_ac(w.ASSOCIATE_AC[6:])
    assert isinstance(ac, AssociateRQ) and ac.is_ac
    assert ac.presentation_results == tuple(
        PresentationContextAC(cid, result, accepted)
        for cid, (_abs, _t, result, accepted) in w.CONTEXTS.items()
    )
    assert ac.presentation_results[-1].result_name == "abstract-syntax-not-supported"
    ui = ac.user_info
    assert (ui.max_length, ui.implementation_class_uid, ui.implementation_version_name) == (
        32768,
        w.AC_IMPLEMENTATION_CLASS_UID,
        w.AC_IMPLEMENTATION_VERSION,
    )
    assert ui.user_identity_response is True
    assert "CANARY" not in repr(ac)


def test_associate_rj_named_per_table_9_21() -> None:
    rj, _ = parse_associate_rj(w.ASSOCIATE_RJ[6:])
    assert rj == AssociateRJ(1, 1, 3)
    assert isinstance(rj, AssociateRJ)
    assert rj.result_name == "rejected-permanent"
    assert rj.reason_name == "service-user: calling-ae-title-not-recognized"
    assert AssociateRJ(2, 3, 9).reason_name == "service-provider-presentation: unknown-0x09"


def test_abort_named_per_table_9_26() -> None:
    ab, _ = parse_abort(w.ABORT[6:])
    assert ab == Abort(2, 6)
    assert isinstance(ab, Abort)
    assert ab.reason_name == "service-provider: invalid-pdu-parameter-value"
    bad, _ = parse_abort(w.abort_truncated[6:])
    assert isinstance(bad, Anomaly) and bad.name == "dicom.pdu_truncated"


def test_ae_titles() -> None:
    assert parse_ae_title(b"  CT01          ") == ("CT01", False)
    assert parse_ae_title(b"PACS\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00") == (
        "PACS",
        False,
    )
    assert parse_ae_title(b"STORE\x07SC\nU      ") == ("STORE?SC?U", True)
    rq, _ = parse_associate_rq(w.assoc_rq_ae_control_chars[6:])
    assert isinstance(rq, AssociateRQ)
    assert rq.calling_ae == "STORE?SC?U"
    assert [a.name for a in rq.anomalies] == ["dicom.ae_title_control_chars"]


def test_malformed_associate_rq_keeps_what_it_can() -> None:
    unit, _ = parse_associate_rq(w.assoc_rq_truncated_fixed_part[6:])
    assert isinstance(unit, Anomaly) and unit.name == "dicom.pdu_truncated"
    rq, _ = parse_associate_rq(w.assoc_rq_item_length_overrun[6:])
    assert isinstance(rq, AssociateRQ)
    assert [a.name for a in rq.anomalies] == ["dicom.item_length_overrun"]
    assert (rq.calling_ae, rq.presentation_contexts) == ("STORESCU", ())
    rq, _ = parse_associate_rq(w.assoc_rq_unknown_item_0x33[6:])
    assert isinstance(rq, AssociateRQ)
    assert [a.name for a in rq.anomalies] == ["dicom.item_unknown_type"]
    assert rq.user_info.implementation_class_uid == w.RQ_IMPLEMENTATION_CLASS_UID
    rq, _ = parse_associate_rq(w.assoc_rq_item_header_truncated[6:])
    assert isinstance(rq, AssociateRQ)
    assert [a.name for a in rq.anomalies] == ["dicom.item_truncated"]
    assert len(rq.presentation_contexts) == len(w.CONTEXTS)


def _command_bytes(pdus: list[bytes]) -> bytes:
    """The command set of single-PDV command PDUs (first PDU's PDV value)."""
    pdu = pdus[0]
    return pdu[12:]


def test_command_set_c_store_rq_and_rsp() -> None:
    rq = w.c_store_rq(w.DATASETS[w.IMPLICIT_LE], 1)
    cmd, _ = parse_command_set(_command_bytes(rq))
    assert cmd == CommandSet(0x0001, None, w.CT_IMAGE_STORAGE, None, None, 0x0001)
    assert isinstance(cmd, CommandSet)
    assert (cmd.name, cmd.has_data_set) == ("C-STORE-RQ", True)
    rsp, _ = parse_command_set(_command_bytes(w.c_store_rsp(1, status=0xA700)))
    assert isinstance(rsp, CommandSet)
    assert (rsp.name, rsp.status, rsp.has_data_set) == ("C-STORE-RSP", 0xA700, False)


def test_command_set_damage() -> None:
    unit, _ = parse_command_set(b"\x08\x00\x60\x00\x02\x00\x00\x00CT")
    assert isinstance(unit, Anomaly) and unit.name == "dicom.command_invalid"
    unit, _ = parse_command_set(
        b"\x00\x00\x00\x01\x02\x00\x00\x00\x30\x00" + b"\x00\x00\x00\x09\xff"
    )
    assert isinstance(unit, CommandSet) and unit.name == "C-ECHO-RQ"
