"""Tests for monitor.source: capture files, directories, stdin, gzip, and damage.

Real captures come from ../shared/captures/robustness (read in place, never copied into the
repository; tests copy or patch them in tmp_path). tshark and capinfos are the oracle: frame
counts, captured and original lengths, link types and timestamps (exact, in nanoseconds) must
agree with theirs. Malformed inputs are made by cutting or patching real captures.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import random
import re
import shutil
import struct
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest

from monitor.source import (
    CaptureError,
    CaptureReader,
    FileStats,
    Frame,
    expand_paths,
    file_digest,
    merge_frames,
)

ROBUSTNESS = Path(__file__).resolve().parents[1].parent / "shared" / "captures" / "robustness"
GENERATOR = "pcapng-test-generator"


def _captures() -> list[Path]:
    if not ROBUSTNESS.is_dir():
        return []
    return sorted(
        p for p in ROBUSTNESS.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng")
    )


CAPTURES = _captures()
CAPTURE_IDS = [str(p.relative_to(ROBUSTNESS)) for p in CAPTURES]

# LINKTYPE_* value -> Wireshark's WTAP_ENCAP_* number (what tshark prints as frame.encap_type),
# for the link types found in the robustness captures.
WTAP_ENCAP = {0: 15, 1: 1, 101: 7, 113: 25, 239: 141, 258: 171, 276: 210}


def robustness(name: str) -> Path:
    """A robustness capture by its relative name; skips the test when the folder is absent."""
    if not ROBUSTNESS.is_dir():
        pytest.skip(f"{ROBUSTNESS} is absent (it comes with the shared/ folder)")
    return ROBUSTNESS / name


def need_oracle() -> None:
    for tool in ("tshark", "capinfos"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install tshark); it is the oracle")


class OracleFrame(NamedTuple):
    ts_ns: int | None  # None: the record has no timestamp (a pcapng Simple Packet Block)
    cap_len: int
    length: int
    encap: int


@cache
def tshark_frames(path: str) -> list[OracleFrame]:
    """tshark's packets of a capture (non-packet pcapng blocks that it lists are dropped)."""
    out = subprocess.run(
        ["tshark", "-n", "-r", path, "-T", "fields", "-e", "frame.time_epoch"]
        + ["-e", "frame.cap_len", "-e", "frame.len", "-e", "frame.encap_type"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    ).stdout
    frames = []
    for line in out.splitlines():
        epoch, cap_len, length, encap = line.split("\t")
        if not encap:  # a custom or decryption-secrets block shown as a frame
            continue
        ts = int(Decimal(epoch) * 1_000_000_000) if epoch else None
        frames.append(OracleFrame(ts, int(cap_len), int(length), int(encap)))
    return frames


@cache
def capinfos_count(path: str) -> int:
    out = subprocess.run(
        ["capinfos", "-c", "-M", path], capture_output=True, text=True, check=False, timeout=120
    ).stdout
    match = re.search(r"Number of packets:\s+(\d+)", out)
    assert match, out
    return int(match.group(1))


@pytest.fixture(scope="module")
def oracle() -> None:
    """Run the oracle on every robustness capture at once (in threads: tshark starts slowly)."""
    need_oracle()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda p: tshark_frames(str(p)), CAPTURES))
        list(pool.map(lambda p: capinfos_count(str(p)), CAPTURES))


def read_all(path: str | Path, **kw: object) -> tuple[list[Frame], FileStats]:
    reader = CaptureReader(str(path), **kw)  # type: ignore[arg-type]
    frames = list(reader)
    return frames, reader.stats


def pcap_records(data: bytes) -> list[tuple[int, int]]:
    """(offset, caplen) of each complete record of a little-endian pcap, walked independently."""
    out = []
    off = 24
    while off + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, off + 8)[0]
        if off + 16 + caplen > len(data):
            break
        out.append((off, caplen))
        off += 16 + caplen
    return out


