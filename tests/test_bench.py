"""bench.py: the generated mixes checked against tshark, and the report's shape.

Small and fast: a 20,000-packet mix and an 8-image DICOM bulk capture, each generated once. No
test asserts a time or a rate (only that rates are positive): machines differ, and this one is
shared.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from monitor import api, bench
from monitor.bench import (
    BenchError,
    BenchReport,
    Measurement,
    MemoryScaling,
    MixRun,
    MixStats,
    ScalingPoint,
    format_report,
    generate_dicom_bulk,
    generate_mix,
    memory_scaling,
    run_bench,
)
from monitor.cli import cli

from conftest import need_tshark

PACKETS = 20_000


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MixStats]:
    path = tmp_path_factory.mktemp("bench") / "mix.pcap"
    stats = generate_mix(str(path), packets=PACKETS)
    return path, stats


def tshark(*args: str) -> str:
    """tshark's output; unlike conftest's, a failure (a bad filter, an unknown preference)
    fails the test instead of passing it vacuously."""
    out = subprocess.run(
        [need_tshark(), "-n", *args], capture_output=True, text=True, check=False, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def _dicom_args(path: Path) -> list[str]:
    # tshark binds DICOM to 104 only; 11112 is DICOM's other registered port.
    return ["-r", str(path), "-d", "tcp.port==11112,dicom", "-d", "tcp.port==104,dicom"]


# ---------------------------------------------------------------- the capture itself


def test_stats_add_up(mix: tuple[Path, MixStats]) -> None:
    path, stats = mix
    assert stats.packets == PACKETS
    assert stats.file_size == path.stat().st_size
    assert stats.file_size == 24 + 16 * PACKETS + stats.bytes
    assert stats.tcp_flows == stats.flows["tcp"] + stats.flows["dicom"] + stats.flows["hl7"]
    assert stats.total_flows == PACKETS // bench.PACKETS_PER_FLOW
    assert all(stats.flows[k] > 0 for k in ("tcp", "dicom", "hl7", "dns", "syslog", "ntp"))


def test_pcap_layout(mix: tuple[Path, MixStats]) -> None:
    """Classic little-endian µs pcap, Ethernet; time never goes back; IP lengths match."""
    path, _ = mix
    data = path.read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 65535, 1)
    off, last, n = 24, (0, 0), 0
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        frame = data[off + 16 : off + 16 + incl]
        assert incl == orig == len(frame) and usec < 1_000_000
        assert (sec, usec) >= last
        last = (sec, usec)
        l3 = 18 if frame[12:14] == b"\x81\x00" else 14
        ethertype = frame[l3 - 2 : l3]
        if ethertype == b"\x08\x00":
            assert struct.unpack_from(">H", frame, l3 + 2)[0] == len(frame) - l3
        else:
            assert ethertype == b"\x86\xdd"
            assert struct.unpack_from(">H", frame, l3 + 4)[0] == len(frame) - l3 - 40
        assert len(frame) <= 1518  # MTU 1500 plus Ethernet and 802.1Q headers
        off += 16 + incl
        n += 1
    assert n == PACKETS


def test_no_frame_repeats(mix: tuple[Path, MixStats]) -> None:
    """medmon drops repeated frames as SPAN duplicates: the mix must not contain any."""
    path, _ = mix
    data = path.read_bytes()
    off, digests = 24, set()
    while off < len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        digests.add(hashlib.blake2b(data[off + 16 : off + 16 + incl], digest_size=16).digest())
        off += 16 + incl
    assert len(digests) == PACKETS


def test_frame_count_matches_tshark_and_capinfos(mix: tuple[Path, MixStats]) -> None:
    path, _ = mix
    assert len(_lines(tshark("-r", str(path), "-T", "fields", "-e", "frame.number"))) == PACKETS
    capinfos = shutil.which("capinfos")
    if capinfos is None:
        pytest.skip("capinfos is not installed")
    out = subprocess.run(
        [capinfos, "-c", "-M", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1].split()[-1] == str(PACKETS)


def test_ipv6_and_vlan_shares(mix: tuple[Path, MixStats]) -> None:
    path, stats = mix
    ipv6 = len(_lines(tshark("-r", str(path), "-Y", "ipv6")))
    vlan = len(_lines(tshark("-r", str(path), "-Y", "vlan")))
    assert (ipv6, vlan) == (stats.ipv6_packets, stats.vlan_packets)
    assert 0.08 <= ipv6 / PACKETS <= 0.12
    assert 0.04 <= vlan / PACKETS <= 0.06
    vlan_ids = set(_lines(tshark("-r", str(path), "-Y", "vlan", "-T", "fields", "-e", "vlan.id")))
    assert len(vlan_ids) >= 3


def test_tcp_conversations_are_the_generated_flows(mix: tuple[Path, MixStats]) -> None:
    path, stats = mix
    out = tshark("-r", str(path), "-q", "-z", "conv,tcp")
    assert sum("<->" in line for line in out.splitlines()) == stats.tcp_flows
    syns = tshark("-r", str(path), "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0")
    assert len(_lines(syns)) == stats.tcp_flows


def test_tcp_streams_are_consistent(mix: tuple[Path, MixStats]) -> None:
    """Sequence numbers add up: tshark sees no loss, reordering, retransmission or dup ACK."""
    path, _ = mix
    bad = (
        "tcp.analysis.retransmission || tcp.analysis.out_of_order || "
        "tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment || "
        "tcp.analysis.duplicate_ack || tcp.analysis.spurious_retransmission"
    )
    assert _lines(tshark("-r", str(path), "-Y", bad)) == []
    # Handshakes, teardowns and resets are all there.
    for flt in ("tcp.flags.syn==1 && tcp.flags.ack==1", "tcp.flags.fin==1", "tcp.flags.reset==1"):
        assert _lines(tshark("-r", str(path), "-Y", flt))


def test_checksums_are_valid(mix: tuple[Path, MixStats]) -> None:
    path, _ = mix
    # tshark always checks ICMP and ICMPv6; IP, TCP and UDP only when asked.
    checks = [f"{p}.check_checksum:TRUE" for p in ("ip", "tcp", "udp")]
    args = [a for c in checks for a in ("-o", c)]
    bad = " || ".join(f"{p}.checksum.status==0" for p in ("ip", "tcp", "udp", "icmp", "icmpv6"))
    assert _lines(tshark("-r", str(path), *args, "-Y", bad)) == []
    good = tshark("-r", str(path), *args, "-Y", "tcp.checksum.status==1")
    assert len(_lines(good)) > PACKETS // 2


def test_dicom_associate_rq_decoded_by_tshark(mix: tuple[Path, MixStats]) -> None:
    path, stats = mix
    out = tshark(
        *_dicom_args(path),
        "-Y",
        "dicom.pdu.type == 1",
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-e",
        "tcp.dstport",
        "-e",
        "dicom.assoc.version",
        "-e",
        "dicom.assoc.ae.called",
        "-e",
        "dicom.assoc.ae.calling",
        "-e",
        "dicom.assoc.item.type",
    )
    rows = [line.split("\t") for line in _lines(out)]
    assert len(rows) == stats.flows["dicom"]
    assert {r[0] for r in rows} <= {"104", "11112"}
    for _, version, called, calling, items in rows:
        assert version == "1"
        assert called.strip().startswith("BENCH_PACS")
        assert calling.strip().startswith("BENCH_")
        item_types = set(items.split(","))
        assert {"0x10", "0x20", "0x30", "0x40", "0x50", "0x51", "0x52", "0x55"} <= item_types
    # Every association is accepted, and the bulk data travels in P-DATA-TF PDUs.
    pdu_lines = _lines(
        tshark(*_dicom_args(path), "-Y", "dicom", "-T", "fields", "-e", "dicom.pdu.type")
    )
    pdus = {t for line in pdu_lines for t in line.split(",")}
    assert {"0x01", "0x02", "0x04", "0x05", "0x06"} <= pdus
    malformed = tshark(*_dicom_args(path), "-Y", "_ws.malformed || dicom.pdu_length.invalid")
    assert _lines(malformed) == []


def test_dicom_associate_rq_parses_with_scapy(mix: tuple[Path, MixStats]) -> None:
    dicom = pytest.importorskip("scapy.contrib.dicom")
    path, _ = mix
    out = tshark(
        *_dicom_args(path), "-Y", "dicom.pdu.type == 1", "-T", "fields", "-e", "tcp.payload"
    )
    payload = bytes.fromhex(_lines(out)[0].replace(":", ""))
    pdu = dicom.DICOM(payload)
    rq = pdu[dicom.A_ASSOCIATE_RQ]
    assert pdu.pdu_type == 0x01 and pdu.length == len(payload) - 6
    assert rq.protocol_version == 1
    assert rq.called_ae_title.strip().startswith(b"BENCH_PACS")
    items = {item.item_type: item for item in rq.variable_items}
    assert items[0x10][dicom.DICOMApplicationContext].uid == b"1.2.840.10008.3.1.1.1"
    sub = {s.item_type for s in items[0x50][dicom.DICOMUserInformation].sub_items}
    assert {0x51, 0x52, 0x55} <= sub


def test_hl7_over_mllp(mix: tuple[Path, MixStats]) -> None:
    path, stats = mix
    out = tshark(
        "-r", str(path), "-Y", "tcp.port==2575 && tcp.len>0", "-T", "fields", "-e", "tcp.payload"
    )
    payloads = [bytes.fromhex(line.replace(":", "")) for line in _lines(out)]
    assert payloads
    assert all(p.startswith(b"\x0bMSH|^~\\&|") and p.endswith(b"\x1c\r") for p in payloads)
    types = _lines(tshark("-r", str(path), "-Y", "hl7", "-T", "fields", "-e", "hl7.message.type"))
    assert "ACK" in types and {"ADT", "ORM", "ORU"} & set(types)
    conv = tshark("-r", str(path), "-q", "-z", "conv,tcp")
    assert sum(":2575 " in line for line in conv.splitlines()) == stats.flows["hl7"]


def test_other_applications_look_right(mix: tuple[Path, MixStats]) -> None:
    path, _ = mix
    assert _lines(tshark("-r", str(path), "-Y", "tls.handshake.extensions_server_name"))
    assert _lines(tshark("-r", str(path), "-Y", "http.response.code == 200"))
    assert _lines(tshark("-r", str(path), "-Y", "dns.flags.response == 1 && dns.a"))
    assert _lines(tshark("-r", str(path), "-Y", "ntp"))
    assert _lines(tshark("-r", str(path), "-Y", "syslog"))
    assert _lines(tshark("-r", str(path), "-Y", "icmp.type == 0 || icmpv6.type == 129"))


def test_no_patient_like_data(mix: tuple[Path, MixStats]) -> None:
    data = mix[0].read_bytes()
    for marker in (b"\rPID|", b"\rNK1|", b"\rOBX|", b"\x0bPID|"):
        assert marker not in data
    assert b"synthetic medmon benchmark message" in data


# ---------------------------------------------------------------- determinism, sizes


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.pcap", "b.pcap", "c.pcap"))
    generate_mix(str(a), packets=5000, seed=7)
    generate_mix(str(b), packets=5000, seed=7)
    generate_mix(str(c), packets=5000, seed=8)
    assert _sha256(a) == _sha256(b)
    assert _sha256(a) != _sha256(c)


def test_same_flows_at_four_times_the_packets(tmp_path: Path) -> None:
    """What memory_scaling relies on: more packets, the same conversations."""
    need_tshark()
    small, big = tmp_path / "small.pcap", tmp_path / "big.pcap"
    s = generate_mix(str(small), packets=5000, flows=250)
    b = generate_mix(str(big), packets=20_000, flows=250)
    assert (s.flows, s.hosts, s.tcp_flows) == (b.flows, b.hosts, b.tcp_flows)
    assert b.bytes > 3 * s.bytes

    def conversations(path: Path) -> set[str]:
        out = tshark("-r", str(path), "-q", "-z", "conv,tcp")
        return {" ".join(line.split()[:3]) for line in out.splitlines() if "<->" in line}

    assert conversations(small) == conversations(big)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_mix(str(tmp_path / "x.pcap"), packets=10)
    with pytest.raises(ValueError):
        generate_mix(str(tmp_path / "x.pcap"), packets=1000, hosts=3)
    assert not list(tmp_path.iterdir())


def test_captures_are_cached_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path, _, origin = bench._obtain_capture(2000, 1, 100, None)
    assert origin == "generated"
    assert Path(path) == bench.cache_path(2000, 1, 100)
    assert Path(path) == tmp_path / "cache/medmon/bench-generic-2000-1.pcap"
    again, stats, origin = bench._obtain_capture(2000, 1, 100, None)
    assert (again, origin, stats.packets) == (path, "cache", 2000)
    # A kept capture with the right packet count is used as it is, even without stats.
    kept = tmp_path / "kept.pcap"
    shutil.copy(path, kept)
    _, stats, origin = bench._obtain_capture(2000, 1, 100, str(kept))
    assert (origin, stats.packets, stats.bytes) == ("kept", 2000, stats.file_size - 24 - 16 * 2000)
    # ...with the wrong count it is regenerated; something else is never overwritten.
    _, stats, origin = bench._obtain_capture(3000, 1, 150, str(kept))
    assert (origin, stats.packets) == ("generated", 3000)
    other = tmp_path / "notes.txt"
    other.write_text("not a capture")
    with pytest.raises(BenchError):
        bench._obtain_capture(2000, 1, 100, str(other))
    assert other.read_text() == "not a capture"


# ---------------------------------------------------------------- the measurement


def _replay_available() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "replay", "--help"], capture_output=True, check=False
    )
    return out.returncode == 0


def test_run_bench_measures_the_replay(tmp_path: Path) -> None:
    if not _replay_available():
        pytest.fail("`python -m monitor replay --help` fails: the pipeline is not assembled")
    keep = tmp_path / "bench.pcap"
    report = run_bench(packets=PACKETS, keep=str(keep), tshark=False, workdir=str(tmp_path))
    assert report.capture == str(keep) and report.capture_origin == "generated"
    assert report.mix.packets == report.replay.packets == PACKETS
    assert report.replay.exit_code == 0
    assert report.replay.command[:4] == [sys.executable, "-m", "monitor", "replay"]
    assert report.replay.seconds > 0 and report.replay.packets_per_s > 0
    assert report.replay.mb_per_s > 0 and report.replay.peak_rss_mib > 0
    assert report.tshark is None and report.ratio is None
    assert report.machine.cores >= 1 and report.machine.python == sys.version.split()[0]
    text = format_report(report)
    assert "medmon replay" in text and "packets/s" in text and "20,000 packets" in text
    d = json.loads(json.dumps(report.to_dict()))
    assert d["replay"]["packets"] == PACKETS and d["replay"]["packets_per_s"] > 0
    assert d["mix"]["flows"]["dicom"] > 0 and d["tshark"] is None
    # Only the capture and its stats are left behind; the temporary register is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.pcap", "bench.pcap.json"]
    again = run_bench(packets=PACKETS, keep=str(keep), tshark=False, workdir=str(tmp_path))
    assert again.capture_origin == "kept" and again.mix.flows == report.mix.flows


def test_memory_scaling_keeps_the_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _replay_available():
        pytest.fail("`python -m monitor replay --help` fails: the pipeline is not assembled")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    scaling = memory_scaling(5000, workdir=str(tmp_path))
    small, big = scaling.points
    assert (small.packets, big.packets) == (5000, 20_000)
    assert small.flows == big.flows == 250
    assert scaling.capture_growth > 3
    assert small.peak_rss_mib > 0 and big.peak_rss_mib > 0
    assert [p.name for p in (tmp_path / "cache" / "medmon").iterdir()] != []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # the big one is deleted


def test_report_with_tshark_and_scaling() -> None:
    """The report's shape, on made-up numbers (nothing here is measured)."""
    mix = MixStats(
        path="x.pcap",
        packets=1000,
        bytes=700_000,
        file_size=716_024,
        flows={"tcp": 40, "dns": 10},
        tcp_flows=40,
        hosts=80,
        ipv6_packets=100,
        vlan_packets=50,
        duration_s=0.01,
    )
    replay = Measurement("medmon replay", ["python"], 2.0, 1.9, 100.0, 1000, 700_000)
    ts = Measurement("tshark", ["tshark"], 1.0, 0.9, 50.0, 1000, 700_000)
    scaling = MemoryScaling(
        [
            ScalingPoint(1000, 50, 700_000, 100.0, 2.0, 1.9),
            ScalingPoint(4000, 50, 2_800_000, 110.0, 8.0, 7.9),
        ]
    )
    report = BenchReport(bench.machine_info(), mix, "x.pcap", "cache", replay, ts, scaling)
    assert report.ratio == pytest.approx(0.5)
    assert replay.packets_per_s == 500 and replay.mb_per_s == pytest.approx(0.35)
    text = format_report(report)
    assert "replay/tshark speed: 0.50x" in text
    assert "tshark" in text and "memory scaling" in text and "1.10x" in text
    d = json.loads(json.dumps(report.to_dict()))
    assert d["replay_tshark_ratio"] == 0.5 and d["scaling"]["rss_growth"] == 1.1
    assert d["tshark"]["packets_per_s"] == 1000


