"""monitor.live: tcpdump into a pipe on a veth pair in our own network namespaces, and the
rolling evidence files.

The live tests need root, tcpdump, ip (iproute2) and tcpreplay; they skip cleanly without
them. Every packet stays inside the two namespaces created here (``mmt-a<PID>`` and
``mmt-b<PID>``), which the fixture deletes even when a test fails. Only processes started
here are signalled, by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import flows as flows_module
from monitor.live import (
    BLOCK_HANDOVER,
    CaptureStats,
    LiveCapture,
    LiveCaptureError,
    PcapRing,
    check_interface,
)
from monitor.source import PCAP_MAGIC_NS, CaptureReader
from tests.conftest import PCAPS, ROOT, need_tshark

HTTP = PCAPS / "generic" / "http.pcap"
PID = os.getpid()
NS_A = f"mmt-a{PID}"
NS_B = f"mmt-b{PID}"
VETH_A = f"mmt-va{PID}"
VETH_B = f"mmt-vb{PID}"


def _need_live() -> None:
    if os.geteuid() != 0:
        pytest.skip("live capture tests need root (network namespaces, raw sockets)")
    for tool in ("tcpdump", "ip", "tcpreplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def veth() -> Iterator[tuple[str, str]]:
    """Namespaces NS_A and NS_B joined by a veth pair (VETH_A in NS_A, VETH_B in NS_B), both
    up, with IPv6 off (so the kernel sends nothing of its own) and no addresses."""
    _need_live()
    try:
        for ns in (NS_A, NS_B):
            _run("ip", "netns", "add", ns)
            for scope in ("all", "default"):
                _run(
                    "ip", "netns", "exec", ns, "sysctl", "-qw",
                    f"net.ipv6.conf.{scope}.disable_ipv6=1",
                )  # fmt: skip
        _run(
            "ip", "link", "add", VETH_A, "netns", NS_A, "type", "veth",
            "peer", "name", VETH_B, "netns", NS_B,
        )  # fmt: skip
        _run("ip", "-n", NS_A, "link", "set", VETH_A, "up")
        _run("ip", "-n", NS_B, "link", "set", VETH_B, "up")
        yield NS_A, VETH_A
    finally:
        for ns in (NS_A, NS_B):  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _replay(path: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ip", "netns", "exec", NS_B, "tcpreplay", "-q", "-i", VETH_B, *extra, str(path)],
        capture_output=True,
        check=True,
        timeout=120,
    )


class _Collector(threading.Thread):
    """Reads a capture's frames on a thread."""

    def __init__(self, capture: LiveCapture) -> None:
        super().__init__(daemon=True)
        self.frames_iter = capture.frames()
        self.frames: list[tuple[int, int, bytes, int]] = []

    def run(self) -> None:
        for frame in self.frames_iter:
            self.frames.append(frame)

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.frames) < n and time.monotonic() < deadline:
            time.sleep(0.02)


def test_live_capture_reads_every_replayed_frame(veth: tuple[str, str]) -> None:
    ns, iface = veth
    with CaptureReader(str(HTTP)) as r:
        expected = list(r)
    assert len(expected) == 73
    cap = LiveCapture(iface, netns=ns)
    cap.start()
    try:
        comm = Path(f"/proc/{cap.pid}/comm").read_text().strip()
        assert comm == "tcpdump"  # ip netns exec replaced itself: the PID is tcpdump's
        collector = _Collector(cap)
        collector.start()
        _replay(HTTP, "--topspeed")
        collector.wait_for(len(expected))
        mid = cap.request_stats(wait=5)
        assert mid.captured == len(expected)
        final = cap.stop()
        collector.join(10)
        assert not collector.is_alive()  # the pipe reached its end
    finally:
        cap.close()
    got = collector.frames
    assert len(got) == len(expected)
    assert [f[2] for f in got] == [f[2] for f in expected]
    assert [f[3] for f in got] == [f[3] for f in expected]
    assert {f[1] for f in got} == {1}
    assert final == CaptureStats(
        received=len(expected), captured=len(expected), dropped_kernel=0, dropped_interface=0
    )
    assert cap.stats() == final
    assert cap.reader is not None and cap.reader.stats.packets == len(expected)
    assert cap.reader.stats.path == iface
    assert not cap.running


