"""Live capture from a network interface (a SPAN or mirror port), and rolling evidence files.

The capture path
================

medmon captures with **tcpdump writing pcap into a pipe**, and reads the pipe with the same
reader as a capture file (:class:`monitor.source.CaptureReader` on a stream)::

    tcpdump -i IFACE -w - -U -n -s SNAPLEN -B KIB [-p] -- [BPF]
       │  libpcap, kernel PACKET_MMAP ring (TPACKET_V3 blocks; V2 slots with
       │  --immediate-mode), BPF filter in the kernel
       ▼  stdout: pcap, flushed after every packet (-U)
    pipe (1 MiB) ──► CaptureReader("-", stdin=pipe) ──► decode ──► flows ──► ...   (medmon)

Why: measured here at 50,000 packets/s, scapy's ``sniff()`` receives only 6-11% of the
packets (it reads one packet per ``recv`` call and builds a ``Packet`` object for each), while
libpcap receives all of them. tcpdump is libpcap with the kernel's memory-mapped ring and the
BPF filter compiled into the kernel, in its own process, so the capture runs on a second core
while medmon's pipeline runs on the first, with the pipe and the kernel ring as buffers between
them. It needs no compiled Python binding, is packaged by every distribution, and only receives
(it never transmits a packet). The figures are in docs/sensor.md.

The ring: by default libpcap uses the TPACKET_V3 ring of blocks, which packs packets by their
size and hands tcpdump a whole block at a time: the kernel does the batching, and tcpdump costs
a fraction of the CPU it needs per packet otherwise (measured in docs/sensor.md: the sender
on the same two cores reached 335,000 packets/s instead of 190,000, and medmon's pipeline gets
that core time). A block is handed over when it is full or when tcpdump's 1 s timeout retires
it, so a packet reaches medmon up to a second late, which nothing here minds; stopping waits
:data:`BLOCK_HANDOVER` seconds first, and for tcpdump to work off a backlog in the ring
(:meth:`LiveCapture.finish`), so that what the kernel received is handed over rather than lost
with tcpdump. ``immediate=True``
(``--immediate-mode``, ``medmon sniff --immediate``) has each packet handed over as it arrives,
through the TPACKET_V2 ring of fixed-size slots; when the interface has receive or segmentation
offloads on (GRO, LRO, TSO, GSO), libpcap sizes every slot for a 64 KiB super-frame, so a 64 MiB
buffer holds only a few hundred packets: turn the offloads off on the sensor NIC (``ethtool -K
IFACE gro off lro off tso off gso off``; docs/sensor.md) so that a slot is one MTU.

tcpdump reports its counters (packets captured, packets received by the filter, packets dropped
by the kernel because the ring was full, and packets dropped by the interface where the driver
reports them) on standard error when it gets SIGUSR1 and when it exits. :class:`LiveCapture`
reads those lines on a thread and keeps the latest as :class:`CaptureStats`: that is how
medmon learns about drops. A consumer that is too slow fills the pipe, then the ring, and the
kernel counts what it drops.

tcpdump is started in its own session (terminal signals such as Ctrl-C reach medmon only;
medmon decides when tcpdump stops) and only the process started here is ever signalled, by its PID.

Privileges: capturing needs CAP_NET_RAW (and CAP_NET_ADMIN for some interface settings) or
root. Run as root, Debian's tcpdump drops to the ``tcpdump`` user after opening the interface;
run as an unprivileged user holding ambient capabilities (the systemd unit in
``packaging/systemd/``), it keeps that user and needs no ``-Z``.

For tests only, ``netns=`` runs tcpdump inside a network namespace (``ip netns exec NETNS``).

Rolling evidence
================

:class:`PcapRing` keeps the last N minutes of frames as classic pcap files with nanosecond
timestamps, one per capture-time minute, ``medmon-YYYYmmddTHHMMSSZ.pcap``, deleting older ones
so that disk use stays bounded.
"""

from __future__ import annotations

import calendar
import collections
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple

from monitor.source import PCAP_MAGIC_NS, CaptureError, CaptureReader

__all__ = [
    "CaptureStats",
    "LiveCapture",
    "LiveCaptureError",
    "PcapRing",
    "check_interface",
]