def test_run_bench_with_scaling_reuses_its_replay(tmp_path: Path) -> None:
    if not _replay_available():
        pytest.fail("`python -m monitor replay --help` fails: the pipeline is not assembled")
    keep = tmp_path / "small.pcap"
    report = run_bench(
        packets=5000, keep=str(keep), tshark=False, workdir=str(tmp_path), scaling=True
    )
    assert report.scaling is not None
    small, big = report.scaling.points
    assert small.peak_rss_mib == report.replay.peak_rss_mib
    assert (small.packets, big.packets, small.flows, big.flows) == (5000, 20_000, 250, 250)
    assert "memory scaling (generic mix, same 250 flows)" in format_report(report)


# ---------------------------------------------------------------- the DICOM bulk mix

BULK_IMAGES, BULK_ASSOCIATIONS = 8, 5
CANARIES = ("CANARY", "PHI-CANARY-0001", "19000101")


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MixStats]:
    """8 full-size CT images (512 x 512 x 2 bytes) in 5 associations from 4 scanners."""
    path = tmp_path_factory.mktemp("bulk") / "bulk.pcap"
    stats = generate_dicom_bulk(str(path), images=BULK_IMAGES, associations=BULK_ASSOCIATIONS)
    return path, stats


def _frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    off, frames = 24, []
    while off < len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