def pcapng_blocks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, total length) of each block of a little-endian pcapng."""
    out = []
    off = 0
    while off + 8 <= len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        out.append((off, btype, blen))
        if blen < 12:
            break
        off += blen
    return out


# --- every robustness capture against the oracle ----------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES, ids=CAPTURE_IDS)
def test_capture_matches_tshark(capture: Path, oracle: None) -> None:
    frames, stats = read_all(capture)
    expected = tshark_frames(str(capture))

    assert len(frames) == capinfos_count(str(capture)) == len(expected)
    assert [(len(d), w) for _ts, _lt, d, w in frames] == [(e.cap_len, e.length) for e in expected]
    assert [WTAP_ENCAP[lt] for _ts, lt, _d, _w in frames] == [e.encap for e in expected]
    for i, ((ts, *_), exp) in enumerate(zip(frames, expected, strict=True)):
        if exp.ts_ns is not None:
            assert ts == exp.ts_ns, f"frame {i + 1}"
        else:  # Simple Packet Block: the previous packet's time in its section, or 0
            assert ts in (0, frames[i - 1][0] if i else 0), f"frame {i + 1}"

    data = capture.read_bytes()
    assert stats.path == str(capture)
    assert stats.sha256 == hashlib.sha256(data).hexdigest()
    assert stats.size == len(data)
    assert stats.packets == len(frames)
    assert stats.bytes == sum(len(d) for _ts, _lt, d, _w in frames)
    assert stats.first_ts_ns == (frames[0][0] if frames else None)
    assert stats.last_ts_ns == (frames[-1][0] if frames else None)
    assert stats.linktypes == {lt for _ts, lt, _d, _w in frames}
    assert stats.warnings == []
    assert stats.error is None


def test_formats_are_named() -> None:
    assert read_all(robustness("zeek/tcp_fin_retransmission.pcap"))[1].format == "pcap"
    assert read_all(robustness("tcpdump/tcp-handshake-nano.pcap"))[1].format == "pcap-ns"
    assert read_all(robustness("zeek/pcapng-multi-interface.pcapng"))[1].format == "pcapng"


def test_empty_pcapng_reads_zero_frames() -> None:
    frames, stats = read_all(robustness("tcpdump/empty.pcapng"))
    assert frames == []
    assert (stats.packets, stats.bytes, stats.first_ts_ns, stats.last_ts_ns) == (0, 0, None, None)
    assert stats.linktypes == set()
    assert stats.warnings == []


def test_nanosecond_pcap_timestamps_exact() -> None:
    frames, _ = read_all(robustness("tcpdump/tcp-handshake-nano.pcap"))
    assert [ts for ts, *_ in frames] == [
        1418145369_924505488,
        1418145370_052027262,
        1418145370_052115157,
    ]
    assert {lt for _ts, lt, _d, _w in frames} == {113}  # LINKTYPE_LINUX_SLL


def test_pcap_linktype_ignores_fcs_bits() -> None:
    # The link type field of this file is 0x30000001: FCS length bits set, Ethernet.
    path = robustness("tcpdump/heapoverflow-tcp_print.pcap")
    assert struct.unpack_from("<I", path.read_bytes(), 20)[0] == 0x30000001
    frames, stats = read_all(path)
    assert [lt for _ts, lt, _d, _w in frames] == [1]
    assert stats.linktypes == {1}


def test_pcapng_two_linktypes_per_interface() -> None:
    frames, stats = read_all(robustness(f"{GENERATOR}/le_basic_test006.pcapng"))
    assert [lt for _ts, lt, _d, _w in frames] == [1, 0, 1, 1, 1]
    assert stats.linktypes == {0, 1}


def test_pcapng_big_endian_section_equals_little_endian() -> None:
    le = read_all(robustness(f"{GENERATOR}/le_basic_test006.pcapng"))[0]
    be = read_all(robustness(f"{GENERATOR}/be_basic_test006.pcapng"))[0]
    assert be == le
    assert len(be) == 5


def test_pcapng_sections_of_different_byte_order() -> None:
    # SHB(LE) ... SHB(BE) IDB SPB EPB ... SPB EPB, SHB(LE) ...: interface ids restart per
    # section, and a Simple Packet Block takes the previous packet's time in its section.
    frames, stats = read_all(robustness(f"{GENERATOR}/le_difficult_test202.pcapng"))
    t0 = 1340954905_298858000
    t3 = 1340954905_301858000
    assert [(ts, lt, len(d), w) for ts, lt, d, w in frames] == [
        (t0, 1, 96, 314),
        (t0, 1, 96, 342),
        (t3, 0, 168, 168),
        (0, 1, 128, 314),  # SPB, first packet of the big-endian section: no time known
        (t0, 1, 128, 342),
        (t0, 1, 128, 314),  # SPB after an EPB of its section: that EPB's time
        (t0, 1, 128, 342),
        (t3, 0, 168, 168),
    ]
    assert stats.first_ts_ns == t0
    assert stats.last_ts_ns == t3


def test_pcapng_simple_packet_block_captured_length_from_snaplen() -> None:
    # test201: section 2's interface 0 has SnapLen 128; its SPB says original length 314.
    frames, _ = read_all(robustness(f"{GENERATOR}/le_difficult_test201.pcapng"))
    ts, lt, data, wirelen = frames[2]
    assert (ts, lt, len(data), wirelen) == (1340954905_298858000, 1, 128, 314)


def test_pcapng_interfaces_with_their_own_resolution() -> None:
    # eth0 has if_tsresol 10^-9, the Windows interface 10^-6.
    frames, _ = read_all(robustness("zeek/pcapng-multi-interface.pcapng"))
    assert frames[0][0] == 1767663089_500330493
    assert frames[2][0] == 1767663437_111897000


def _with_idb_options(data: bytes, options: list[tuple[int, bytes]]) -> bytes:
    """A little-endian pcapng with its first IDB's options replaced."""
    out = b""
    first = True
    for off, btype, blen in pcapng_blocks(data):
        block = data[off : off + blen]
        if btype == 1 and first:
            first = False
            linktype, _reserved, snaplen = struct.unpack_from("<HHI", block, 8)
            body = struct.pack("<HHI", linktype, 0, snaplen)
            for code, value in options:
                body += struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)
            body += struct.pack("<HH", 0, 0)
            block = struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
        out += block
    return out