START_TIMEOUT = 10.0
"""Seconds to wait for tcpdump to say it is listening. A failure (no such interface, no
permission, bad filter) makes it exit well within a second."""

PERMISSION_HINT = "permission denied (run as root or give CAP_NET_RAW and CAP_NET_ADMIN)"

BLOCK_HANDOVER = 1.5
"""Seconds a stop waits, in the block ring's mode, before it ends tcpdump: tcpdump asks libpcap
for a 1 s timeout, after which the kernel hands over a partly filled block (its retire timer)."""

DRAIN_TIMEOUT = 10.0
"""Seconds a stop waits at most, after the block hand-over, for tcpdump to work off a backlog
in the kernel ring (:meth:`LiveCapture.finish`)."""

PIPE_BYTES = 1 << 20
"""The capture pipe's size, asked with F_SETPIPE_SZ (Linux's default unprivileged maximum,
/proc/sys/fs/pipe-max-size): fewer, larger reads than the default 64 KiB, and a little more room
for a burst while the pipeline flushes."""

CAP_NET_ADMIN = 12  #: capability bit numbers (linux/capability.h)
CAP_NET_RAW = 13


class LiveCaptureError(Exception):
    """A live capture that cannot start or run. ``str(e)`` is one line: ``'<iface>: <cause>'``."""

    def __init__(self, iface: str, cause: str) -> None:
        super().__init__(f"{iface}: {cause}")
        self.iface = iface
        self.cause = cause


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """tcpdump's counters, as it printed them last (all zero before the first report)."""

    received: int = 0  #: packets that passed the kernel filter ("received by filter")
    captured: int = 0  #: packets tcpdump wrote into the pipe ("captured")
    dropped_kernel: int = 0  #: packets the kernel dropped: ring full ("dropped by kernel")
    dropped_interface: int = 0  #: packets the NIC/driver dropped, where it reports them


_STAT_RE = re.compile(
    r"(\d+) packets? (captured|received by filter|dropped by kernel|dropped by interface)"
)
_STAT_FIELD = {
    "captured": "captured",
    "received by filter": "received",
    "dropped by kernel": "dropped_kernel",
    "dropped by interface": "dropped_interface",
}


def _error_cause(iface: str, bpf: str | None, lines: list[str], returncode: int | None) -> str:
    """The one-line cause of a failed start, from tcpdump's (or ip's) standard error."""
    text = " ".join(lines)
    low = text.lower()
    if "no such device" in low or "no such interface" in low:
        return "no such interface"
    if "permission" in low or "operation not permitted" in low:
        return PERMISSION_HINT
    if "can't parse filter expression" in low or "syntax error" in low:
        m = re.search(r"can't parse filter expression: (.*?)(?:$| \()", text)
        detail = m.group(1).strip() if m else "syntax error"
        return f"bad BPF filter {bpf!r}: {detail}"
    if "device is not up" in low:
        return "interface is down"
    m = re.search(r'Cannot open network namespace "([^"]*)": (.*)', text)
    if m:
        return f"network namespace {m.group(1)!r}: {m.group(2).strip().lower()}"
    for line in lines:
        line = line.strip()
        if line and not line.startswith("tcpdump: listening on") and not _STAT_RE.search(line):
            line = line.removeprefix("tcpdump: ").removeprefix(f"{iface}: ")
            return f"tcpdump failed: {line}"
    return f"tcpdump exited with status {returncode}"


