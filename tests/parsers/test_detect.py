"""The detection-only probes (monitor.parsers.detect) and the REGISTRY that lists them.

Real first bytes come from captures through our own reassembler (tests/test_streams.py's
stand-in flow table): HTTP and SSH from the robustness captures, TLS from the bundled
pcaps/generic/tls.pcap (curl and OpenSSL in network namespaces; the robustness captures hold no
TLS payload). DICOM PDUs are built with scapy.contrib.dicom, HL7 frames by hand; the near misses
are hand-built and named for their defect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from scapy.contrib.dicom import (
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RQ,
    DICOM,
    DICOMApplicationContext,
    DICOMVariableItem,
    build_presentation_context_rq,
    build_user_information,
)

from monitor.parsers import REGISTRY
from monitor.parsers.detect import (
    probe_dicom,
    probe_hl7,
    probe_http,
    probe_ssh,
    probe_tls,
)
from monitor.streams import StreamManager

from conftest import PCAPS, ROBUSTNESS
from test_streams import Recorder, collect_capture, feed_capture

PROBES: dict[str, Callable[[bytes, bool], bool]] = {
    "dicom": probe_dicom,
    "hl7": probe_hl7,
    "tls": probe_tls,
    "ssh": probe_ssh,
    "http": probe_http,
}

# -- byte fixtures --------------------------------------------------------------------------

#: A-ASSOCIATE-RQ, PS3.8 §9.3.2: 01 00 | length 0x000000da | version 0001 | 0000 | called AE
#: 'PACS' | calling AE 'CT01' | reserved(32) | application context, one presentation context
#: (CT Image Storage, Explicit VR Little Endian), user information (max length 16384,
#: implementation class UID, version name). Built with scapy.contrib.dicom (scapy 2.x).
ASSOCIATE_RQ = bytes(
    DICOM()
    / A_ASSOCIATE_RQ(
        called_ae_title=b"PACS",
        calling_ae_title=b"CT01",
        variable_items=[
            DICOMVariableItem() / DICOMApplicationContext(),
            build_presentation_context_rq(1, "1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"]),
            build_user_information(16384, "2.25.329800735698586629295641978511506172918", "T1"),
        ],
    )
)
#: A-ASSOCIATE-AC, PS3.8 §9.3.3: 02 00 | length | version 0001 | same fixed layout | the
#: application context item. Built with scapy.contrib.dicom.
ASSOCIATE_AC = bytes(
    DICOM(pdu_type=0x02)
    / A_ASSOCIATE_AC(
        called_ae_title=b"PACS",
        calling_ae_title=b"CT01",
        variable_items=[DICOMVariableItem() / DICOMApplicationContext()],
    )
)
#: An HL7 v2.5 ADT^A01 in one MLLP block (HL7 Transport Specification: MLLP, release 2):
#: 0x0b, segments ended by CR, 0x1c 0x0d. Hand-built; the PID carries the PHI canaries
#: (STYLE S9), never real identifiers.
HL7_MLLP = (
    b"\x0bMSH|^~\\&|ADT1|HOSP|LAB|HOSP|20240101120000||ADT^A01|MSG00001|P|2.5\r"
    b"EVN|A01|20240101120000\r"
    b"PID|1||PHI-CANARY-0001||CANARY^PHI||19000101|F\r"
    b"\x1c\r"
)
#: The same message without MLLP framing (raw HL7 over TCP, as some interfaces send it).
HL7_RAW = HL7_MLLP[1:-2]


def first_bytes(path: Path) -> dict[bool, bytes]:
    """The first 16 reassembled bytes of each direction of a capture's first TCP flow."""
    flows, rec = collect_capture(path)
    analyzer = rec.analyzers[flows[0].uid]
    return {c: analyzer.stream(c)[:16] for c in (True, False)}


def real_samples() -> list[tuple[str, str, bool, bytes]]:
    """(expected app, origin, from_client, first bytes) from real captures that are present."""
    samples: list[tuple[str, str, bool, bytes]] = []
    sources = [
        ("http", ROBUSTNESS / "zeek/http-vlan-0.pcap"),
        ("http", ROBUSTNESS / "zeek/tcp_missing-syn.pcap"),
        ("http", ROBUSTNESS / "zeek/tcp_reassembly.pcap"),  # WebDAV SEARCH; server sent nothing
        ("ssh", ROBUSTNESS / "zeek/tcp_ssh-dups.pcap"),
        ("tls", PCAPS / "generic/tls.pcap"),
    ]
    for app, path in sources:
        if not path.is_file():
            continue
        for from_client, first in first_bytes(path).items():
            if first:
                samples.append((app, path.name, from_client, first))
    return samples