def test_bpf_filter_runs_in_the_kernel(veth: tuple[str, str]) -> None:
    ns, iface = veth
    with CaptureReader(str(HTTP)) as r:
        expected = [f for f in r if f[2][12:14] == b"\x08\x06"]  # ARP only
    assert len(expected) == 2
    with LiveCapture(iface, netns=ns, bpf="arp") as cap:
        collector = _Collector(cap)
        collector.start()
        _replay(HTTP, "--topspeed")
        collector.wait_for(len(expected), timeout=3)
        final = cap.stop()
        collector.join(10)
    assert [f[2] for f in collector.frames] == [f[2] for f in expected]
    assert final.captured == len(expected) and final.received == len(expected)


def test_stop_without_reading_frames(veth: tuple[str, str]) -> None:
    ns, iface = veth
    cap = LiveCapture(iface, netns=ns).start()
    _replay(HTTP, "--topspeed")
    time.sleep(0.3)
    t0 = time.monotonic()
    final = cap.stop(timeout=5)
    assert time.monotonic() - t0 < 3  # SIGTERM worked; no SIGKILL after the timeout
    assert final.captured == 73 and final.dropped_kernel == 0
    cap.close()


def test_no_such_interface(veth: tuple[str, str]) -> None:
    ns, _iface = veth
    t0 = time.monotonic()
    with pytest.raises(LiveCaptureError) as e:
        LiveCapture("mmt-nope0", netns=ns).start()
    assert time.monotonic() - t0 < 3
    assert str(e.value) == "mmt-nope0: no such interface"


def test_bad_bpf_filter(veth: tuple[str, str]) -> None:
    ns, iface = veth
    with pytest.raises(LiveCaptureError) as e:
        LiveCapture(iface, netns=ns, bpf="tcp port").start()
    assert str(e.value) == f"{iface}: bad BPF filter 'tcp port': syntax error"
    assert "\n" not in str(e.value)


def test_no_permission(veth: tuple[str, str], tmp_path: Path) -> None:
    ns, iface = veth
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    # A wrapper that drops to nobody with no capabilities, then runs tcpdump.
    wrapper = tmp_path / "tcpdump-as-nobody"
    wrapper.write_text(
        f"#!/bin/sh\nexec {setpriv} --reuid=65534 --regid=65534 --clear-groups "
        f'--inh-caps=-all --bounding-set=-all {shutil.which("tcpdump")} "$@"\n'
    )
    wrapper.chmod(0o755)
    with pytest.raises(LiveCaptureError) as e:
        LiveCapture(iface, netns=ns, tcpdump=str(wrapper)).start()
    assert str(e.value) == (
        f"{iface}: permission denied (run as root or give CAP_NET_RAW and CAP_NET_ADMIN)"
    )


def test_ambient_capabilities_are_enough(veth: tuple[str, str], tmp_path: Path) -> None:
    """What the systemd unit does: an unprivileged user with CAP_NET_RAW + CAP_NET_ADMIN as
    ambient capabilities captures, and tcpdump needs no -Z."""
    ns, iface = veth
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    wrapper = tmp_path / "tcpdump-with-caps"
    wrapper.write_text(
        f"#!/bin/sh\nexec {setpriv} --reuid=65534 --regid=65534 --clear-groups "
        "--inh-caps=-all,+net_raw,+net_admin --ambient-caps=+net_raw,+net_admin "
        f'{shutil.which("tcpdump")} "$@"\n'
    )
    wrapper.chmod(0o755)
    with LiveCapture(iface, netns=ns, tcpdump=str(wrapper)) as cap:
        collector = _Collector(cap)
        collector.start()
        _replay(HTTP, "--topspeed")
        collector.wait_for(73)
        status = Path(f"/proc/{cap.pid}/status").read_text()
        final = cap.stop()
        collector.join(10)
    assert "Uid:\t65534\t65534\t65534\t65534" in status
    assert len(collector.frames) == 73 and final.captured == 73


def test_tcpdump_missing() -> None:
    with pytest.raises(LiveCaptureError) as e:
        LiveCapture("eth0", tcpdump="/nonexistent/tcpdump").start()
    assert str(e.value) == "eth0: /nonexistent/tcpdump not found (install tcpdump)"


