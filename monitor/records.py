"""Every record type medmon writes, one dataclass per register table [Zeek Info records].

The dataclasses are the single source of truth: :mod:`monitor.register.schema` builds the
DuckDB tables from them, ``docs/register.md`` is generated from them (``cog``), and the JSON
output of the CLI uses the same column names. Each field carries its SQL type and a one-line
description in its metadata; fields are in table column order.

ARCHITECTURE.md's register schema is a contract: the columns it lists are never renamed or
removed; new columns may be added (and documented here).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def col(sql: str, doc: str, *, key: bool = False) -> Any:
    """A register column: its DuckDB type and what it means."""
    return field(default=None, metadata={"sql": sql, "doc": doc, "key": key})


@dataclass
class Run:
    """``runs``: one row per replay or live capture run."""

    run_id: int = col("BIGINT NOT NULL PRIMARY KEY", "run number, 1, 2, ... in order")
    started_at: Any = col("TIMESTAMPTZ NOT NULL", "wall-clock time the run started (UTC)")
    finished_at: Any = col("TIMESTAMPTZ", "wall-clock time the run finished (UTC)")
    source: str = col("VARCHAR NOT NULL", "what was read: capture paths, or the interface")
    sensor: str = col("VARCHAR", "host name of the machine that ran medmon")
    packets: int = col("BIGINT NOT NULL DEFAULT 0", "frames read")
    bytes: int = col("BIGINT NOT NULL DEFAULT 0", "sum of the frames' original (wire) lengths")
    dropped: int = col("BIGINT NOT NULL DEFAULT 0", "packets the capture lost (live only)")
    version: str = col("VARCHAR NOT NULL", "medmon version that wrote the run")
    duplicates: int = col("BIGINT NOT NULL DEFAULT 0", "SPAN duplicate packets counted once")
    skipped: int = col("BIGINT NOT NULL DEFAULT 0", "frames of unsupported link types")
    flows: int = col("BIGINT NOT NULL DEFAULT 0", "flows recorded")
    first_ts: Any = col("TIMESTAMPTZ", "capture time of the earliest packet")
    last_ts: Any = col("TIMESTAMPTZ", "capture time of the latest packet")
    command: str = col("VARCHAR", "'replay' or 'sniff'")
    received: int = col("BIGINT", "live: packets the capture received (before drops)")
    dropped_kernel: int = col("BIGINT", "live: packets the kernel dropped (consumer too slow)")
    dropped_interface: int = col("BIGINT", "live: packets the interface or its driver dropped")
    flushes: int = col("BIGINT", "live: times the run's state was written (committed) so far")


@dataclass
class Capture:
    """``captures``: each capture file a run read, identified by content hash."""

    run_id: int = col("BIGINT NOT NULL", "the run that read it")
    path: str = col("VARCHAR NOT NULL", "path as given or found ('-' for stdin)")
    sha256: str = col("VARCHAR NOT NULL", "SHA-256 of the file's bytes: the capture's identity")
    quick_id: str = col("VARCHAR", "SHA-256 of size, first and last 64 KiB (NULL for stdin)")
    size: int = col("BIGINT", "bytes on disk")
    format: str = col("VARCHAR", "pcap, pcap-ns or pcapng, with .gz when compressed")
    packets: int = col("BIGINT", "frames read from it")
    bytes: int = col("BIGINT", "captured bytes read from it")
    first_ts: Any = col("TIMESTAMPTZ", "capture time of its first frame")
    last_ts: Any = col("TIMESTAMPTZ", "capture time of its last frame")
    linktypes: list[int] = col("INTEGER[]", "link types of its interfaces")
    warnings: list[str] = col("VARCHAR[]", "damage found while reading (one line each)")


@dataclass
class Flow:
    """``flows``: one row per conversation (client = initiator) [Zeek conn.log]."""

    run_id: int = col("BIGINT NOT NULL", "the run that saw it")
    flow_uid: str = col(
        "VARCHAR NOT NULL",
        "flow id, deterministic from 5-tuple and first packet; joins all records of the flow",
        key=True,
    )
    first_seen: Any = col("TIMESTAMPTZ NOT NULL", "capture time of the first packet")
    last_seen: Any = col("TIMESTAMPTZ NOT NULL", "capture time of the last packet")
    proto: str = col("VARCHAR NOT NULL", "tcp, udp, icmp, icmp6, or the IP protocol number")
    client_ip: str = col("VARCHAR NOT NULL", "initiator's address")
    client_port: int = col("INTEGER", "initiator's port (ICMP: type of the first message)")
    server_ip: str = col("VARCHAR NOT NULL", "responder's address")
    server_port: int = col("INTEGER", "responder's port (ICMP: code of the first message)")
    vlan: int = col("INTEGER", "outermost VLAN id of the first packet, NULL when untagged")
    app: str = col("VARCHAR", "detected application protocol: dicom, hl7, tls, http, ssh, ...")
    packets_to_server: int = col("BIGINT NOT NULL", "packets client -> server")
    packets_to_client: int = col("BIGINT NOT NULL", "packets server -> client")
    bytes_to_server: int = col("BIGINT NOT NULL", "wire bytes client -> server (frame lengths)")
    bytes_to_client: int = col("BIGINT NOT NULL", "wire bytes server -> client (frame lengths)")
    payload_to_server: int = col("BIGINT", "L4 payload bytes client -> server")
    payload_to_client: int = col("BIGINT", "L4 payload bytes server -> client")
    state: str = col("VARCHAR", "TCP: attempted, established, closed, reset or partial")
    end_reason: str = col("VARCHAR", "why the flow ended: closed, idle, absolute, evicted, end")
    client_mac: str = col("VARCHAR", "client's MAC address as seen in the first packet")
    server_mac: str = col("VARCHAR", "server's MAC address as seen in the first packet")


@dataclass
class AnomalyCount:
    """``anomalies``: named anomalies a run met, with a count and the first example."""

    run_id: int = col("BIGINT NOT NULL", "the run")
    name: str = col("VARCHAR NOT NULL", "anomaly name from monitor.anomalies")
    count: int = col("BIGINT NOT NULL", "how often it occurred")
    first_ts: Any = col("TIMESTAMPTZ", "capture time of the first occurrence")
    first_frame: int = col("BIGINT", "frame number (1-based, in run order) of the first one")


@dataclass
class DicomAssociation:
    """``dicom_associations``: one row per DICOM association (PS3.8)."""

    run_id: int = col("BIGINT NOT NULL", "the run")
    flow_uid: str = col("VARCHAR", "the flow it travelled in")
    ts: Any = col("TIMESTAMPTZ", "time of the A-ASSOCIATE-RQ")
    client_ip: str = col("VARCHAR", "requestor's address")
    client_port: int = col("INTEGER", "requestor's port")
    server_ip: str = col("VARCHAR", "acceptor's address")
    server_port: int = col("INTEGER", "acceptor's port")
    calling_ae: str = col("VARCHAR", "calling AE title")
    called_ae: str = col("VARCHAR", "called AE title")
    implementation_class_uid: str = col("VARCHAR", "requestor's implementation class UID")
    implementation_version_name: str = col("VARCHAR", "requestor's implementation version")
    acceptor_implementation_class_uid: str = col("VARCHAR", "acceptor's implementation class UID")
    acceptor_implementation_version_name: str = col("VARCHAR", "acceptor's implementation version")
    result: str = col("VARCHAR", "accepted, rejected, aborted or unknown")
    abstract_syntaxes: list[str] = col("VARCHAR[]", "abstract syntaxes (SOP classes) proposed")
    commands: list[str] = col("VARCHAR[]", "DIMSE commands seen, e.g. C-STORE-RQ")
    ts_end: Any = col("TIMESTAMPTZ", "time of the release, abort or last PDU")
    result_raw: int = col("INTEGER", "A-ASSOCIATE-RJ result, or A-ABORT source, as sent")
    reason: str = col("VARCHAR", "reject source/reason or abort source/reason, named")
    reason_raw: int = col("INTEGER", "the reason code as sent")
    max_pdu_length: int = col("BIGINT", "requestor's maximum PDU length")
    acceptor_max_pdu_length: int = col("BIGINT", "acceptor's maximum PDU length")
    application_context: str = col("VARCHAR", "application context name UID")
    presentation_contexts: str = col(
        "JSON", "[{id, abstract_syntax, transfer_syntaxes, result, transfer_syntax}]"
    )
    role_selection: str = col("JSON", "[{abstract_syntax, scu, scp}] from SCP/SCU role items")
    user_identity_type: str = col("VARCHAR", "user identity type only (never the credentials)")
    command_counts: str = col("JSON", '{"C-STORE-RQ": 3, ...}')
    statuses: str = col("JSON", '{"C-STORE-RSP": {"0x0000": 3}, ...}')
    move_destinations: list[str] = col("VARCHAR[]", "C-MOVE destination AE titles")
    pdus: int = col("BIGINT", "PDUs seen")
    bytes_to_server: int = col("BIGINT", "PDU bytes requestor -> acceptor")
    bytes_to_client: int = col("BIGINT", "PDU bytes acceptor -> requestor")
    tls: bool = col("BOOLEAN", "the association was carried in TLS (only its existence is known)")


@dataclass
class DicomDevice:
    """``dicom_devices``: device attributes read from DICOM datasets (no patient data)."""

    run_id: int = col("BIGINT NOT NULL", "the run")
    flow_uid: str = col("VARCHAR", "the flow it travelled in")
    ts: Any = col("TIMESTAMPTZ", "time of the dataset")
    ip: str = col("VARCHAR", "address of the device that sent the dataset")
    modality: str = col("VARCHAR", "(0008,0060) Modality")
    manufacturer: str = col("VARCHAR", "(0008,0070) Manufacturer")
    model: str = col("VARCHAR", "(0008,1090) Manufacturer's Model Name")
    software_versions: list[str] = col("VARCHAR[]", "(0018,1020) Software Versions, every value")
    station_name: str = col("VARCHAR", "(0008,1010) Station Name")
    device_serial_number: str = col("VARCHAR", "(0018,1000) Device Serial Number")
    institution_name: str = col("VARCHAR", "(0008,0080) Institution Name")
    institutional_department_name: str = col("VARCHAR", "(0008,1040) Institutional Dept. Name")
    sop_class_uid: str = col("VARCHAR", "SOP class of the dataset (affected SOP class UID)")
    transfer_syntax: str = col("VARCHAR", "transfer syntax UID the dataset was read with")


@dataclass
class Hl7Message:
    """``hl7_messages``: one row per HL7 v2 message (MSH/MSA only, no patient data)."""

    run_id: int = col("BIGINT NOT NULL", "the run")
    flow_uid: str = col("VARCHAR", "the flow it travelled in")
    ts: Any = col("TIMESTAMPTZ", "time of the message's last segment")
    client_ip: str = col("VARCHAR", "flow client's address")
    server_ip: str = col("VARCHAR", "flow server's address")
    server_port: int = col("INTEGER", "flow server's port")
    direction: str = col("VARCHAR", "to_server or to_client")
    sending_application: str = col("VARCHAR", "MSH-3")
    sending_facility: str = col("VARCHAR", "MSH-4")
    receiving_application: str = col("VARCHAR", "MSH-5")
    receiving_facility: str = col("VARCHAR", "MSH-6")
    message_type: str = col("VARCHAR", "MSH-9.1")
    trigger_event: str = col("VARCHAR", "MSH-9.2")
    version: str = col("VARCHAR", "MSH-12")
    ack_code: str = col("VARCHAR", "MSA-1 of an acknowledgement")
    client_port: int = col("INTEGER", "flow client's port")
    message_datetime: str = col("VARCHAR", "MSH-7 as sent")
    message_structure: str = col("VARCHAR", "MSH-9.3")
    control_id: str = col("VARCHAR", "MSH-10 message control ID")
    processing_id: str = col("VARCHAR", "MSH-11")
    delimiters: str = col("VARCHAR", "MSH-1 and MSH-2: field separator and encoding characters")
    segments: list[str] = col("VARCHAR[]", "segment names in order (names only, no content)")
    acknowledged_control_id: str = col("VARCHAR", "MSA-2: the control ID acknowledged")
    device_ids: list[str] = col("VARCHAR[]", "PRT-10, PRT-16..22 (UDI) and OBX-18 values")
    framing: str = col("VARCHAR", "mllp, or raw when the message came without MLLP blocks")


@dataclass
class Observation:
    """``observations``: one fact about a host seen on the wire (kind = proto.attribute), once
    per run for each distinct host, kind and value (``docs/observations.md`` lists the kinds)."""

    run_id: int = col("BIGINT NOT NULL", "the run")
    flow_uid: str = col("VARCHAR", "the flow it came from, if any")
    ts: Any = col("TIMESTAMPTZ", "capture time")
    ip: str = col("VARCHAR", "the host's address")
    mac: str = col("VARCHAR", "the host's MAC address, if known")
    kind: str = col("VARCHAR NOT NULL", "dotted kind, e.g. dhcp.hostname, tls.version")
    value: str = col("VARCHAR", "the value as seen")
    last_ts: Any = col("TIMESTAMPTZ", "capture time of the last time it was seen in the run")
    count: int = col("BIGINT", "times it was seen in the run")


@dataclass
class Asset:
    """``assets``: one row per device, kept across runs."""

    ip: str = col("VARCHAR", "current address")
    mac: str = col("VARCHAR", "MAC address")
    vlan: int = col("INTEGER", "VLAN")
    zone: str = col("VARCHAR", "policy zone")
    hostname: str = col("VARCHAR", "host name")
    vendor: str = col("VARCHAR", "vendor")
    model: str = col("VARCHAR", "model")
    device_class: str = col("VARCHAR", "device class from the closed vocabulary")
    os: str = col("VARCHAR", "operating system")
    software_version: str = col("VARCHAR", "software version")
    patchable: bool = col("BOOLEAN", "whether it can be patched (NULL: unknown)")
    patchable_reason: str = col("VARCHAR", "why")
    confidence: float = col("DOUBLE", "0..1")
    evidence: str = col("JSON", "which rule and observation set each field")
    first_seen: Any = col("TIMESTAMPTZ", "first capture time")
    last_seen: Any = col("TIMESTAMPTZ", "last capture time")
    asset_id: str = col("VARCHAR", "stable id: 'mac:MAC' when its own MAC is known, else 'ip:ADDR'")
    os_family: str = col("VARCHAR", "OS family from the closed vocabulary: windows, linux, ...")
    addresses: list[str] = col("VARCHAR[]", "every IP address the device used, oldest first")
    first_run: int = col("BIGINT", "run that first saw it")
    last_run: int = col("BIGINT", "run that last saw it")
    updated_at: Any = col("TIMESTAMPTZ", "wall-clock time its fields were last computed")


@dataclass
class AssetSignal:
    """``asset_signals``: what is known about a device, across runs (the fingerprint engine's
    input): each observation kind and value attributed to it, and the signals derived from the
    DICOM and HL7 records and its MAC."""

    asset_id: str = col("VARCHAR NOT NULL", "the asset")
    kind: str = col("VARCHAR NOT NULL", "signal kind: an observation kind, oui.*, dicom.*, hl7.*")
    value: str = col("VARCHAR NOT NULL", "the value")
    source: str = col("VARCHAR", "where it came from: observations, dicom, hl7, oui")
    first_seen: Any = col("TIMESTAMPTZ", "first capture time")
    last_seen: Any = col("TIMESTAMPTZ", "last capture time")
    count: int = col("BIGINT", "times seen")
    first_run: int = col("BIGINT", "run that first saw it")
    last_run: int = col("BIGINT", "run that last saw it")
    last_run_count: int = col(
        "BIGINT", "how much of count the last run added (a live run updates it at each flush)"
    )


@dataclass
class RiskException:
    """``exceptions``: the risk register, one row per finding (stable id across runs)."""

    exception_id: str = col("VARCHAR NOT NULL PRIMARY KEY", "stable id of the finding")
    kind: str = col("VARCHAR NOT NULL", "dotted kind, e.g. policy.violation, tls.deprecated")
    subject: str = col("VARCHAR NOT NULL", "'CLIENT_IP -> SERVER_IP tcp/PORT', or an asset")
    title: str = col("VARCHAR", "one-line title")
    hipaa_ref: str = col("VARCHAR", "HIPAA Security Rule reference, e.g. 164.312(e)(1)")
    likelihood: int = col("INTEGER", "1..5")
    impact: int = col("INTEGER", "1..5")
    risk: int = col("INTEGER", "likelihood x impact")
    status: str = col("VARCHAR NOT NULL DEFAULT 'open'", "open, accepted, mitigated or closed")
    owner: str = col("VARCHAR", "who owns it")
    compensating_controls: str = col("VARCHAR", "controls in place")
    review_by: Any = col("DATE", "next review date")
    first_seen: Any = col("TIMESTAMPTZ", "first seen")
    last_seen: Any = col("TIMESTAMPTZ", "last seen")
    occurrences: int = col("BIGINT DEFAULT 0", "times seen")
    severity: str = col("VARCHAR", "low, medium, high or critical (the policy's closed table)")
    rule: str = col("VARCHAR", "the policy rule, default or built-in check that found it")
    evidence: str = col("JSON", "what shows it: zones, service, version, community named...")
    first_run: int = col("BIGINT", "run that first showed it")
    last_run: int = col("BIGINT", "run that last showed it")
    last_run_count: int = col("BIGINT", "occurrences the last run added")
    risk_level: str = col("VARCHAR", "the risk's level by the risk method: low ... critical")
    risk_factors: str = col(
        "JSON", "what the score came from: the factors, each term's points, the method file"
    )
    status_changed_at: Any = col("TIMESTAMPTZ", "wall-clock time the status last changed")
    created_at: Any = col("TIMESTAMPTZ", "wall-clock time medmon first recorded it")


@dataclass
class ExceptionHistory:
    """``exception_history``: append-only log of every change to an exception."""

    exception_id: str = col("VARCHAR NOT NULL", "the exception")
    at: Any = col("TIMESTAMPTZ NOT NULL", "when")
    actor: str = col("VARCHAR", "who (OS user or --actor)")
    field: str = col("VARCHAR", "which field changed")
    old: str = col("VARCHAR", "old value")
    new: str = col("VARCHAR", "new value")
    comment: str = col("VARCHAR", "why")
    seq: int = col("BIGINT", "1, 2, ... in the order the entries were written (all exceptions)")
    run_id: int = col("BIGINT", "the run that made the change (NULL: a person's verb)")
    prev_hash: str = col("VARCHAR", "hash of the entry before (seq - 1): the chain")
    hash: str = col("VARCHAR", "SHA-256 of this entry and prev_hash (medmon register verify)")


#: Register tables in creation order: (table name, record type).
TABLES: tuple[tuple[str, type], ...] = (
    ("runs", Run),
    ("captures", Capture),
    ("flows", Flow),
    ("anomalies", AnomalyCount),
    ("dicom_associations", DicomAssociation),
    ("dicom_devices", DicomDevice),
    ("hl7_messages", Hl7Message),
    ("observations", Observation),
    ("assets", Asset),
    ("asset_signals", AssetSignal),
    ("exceptions", RiskException),
    ("exception_history", ExceptionHistory),
)


def columns(record: type) -> list[tuple[str, str, str]]:
    """``(name, sql type, description)`` for each column of a record type, in order."""
    return [(f.name, f.metadata["sql"], f.metadata["doc"]) for f in fields(record)]