BUILT_SAMPLES: list[tuple[str, str, bool, bytes]] = [
    ("dicom", "A-ASSOCIATE-RQ", True, ASSOCIATE_RQ),
    ("dicom", "A-ASSOCIATE-AC", False, ASSOCIATE_AC),
    ("dicom", "A-ASSOCIATE-RQ header alone", True, ASSOCIATE_RQ[:6]),
    ("hl7", "MLLP block", True, HL7_MLLP),
    ("hl7", "MLLP ACK from the server", False, b"\x0bMSH|^~\\&|LAB|HOSP|ADT1|HOSP|2024||ACK^A01|"),
    ("hl7", "raw MSH", True, HL7_RAW),
]


# -- every probe against every sample --------------------------------------------------------


def test_real_samples_are_present() -> None:
    if not ROBUSTNESS.is_dir():
        pytest.skip(f"{ROBUSTNESS} is absent")
    apps = {(app, c) for app, _, c, _ in real_samples()}
    assert {("http", True), ("http", False), ("ssh", True), ("ssh", False)} <= apps


ALL_SAMPLES = BUILT_SAMPLES + real_samples()


@pytest.mark.parametrize(
    ("app", "origin", "from_client", "first"),
    ALL_SAMPLES,
    ids=[f"{a}-{o}-{'client' if c else 'server'}" for a, o, c, _ in ALL_SAMPLES],
)
def test_exactly_the_right_probe_matches(
    app: str, origin: str, from_client: bool, first: bytes
) -> None:
    """Each sample's own probe claims it, and no other probe does."""
    matches = {name for name, probe in PROBES.items() if probe(first[:16], from_client)}
    assert matches == {app}, origin


def test_real_first_bytes_are_what_the_probes_expect() -> None:
    """Pin the bytes the parametrized test runs on (assert values, not just a verdict)."""
    if not ROBUSTNESS.is_dir():
        pytest.skip(f"{ROBUSTNESS} is absent")
    assert first_bytes(ROBUSTNESS / "zeek/http-vlan-0.pcap") == {
        True: b"GET /download/CH",
        False: b"HTTP/1.1 200 OK\r",
    }
    assert first_bytes(ROBUSTNESS / "zeek/tcp_reassembly.pcap")[True] == b"SEARCH /AAAAAAAA"
    assert first_bytes(ROBUSTNESS / "zeek/tcp_ssh-dups.pcap") == {
        True: b"SSH-2.0-OpenSSH_",
        False: b"SSH-2.0-OpenSSH_",
    }


def test_tls_client_and_server_hello_records() -> None:
    path = PCAPS / "generic/tls.pcap"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    first = first_bytes(path)
    # 16 03 01 | length | 01 (client_hello); 16 03 03 | length | 02 (server_hello)
    assert first[True][:3] == b"\x16\x03\x01" and first[True][5] == 1
    assert first[False][:3] == b"\x16\x03\x03" and first[False][5] == 2
    assert probe_tls(first[True], True) and probe_tls(first[False], False)


# -- near misses, named for their defect -----------------------------------------------------

NEAR_MISSES: list[tuple[str, Callable[[bytes, bool], bool], bytes, bool]] = [
    ("dicom_rq_from_server", probe_dicom, ASSOCIATE_RQ, False),
    ("dicom_ac_from_client", probe_dicom, ASSOCIATE_AC, True),
    ("dicom_p_data_tf", probe_dicom, b"\x04\x00\x00\x00\x00\x4a\x00\x00\x00\x46\x01\x03", True),
    ("dicom_reserved_byte_set", probe_dicom, b"\x01\x01" + ASSOCIATE_RQ[2:16], True),
    ("dicom_length_below_fixed_part", probe_dicom, b"\x01\x00\x00\x00\x00\x43\x00\x01", True),
    ("dicom_length_absurd", probe_dicom, b"\x01\x00\x7f\xff\xff\xff\x00\x01", True),
    ("dicom_protocol_version_0", probe_dicom, ASSOCIATE_RQ[:6] + b"\x00\x00", True),
    ("dicom_truncated_header", probe_dicom, ASSOCIATE_RQ[:5], True),
    ("hl7_mllp_other_segment_first", probe_hl7, b"\x0bPID|1||PHI-CANARY-0001", True),
    ("hl7_raw_msa", probe_hl7, b"MSA|AA|MSG00001\r", False),
    ("hl7_msh_not_at_start", probe_hl7, b"\r\x0bMSH|^~\\&|", True),
    ("tls_application_data", probe_tls, b"\x17\x03\x03\x00\x20" + b"\x00" * 11, True),
    ("tls_version_beyond_1_3", probe_tls, b"\x16\x03\x05\x00\x30\x01", True),
    ("tls_major_version_2", probe_tls, b"\x16\x02\x00\x00\x30\x01", True),
    ("tls_zero_length", probe_tls, b"\x16\x03\x01\x00\x00\x01", True),
    ("tls_record_too_long", probe_tls, b"\x16\x03\x01\x48\x01\x01", True),
    ("tls_handshake_not_hello", probe_tls, b"\x16\x03\x03\x00\x30\x0b", False),
    ("tls_truncated_header", probe_tls, b"\x16\x03\x01\x00", True),
    ("ssh_lowercase", probe_ssh, b"ssh-2.0-x\r\n", True),
    ("ssh_banner_not_first", probe_ssh, b"Welcome\r\nSSH-2.0-x\r\n", False),
    ("http_lowercase_method", probe_http, b"get / HTTP/1.1\r\n", True),
    ("http_unknown_method", probe_http, b"GETX / HTTP/1.1\r\n", True),
    ("http_method_without_space", probe_http, b"GET/ HTTP/1.1\r\n", True),
    ("http_smtp_command", probe_http, b"EHLO mail.example\r\n", True),
    ("http_status_line_from_client", probe_http, b"HTTP/1.1 200 OK\r\n", True),
    ("http_request_from_server", probe_http, b"GET / HTTP/1.1\r\n", False),
    ("http_version_2_status", probe_http, b"HTTP/2 200\r\n", False),
]