@pytest.mark.parametrize("tsresol", [3, 9, 12, 0x80 | 10, 0x80 | 20], ids=hex)
def test_pcapng_if_tsresol_and_if_tsoffset(tsresol: int, tmp_path: Path) -> None:
    need_oracle()
    src = robustness(f"{GENERATOR}/le_basic_test006.pcapng").read_bytes()
    patched = tmp_path / "tsresol.pcapng"
    patched.write_bytes(
        _with_idb_options(src, [(9, bytes([tsresol])), (14, struct.pack("<q", 3600))])
    )
    frames, _ = read_all(patched)
    units_per_second = 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10**tsresol
    if units_per_second <= 10**9:
        # (finer than 1 ns, tshark 4.0 overflows 64 bits: (ts % units) * 10^9 / units)
        assert [ts for ts, *_ in frames] == [e.ts_ns for e in tshark_frames(str(patched))]
    # interface 0 changed, interface 1 (frame 2) kept the default 10^-6 and no offset
    assert frames[1][0] == 1340954905_299858000
    units = 1340954905_298858  # frame 1's raw timestamp
    if tsresol & 0x80:
        assert frames[0][0] == units * 10**9 // 2 ** (tsresol & 0x7F) + 3600 * 10**9
    else:
        assert frames[0][0] == units * 10**9 // 10**tsresol + 3600 * 10**9


# --- byte order, gzip, stdin ------------------------------------------------------------------


def _byte_swapped_pcap(data: bytes) -> bytes:
    """The same capture written big-endian: file header and record headers swapped."""
    out = bytearray(struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data, 0)))
    for off, caplen in pcap_records(data):
        out += struct.pack(">IIII", *struct.unpack_from("<IIII", data, off))
        out += data[off + 16 : off + 16 + caplen]
    return bytes(out)


