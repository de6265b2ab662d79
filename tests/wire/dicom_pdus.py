"""Named DICOM byte fixtures (PS3.8 PDUs, PS3.7 DIMSE messages, PS3.5 data sets).

Origin: built when imported, with pynetdicom's own PDU and DIMSE encoders
(``pynetdicom.pdu.A_ASSOCIATE_RQ.from_primitive(...).encode()``,
``pynetdicom.dimse_messages.C_STORE_RQ.encode_msg``) and data sets written by pydicom
(``pydicom.filewriter.write_dataset`` in each transfer syntax; deflate = raw zlib, as pydicom's
``dcmwrite`` does). Versions: whatever ``pip install pynetdicom`` installed (3.x). Every data
set carries the PHI canaries of STYLE S9 (``CANARY^PHI``, ``PHI-CANARY-0001``, ``19000101``) at
the top level and again inside a sequence item, next to the device attributes below; the user
identity carries the credential canaries ``CANARY-USER`` / ``CANARY-PASS``. Malformed units are
hand-built from the good ones, each named for its defect.

Association (A-ASSOCIATE-RQ, decoded)::

    called AE 'ANY-SCP'   calling AE 'STORESCU'   application context 1.2.840.10008.3.1.1.1
    context 1: CT Image Storage        [Implicit VR LE, Explicit VR LE]
    context 3: CT Image Storage        [Explicit VR LE]
    context 5: CT Image Storage        [Explicit VR BE]
    context 7: CT Image Storage        [Deflated Explicit VR LE]
    context 9: Verification            [Implicit VR LE]
    context 11: MR Image Storage       [JPEG Baseline]
    user info: max length 16382, implementation class UID 1.2.826.0.1.3680043.9.3811.3.0.4,
    version 'PYNETDICOM_304', async ops (3, 1), role CT Image Storage scu=1 scp=0,
    user identity type 2 (username+passcode)

A-ASSOCIATE-AC: contexts 1, 3, 5, 7, 9 accepted with the syntax listed first; 11 rejected
(abstract-syntax-not-supported); max length 32768, implementation class UID 1.2.3.4.5.6.7.8,
version 'ACCEPTOR_10', a user identity server response.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pynetdicom.dimse_messages import C_ECHO_RQ, C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
)
from pynetdicom.pdu_primitives import (
    A_ABORT,
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext

from monitor.parsers.base import FlowContext
from monitor.parsers.dicom import DicomAnalyzer
from monitor.records import DicomAssociation, DicomDevice

# -- UIDs ------------------------------------------------------------------------------------
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
RQ_IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.9.3811.3.0.4"
RQ_IMPLEMENTATION_VERSION = "PYNETDICOM_304"
AC_IMPLEMENTATION_CLASS_UID = "1.2.3.4.5.6.7.8"
AC_IMPLEMENTATION_VERSION = "ACCEPTOR_10"

#: Presentation context ID -> (abstract syntax, proposed transfer syntaxes, AC result, accepted).
CONTEXTS: dict[int, tuple[str, list[str], int, str]] = {
    1: (CT_IMAGE_STORAGE, [IMPLICIT_LE, EXPLICIT_LE], 0, IMPLICIT_LE),
    3: (CT_IMAGE_STORAGE, [EXPLICIT_LE], 0, EXPLICIT_LE),
    5: (CT_IMAGE_STORAGE, [EXPLICIT_BE], 0, EXPLICIT_BE),
    7: (CT_IMAGE_STORAGE, [DEFLATED_LE], 0, DEFLATED_LE),
    9: (VERIFICATION, [IMPLICIT_LE], 0, IMPLICIT_LE),
    11: (MR_IMAGE_STORAGE, [JPEG_BASELINE], 3, JPEG_BASELINE),
}
#: Transfer syntax -> the context that carries it.
CONTEXT_OF = {IMPLICIT_LE: 1, EXPLICIT_LE: 3, EXPLICIT_BE: 5, DEFLATED_LE: 7}

# -- PHI canaries (STYLE S9) and device attributes ---------------------------------------------
CANARIES = ("CANARY^PHI", "PHI-CANARY-0001", "19000101", "CANARY-USER", "CANARY-PASS")
DEVICE = {
    "modality": "CT",
    "manufacturer": "ACME Medical Systems",
    "institution_name": "General Hospital",
    "station_name": "CT01",
    "institutional_department_name": "Radiology",
    "model": "Scanner 9000",
    "device_serial_number": "SN-000042",
    "software_versions": ["VE11C", "SP2 build 7"],
}
SOP_INSTANCE_UID = "1.2.826.0.1.3680043.8.498.1"


def _user_information(*, requestor: bool) -> list[object]:
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16382 if requestor else 32768
    impl_uid = ImplementationClassUIDNotification()
    impl_uid.implementation_class_uid = (
        RQ_IMPLEMENTATION_CLASS_UID if requestor else AC_IMPLEMENTATION_CLASS_UID
    )
    impl_version = ImplementationVersionNameNotification()
    impl_version.implementation_version_name = (
        RQ_IMPLEMENTATION_VERSION if requestor else AC_IMPLEMENTATION_VERSION
    )
    items: list[object] = [max_length, impl_uid, impl_version]
    if requestor:
        ops = AsynchronousOperationsWindowNegotiation()
        ops.maximum_number_operations_invoked = 3
        ops.maximum_number_operations_performed = 1
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = CT_IMAGE_STORAGE
        role.scu_role = True
        role.scp_role = False
        identity = UserIdentityNegotiation()
        identity.user_identity_type = 2
        identity.positive_response_requested = True
        identity.primary_field = b"CANARY-USER"
        identity.secondary_field = b"CANARY-PASS"
        items += [ops, role, identity]
    else:
        identity = UserIdentityNegotiation()
        identity.server_response = b"CANARY-USER-TOKEN"
        items.append(identity)
    return items


def _associate(*, accept: bool) -> A_ASSOCIATE:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = "STORESCU"
    primitive.called_ae_title = "ANY-SCP"
    contexts = []
    for cid, (abstract, transfers, result, accepted) in CONTEXTS.items():
        pc = PresentationContext()
        pc.context_id = cid
        pc.abstract_syntax = abstract
        pc.transfer_syntax = [accepted] if accept else list(transfers)
        if accept:
            pc.result = result
        contexts.append(pc)
    if accept:
        primitive.presentation_context_definition_results_list = contexts
        primitive.result = 0
    else:
        primitive.presentation_context_definition_list = contexts
    primitive.user_information = _user_information(requestor=not accept)  # type: ignore[assignment]
    return primitive


def _rq() -> bytes:
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(_associate(accept=False))
    return pdu.encode()


def _ac() -> bytes:
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(_associate(accept=True))
    return pdu.encode()


def _rj() -> bytes:
    primitive = A_ASSOCIATE()
    primitive.result = 0x01
    primitive.result_source = 0x01
    primitive.diagnostic = 0x03
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def _abort() -> bytes:
    primitive = A_ABORT()
    primitive.abort_source = 0x02
    pdu = A_ABORT_RQ()
    pdu.from_primitive(primitive)
    pdu.reason_diagnostic = 0x06
    return pdu.encode()


#: PS3.8 §9.3.2 A-ASSOCIATE-RQ, see the module docstring (pynetdicom encoder).
ASSOCIATE_RQ = _rq()
#: PS3.8 §9.3.3 A-ASSOCIATE-AC, see the module docstring (pynetdicom encoder).
ASSOCIATE_AC = _ac()
#: PS3.8 §9.3.4 A-ASSOCIATE-RJ: rejected-permanent, service-user, calling AE not recognized.
ASSOCIATE_RJ = _rj()
#: PS3.8 §9.3.8 A-ABORT: service-provider, invalid-PDU-parameter-value.
ABORT = _abort()
#: PS3.8 §9.3.6 / §9.3.7 A-RELEASE-RQ / -RP.
RELEASE_RQ = A_RELEASE_RQ().encode()
RELEASE_RP = A_RELEASE_RP().encode()


# -- data sets -----------------------------------------------------------------------------------


def device_dataset(pixel_bytes: int = 256) -> Dataset:
    """A CT instance: PHI canaries, device attributes, sequences (one of undefined length with
    PHI in a nested item) and pixel data of ``pixel_bytes`` bytes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = SOP_INSTANCE_UID
    ds.StudyDate = "20240102"
    ds.Modality = DEVICE["modality"]
    ds.Manufacturer = DEVICE["manufacturer"]
    ds.InstitutionName = DEVICE["institution_name"]
    ds.ReferringPhysicianName = "CANARY^PHI"
    inner = Dataset()
    inner.PatientName = "CANARY^PHI"
    inner.PatientID = "PHI-CANARY-0001"
    nested = Dataset()
    nested.CodeValue = "PHI-CANARY-0001"
    inner.ConceptNameCodeSequence = Sequence([nested])
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = SOP_INSTANCE_UID
    item.ReferencedPatientSequence = Sequence([inner])
    ds.ReferencedStudySequence = Sequence([item])  # (0008,1110), written undefined-length below
    ds.StationName = DEVICE["station_name"]
    ds.InstitutionalDepartmentName = DEVICE["institutional_department_name"]
    ds.ManufacturerModelName = DEVICE["model"]
    ds.PatientName = "CANARY^PHI"
    ds.PatientID = "PHI-CANARY-0001"
    ds.PatientBirthDate = "19000101"
    ds.DeviceSerialNumber = DEVICE["device_serial_number"]
    ds.SoftwareVersions = DEVICE["software_versions"]
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.Rows = 16
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.PixelData = b"\x00\x01" * (pixel_bytes // 2)
    for elem in (ds["ReferencedStudySequence"], item["ReferencedPatientSequence"]):
        elem.is_undefined_length = True
    return ds


def encode_dataset(ds: Dataset, transfer_syntax: str) -> bytes:
    """``ds`` written in ``transfer_syntax`` (no preamble, no file meta: as sent in P-DATA)."""
    fp = DicomBytesIO()
    fp.is_little_endian = transfer_syntax != EXPLICIT_BE
    fp.is_implicit_VR = transfer_syntax == IMPLICIT_LE
    write_dataset(fp, ds)
    raw = fp.getvalue()
    if transfer_syntax == DEFLATED_LE:
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        raw = z.compress(raw) + z.flush()
    return raw


def p_data(message: object, context_id: int, max_pdu: int = 16382) -> list[bytes]:
    """Encoded P-DATA-TF PDUs of a pynetdicom DIMSE message (its own fragmentation)."""
    out = []
    for primitive in message.encode_msg(context_id, max_pdu):  # type: ignore[attr-defined]
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        out.append(pdu.encode())
    return out


def c_store_rq(
    dataset_bytes: bytes, context_id: int, message_id: int = 1, **kw: int
) -> list[bytes]:
    """A C-STORE-RQ with its data set, as P-DATA-TF PDUs."""
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = CT_IMAGE_STORAGE
    primitive.AffectedSOPInstanceUID = SOP_INSTANCE_UID
    primitive.Priority = 0
    primitive.DataSet = BytesIO(dataset_bytes)
    msg = C_STORE_RQ()
    msg.primitive_to_message(primitive)
    return p_data(msg, context_id, **kw)


def c_store_rsp(context_id: int, message_id: int = 1, status: int = 0x0000) -> list[bytes]:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.AffectedSOPClassUID = CT_IMAGE_STORAGE
    primitive.AffectedSOPInstanceUID = SOP_INSTANCE_UID
    primitive.Status = status
    msg = C_STORE_RSP()
    msg.primitive_to_message(primitive)
    return p_data(msg, context_id)


def c_echo_rq(context_id: int = 9) -> list[bytes]:
    primitive = C_ECHO()
    primitive.MessageID = 7
    primitive.AffectedSOPClassUID = VERIFICATION
    msg = C_ECHO_RQ()
    msg.primitive_to_message(primitive)
    return p_data(msg, context_id)


def c_echo_rsp(context_id: int = 9) -> list[bytes]:
    primitive = C_ECHO()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = VERIFICATION
    primitive.Status = 0x0000
    msg = C_ECHO_RSP()
    msg.primitive_to_message(primitive)
    return p_data(msg, context_id)


#: The CT instance in each transfer syntax (PS3.5 §A.1, §A.2, §A.3 (retired BE), §A.5).
DATASETS = {ts: encode_dataset(device_dataset(), ts) for ts in CONTEXT_OF}


# -- malformed units (hand-built from the good ones, each named for its defect) ---------------

_HDR = struct.Struct(">BBL")


def _with_length(pdu: bytes, length: int) -> bytes:
    return _HDR.pack(pdu[0], 0, length) + pdu[6:]


#: A-ASSOCIATE-RQ whose PDU-length claims 4 GB (0xFFFFFFFF).
assoc_rq_length_4gb = _with_length(ASSOCIATE_RQ, 0xFFFFFFFF)
#: A PDU of type 0x09 (not in PS3.8).
pdu_unknown_type_0x09 = b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00"
#: A-ASSOCIATE-RQ cut to 40 bytes of body (fewer than the 68 fixed bytes), length adjusted.
assoc_rq_truncated_fixed_part = _HDR.pack(1, 0, 40) + ASSOCIATE_RQ[6:46]
#: A-ASSOCIATE-RQ whose first variable item (application context) claims 0xFFFF bytes.
assoc_rq_item_length_overrun = ASSOCIATE_RQ[:74] + b"\x10\x00\xff\xff" + ASSOCIATE_RQ[78:]
#: A-ASSOCIATE-RQ with an extra item of undefined type 0x33 before the user information.
_UI = ASSOCIATE_RQ.index(b"\x50\x00", 74)
_EXTRA = b"\x33\x00\x00\x02\xab\xcd"
assoc_rq_unknown_item_0x33 = (
    _HDR.pack(1, 0, len(ASSOCIATE_RQ) - 6 + len(_EXTRA))
    + ASSOCIATE_RQ[6:_UI]
    + _EXTRA
    + ASSOCIATE_RQ[_UI:]
)
#: A-ASSOCIATE-RQ whose body ends 2 bytes into a variable item header (length adjusted).
assoc_rq_item_header_truncated = (
    _HDR.pack(1, 0, len(ASSOCIATE_RQ) - 6 + 2) + ASSOCIATE_RQ[6:] + b"\x50\x00"
)
#: A-ASSOCIATE-RQ whose calling AE title holds a BEL and a newline ('STORE\\x07SC\\nU').
assoc_rq_ae_control_chars = ASSOCIATE_RQ[:26] + b"STORE\x07SC\nU".ljust(16) + ASSOCIATE_RQ[42:]
#: P-DATA-TF whose PDV item claims 1000 bytes in a 20-byte PDU.
p_data_pdv_length_overrun = _HDR.pack(4, 0, 20) + struct.pack(">LBB", 1000, 1, 3) + bytes(14)
#: P-DATA-TF with a PDV item length of 1 (below the 2 bytes of context ID and header).
p_data_pdv_length_1 = _HDR.pack(4, 0, 10) + struct.pack(">LBB", 1, 1, 3) + bytes(4)
#: A-ABORT with a 2-byte body (fewer than its 4 fixed bytes).
abort_truncated = _HDR.pack(7, 0, 2) + b"\x00\x00"


# -- harness: an analyzer over one flow, collecting what it emits ----------------------------

CLIENT_IP = bytes([10, 20, 0, 5])
SERVER_IP = bytes([10, 30, 0, 10])


class Run:
    """One analyzer over one flow; ``records`` and ``anomalies`` as emitted."""

    def __init__(self) -> None:
        self.records: list[object] = []
        self.anomalies: list[tuple[str, str | None]] = []
        ctx = FlowContext(
            flow_uid="Fdicom1",
            client_ip=CLIENT_IP,
            server_ip=SERVER_IP,
            client_port=50123,
            server_port=104,
            emit=self.records.append,
            anomaly=lambda name, detail: self.anomalies.append((name, detail)),
        )
        self.analyzer = DicomAnalyzer(ctx)

    def feed(self, from_client: bool, units: Iterable[bytes], ts: int = 1, chunk: int = 0) -> None:
        """Feed the concatenated ``units``, in pieces of ``chunk`` bytes (0: all at once)."""
        data = b"".join(units)
        step = chunk or max(len(data), 1)
        for i in range(0, len(data), step):
            if self.analyzer.done:
                return
            self.analyzer.data(from_client, data[i : i + step], ts)

    def close(self) -> Run:
        self.analyzer.close()
        return self

    @property
    def associations(self) -> list[DicomAssociation]:
        return [r for r in self.records if isinstance(r, DicomAssociation)]

    @property
    def devices(self) -> list[DicomDevice]:
        return [r for r in self.records if isinstance(r, DicomDevice)]

    @property
    def anomaly_names(self) -> list[str]:
        return [n for n, _ in self.anomalies]

    def text(self) -> str:
        """Everything emitted, as text (for the PHI canary checks)."""
        return repr(self.records) + repr(self.anomalies)
