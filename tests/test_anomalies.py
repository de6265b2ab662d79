"""Every anomaly in the catalogue has a test that makes it fire [against Suricata's dead
``malformed_options``]. Decoder anomalies are fired here with hand-built frames, each named for
its defect; stream anomalies in tests/test_streams.py; others where their stage is tested."""

from __future__ import annotations

import struct

import pytest

from monitor.anomalies import CATALOGUE, describe
from monitor.decode import Packet, decode
from monitor.flows import FlowTable

from conftest import ROOT

ETH = bytes.fromhex("020000000002020000000001")
IPV4_UDP = bytes.fromhex("4500001c00010000401100000a0000010a000002")
UDP = struct.pack("!HHHH", 5353, 53, 8, 0)
IPV6_HDR = bytes.fromhex("6000000000081140") + bytes(15) + b"\x01" + bytes(15) + b"\x02"

CASES = [
    ("mpls_label_stack_cut", 1, ETH + b"\x88\x47" + b"\x00\x01\x00", "mpls.truncated"),
    ("mpls_bottom_without_payload", 1, ETH + b"\x88\x47" + b"\x00\x01\x01\x40", "mpls.truncated"),
    ("sll_header_cut", 113, b"\x00" * 10, "sll.truncated"),
    ("sll2_header_cut", 276, b"\x00" * 12, "sll.truncated"),
    ("null_family_appletalk", 0, struct.pack("<I", 16) + IPV4_UDP + UDP, "null.unknown_family"),
    ("nflog_tlv_runs_past_frame", 239, b"\x02\x00\x00\x00" + struct.pack("<HH", 200, 9), "nflog.bad_tlv"),
    ("nflog_without_payload_tlv", 239, b"\x02\x00\x00\x00" + struct.pack("<HH", 8, 1) + b"\x00" * 4, "nflog.no_payload"),
    ("pktap_header_longer_than_frame", 258, struct.pack("<II", 500, 1) + b"\x00" * 40, "pktap.bad_header"),
    ("ipv6_header_cut", 101, IPV6_HDR[:30], "ipv6.truncated"),
    ("ipv6_extension_header_cut", 101, IPV6_HDR[:6] + b"\x00" + IPV6_HDR[7:] + b"\x11\x00", "ipv6.truncated"),
    ("udp_header_cut", 101, IPV4_UDP + UDP[:6], "udp.truncated"),
    ("udp_length_below_8", 101, IPV4_UDP + struct.pack("!HHHH", 5353, 53, 4, 0), "udp.bad_length"),
    ("icmp_header_cut", 101, IPV4_UDP[:9] + b"\x01" + IPV4_UDP[10:] + b"\x08\x00", "icmp.truncated"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "linktype", "frame", "anomaly"), CASES, ids=[c[0] for c in CASES])
def test_decoder_anomaly_fires(name: str, linktype: int, frame: bytes, anomaly: str) -> None:
    raw = decode(linktype, frame)
    assert raw is not None
    assert Packet._make(raw).anomaly == anomaly


def _flow_table_anomalies(frames: list[tuple[int, int, bytes, int]]) -> dict[str, int]:
    table = FlowTable(lambda f: None)
    table.process(frames)
    table.flush()
    return dict(table.stats.anomalies)


def test_unsupported_link_type_is_counted() -> None:
    counts = _flow_table_anomalies([(1, 147, b"\x00" * 60, 60), (2, 147, b"\x00" * 60, 60)])
    assert counts == {"frame.linktype_unsupported": 2}


def test_a_later_fragment_without_its_first_is_an_orphan() -> None:
    later = bytes.fromhex("4500001c00070010401100000a0000010a000002") + b"\x00" * 8
    counts = _flow_table_anomalies([(1, 101, later, len(later))])
    assert counts == {"ip.fragment_orphan": 1}


def test_every_anomaly_is_described_and_fired_by_a_test() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for name in CATALOGUE:
        assert describe(name).endswith(".")
        occurrences = sources.count(f'"{name}"')
        assert occurrences >= 1, f"no test makes {name} fire"