@pytest.mark.parametrize(
    "name", ["zeek/tcp_ssh-dups.pcap", "tcpdump/tcp-handshake-nano.pcap", "zeek/nflog-http.pcap"]
)
def test_big_endian_pcap_equals_little_endian(name: str, tmp_path: Path) -> None:
    src = robustness(name)
    swapped = tmp_path / "swapped.pcap"
    swapped.write_bytes(_byte_swapped_pcap(src.read_bytes()))
    assert swapped.read_bytes()[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
    frames, stats = read_all(swapped)
    original, ostats = read_all(src)
    assert frames == original
    assert stats.format == ostats.format
    if shutil.which("tshark"):
        assert [ts for ts, *_ in frames] == [e.ts_ns for e in tshark_frames(str(swapped))]


@pytest.mark.parametrize(
    "name", ["zeek/tcp_ssh-dups.pcap", f"{GENERATOR}/le_difficult_test202.pcapng"]
)
def test_gzip_detected_by_magic_not_name(name: str, tmp_path: Path) -> None:
    src = robustness(name)
    packed = tmp_path / "capture.bin"  # no .gz in the name
    packed.write_bytes(gzip.compress(src.read_bytes()))
    frames, stats = read_all(packed)
    assert frames == read_all(src)[0]
    assert stats.format == ("pcap.gz" if name.endswith(".pcap") else "pcapng.gz")
    assert stats.sha256 == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert stats.size == packed.stat().st_size
    assert stats.warnings == []


def test_truncated_gzip_is_a_warning(tmp_path: Path) -> None:
    src = robustness("zeek/tcp_ssh-dups.pcap")
    original = read_all(src)[0]
    packed = gzip.compress(src.read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(packed[: len(packed) * 2 // 3])
    frames, stats = read_all(cut)
    assert 0 < len(frames) < len(original)
    assert frames == original[: len(frames)]
    assert stats.warnings == [
        f"{cut}: gzip stream is truncated (compressed data ends early); kept {len(frames)} packets"
    ]


def test_corrupt_gzip_header_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b\x07\x00" + bytes(20))  # compression method 7: unknown
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(bad))
    assert str(info.value).startswith(f"{bad}: gzip stream is corrupt (")


def test_gzip_members_concatenated_and_zero_padded(tmp_path: Path) -> None:
    src = robustness("zeek/tcp_reassembly.pcap")
    data = src.read_bytes()
    packed = tmp_path / "members.pcap.gz"
    packed.write_bytes(gzip.compress(data[:5000]) + gzip.compress(data[5000:]) + bytes(512))
    frames, stats = read_all(packed)
    assert frames == read_all(src)[0]
    assert stats.warnings == []


def test_gzip_trailing_garbage_is_a_warning(tmp_path: Path) -> None:
    src = robustness("zeek/tcp_fin_retransmission.pcap")
    packed = tmp_path / "garbage.pcap.gz"
    packed.write_bytes(gzip.compress(src.read_bytes()) + b"GARBAGE")
    frames, stats = read_all(packed)
    assert frames == read_all(src)[0]
    assert stats.warnings == [
        f"{packed}: gzip stream is corrupt (trailing garbage after the compressed data); "
        "kept 5 packets"
    ]


def test_gzip_of_something_else(tmp_path: Path) -> None:
    packed = tmp_path / "notes.gz"
    packed.write_bytes(gzip.compress(b"<?xml version='1.0'?>"))
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(packed))
    assert str(info.value) == (
        f"{packed}: not a pcap or pcapng file inside the gzip stream (starts with 0x3c3f786d)"
    )


def test_fifo_is_read_as_a_stream(tmp_path: Path) -> None:
    src = robustness(f"{GENERATOR}/le_advanced_test102.pcapng")
    data = src.read_bytes()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as w:
            w.write(data)

    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(feed)
        frames, stats = read_all(fifo)
        done.result(timeout=10)
    assert frames == read_all(src)[0]
    assert stats.sha256 == hashlib.sha256(data).hexdigest()
    assert stats.size == len(data)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_stdin(compress: bool) -> None:
    src = robustness(f"{GENERATOR}/le_difficult_test202.pcapng")
    data = src.read_bytes()
    if compress:
        data = gzip.compress(data)
    frames, stats = read_all("-", stdin=io.BytesIO(data))
    assert frames == read_all(src)[0]
    assert stats.path == "-"
    assert stats.sha256 == hashlib.sha256(data).hexdigest()
    assert stats.size == len(data)
    assert stats.format == ("pcapng.gz" if compress else "pcapng")


def test_a_stream_read_without_digest_is_read_alike_but_not_hashed() -> None:
    """digest=False (a live capture's pipe): the same frames and counts, no SHA-256."""
    src = robustness("zeek/tcp_reassembly.pcap")
    data = src.read_bytes()
    with CaptureReader("-", stdin=io.BytesIO(data), digest=False) as r:
        frames = list(r)
        assert r._stream is not None and r._stream.hasher is None
    assert frames == read_all(src)[0]
    assert r.stats.sha256 == "" and r.stats.size == len(data)
    assert r.stats.packets == len(frames)


def test_stdin_trickling_in_small_reads() -> None:
    """A pipe hands out few bytes at a time: records straddle every read."""

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            chunk = self._data.read(min(len(b), 7))
            b[: len(chunk)] = chunk
            return len(chunk)

    src = robustness("zeek/tcp_reassembly.pcap")
    frames, stats = read_all("-", stdin=Trickle(src.read_bytes()))
    assert frames == read_all(src)[0]
    assert stats.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


def test_stdin_empty_is_an_error() -> None:
    with pytest.raises(CaptureError) as info:
        CaptureReader("-", stdin=io.BytesIO(b""))
    assert str(info.value) == "-: empty file"


# --- directories and merging ------------------------------------------------------------------


def test_directory_expansion_and_time_ordered_merge(tmp_path: Path) -> None:
    a = robustness("zeek/http-vlan-0.pcap")
    b = robustness("zeek/http-qinq-0.pcap")  # the same packets and times, Q-in-Q tagged
    shutil.copy(a, tmp_path / "a.pcap")
    (tmp_path / "sub").mkdir()
    shutil.copy(b, tmp_path / "sub" / "b.cap")
    (tmp_path / "README.txt").write_text("two captures of the same HTTP exchange\n")

    paths, errors = expand_paths([str(tmp_path)])
    assert paths == [str(tmp_path / "a.pcap"), str(tmp_path / "sub" / "b.cap")]
    assert errors == []

    fa, fb = read_all(paths[0])[0], read_all(paths[1])[0]
    merged = list(merge_frames([CaptureReader(p) for p in paths]))
    times = [ts for ts, *_ in merged]
    assert times == sorted(times)
    assert Counter(merged) == Counter(fa + fb)
    # equal timestamps keep the readers' order: a's frame first, then b's
    assert [ts for ts, *_ in fa] == [ts for ts, *_ in fb]
    assert merged[0::2] == fa
    assert merged[1::2] == fb


def test_merge_of_one_reader_is_its_own_iterator() -> None:
    reader = CaptureReader(str(robustness("zeek/tcp_fin_retransmission.pcap")))
    merged = merge_frames([reader])
    assert not isinstance(merged, type(iter([])))
    assert len(list(merged)) == 5
    assert list(merge_frames([])) == []


def test_merge_interleaves_files_of_different_times(tmp_path: Path) -> None:
    a = read_all(robustness("zeek/tcp_ssh-dups.pcap"))[0]
    b = read_all(robustness("zeek/tcp_missing-syn.pcap"))[0]
    readers = [
        CaptureReader(str(robustness("zeek/tcp_ssh-dups.pcap"))),
        CaptureReader(str(robustness("zeek/tcp_missing-syn.pcap"))),
    ]
    merged = list(merge_frames(readers))
    assert merged == sorted(a + b, key=lambda f: f[0])  # sorted() is stable, as is the merge
    assert [r.stats.packets for r in readers] == [len(a), len(b)]


def test_expand_paths_keeps_files_and_stdin_and_reports_errors(tmp_path: Path) -> None:
    cap = robustness("zeek/tcp_fin_retransmission.pcap")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    missing = tmp_path / "missing.pcap"
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    (empty_dir / "README.txt").write_text("no captures here\n")
    paths, errors = expand_paths(["-", str(cap), str(text), str(missing), str(empty_dir), "-"])
    assert paths == ["-", str(cap), str(text)]  # files stay: the reader judges them
    assert errors == [
        f"{missing}: no such file or directory",
        f"{empty_dir}: directory holds no capture files",
    ]


def test_expand_paths_finds_gzip_and_both_byte_orders_and_skips_loops(tmp_path: Path) -> None:
    src = robustness("zeek/tcp_fin_retransmission.pcap").read_bytes()
    (tmp_path / "le.dump").write_bytes(src)
    (tmp_path / "be.dump").write_bytes(_byte_swapped_pcap(src))
    (tmp_path / "z.bin").write_bytes(gzip.compress(src))
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"<?xml version='1.0'?>"))
    (tmp_path / "junk.gz").write_bytes(b"\x1f\x8b not really gzip")
    (tmp_path / "short").write_bytes(b"\xd4")
    (tmp_path / "ng.x").write_bytes(robustness("tcpdump/empty.pcapng").read_bytes())
    (tmp_path / "loop").symlink_to(tmp_path)  # a directory loop
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "alias.pcap").symlink_to(tmp_path / "le.dump")  # the same file again
    paths, errors = expand_paths([str(tmp_path)])
    assert [Path(p).name for p in paths] == ["alias.pcap", "be.dump", "ng.x", "z.bin"]
    assert errors == []