def test_bulk_stats_and_layout(bulk: tuple[Path, MixStats]) -> None:
    path, stats = bulk
    frames = _frames(path)
    assert stats.mix == "dicom-bulk" and stats.images == BULK_IMAGES
    assert stats.image_bytes == bench.BULK_IMAGE_BYTES == 512 * 512 * 2
    assert stats.packets == len(frames) and stats.bytes == sum(map(len, frames))
    assert stats.file_size == path.stat().st_size == 24 + 16 * stats.packets + stats.bytes
    assert stats.flows == {"dicom": BULK_ASSOCIATIONS} and stats.tcp_flows == BULK_ASSOCIATIONS
    assert stats.hosts == 5  # 4 scanners, 1 PACS
    assert all(len(f) <= 1514 for f in frames)
    full = sum(len(f) == 1514 for f in frames)
    assert full > 0.6 * len(frames)  # bulk: mostly full segments, then the PACS's ACKs
    assert stats.bytes > BULK_IMAGES * bench.BULK_IMAGE_BYTES
    assert len({hashlib.blake2b(f, digest_size=16).digest() for f in frames}) == len(frames)
    data = path.read_bytes()
    assert b"CANARY^PHI" in data and b"PHI-CANARY-0001" in data  # what medmon must not keep


def test_bulk_tcp_is_consistent_and_checksums_valid(bulk: tuple[Path, MixStats]) -> None:
    path, stats = bulk
    out = tshark("-r", str(path), "-q", "-z", "conv,tcp")
    convs = [line for line in out.splitlines() if "<->" in line]
    assert len(convs) == BULK_ASSOCIATIONS
    assert {c.split()[2].rsplit(":", 1)[1] for c in convs} == {"104", "11112"}
    bad = (
        "tcp.analysis.retransmission || tcp.analysis.out_of_order || "
        "tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment || "
        "tcp.analysis.duplicate_ack || tcp.analysis.zero_window"
    )
    assert _lines(tshark("-r", str(path), "-Y", bad)) == []
    args = [a for p in ("ip", "tcp") for a in ("-o", f"{p}.check_checksum:TRUE")]
    flt = "ip.checksum.status==0 || tcp.checksum.status==0"
    assert _lines(tshark("-r", str(path), *args, "-Y", flt)) == []
    fins = _lines(tshark("-r", str(path), "-Y", "tcp.flags.fin==1"))
    assert len(fins) == 2 * BULK_ASSOCIATIONS
    assert stats.duration_s > 0