def test_check_interface_on_the_veth(veth: tuple[str, str]) -> None:
    ns, iface = veth
    replayer = threading.Thread(target=_replay, args=(HTTP, "--pps=50", "--loop=2"))
    replayer.start()
    try:
        results = check_interface(iface, netns=ns, wait=1.0)
    finally:
        replayer.join()
    lines = [line for _ok, line in results]
    assert all(ok for ok, _line in results), lines
    assert lines[0] == f"ok: {iface} exists"
    assert lines[1] == f"ok: {iface} is up"
    assert lines[2].startswith(f"ok: {iface} is receiving (")
    assert lines[3] == f"ok: this process may capture on {iface} (root)"


def test_check_interface_quiet_down_and_missing(veth: tuple[str, str]) -> None:
    ns, iface = veth
    quiet = check_interface(iface, netns=ns, wait=0.5)
    assert quiet[2][0] is True and quiet[2][1].startswith(f"warn: {iface} received no packets")
    assert check_interface("mmt-nope0", netns=ns) == [(False, "FAIL: mmt-nope0 does not exist")]
    _run("ip", "-n", ns, "link", "set", "lo", "down")
    down = check_interface("lo", netns=ns, wait=0.2)
    assert down[1] == (False, "FAIL: lo is down (ip link set lo up)")
    assert down[3] == (False, "FAIL: lo: interface is down")


def test_check_interface_reads_sysfs(veth: tuple[str, str]) -> None:
    """Without netns, check_interface reads /sys/class/net: run it inside the namespace."""
    ns, iface = veth
    code = (
        "from monitor.live import check_interface; "
        f"print('\\n'.join(line for _ok, line in check_interface({iface!r}, wait=0.2)))"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=30,
    )
    lines = out.stdout.splitlines()
    assert lines[:2] == [f"ok: {iface} exists", f"ok: {iface} is up"]
    assert lines[3] == f"ok: this process may capture on {iface} (root)"


# --- PcapRing ---------------------------------------------------------------------------------

T0 = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z
MIN = 60 * 1_000_000_000