def test_expand_paths_dedupes_a_file_named_twice() -> None:
    cap = str(robustness("zeek/tcp_fin_retransmission.pcap"))
    assert expand_paths([cap, cap, str(Path(cap).parent)])[0].count(cap) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses permission checks")
def test_unreadable_paths(tmp_path: Path) -> None:
    locked = tmp_path / "locked.pcap"
    shutil.copy(robustness("zeek/tcp_fin_retransmission.pcap"), locked)
    locked.chmod(0)
    locked_dir = tmp_path / "locked_dir"
    locked_dir.mkdir()
    locked_dir.chmod(0)
    try:
        with pytest.raises(CaptureError) as info:
            CaptureReader(str(locked))
        assert str(info.value) == f"{locked}: permission denied"
        paths, errors = expand_paths([str(locked), str(locked_dir)])
        assert paths == []
        assert errors == [f"{locked}: permission denied", f"{locked_dir}: permission denied"]
    finally:
        locked.chmod(0o644)
        locked_dir.chmod(0o755)


# --- bad inputs: one line each, naming the path and the problem ---------------------------------


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(empty))
    assert str(info.value) == f"{empty}: empty file"
    assert (info.value.path, info.value.reason) == (str(empty), "empty file")


def test_text_file(tmp_path: Path) -> None:
    text = tmp_path / "capture.pcap"
    text.write_text("<?xml version='1.0'?>\n<capture/>\n")
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(text))
    assert str(info.value) == f"{text}: not a pcap or pcapng file (starts with 0x3c3f786d)"