def test_bulk_decoded_by_tshark_as_dicom(bulk: tuple[Path, MixStats]) -> None:
    path, _ = bulk
    rows = [
        line.split("\t")
        for line in _lines(
            tshark(
                *_dicom_args(path),
                "-Y",
                "dicom.pdu.type == 1 || dicom.pdu.type == 2",
                "-T",
                "fields",
                "-E",
                "separator=/t",
                "-e",
                "dicom.pdu.type",
                "-e",
                "dicom.assoc.ae.calling",
                "-e",
                "dicom.assoc.ae.called",
                "-e",
                "dicom.pctx.abss.syntax",
                "-e",
                "dicom.pctx.xfer.syntax",
            )
        )
    ]
    rq = [r for r in rows if r[0] == "0x01"]
    ac = [r for r in rows if r[0] == "0x02"]
    assert len(rq) == len(ac) == BULK_ASSOCIATIONS
    assert {r[1].strip() for r in rq} == {f"BENCH_CT0{i}" for i in range(1, 5)}
    assert {r[2].strip() for r in rq + ac} == {"BENCH_PACS"}
    assert all("1.2.840.10008.5.1.4.1.1.2" in r[3] for r in rq)  # CT Image Storage proposed
    # Accepted for the storage context (the first): Explicit VR Little Endian.
    assert all(r[4].split(",")[0].endswith("(1.2.840.10008.1.2.1)") for r in ac)
    # Every PDU, counted: associations, a command and a data set per image, releases.
    types = [
        t
        for line in _lines(
            tshark(*_dicom_args(path), "-Y", "dicom", "-T", "fields", "-e", "dicom.pdu.type")
        )
        for t in line.split(",")
    ]
    dataset_pdus = -(-(bench.BULK_IMAGE_BYTES + 400) // bench._MAX_FRAGMENT)  # 33
    assert types.count("0x04") == BULK_IMAGES * (2 + dataset_pdus)
    for t in ("0x01", "0x02", "0x05", "0x06"):
        assert types.count(t) == BULK_ASSOCIATIONS, t
    info = " ".join(
        _lines(tshark(*_dicom_args(path), "-Y", "dicom", "-T", "fields", "-e", "_ws.col.Info"))
    )
    assert info.count("C-STORE-RQ") == BULK_IMAGES
    assert info.count("C-STORE-RSP") == info.count("(Success)") == BULK_IMAGES
    assert "A-RELEASE" in info
    malformed = tshark(*_dicom_args(path), "-Y", "_ws.malformed || dicom.pdu_length.invalid")
    assert _lines(malformed) == []
    # The data sets themselves, read by tshark with the transfer syntax the PACS accepted
    # (explicit VR: the VRs come from the wire).
    out = tshark(
        *_dicom_args(path),
        "-o",
        "dicom.tag_tree:TRUE",
        "-Y",
        'dicom.tag.vr == "OW"',
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-e",
        "dicom.tag.vr",
        "-e",
        "dicom.tag.value.str",
    )
    datasets = [line.split("\t") for line in _lines(out)]
    assert len(datasets) == BULK_IMAGES
    for vrs, values in datasets:
        assert vrs.startswith("CS,UI,UI,DA,CS,LO") and vrs.endswith(",OW")
        assert ",CT," in values and "CANARY^PHI" in values
    assert any("BENCH MEDICAL SYSTEMS" in values for _, values in datasets)


def _register(db: str) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    con = duckdb.connect(db, read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        ]
        out = {}
        for t in tables:
            cur = con.execute(f'SELECT * FROM "{t}"')
            out[t] = ([d[0] for d in cur.description], cur.fetchall())
        return out
    finally:
        con.close()


def test_bulk_replay_records_associations_devices_and_no_phi(
    bulk: tuple[Path, MixStats], db: str
) -> None:
    path, _ = bulk
    api.replay([str(path)], db=db)
    tables = _register(db)
    names, rows = tables["dicom_associations"]
    assoc = [dict(zip(names, r, strict=True)) for r in rows]
    assert len(assoc) == BULK_ASSOCIATIONS
    assert {a["calling_ae"] for a in assoc} == {f"BENCH_CT0{i}" for i in range(1, 5)}
    assert {a["called_ae"] for a in assoc} == {"BENCH_PACS"}
    assert {a["server_ip"] for a in assoc} == {"10.30.0.1"}
    assert {a["server_port"] for a in assoc} == {104, 11112}
    assert {a["result"] for a in assoc} == {"accepted"}
    stored = 0
    for a in assoc:
        assert {"C-STORE-RQ", "C-STORE-RSP"} <= set(a["commands"])
        counts = json.loads(a["command_counts"])
        assert counts["C-STORE-RQ"] == counts["C-STORE-RSP"]
        assert json.loads(a["statuses"])["C-STORE-RSP"] == {"0x0000": counts["C-STORE-RSP"]}
        stored += counts["C-STORE-RQ"]
        ctx = {c["abstract_syntax"]: c for c in json.loads(a["presentation_contexts"])}
        assert ctx["1.2.840.10008.5.1.4.1.1.2"]["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert stored == BULK_IMAGES
    names, rows = tables["dicom_devices"]
    devices = {
        (d["ip"], d["modality"], d["manufacturer"], d["model"], d["station_name"])
        for d in (dict(zip(names, r, strict=True)) for r in rows)
    }
    assert devices == {
        ("10.20.0.1", "CT", "BENCH MEDICAL SYSTEMS", "BENCH CT 64", "BENCH_CT01"),
        ("10.20.0.2", "CT", "SYNTHETIC IMAGING", "SYNTH-CT 128", "BENCH_CT02"),
        ("10.20.0.3", "CT", "EXAMPLE HEALTHCARE", "EXAMPLE CT 256", "BENCH_CT03"),
        ("10.20.0.4", "CT", "MEDMON TEST DEVICES", "TEST CT 16", "BENCH_CT04"),
    }
    first = dict(zip(names, rows[0], strict=True))
    assert first["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert first["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
    # No canary anywhere in the register: not in a column, a list or a JSON document.
    for table, (_, table_rows) in tables.items():
        text = repr(table_rows)
        for canary in CANARIES:
            assert canary not in text, (table, canary)


def test_bulk_images_for_a_packet_count() -> None:
    images = bench.bulk_images_for(300_000)
    plan = bench._bulk_plan(images, bench.BULK_IMAGE_BYTES, None, 4, 1)
    per_image = plan.image_segments() * 3 // 2 + 2
    assert abs(plan.packets() - 300_000) <= per_image
    assert 500 <= images <= 600 and len(plan.associations) == -(-images // 100)
    assert bench.bulk_images_for(1000) == 1


def test_bulk_generation_is_deterministic_and_checked(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.pcap", "b.pcap", "c.pcap"))
    small = 32 * 512 * 2
    sa = generate_dicom_bulk(str(a), images=6, image_bytes=small, seed=7)
    generate_dicom_bulk(str(b), images=6, image_bytes=small, seed=7)
    generate_dicom_bulk(str(c), images=6, image_bytes=small, seed=8)
    assert _sha256(a) == _sha256(b) != _sha256(c)
    assert sa.flows == {"dicom": 4}  # at least one association per scanner
    one = generate_dicom_bulk(str(c), images=3, image_bytes=small, associations=1)
    assert (one.flows, one.hosts) == ({"dicom": 1}, 2)
    for kwargs in ({"images": 0}, {"image_bytes": 1001}, {"associations": 0}, {"modalities": 0}):
        with pytest.raises(ValueError):
            generate_dicom_bulk(str(tmp_path / "x.pcap"), **kwargs)
    assert not (tmp_path / "x.pcap").exists()


def test_bulk_captures_are_cached_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path, stats, origin = bench._obtain_capture(3000, 1, 150, None, "dicom-bulk")
    assert origin == "generated" and stats.mix == "dicom-bulk"
    assert Path(path) == tmp_path / "cache/medmon/bench-dicom-bulk-3000-1.pcap"
    assert Path(path) == bench.cache_path(3000, 1, 150, "dicom-bulk")
    again, stats2, origin = bench._obtain_capture(3000, 1, 150, None, "dicom-bulk")
    assert (again, origin, stats2.packets) == (path, "cache", stats.packets)
    # The generic capture of the same size is another file.
    assert bench.cache_path(3000, 1, 150) != Path(path)
    # A kept copy without its stats is recognised by its frame count.
    kept = tmp_path / "kept.pcap"
    shutil.copy(path, kept)
    _, stats3, origin = bench._obtain_capture(3000, 1, 150, str(kept), "dicom-bulk")
    assert (origin, stats3.packets, stats3.mix) == ("kept", stats.packets, "dicom-bulk")
    with pytest.raises(ValueError):
        bench.cache_path(3000, mix="bulk")


def test_run_bench_both_mixes(tmp_path: Path) -> None:
    if not _replay_available():
        pytest.fail("`python -m monitor replay --help` fails: the pipeline is not assembled")
    keep = tmp_path / "b.pcap"
    report = run_bench(
        packets=5000, keep=str(keep), tshark=False, workdir=str(tmp_path), mix="both"
    )
    assert [r.name for r in report.runs] == ["generic", "dicom-bulk"]
    assert report.mix_name == "generic" and report.mix.packets == 5000
    bulk_run = report.run("dicom-bulk")
    assert bulk_run is not None and bulk_run.capture == str(tmp_path / "b-dicom-bulk.pcap")
    assert bulk_run.mix.mix == "dicom-bulk" and bulk_run.mix.images == bench.bulk_images_for(5000)
    assert bulk_run.replay.exit_code == 0 and bulk_run.replay.mb_per_s > 0
    assert report.bulk_ratio is not None and report.bulk_ratio > 0
    text = format_report(report)
    assert "dicom-bulk/generic replay speed:" in text and "C-STOREs of 524,288-byte" in text
    assert "tshark (generic): not measured" in text
    d = json.loads(json.dumps(report.to_dict()))
    assert [m["name"] for m in d["mixes"]] == ["generic", "dicom-bulk"]
    assert d["dicom_bulk_generic_mb_ratio"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "b-dicom-bulk.pcap",
        "b-dicom-bulk.pcap.json",
        "b.pcap",
        "b.pcap.json",
    ]
    again = run_bench(packets=5000, keep=str(keep), tshark=False, workdir=str(tmp_path), mix="both")
    assert [r.capture_origin for r in again.runs] == ["kept", "kept"]
    # One mix alone: it is the report's first (and only) run.
    only = run_bench(
        packets=5000,
        keep=str(tmp_path / "o.pcap"),
        tshark=False,
        workdir=str(tmp_path),
        mix="dicom-bulk",
    )
    assert only.mix_name == "dicom-bulk" and only.others == [] and only.bulk_ratio is None
    with pytest.raises(ValueError):
        run_bench(packets=5000, mix="bulk")


def test_cli_bench_mix(tmp_path: Path) -> None:
    if not _replay_available():
        pytest.fail("`python -m monitor replay --help` fails: the pipeline is not assembled")
    keep = tmp_path / "c.pcap"
    args = ["bench", "--mix", "dicom-bulk", "--packets", "3000", "--no-tshark"]
    result = CliRunner().invoke(cli, [*args, "--keep", str(keep), "--format", "json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert d["mix_name"] == "dicom-bulk" and d["mix"]["mix"] == "dicom-bulk"
    assert d["replay"]["packets"] == d["mix"]["packets"] > 0
    result = CliRunner().invoke(cli, ["bench", "--mix", "bulk"])
    assert result.exit_code == 2


def test_report_with_two_mixes() -> None:
    """Two mixes' rows and their MB/s ratio, on made-up numbers."""
    generic = MixStats(path="g.pcap", packets=1000, bytes=700_000, file_size=716_024)
    bulk_stats = MixStats(
        path="d.pcap",
        packets=1000,
        bytes=1_000_000,
        file_size=1_016_024,
        flows={"dicom": 2},
        tcp_flows=2,
        hosts=3,
        mix="dicom-bulk",
        images=2,
        image_bytes=524_288,
    )
    replay = Measurement("medmon replay", ["python"], 2.0, 1.9, 100.0, 1000, 700_000)
    bulk_replay = Measurement("medmon replay", ["python"], 1.0, 0.9, 90.0, 1000, 1_000_000)
    ts = Measurement("tshark", ["tshark"], 4.0, 3.9, 50.0, 1000, 1_000_000)
    report = BenchReport(
        bench.machine_info(),
        generic,
        "g.pcap",
        "cache",
        replay,
        None,
        others=[MixRun("dicom-bulk", bulk_stats, "d.pcap", "generated", bulk_replay, ts)],
    )
    assert report.bulk_ratio == pytest.approx(1.0 / 0.35)
    assert report.ratio is None and report.others[0].ratio == pytest.approx(4.0)
    text = format_report(report)
    lines = text.splitlines()
    assert any(line.startswith("generic     medmon replay") for line in lines)
    assert any(line.startswith("dicom-bulk  medmon replay") for line in lines)
    assert any(line.startswith("dicom-bulk  tshark") for line in lines)
    assert "dicom-bulk/generic replay speed: 2.86x" in text
    assert "replay/tshark speed (dicom-bulk): 4.00x" in text
    assert "2 DICOM associations from 2 CT scanners" in text
    d = json.loads(json.dumps(report.to_dict()))
    assert d["dicom_bulk_generic_mb_ratio"] == pytest.approx(2.8571, abs=1e-4)
    assert d["mixes"][1]["replay_tshark_ratio"] == 4.0


# ---------------------------------------------------------------- live capture speed

TCPREPLAY_SUMMARY = """\
Actual: 20000 packets (13376230 bytes) sent in 0.79 seconds
Rated: 16832630.0 Bps, 134.66 Mbps, 25001.00 pps
Statistics for network device: mmb-feed
\tSuccessful packets:        19990
\tFailed packets:            10
\tTruncated packets:         0
\tRetried packets (ENOBUFS): 0
\tRetried packets (EAGAIN):  0
"""


def test_tcpreplay_summary_is_read() -> None:
    assert bench._parse_tcpreplay(TCPREPLAY_SUMMARY) == (25001.0, 19990, 10, 0.79)
    with pytest.raises(BenchError, match="tcpreplay's summary"):
        bench._parse_tcpreplay("tcpreplay: something else\n")


def test_live_bench_needs_root_and_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.os, "geteuid", lambda: 1000)
    with pytest.raises(BenchError, match=r"^medmon bench --live needs root"):
        bench.live_bench(packets=PACKETS)
    monkeypatch.setattr(bench.os, "geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr(
        bench.shutil, "which", lambda name: None if name == "tcpreplay" else real_which(name)
    )
    with pytest.raises(BenchError, match=r"needs tcpreplay \(install tcpreplay\)$"):
        bench.live_bench(packets=PACKETS)
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", "--live", "--packets", "20000"])
    assert result.exit_code == 2
    assert "needs tcpreplay" in result.stderr
    result = runner.invoke(cli, ["bench", "--live", "--scaling"])
    assert result.exit_code == 2 and "--scaling does not go with --live" in result.output


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.mark.netns
def test_live_bench_finds_a_zero_drop_rate(mix: tuple[Path, MixStats]) -> None:
    """The real thing on the 20,000-packet mix with a 25 s budget: medmon sniff in a namespace,
    tcpreplay at 25,000 packets/s and up. Only the counts are checked, never a rate."""
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and packet capture")
    for tool in ("ip", "tcpdump", "tcpreplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    path, stats = mix
    report = bench.live_bench(packets=PACKETS, keep=str(path), budget_s=25)
    assert report.packets == stats.packets == PACKETS
    assert report.capture == str(path) and report.capture_origin == "kept"
    assert 1514 <= report.largest_frame <= report.mtu + 18
    rungs = report.rungs
    assert rungs and rungs[0].rate_asked == bench.LIVE_START_PPS
    # The ladder doubles while nothing is dropped (--topspeed once tcpreplay falls behind).
    for prev, nxt in itertools.pairwise(rungs):
        if not prev.zero_drop or prev.rate_asked is None:
            break
        if prev.rate_achieved >= 0.9 * prev.rate_asked:
            assert nxt.rate_asked == 2 * prev.rate_asked
        else:
            assert nxt.rate_asked is None
    for r in rungs:
        assert r.rate_achieved > 0 and r.seconds > 0 and r.replay_s > 0
        assert r.sent + r.send_failed == PACKETS
        if r.zero_drop:
            assert r.received == r.sent == r.packets == PACKETS
            assert r.dropped == 0
        else:
            assert r.dropped > 0 or r.packets < PACKETS or r.send_failed
        assert r.peak_rss_mib is not None and r.peak_rss_mib > 10
    clean = [r for r in rungs if r.zero_drop]
    assert clean, "no rate without drops, even 25,000 packets/s"
    assert report.best_pps > 0
    assert report.best_pps == max(clean, key=lambda r: r.rate_asked or 1 << 62).rate_achieved
    if report.first_drop_asked is not None and report.best_asked is not None:
        assert report.first_drop_asked > report.best_asked
    assert report.stopped in ("precision", "sender", "budget")
    assert report.seconds < 25 + 20  # one rung at most past the budget's estimate
    assert report.peak_rss_mib == max(r.peak_rss_mib or 0 for r in rungs)
    text = bench.format_live_report(report)
    assert "highest zero-drop rate: " in text and "rate asked" in text
    assert f"{rungs[0].rate_asked:,}" in text
    d = json.loads(json.dumps(report.to_dict()))
    assert d["rungs"][0]["rate_asked"] == bench.LIVE_START_PPS
    # The namespaces are gone.
    ns = _namespaces()
    assert f"mmb{os.getpid()}a" not in ns and f"mmb{os.getpid()}b" not in ns