@pytest.mark.parametrize(
    ("probe", "first", "from_client"),
    [m[1:] for m in NEAR_MISSES],
    ids=[m[0] for m in NEAR_MISSES],
)
def test_near_miss_is_not_claimed(
    probe: Callable[[bytes, bool], bool], first: bytes, from_client: bool
) -> None:
    assert probe(first, from_client) is False


def test_probes_decide_on_short_prefixes_without_raising() -> None:
    """A first segment may be tiny; every prefix of every sample gets a bool, never an error."""
    samples = [s[3] for s in ALL_SAMPLES]
    for probe in PROBES.values():
        for sample in samples:
            for n in range(17):
                for from_client in (True, False):
                    assert probe(sample[:n], from_client) in (True, False)
    for probe in PROBES.values():
        assert probe(b"", True) is False


# -- the registry ---------------------------------------------------------------------------


def test_registry_is_explicit_and_ordered() -> None:
    """Every spec has an analyzer; the probes of this module are the ones they use; DICOM and
    HL7 come first (their probes are the most specific), FTP and Telnet go by port only."""
    from monitor.parsers import cleartext, dicom, hl7, http, smb, ssh, tls

    assert [(s.name, s.tcp_ports, s.probe, s.analyzer) for s in REGISTRY] == [
        ("dicom", (104, 11112), probe_dicom, dicom.SPEC.analyzer),
        ("hl7", (2575,), probe_hl7, hl7.SPEC.analyzer),
        ("tls", (443,), probe_tls, tls.SPEC.analyzer),
        ("ssh", (22,), probe_ssh, ssh.SPEC.analyzer),
        ("http", (80, 8080), probe_http, http.SPEC.analyzer),
        ("smb", (445, 139), smb.probe_smb, smb.SPEC.analyzer),
        ("ftp", (21,), None, cleartext.FTP_SPEC.analyzer),
        ("telnet", (23,), None, cleartext.TELNET_SPEC.analyzer),
    ]
    assert all(s.analyzer is not None for s in REGISTRY)
    assert dicom.SPEC.analyzer is not None and hl7.SPEC.analyzer is not None
    assert all(s.description for s in REGISTRY)


CAPTURE_APPS = [
    ("zeek/http-vlan-0.pcap", "http"),
    ("zeek/tcp_missing-syn.pcap", "http"),
    ("zeek/tcp_ssh-dups.pcap", "ssh"),
]


@pytest.mark.parametrize("probes_only", [False, True], ids=["ports", "probes_only"])
@pytest.mark.parametrize(("name", "app"), CAPTURE_APPS)
def test_registry_names_the_application_of_real_flows(
    robustness: Path, name: str, app: str, probes_only: bool
) -> None:
    """Through the StreamManager: by server port, and with the ports taken away, by content."""
    registry = [replace(s, tcp_ports=()) for s in REGISTRY] if probes_only else list(REGISTRY)
    rec = Recorder()
    flows = feed_capture(robustness / name, StreamManager(registry, rec.emit, rec.anomaly))
    assert [(f.app, f.stream) for f in flows] == [(app, False)]
    assert rec.anomalies == []


def test_registry_names_tls_flows_by_content() -> None:
    path = PCAPS / "generic/tls.pcap"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    registry = [replace(s, tcp_ports=()) for s in REGISTRY]
    flows = feed_capture(path, StreamManager(registry, print, print))
    assert flows and {f.app for f in flows} == {"tls"}
