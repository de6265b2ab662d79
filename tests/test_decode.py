"""decode.py against tshark, frame by frame, on the robustness captures; edge cases by hand."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from monitor.decode import FRAG_FIRST, FRAG_LATER, Packet, decode
from monitor.source import CaptureReader

from conftest import ROBUSTNESS, robustness_files, robustness_ids, tshark

FIELDS = (
    "frame.number",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "vlan.id",
    "tcp.flags",
    "tcp.seq_raw",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.fragment.offset",
    "ipv6.fragment.more",
    "icmp.type",
)


def _oracle(path: Path) -> list[dict[str, str]]:
    args = [
        "-r",
        str(path),
        "-T",
        "fields",
        "-E",
        "occurrence=f",
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
    ]
    for f in FIELDS:
        args += ["-e", f]
    rows = []
    for line in tshark(*args).splitlines():
        values = line.split("\t")
        rows.append(dict(zip(FIELDS, values, strict=False)))
    return rows


@pytest.mark.parametrize("path", robustness_files(), ids=robustness_ids())
def test_decode_agrees_with_tshark(path: Path) -> None:
    """Addresses, ports, VLAN, TCP flags and sequence numbers equal tshark's, frame by frame."""
    expected = _oracle(path)
    reader = CaptureReader(str(path))
    compared = 0
    for frame_no, (_ts, linktype, data, _wirelen) in enumerate(reader, start=1):
        raw = decode(linktype, data)
        row = expected[frame_no - 1] if frame_no - 1 < len(expected) else {}
        if raw is None:
            continue  # unsupported link type: counted and skipped by the flow table
        p = Packet._make(raw)
        ip4 = row.get("ip.src", "")
        ip6 = row.get("ipv6.src", "")
        if ip4 and p.ip_version == 4:
            assert str(ipaddress.ip_address(p.src)) == ip4, f"frame {frame_no}"
            assert str(ipaddress.ip_address(p.dst)) == row["ip.dst"], f"frame {frame_no}"
        elif ip6 and p.ip_version == 6 and not ip4:
            assert str(ipaddress.ip_address(p.src)) == ip6, f"frame {frame_no}"
            assert str(ipaddress.ip_address(p.dst)) == row["ipv6.dst"], f"frame {frame_no}"
        if row.get("vlan.id"):
            assert p.vlan == int(row["vlan.id"]), f"frame {frame_no}"
        fragmented = (
            row.get("ip.flags.mf") == "True"
            or row.get("ip.frag_offset", "0")
            not in (
                "",
                "0",
            )
            or row.get("ipv6.fragment.more") == "True"
            or row.get("ipv6.fragment.offset", "") not in ("", "0")
        )
        if fragmented:
            assert p.frag in (FRAG_FIRST, FRAG_LATER), f"frame {frame_no}"
            continue
        if row.get("tcp.srcport") and p.proto == 6 and p.sport >= 0:
            assert (p.sport, p.dport) == (int(row["tcp.srcport"]), int(row["tcp.dstport"])), (
                f"frame {frame_no}"
            )
            if row.get("tcp.flags"):
                assert p.tcp_flags == int(row["tcp.flags"], 16) & 0xFF, f"frame {frame_no}"
            if row.get("tcp.seq_raw"):
                assert p.seq == int(row["tcp.seq_raw"]), f"frame {frame_no}"
            compared += 1
        elif row.get("udp.srcport") and p.proto == 17 and p.sport >= 0:
            assert (p.sport, p.dport) == (int(row["udp.srcport"]), int(row["udp.dstport"])), (
                f"frame {frame_no}"
            )
            compared += 1
    reader.close()
    assert compared >= 0


def test_decode_covers_the_link_types() -> None:
    """Each supported link type in the robustness set yields IP packets."""
    if not ROBUSTNESS.is_dir():
        pytest.skip("robustness captures absent")
    seen: dict[int, int] = {}
    for path in robustness_files():
        try:
            reader = CaptureReader(str(path))
        except Exception:
            continue
        for _ts, linktype, data, _wl in reader:
            raw = decode(linktype, data)
            if raw is not None and raw[4]:
                seen[linktype] = seen.get(linktype, 0) + 1
        reader.close()
    # Ethernet, raw IP, Linux SLL and SLL2, NFLOG, PKTAP
    for linktype in (1, 101, 113, 276, 239, 258):
        assert seen.get(linktype, 0) > 0, f"no IP packet decoded for link type {linktype}"


@pytest.mark.parametrize(
    "capture", ["tcpdump/LINKTYPE_PKTAP.pcap", "tcpdump/nflog.pcap", "zeek/nflog-http.pcap"]
)
def test_payload_offsets_index_the_whole_frame(capture: str) -> None:
    """``data[poff:poff + plen]`` is the L4 payload tshark shows, whatever wraps the frame
    (a PKTAP header, NFLOG TLVs)."""
    path = ROBUSTNESS / capture
    if not path.is_file():
        pytest.skip("robustness captures absent")
    want = [
        bytes.fromhex(h.replace(":", ""))
        for h in tshark("-r", str(path), "-T", "fields", "-e", "udp.payload", "-e", "tcp.payload")
        .replace("\t", " ")
        .split()
    ]
    got = []
    with CaptureReader(str(path)) as reader:
        for _ts, linktype, data, _wl in reader:
            p = Packet._make(decode(linktype, data))
            if p.ip_version and p.payload_len > 0 and p.proto in (6, 17):
                got.append(data[p.payload_offset : p.payload_offset + p.payload_len])
    assert want and got == want