class LiveCapture:
    """Capture from one interface with tcpdump; iterate :meth:`frames` for its frames.

    ::

        with LiveCapture("eth1", bpf="not port 22") as cap:   # start() on entry
            for ts_ns, linktype, data, wirelen in cap.frames():
                ...
            # another thread, or a signal: cap.terminate(); frames() then ends
        cap.stats()   # the final counters, after stop()/close()

    :meth:`start` raises :class:`LiveCaptureError` (one line naming the interface and the
    cause) when tcpdump is missing, the interface does not exist or is down, this process may
    not capture, or the filter does not compile.

    Stopping: :meth:`terminate` only sends SIGTERM (safe in a signal handler); tcpdump flushes,
    prints its final counters and exits, and :meth:`frames` ends at the end of the pipe.
    :meth:`stop` does that and waits for tcpdump (SIGKILL after ``timeout``). tcpdump can only
    exit once the pipe has room: call :meth:`stop` from a thread other than the one iterating
    :meth:`frames`, or keep iterating until it ends. When :meth:`frames` was never called,
    :meth:`stop` drains the pipe itself.

    ``netns`` (tests only) runs tcpdump inside that network namespace via ``ip netns exec``.
    ``tcpdump`` is the program to run (default: ``tcpdump`` on ``PATH``). By default libpcap
    uses the TPACKET_V3 block ring (packets packed by size, handed over when a block fills or
    after tcpdump's 1 s timeout), which sustains higher rates for less CPU (docs/sensor.md) at
    up to a second of latency; :meth:`finish` and :meth:`stop` wait for the last block before
    ending tcpdump. ``immediate=True`` adds ``--immediate-mode``: each packet is handed over as
    it arrives (the TPACKET_V2 slot ring), for more CPU.
    """

    def __init__(
        self,
        iface: str,
        *,
        bpf: str | None = None,
        snaplen: int = 262144,
        promiscuous: bool = True,
        buffer_mib: int = 64,
        netns: str | None = None,
        tcpdump: str | None = None,
        immediate: bool = False,
    ) -> None:
        self.iface = iface
        self.immediate = immediate
        self.bpf = bpf
        self.snaplen = snaplen
        self.promiscuous = promiscuous
        self.buffer_mib = buffer_mib
        self.netns = netns
        self.tcpdump = tcpdump
        self.reader: CaptureReader | None = None  #: the pipe's reader, once frames() is called
        self.messages: collections.deque[str] = collections.deque(maxlen=100)
        """tcpdump's last lines of standard error."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_thread: threading.Thread | None = None
        self._drain_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stats = CaptureStats()
        self._partial: dict[str, int] = {}
        self._reports = 0
        self._report_cond = threading.Condition(self._lock)
        self._listening = threading.Event()
        self._frames_taken = False
        self._stopping = False
        self._pipe_ended = False  # frames() read the pipe to its end

    # -- life cycle --

    @property
    def pid(self) -> int | None:
        """The PID of the tcpdump started here (None before :meth:`start`)."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """The command line :meth:`start` runs (without resolving the program)."""
        cmd = [
            self.tcpdump or "tcpdump",
            "-i",
            self.iface,
            "-w",
            "-",
            "-U",
            *(["--immediate-mode"] if self.immediate else []),
            "-n",
            "-s",
            str(self.snaplen),
            "-B",
            str(self.buffer_mib * 1024),
        ]
        if not self.promiscuous:
            cmd.append("-p")
        if self.bpf:
            cmd += ["--", self.bpf]
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return cmd

    def start(self) -> LiveCapture:
        """Start tcpdump and wait until it listens; raise :class:`LiveCaptureError` if not."""
        if self._proc is not None:
            raise LiveCaptureError(self.iface, "capture already started")
        cmd = self.command()
        program = shutil.which(self.tcpdump or "tcpdump")
        if program is None:
            raise LiveCaptureError(
                self.iface, f"{self.tcpdump or 'tcpdump'} not found (install tcpdump)"
            )
        if self.netns is not None:
            ip = shutil.which("ip")
            if ip is None:
                raise LiveCaptureError(self.iface, "ip not found (install iproute2)")
            cmd[0] = ip
            cmd[4] = program
        else:
            cmd[0] = program
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
            )
        except OSError as exc:
            raise LiveCaptureError(self.iface, f"cannot run tcpdump: {exc.strerror}") from None
        self._proc = proc
        if proc.stdout is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):  # a smaller pipe still works
                fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._stderr_thread = threading.Thread(
            target=self._read_stderr, name=f"tcpdump-stderr-{self.iface}", daemon=True
        )
        self._stderr_thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening.wait(0.02):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        if self._listening.is_set():
            return self
        timed_out = proc.poll() is None
        self._kill_and_reap()
        if timed_out:
            raise LiveCaptureError(
                self.iface, f"tcpdump did not start listening within {START_TIMEOUT:g} s"
            )
        raise LiveCaptureError(
            self.iface, _error_cause(self.iface, self.bpf, list(self.messages), proc.returncode)
        )

    def _kill_and_reap(self) -> None:
        proc = self._proc
        assert proc is not None
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(2)
        if proc.stdout is not None:
            proc.stdout.close()

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.messages.append(line)
            if "listening on" in line:
                self._listening.set()
            found = _STAT_RE.findall(line)
            if not found:
                continue
            with self._lock:
                for count, what in found:
                    if what == "captured":  # a new report begins
                        self._partial = {"dropped_interface": 0}
                    self._partial[_STAT_FIELD[what]] = int(count)
                merged = {**self._stats_dict(), **self._partial}
                self._stats = CaptureStats(**merged)
                if "dropped_kernel" in self._partial:
                    self._reports += 1
                    self._report_cond.notify_all()
        proc.stderr.close()

    def _stats_dict(self) -> dict[str, int]:
        s = self._stats
        return {
            "received": s.received,
            "captured": s.captured,
            "dropped_kernel": s.dropped_kernel,
            "dropped_interface": s.dropped_interface,
        }

    def frames(
        self, unlocked: threading.Lock | None = None, *, blocks: bool = False
    ) -> Iterator[Any]:
        """The captured frames ``(ts_ns, linktype, data, wirelen)``, until tcpdump exits.

        Call once, after :meth:`start`. Blocks until tcpdump has written the pcap header (at
        once, with ``-U``). ``self.reader.stats`` counts what was read.

        ``unlocked``: a lock the caller holds while it iterates, released during each read of
        the pipe (and only then; a read waits there while the capture is quiet), so that
        another thread can use what it guards between chunks and whenever the capture is idle
        (``medmon sniff``'s periodic writes).

        ``blocks``: each read's frames as one block where the C record loop reads them
        (:meth:`monitor.source.CaptureReader.batches`: a ``_flowcore.Records``, which the flow
        table counts without an object per frame; iterating one gives its frames), frames one
        by one otherwise.
        """
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise LiveCaptureError(self.iface, "capture not started")
        if self._frames_taken:
            raise LiveCaptureError(self.iface, "frames() can be called only once")
        self._frames_taken = True
        stream: BinaryIO = proc.stdout  # type: ignore[assignment]
        if unlocked is not None:
            stream = _Unlocked(stream, unlocked)  # type: ignore[assignment]
        try:
            # The pipe identifies no capture: hashing it would only cost CPU.
            reader = CaptureReader("-", stdin=stream, digest=False)
        except CaptureError as e:
            if self._stopping or proc.poll() is not None:
                return iter(())  # stopped before tcpdump wrote anything
            raise LiveCaptureError(self.iface, f"capture pipe: {e.reason}") from None
        reader.path = reader.stats.path = self.iface
        self.reader = reader
        return self._until_the_pipe_ends(reader.batches() if blocks else iter(reader))

    def _until_the_pipe_ends(self, items: Iterator[Any]) -> Iterator[Any]:
        yield from items
        self._pipe_ended = True

    def request_stats(self, wait: float = 0.0) -> CaptureStats:
        """Ask tcpdump for its counters (SIGUSR1 to our tcpdump only); return :meth:`stats`.

        With ``wait`` > 0, wait up to that many seconds for the new report to arrive.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return self.stats()
        with self._lock:
            before = self._reports
        proc.send_signal(signal.SIGUSR1)
        if wait > 0:
            with self._lock:
                self._report_cond.wait_for(lambda: self._reports > before, wait)
        return self.stats()

    def stats(self) -> CaptureStats:
        """The latest counters tcpdump reported (final ones after :meth:`stop`)."""
        with self._lock:
            return self._stats

    @property
    def running(self) -> bool:
        """True while our tcpdump runs."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def failure(self) -> str | None:
        """Why tcpdump ended by itself (one line, ``'<iface>: tcpdump ended: <cause>'``, e.g.
        ``'eth1: tcpdump ended: pcap_loop: The interface disappeared'``), or None while it runs
        and when it was stopped from here. Look at it when :meth:`frames` ends unasked."""
        proc = self._proc
        if proc is None or self._stopping or proc.poll() is None:
            return None
        if self._stderr_thread is not None:
            self._stderr_thread.join(2)
        causes = [
            line.removeprefix("tcpdump: ")
            for line in self.messages
            if line.strip() and "listening on" not in line and not _STAT_RE.search(line)
        ]
        cause = causes[-1] if causes else f"exit status {proc.returncode}"
        return f"{self.iface}: tcpdump ended: {cause}"

    def terminate(self) -> None:
        """Send SIGTERM to our tcpdump and return at once (safe in a signal handler). In the
        block ring's mode, packets of the last, partly filled block are lost: see
        :meth:`finish`."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._stopping = True
            proc.send_signal(signal.SIGTERM)

    def finish(self, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        """End the capture without losing what the kernel already received, then
        :meth:`terminate` (tcpdump stops at once on SIGTERM: what is still in the ring is lost).

        In the block ring's mode, first wait :data:`BLOCK_HANDOVER` seconds for the kernel to
        hand tcpdump its last, partly filled block (less if tcpdump ends meanwhile). Then, in
        either mode, while tcpdump is behind (the filter received more than it captured and
        the kernel dropped), wait for it to catch up, as long as it does, up to
        ``drain_timeout`` seconds; its counters come from :meth:`request_stats`. On a port that
        is never quiet, the packets of the block being filled at that moment (at most the last
        second) are still lost, and counted nowhere."""
        proc = self._proc
        if proc is None or proc.poll() is not None or self._stopping:
            return
        if not self.immediate:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(BLOCK_HANDOVER)
        deadline = time.monotonic() + drain_timeout
        behind: int | None = None
        while proc.poll() is None and time.monotonic() < deadline:
            s = self.request_stats(wait=0.5)
            backlog = s.received - s.captured - s.dropped_kernel
            if backlog <= 0 or (behind is not None and backlog >= behind):
                break  # caught up, or no longer catching up (new traffic keeps it busy)
            behind = backlog
        self.terminate()

    def stop(self, timeout: float = 5.0) -> CaptureStats:
        """Stop tcpdump (:meth:`finish`; SIGKILL after ``timeout`` s more) and return the
        final counters.

        Afterwards the pipe reaches its end, so :meth:`frames` ends once it has yielded every
        frame tcpdump wrote.
        """
        proc = self._proc
        if proc is None:
            return self.stats()
        if not self._frames_taken and proc.stdout is not None and self._drain_thread is None:
            self._drain_thread = threading.Thread(
                target=_drain, args=(proc.stdout,), name="tcpdump-drain", daemon=True
            )
            self._drain_thread.start()
        if self._pipe_ended and proc.poll() is None:
            # tcpdump closed the pipe by itself: let it finish exiting (its failure counts).
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        self.finish()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout)
        if self._drain_thread is not None:
            self._drain_thread.join(timeout)
        return self.stats()

    def close(self) -> None:
        """Stop tcpdump if it runs and close the pipe (idempotent)."""
        proc = self._proc
        if proc is None:
            return
        self.stop()
        if self.reader is not None:
            self.reader.close()
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()

    def __enter__(self) -> LiveCapture:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Unlocked:
    """The capture pipe, read with ``lock`` released during each read (see
    :meth:`LiveCapture.frames`). Only ``read``: the reader wants nothing else of a stream."""

    def __init__(self, raw: BinaryIO, lock: threading.Lock) -> None:
        self._raw = raw
        self._lock = lock

    def read(self, n: int) -> bytes:
        self._lock.release()
        try:
            return self._raw.read(n)
        finally:
            self._lock.acquire()


def _drain(stream: BinaryIO) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read(1 << 16):
            pass


# --- check_interface --------------------------------------------------------------------------


class _Link(NamedTuple):
    operstate: str  #: 'up', 'down', 'lowerlayerdown', 'unknown', ...
    up: bool  #: administratively up (IFF_UP)
    carrier: bool  #: has a link
    rx_packets: int


def _link_info(iface: str, netns: str | None) -> _Link | None:
    """The interface's state, or None if it does not exist. From /sys/class/net, or from
    ``ip -j`` inside ``netns``."""
    if netns is None:
        base = Path("/sys/class/net") / iface
        if "/" in iface or not base.is_dir():
            return None
        try:
            operstate = (base / "operstate").read_text().strip()
            flags = int((base / "flags").read_text().strip(), 16)
            rx = int((base / "statistics" / "rx_packets").read_text().strip())
        except (OSError, ValueError):
            return None
        return _Link(operstate, bool(flags & 0x1), operstate in ("up", "unknown"), rx)
    try:
        out = subprocess.run(
            ["ip", "-n", netns, "-j", "-s", "link", "show", "dev", iface],
            capture_output=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        (link,) = json.loads(out.stdout)
    except ValueError:
        return None
    operstate = str(link.get("operstate", "UNKNOWN")).lower()
    flags = link.get("flags", [])
    stats = link.get("stats64", link.get("stats", {}))
    return _Link(
        operstate,
        "UP" in flags,
        operstate in ("up", "unknown") and "NO-CARRIER" not in flags,
        int(stats.get("rx", {}).get("packets", 0)),
    )


def _capabilities() -> str:
    """'root', 'CAP_NET_RAW, CAP_NET_ADMIN', ... : what lets this process capture, or ''."""
    if os.geteuid() == 0:
        return "root"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
                names = [
                    n
                    for bit, n in ((CAP_NET_RAW, "CAP_NET_RAW"), (CAP_NET_ADMIN, "CAP_NET_ADMIN"))
                    if eff >> bit & 1
                ]
                return ", ".join(names)
    except (OSError, ValueError, IndexError):
        pass
    return ""


def check_interface(
    iface: str, netns: str | None = None, *, wait: float = 2.0
) -> list[tuple[bool, str]]:
    """Check that ``iface`` can be captured from: ``medmon sniff --check IFACE``.

    Returns ``(ok, line)`` pairs, one line each: the interface exists; it is up (and has a
    carrier); it is receiving (``rx_packets`` grows over ``wait`` seconds; a ``warn:`` line
    with ok=True when it does not, since a quiet SPAN port is not an error); this process may
    capture (tcpdump is started on it for that time). A missing interface ends the list.
    """
    results: list[tuple[bool, str]] = []
    info = _link_info(iface, netns)
    if info is None:
        return [(False, f"FAIL: {iface} does not exist")]
    results.append((True, f"ok: {iface} exists"))
    if not info.up:
        results.append((False, f"FAIL: {iface} is down (ip link set {iface} up)"))
    elif not info.carrier:
        results.append(
            (
                False,
                f"FAIL: {iface} is up but has no link ({info.operstate}): check the cable "
                "and the switch's SPAN session",
            )
        )
    else:
        results.append((True, f"ok: {iface} is up"))
    rx0 = info.rx_packets
    t0 = time.monotonic()
    # Only the opening matters here; the slot ring's stop does not wait for a block.
    capture = LiveCapture(iface, netns=netns, buffer_mib=2, immediate=True)
    cap_error: str | None = None
    try:
        capture.start()
    except LiveCaptureError as e:
        cap_error = e.cause
    time.sleep(max(0.0, wait - (time.monotonic() - t0)))
    if cap_error is None:
        capture.close()
    after = _link_info(iface, netns)
    rx1 = after.rx_packets if after is not None else rx0
    elapsed = time.monotonic() - t0
    if rx1 > rx0:
        results.append((True, f"ok: {iface} is receiving ({rx1 - rx0} packets in {elapsed:.1f} s)"))
    else:
        results.append(
            (
                True,
                f"warn: {iface} received no packets in {elapsed:.1f} s "
                "(is the switch's SPAN session configured?)",
            )
        )
    if cap_error is None:
        how = _capabilities()
        results.append(
            (True, f"ok: this process may capture on {iface}" + (f" ({how})" if how else ""))
        )
    else:
        results.append((False, f"FAIL: {iface}: {cap_error}"))
    return results


# --- PcapRing -----------------------------------------------------------------------------------

_PCAP_FILE_HDR = struct.Struct("<IHHiIII")
_PCAP_REC_HDR = struct.Struct("<IIII")
_NS = 1_000_000_000
_MINUTE_NS = 60 * _NS
_RING_NAME = re.compile(r"^medmon-(\d{8}T\d{6}Z)\.pcap$")


def _ring_name(minute: int) -> str:
    return time.strftime("medmon-%Y%m%dT%H%M%SZ.pcap", time.gmtime(minute * 60))


def _ring_minute(name: str) -> int | None:
    m = _RING_NAME.match(name)
    if m is None:
        return None
    try:
        return calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%SZ")) // 60
    except (ValueError, OverflowError):
        return None


class PcapRing:
    """The last ``minutes`` minutes of frames as classic pcap files, bounded on disk.

    One file per capture-time minute (the frame's timestamp, not the wall clock), named
    ``medmon-YYYYmmddTHHMMSSZ.pcap`` after the minute's start in UTC: little-endian pcap with
    nanosecond timestamps (magic ``0xa1b23c4d``), the ring's link type and snap length.
    When a frame's minute is later than the current file's, the file is closed and the next
    opened, and every ``medmon-*.pcap`` in ``directory`` whose minute lies outside the last
    ``minutes`` before the new one is deleted, so at most ``minutes + 1`` files remain. A frame
    whose timestamp goes back to an earlier minute stays in the current file. A file of the
    same minute left by an earlier run is appended to (cut to its last complete record).
    Writes are buffered; :meth:`flush` or :meth:`close` push them to disk.
    """

    def __init__(
        self, directory: Path, minutes: int, linktype: int = 1, snaplen: int = 262144
    ) -> None:
        if minutes < 1:
            raise ValueError("minutes must be at least 1")
        self.directory = Path(directory)
        self.minutes = minutes
        self.linktype = linktype
        self.snaplen = snaplen
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = None
        self._minute: int | None = None
        self._header = _PCAP_FILE_HDR.pack(PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, linktype)
        self.path: Path | None = None  #: the file being written

    def write(self, ts_ns: int, data: bytes, wirelen: int) -> None:
        """Append one frame (captured bytes cut to the snap length)."""
        minute = ts_ns // _MINUTE_NS
        if self._minute is None or minute > self._minute:
            self._rotate(minute)
        f = self._file
        assert f is not None
        caplen = min(len(data), self.snaplen)
        sec, ns = divmod(ts_ns, _NS)
        f.write(_PCAP_REC_HDR.pack(sec & 0xFFFFFFFF, ns, caplen, wirelen))
        f.write(data if caplen == len(data) else data[:caplen])

    def _rotate(self, minute: int) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._minute = minute
        path = self.directory / _ring_name(minute)
        self.path = path
        self._file = self._open(path)
        self._prune(minute)

    def _open(self, path: Path) -> BinaryIO:
        f = open(path, "a+b", buffering=1 << 18)  # noqa: SIM115 (closed by close())
        f.seek(0)
        head = f.read(_PCAP_FILE_HDR.size)
        if head == self._header:
            f.seek(_valid_end(f))
            f.truncate()
        else:  # new, or not ours to append to: start over
            f.seek(0)
            f.truncate()
            f.write(self._header)
        return f

    def _prune(self, minute: int) -> None:
        oldest = minute - self.minutes
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.directory):
                m = _ring_minute(entry.name)
                if m is not None and (m < oldest or m > minute) and entry.is_file():
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def files(self) -> list[Path]:
        """The ring's files in the directory, oldest first."""
        names = sorted(n for n in os.listdir(self.directory) if _ring_minute(n) is not None)
        return [self.directory / n for n in names]

    def flush(self) -> None:
        """Push buffered frames to the current file."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and close the current file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> PcapRing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _valid_end(f: BinaryIO) -> int:
    """Offset after the last complete record of the pcap file ``f`` (header already checked)."""
    end = f.seek(0, os.SEEK_END)
    off = _PCAP_FILE_HDR.size
    f.seek(off)
    while off + _PCAP_REC_HDR.size <= end:
        rec = f.read(_PCAP_REC_HDR.size)
        caplen = _PCAP_REC_HDR.unpack(rec)[2]
        if off + _PCAP_REC_HDR.size + caplen > end:
            break
        off += _PCAP_REC_HDR.size + caplen
        f.seek(off)
    return off