def _frames_over(minutes: int, per_minute: int = 3) -> list[tuple[int, bytes, int]]:
    """Frames spread over ``minutes`` capture-time minutes, with distinct bytes."""
    with CaptureReader(str(HTTP)) as r:
        datas = [f[2] for f in r]
    start = (T0 // MIN + 1) * MIN  # the start of a minute
    out = []
    for m in range(minutes):
        for i in range(per_minute):
            ts = start + m * MIN + i * 7_000_000_123
            data = datas[(m * per_minute + i) % len(datas)]
            out.append((ts, data, len(data) + 4))
    return out


def test_pcap_ring_rotates_and_deletes(tmp_path: Path) -> None:
    ring_dir = tmp_path / "ring"
    frames = _frames_over(6)
    ring = PcapRing(ring_dir, minutes=2)
    (ring_dir / "notes.txt").write_text("not ours")
    for ts, data, wirelen in frames:
        ring.write(ts, data, wirelen)
    ring.close()
    names = [p.name for p in ring.files()]
    # minutes 3, 4 and 5 remain: the current one and the 2 before it
    assert names == [
        "medmon-20231114T221700Z.pcap",
        "medmon-20231114T221800Z.pcap",
        "medmon-20231114T221900Z.pcap",
    ]
    assert (ring_dir / "notes.txt").exists()
    kept = frames[9:]
    read: list[tuple[int, int, bytes, int]] = []
    for path in ring.files():
        with CaptureReader(str(path)) as r:
            read.extend(r)
            assert r.stats.format == "pcap-ns" and not r.stats.warnings
    assert [(f[0], f[2], f[3]) for f in read] == kept
    assert {f[1] for f in read} == {1}
    head = (ring_dir / names[0]).read_bytes()[:4]
    assert int.from_bytes(head, "little") == PCAP_MAGIC_NS


def test_pcap_ring_files_read_by_tshark(tmp_path: Path) -> None:
    tshark = need_tshark()
    frames = _frames_over(2)
    with PcapRing(tmp_path, minutes=5) as ring:
        for ts, data, wirelen in frames:
            ring.write(ts, data, wirelen)
    files = ring.files()
    assert len(files) == 2
    for path, chunk in zip(files, (frames[:3], frames[3:]), strict=True):
        out = subprocess.run(
            [tshark, "-r", str(path), "-T", "fields", "-e", "frame.time_epoch",
             "-e", "frame.len", "-e", "frame.cap_len"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        rows = [line.split("\t") for line in out.stdout.splitlines()]
        assert [(r[0], int(r[1]), int(r[2])) for r in rows] == [
            (f"{ts // 10**9}.{ts % 10**9:09d}", wirelen, len(data)) for ts, data, wirelen in chunk
        ]


def test_pcap_ring_keeps_earlier_minute_in_current_file_and_appends(tmp_path: Path) -> None:
    frames = _frames_over(2)
    ring = PcapRing(tmp_path, minutes=3, snaplen=100)
    ring.write(*frames[3])  # minute 1
    ring.write(*frames[0])  # back to minute 0: stays in minute 1's file
    ring.close()
    (only,) = ring.files()
    # a new ring (a restart) appends to the same minute's file, after a cut-off record
    with only.open("ab") as f:
        f.write(b"\x01\x02\x03")  # a torn record left by a crash
    ring2 = PcapRing(tmp_path, minutes=3, snaplen=100)
    ring2.write(*frames[4])
    ring2.close()
    with CaptureReader(str(only)) as r:
        got = list(r)
        assert not r.stats.warnings
    assert [f[0] for f in got] == [frames[3][0], frames[0][0], frames[4][0]]
    assert all(
        len(f[2]) == min(100, len(src[1]))
        for f, src in zip(got, [frames[3], frames[0], frames[4]], strict=True)
    )
    assert [f[3] for f in got] == [frames[3][2], frames[0][2], frames[4][2]]


def test_the_block_ring_is_the_default_and_a_stop_keeps_its_last_block(
    veth: tuple[str, str],
) -> None:
    """By default the kernel hands tcpdump whole blocks (no --immediate-mode). Stopped right
    after the traffic, before its partly filled block was handed over, the capture still
    delivers every frame: the stop waits for the block first."""
    ns, iface = veth
    with CaptureReader(str(HTTP)) as r:
        expected = [f[2] for f in r]
    cap = LiveCapture(iface, netns=ns)
    assert "--immediate-mode" not in cap.command()
    with cap:
        collector = _Collector(cap)
        collector.start()
        _replay(HTTP, "--topspeed")
        t0 = time.monotonic()
        final = cap.stop()
        assert time.monotonic() - t0 >= BLOCK_HANDOVER - 0.1
        collector.join(10)
    assert [f[2] for f in collector.frames] == expected
    assert final.captured == len(expected) and final.dropped_kernel == 0


def test_immediate_mode_hands_over_each_packet(veth: tuple[str, str]) -> None:
    ns, iface = veth
    cap = LiveCapture(iface, netns=ns, immediate=True)
    assert "--immediate-mode" in cap.command()
    with cap:
        collector = _Collector(cap)
        collector.start()
        _replay(HTTP, "--topspeed")
        collector.wait_for(73, timeout=0.9)  # within the block ring's 1 s timeout
        assert len(collector.frames) == 73
        t0 = time.monotonic()
        final = cap.stop()
        assert time.monotonic() - t0 < BLOCK_HANDOVER  # nothing to wait for
        collector.join(10)
    assert len(collector.frames) == 73 and final.captured == 73


def test_reads_of_a_quiet_pipe_release_the_callers_lock(veth: tuple[str, str]) -> None:
    """frames(unlocked=LOCK): the caller holds LOCK while it iterates; a read that waits for
    data lets it go, so another thread (medmon sniff's periodic writer) can take it."""
    ns, iface = veth
    lock = threading.Lock()
    took: list[float] = []
    with LiveCapture(iface, netns=ns, immediate=True) as cap:
        lock.acquire()
        frames = cap.frames(unlocked=lock)

        def writer() -> None:
            with lock:  # possible only while the reader waits
                took.append(time.monotonic())

        got: list[object] = []

        def reader() -> None:
            for frame in frames:
                got.append(frame)
            lock.release()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        w = threading.Thread(target=writer, daemon=True)
        w.start()
        w.join(5)
        assert took, "the writer never got the lock while the capture was quiet"
        _replay(HTTP, "--topspeed")
        cap.stop()
        t.join(10)
    assert len(got) == 73


FAKE_TCPDUMP = r'''#!PYTHON
"""Stands in for tcpdump: a pcap header and one frame on stdout, counters on SIGUSR1/SIGTERM.
Its signal handlers are in place before it says it listens, as tcpdump's are."""
import signal, struct, sys, time
def usr1(signo, frame):
    sys.stderr.write("tcpdump: 1 packet captured, 7 packets received by filter, "
                     "1 packet dropped by kernel, 5 packets dropped by interface\n")
    sys.stderr.flush()
def term(signo, frame):
    sys.stderr.write("2 packets captured\n9 packets received by filter\n"
                     "3 packets dropped by kernel\n")
    sys.exit(0)
signal.signal(signal.SIGUSR1, usr1)
signal.signal(signal.SIGTERM, term)
out = sys.stdout.buffer
out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
out.write(struct.pack("<IIII", 1, 2, 3, 60) + b"abc")
out.flush()
sys.stderr.write("tcpdump: listening on fake0, link-type EN10MB (Ethernet), "
                 "snapshot length 262144 bytes\n")
sys.stderr.flush()
while True:
    time.sleep(0.05)
'''


def test_counters_parsed_from_tcpdump_lines(tmp_path: Path) -> None:
    """tcpdump's SIGUSR1 line (one line, comma-separated, singular 'packet', 'dropped by
    interface' only when non-zero) and its exit lines (one counter per line)."""
    fake = tmp_path / "tcpdump"
    fake.write_text(FAKE_TCPDUMP.replace("PYTHON", sys.executable))
    fake.chmod(0o755)
    cap = LiveCapture("fake0", tcpdump=str(fake))
    assert cap.stats() == CaptureStats(0, 0, 0, 0)
    with cap:
        frames = cap.frames()
        assert next(frames) == (1_000_000_002, 1, b"abc", 60)
        assert cap.request_stats(wait=5) == CaptureStats(
            received=7, captured=1, dropped_kernel=1, dropped_interface=5
        )
        final = cap.stop()
        assert list(frames) == []
    assert final == CaptureStats(received=9, captured=2, dropped_kernel=3, dropped_interface=0)
    assert cap.messages[0].startswith("tcpdump: listening on fake0")
    assert not cap.running
    assert cap.request_stats() == final  # no signal once tcpdump is gone


def test_frames_in_blocks(tmp_path: Path) -> None:
    """``frames(blocks=True)``: each read's frames as one block the flow table counts as it
    is (with the C record loop), with the first and last capture times and the wire bytes
    a live run records; iterating a block gives its frames."""
    fake = tmp_path / "tcpdump"
    fake.write_text(FAKE_TCPDUMP.replace("PYTHON", sys.executable))
    fake.chmod(0o755)
    with LiveCapture("fake0", tcpdump=str(fake)) as cap:
        items = cap.frames(blocks=True)
        first = next(items)
        cap.stop()
        rest = list(items)
    frame = (1_000_000_002, 1, b"abc", 60)
    if flows_module._flowcore is None:
        assert first == frame
    else:
        assert isinstance(first, flows_module._flowcore.Records)
        assert list(first) == [frame] and len(first) == 1
        assert (first.first_ts, first.last_ts, first.wirelen) == (1_000_000_002,) * 2 + (60,)
    assert rest == []


def test_failure_when_the_interface_disappears(veth: tuple[str, str]) -> None:
    ns, _iface = veth
    x, y = f"mmt-x{PID}", f"mmt-y{PID}"
    _run("ip", "-n", ns, "link", "add", x, "type", "veth", "peer", "name", y)
    try:
        _run("ip", "-n", ns, "link", "set", x, "up")
        _run("ip", "-n", ns, "link", "set", y, "up")
        cap = LiveCapture(x, netns=ns).start()
        frames = cap.frames()
        assert cap.failure is None  # running
        _run("ip", "-n", ns, "link", "del", x)
        for _frame in frames:  # the pipe ends when tcpdump does (the link's own IPv6
            pass  # chatter may have been captured before: frames are not the point here)
        cap.stop()
        assert cap.failure == f"{x}: tcpdump ended: pcap_loop: The interface disappeared"
        cap.close()
    finally:
        subprocess.run(["ip", "-n", ns, "link", "del", x], capture_output=True, check=False)
    stopped = LiveCapture(_iface, netns=ns).start()
    stopped.stop()
    assert stopped.failure is None  # stopped from here: no failure