def test_nonexistent_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pcap"
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(missing))
    assert str(info.value) == f"{missing}: no such file or directory"
    with pytest.raises(FileNotFoundError):
        file_digest(missing)


def test_directory_given_to_the_reader(tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: is a directory"


def test_pcap_with_only_a_file_header(tmp_path: Path) -> None:
    head = tmp_path / "head.pcap"
    head.write_bytes(robustness("zeek/tcp_fin_retransmission.pcap").read_bytes()[:24])
    frames, stats = read_all(head)
    assert frames == []
    assert (stats.packets, stats.warnings, stats.error, stats.format) == (0, [], None, "pcap")


def test_pcap_cut_inside_its_file_header(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(robustness("zeek/tcp_fin_retransmission.pcap").read_bytes()[:10])
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(cut))
    assert str(info.value) == f"{cut}: file ends inside the pcap file header (10 of 24 bytes)"


def test_truncated_last_record(tmp_path: Path) -> None:
    src = robustness("zeek/tcp_fin_retransmission.pcap")
    data = src.read_bytes()
    records = pcap_records(data)
    assert len(records) == 5
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-10])
    frames, stats = read_all(cut)
    assert frames == read_all(src)[0][:4]
    last_offset = records[4][0]
    assert stats.warnings == [
        f"{cut}: truncated record at offset {last_offset} (file ends inside it); kept 4 packets"
    ]
    assert stats.packets == 4
    if shutil.which("capinfos"):
        assert capinfos_count(str(cut)) == 4


def test_truncated_record_header(tmp_path: Path) -> None:
    data = robustness("zeek/tcp_fin_retransmission.pcap").read_bytes()
    records = pcap_records(data)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: records[2][0] + 5])  # 5 bytes into record 3's header
    frames, stats = read_all(cut)
    assert len(frames) == 2
    assert stats.warnings == [
        f"{cut}: truncated record at offset {records[2][0]} (file ends inside it); kept 2 packets"
    ]