# ------------------------------------------------------------------ hand-built edge cases
# Hand-built bytes only for malformed or rare cases, each named for its defect.

ETH_IPV4 = bytes.fromhex("0200000000020200000000010800")
IPV4_TCP_HDR = bytes.fromhex("4500002800010000400600000a0000010a000002")
TCP_SYN = struct.pack("!HHIIBBHHH", 40000, 104, 1000, 0, 0x50, 0x02, 65535, 0xBEEF, 0)


def test_fast_and_slow_paths_agree_on_plain_tcp() -> None:
    frame = ETH_IPV4 + IPV4_TCP_HDR + TCP_SYN
    p = Packet._make(decode(1, frame))
    assert (p.sport, p.dport, p.tcp_flags, p.seq, p.l4_checksum) == (40000, 104, 2, 1000, 0xBEEF)
    tagged = ETH_IPV4[:12] + b"\x81\x00\x00\x14" + b"\x08\x00" + IPV4_TCP_HDR + TCP_SYN
    q = Packet._make(decode(1, tagged))
    assert q.vlan == 20
    assert q[3:17] == p[3:17]


def test_qinq_keeps_outer_vlan() -> None:
    frame = ETH_IPV4[:12] + b"\x88\xa8\x00\x64" + b"\x81\x00\x00\x14" + b"\x08\x00"
    frame += IPV4_TCP_HDR + TCP_SYN
    p = Packet._make(decode(1, frame))
    assert (p.vlan, p.sport, p.dport) == (100, 40000, 104)


def test_mpls_stack_is_popped() -> None:
    labels = struct.pack("!I", (16 << 12) | 0x40) + struct.pack("!I", (17 << 12) | 0x140)
    frame = ETH_IPV4[:12] + b"\x88\x47" + labels + IPV4_TCP_HDR + TCP_SYN
    p = Packet._make(decode(1, frame))
    assert (p.ip_version, p.sport, p.dport) == (4, 40000, 104)


@pytest.mark.parametrize(
    ("name", "frame", "anomaly"),
    [
        ("eth_truncated", ETH_IPV4[:10], "eth.truncated"),
        ("vlan_truncated", ETH_IPV4[:12] + b"\x81\x00\x00", "vlan.truncated"),
        ("ipv4_truncated", ETH_IPV4 + IPV4_TCP_HDR[:12], "ipv4.truncated"),
        (
            "ipv4_ihl_below_5",
            ETH_IPV4 + b"\x44" + IPV4_TCP_HDR[1:] + TCP_SYN,
            "ipv4.bad_header_length",
        ),
        (
            "ipv4_total_length_below_header",
            ETH_IPV4 + IPV4_TCP_HDR[:2] + b"\x00\x10" + IPV4_TCP_HDR[4:] + TCP_SYN,
            "ipv4.bad_total_length",
        ),
        ("tcp_header_cut_by_snaplen", ETH_IPV4 + IPV4_TCP_HDR + TCP_SYN[:10], "tcp.truncated"),
        (
            "tcp_data_offset_below_5",
            ETH_IPV4 + IPV4_TCP_HDR + TCP_SYN[:12] + b"\x30" + TCP_SYN[13:],
            "tcp.bad_header_length",
        ),
        ("ip_version_7", bytes.fromhex("7500"), "ip.bad_version"),
    ],
)
def test_malformed_frames_become_anomalies(name: str, frame: bytes, anomaly: str) -> None:
    linktype = 101 if name == "ip_version_7" else 1
    p = Packet._make(decode(linktype, frame))
    assert p.anomaly == anomaly


def test_truncated_tcp_keeps_the_ports() -> None:
    p = Packet._make(decode(1, ETH_IPV4 + IPV4_TCP_HDR + TCP_SYN[:6]))
    assert (p.sport, p.dport, p.anomaly) == (40000, 104, "tcp.truncated")


def test_unknown_linktype_is_none() -> None:
    assert decode(147, b"\x00" * 40) is None


def test_every_prefix_of_a_frame_decodes_without_raising() -> None:
    frame = (
        ETH_IPV4[:12]
        + b"\x81\x00\x00\x14\x86\xdd"
        + bytes.fromhex(
            "6000000000142c40"
            + "20010db8000000000000000000000001"
            + "20010db8000000000000000000000002"
        )
        + bytes.fromhex("0600000100000001")
        + TCP_SYN
    )
    for n in range(len(frame) + 1):
        for linktype in (1, 113, 276, 101, 0, 108, 239, 258):
            decode(linktype, frame[:n])