def test_absurd_record_length(tmp_path: Path) -> None:
    src = robustness("zeek/tcp_fin_retransmission.pcap")
    data = bytearray(src.read_bytes())
    off = pcap_records(bytes(data))[2][0]
    struct.pack_into("<I", data, off + 8, 0x7FFFFFFF)
    bad = tmp_path / "absurd.pcap"
    bad.write_bytes(bytes(data))
    frames, stats = read_all(bad)
    assert frames == read_all(src)[0][:2]
    assert stats.warnings == [
        f"{bad}: record 3 at offset {off}: captured length 2147483647 is absurd; stopped reading"
    ]
    assert (stats.packets, stats.last_ts_ns) == (2, frames[1][0])


def test_tso_super_frame_is_not_absurd(tmp_path: Path) -> None:
    # A 64 KiB TSO/GRO super-frame is real traffic: stretch a record to 65,535 bytes.
    data = robustness("zeek/tcp_fin_retransmission.pcap").read_bytes()
    off, caplen = pcap_records(data)[0]
    big = bytearray(data[:24])
    big += struct.pack("<IIII", *struct.unpack_from("<II", data, off), 65535, 65535)
    big += data[off + 16 : off + 16 + caplen] + bytes(65535 - caplen)
    path = tmp_path / "tso.pcap"
    path.write_bytes(bytes(big))
    frames, stats = read_all(path)
    assert [(len(d), w) for _ts, _lt, d, w in frames] == [(65535, 65535)]
    assert stats.warnings == []


def _patched_pcapng(tmp_path: Path, block_index: int, field_offset: int, value: int) -> Path:
    data = bytearray(robustness(f"{GENERATOR}/le_basic_test006.pcapng").read_bytes())
    off = pcapng_blocks(bytes(data))[block_index][0]
    struct.pack_into("<I", data, off + field_offset, value)
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(data))
    return path


# le_basic_test006: block 1 SHB, 2-3 IDB, 4-8 EPB; block 6 (index 5) holds the third packet.
@pytest.mark.parametrize(
    ("field_offset", "value", "problem"),
    [
        (4, 127, "total length 127 is not a multiple of 4"),
        (4, 8, "total length 8 is too small"),
        (4, 0x7FFFFFFC, "total length 2147483644 is absurd"),
        (124, 132, "trailing length 132 does not match total length 128"),
        (20, 97, "enhanced packet data (97 bytes) overruns the block (128 bytes)"),
        (8, 2, "interface 2 is not described in this section"),
    ],
    ids=["not-multiple-of-4", "too-small", "absurd", "trailer", "overrun", "no-interface"],
)
def test_pcapng_bad_block(field_offset: int, value: int, problem: str, tmp_path: Path) -> None:
    path = _patched_pcapng(tmp_path, 5, field_offset, value)
    offset = pcapng_blocks(robustness(f"{GENERATOR}/le_basic_test006.pcapng").read_bytes())[5][0]
    frames, stats = read_all(path)
    original = read_all(robustness(f"{GENERATOR}/le_basic_test006.pcapng"))[0]
    assert frames == original[:2]
    assert stats.warnings == [f"{path}: block at offset {offset}: {problem}; stopped reading"]
    assert stats.packets == 2


def test_pcapng_truncated_last_block(tmp_path: Path) -> None:
    data = robustness(f"{GENERATOR}/le_basic_test006.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:-7])
    frames, stats = read_all(cut)
    assert len(frames) == 4
    last = pcapng_blocks(data)[-1][0]
    assert stats.warnings == [
        f"{cut}: truncated block at offset {last} (file ends inside it); kept 4 packets"
    ]


def test_pcapng_bad_first_section_header_length(tmp_path: Path) -> None:
    path = _patched_pcapng(tmp_path, 0, 4, 97)
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(path))
    assert str(info.value) == f"{path}: pcapng section header has a bad total length 97"


def test_pcapng_bad_byte_order_magic(tmp_path: Path) -> None:
    path = _patched_pcapng(tmp_path, 0, 8, 0xDEADBEEF)
    with pytest.raises(CaptureError) as info:
        CaptureReader(str(path))
    assert str(info.value) == f"{path}: pcapng section header has a bad byte-order magic 0xefbeadde"


# --- stats, digests, and the reader's life cycle ----------------------------------------------


def test_stats_count_only_frames_yielded_when_the_consumer_stops() -> None:
    reader = CaptureReader(str(robustness("zeek/tcp_ssh-dups.pcap")))
    taken = []
    for frame in reader:
        taken.append(frame)
        if len(taken) == 3:
            break
    assert reader.stats.packets == 3
    assert reader.stats.bytes == sum(len(d) for _ts, _lt, d, _w in taken)
    assert reader.stats.last_ts_ns == taken[-1][0]
    assert list(reader) == []  # one pass only


def test_file_digest_and_lazy_stats_digest(tmp_path: Path) -> None:
    cap = robustness("zeek/tcp_reassembly.pcap")
    expected = hashlib.sha256(cap.read_bytes()).hexdigest()
    assert file_digest(cap) == expected
    reader = CaptureReader(str(cap))
    assert reader.stats.sha256 == expected
    assert isinstance(reader.stats, FileStats)
    copy = tmp_path / "copy.pcap"
    copy.write_bytes(cap.read_bytes() + b"x")  # a different file: a different digest
    assert file_digest(copy) == hashlib.sha256(copy.read_bytes()).hexdigest()
    with pytest.raises(IsADirectoryError):
        file_digest(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):  # hashing would consume it
        file_digest(tmp_path / "pipe")


def test_capture_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(CaptureError("a.pcap", "empty file")))
    assert (str(err), err.path, err.reason) == ("a.pcap: empty file", "a.pcap", "empty file")


def test_file_stats_for_a_file_that_could_not_be_read() -> None:
    stats = FileStats(path="x.pcap", error="x.pcap: empty file")
    assert (stats.packets, stats.sha256, stats.linktypes, stats.warnings) == (0, "", set(), [])


# --- robustness: mangled captures never raise anything but CaptureError -------------------------


@pytest.mark.parametrize("capture", CAPTURES, ids=CAPTURE_IDS)
def test_mangled_captures_never_raise(capture: Path, tmp_path: Path) -> None:
    data = capture.read_bytes()
    rng = random.Random(capture.name)
    variants = [data[:cut] for cut in sorted({rng.randrange(len(data)) for _ in range(8)})]
    for _ in range(24):
        mangled = bytearray(data)
        for _ in range(rng.choice((1, 2, 4))):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        variants.append(bytes(mangled))
    variants.append(gzip.compress(data)[: len(data) // 2])
    path = tmp_path / "mangled"
    for variant in variants:
        path.write_bytes(variant)
        try:
            reader = CaptureReader(str(path))
        except CaptureError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
            continue
        frames = list(reader)
        stats = reader.stats
        assert stats.packets == len(frames)
        assert stats.bytes == sum(len(d) for _ts, _lt, d, _w in frames)
        assert all(w.startswith(f"{path}: ") and "\n" not in w for w in stats.warnings)
        assert all(isinstance(d, bytes) for _ts, _lt, d, _w in frames)


# --- LazyMerge: many captures, few open files -------------------------------------------------


def _shifted_copy(src: Path, dst: Path, shift_s: int) -> None:
    """A copy of a µs pcap with every timestamp moved by ``shift_s`` seconds."""
    data = bytearray(src.read_bytes())
    off = 24
    while off + 16 <= len(data):
        sec, _usec, caplen, _wl = struct.unpack_from("<IIII", data, off)
        struct.pack_into("<I", data, off, sec + shift_s)
        off += 16 + caplen
    dst.write_bytes(bytes(data))


def test_lazy_merge_of_many_files_stays_under_the_open_file_limit(tmp_path: Path) -> None:
    """2,000 rotated captures (a tcpdump -G directory) merge in time order with a soft limit
    of 64 open files, which opening them all at once would exceed."""
    import resource
    import sys

    sample = Path(__file__).resolve().parents[1] / "pcaps" / "generic" / "dns.pcap"
    for i in range(2000):
        # Written out of order on purpose: the merge must sort them by time.
        _shifted_copy(sample, tmp_path / f"rot-{(i * 7919) % 2000:05d}.pcap", 60 * i)
    script = (
        "import resource, sys\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "from monitor.source import LazyMerge, expand_paths\n"
        "files, errors = expand_paths([sys.argv[1]])\n"
        "m = LazyMerge(files)\n"
        "ts = [f[0] for f in m]\n"
        "assert ts == sorted(ts), 'not in time order'\n"
        "print(len(ts), len(m.readers), len(m.errors))\n"
    )
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[1] >= 64
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(26 * 2000), "2000", "0"]
