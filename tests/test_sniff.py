"""``medmon sniff`` end to end: a veth pair in two network namespaces this test makes, medmon
capturing on one end, the sample captures replayed into the other with tcpreplay.

- the register then holds the same flows, DICOM associations, HL7 messages and devices as a
  ``medmon replay`` of the same files;
- SIGTERM mid-capture exits 0 and loses nothing; a SIGKILL loses at most the last interval;
- drops are recorded when medmon does not keep up.

Root only (CI runs as root); skipped without ip, tcpdump or tcpreplay. Traffic stays inside
the namespaces; only processes started here are signalled, by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from monitor import api
from monitor.source import CaptureReader

from conftest import PCAPS

pytestmark = pytest.mark.netns

CAPTURES = [
    PCAPS / "generic" / "http.pcap",
    PCAPS / "dicom" / "echo-store-dcmtk-orthanc.pcap",
    PCAPS / "hl7" / "mllp-adt-oru-ack.pcap",
    PCAPS / "dicom" / "modalities.pcap",
]


def _need() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and packet capture")
    for tool in ("ip", "tcpdump", "tcpreplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class Lab:
    """Two namespaces joined by a veth pair: medmon listens on ``a``, tcpreplay sends on ``b``."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns_a, self.ns_b = f"mms{tag}a", f"mms{tag}b"
        self.if_a, self.if_b = "mm-span", "mm-feed"
        _run("ip", "netns", "add", self.ns_a)
        _run("ip", "netns", "add", self.ns_b)
        _run("ip", "link", "add", "mmtmp-a", "type", "veth", "peer", "name", "mmtmp-b")
        _run("ip", "link", "set", "mmtmp-a", "netns", self.ns_a, "name", self.if_a)
        _run("ip", "link", "set", "mmtmp-b", "netns", self.ns_b, "name", self.if_b)
        for ns, ifname in ((self.ns_a, self.if_a), (self.ns_b, self.if_b)):
            # No IPv6 on the lab's own interfaces: their router solicitations and MLD reports
            # would be traffic that the replayed captures do not have.
            for key in ("all", "default"):
                _run(
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    f"net.ipv6.conf.{key}.disable_ipv6=1",
                )
            _run("ip", "-n", ns, "link", "set", ifname, "mtu", "9000", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    def sniff(self, db: str, *args: str) -> subprocess.Popen[bytes]:
        """``medmon sniff`` inside namespace a (tcpdump runs there too)."""
        argv = ["ip", "netns", "exec", self.ns_a, sys.executable, "-m", "monitor"]
        argv += ["sniff", "-i", self.if_a, "--db", db, *args]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed(self, *captures: Path, rate: str = "--pps=2000", loop: int = 1) -> None:
        """Replay captures into the veth, one after the other, as fast as ``rate`` says."""
        for capture in captures:
            argv = ["ip", "netns", "exec", self.ns_b, "tcpreplay", "-q", "-i", self.if_b, rate]
            if loop > 1:
                argv.append(f"--loop={loop}")
            subprocess.run([*argv, str(capture)], check=True, capture_output=True, timeout=300)


@pytest.fixture
def lab() -> Iterator[Lab]:
    _need()
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def _wait_for(query: Callable[[], object], want: object, timeout: float = 30.0) -> None:
    """Poll ``query()`` until it returns ``want`` (the sensor may hold the register a moment)."""
    end = time.monotonic() + timeout
    got: object = None
    while time.monotonic() < end:
        try:
            got = query()
            if got == want:
                return
        except duckdb.Error as e:
            got = e  # the sensor is writing: try again
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {want!r}; last: {got!r}")


def _query(db: str, sql: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    return [tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in rows]


def _started(db: str) -> bool:
    return bool(Path(db).exists() and _query(db, "SELECT count(*) FROM runs")[0][0])


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


FLOWS = """SELECT proto, client_ip, client_port, server_ip, server_port, app, packets_to_server,
    packets_to_client, bytes_to_server, bytes_to_client, state FROM flows"""
ASSOCIATIONS = """SELECT calling_ae, called_ae, implementation_class_uid, result,
    list_sort(commands) FROM dicom_associations"""
MESSAGES = "SELECT message_type, trigger_event, control_id, direction FROM hl7_messages"
ASSETS = """SELECT asset_id, ip, vendor, model, device_class, os_family, hostname, patchable,
    zone FROM assets"""
FINDINGS = "SELECT kind, subject, rule, severity, occurrences FROM exceptions"
POLICY = str(PCAPS.parent / "policies" / "default.yaml")


def test_live_capture_records_what_a_replay_of_the_same_traffic_records(
    lab: Lab, tmp_path: Path
) -> None:
    live_db, replay_db = str(tmp_path / "live.duckdb"), str(tmp_path / "replay.duckdb")
    evidence = tmp_path / "evidence"
    started_at = time.time()
    proc = lab.sniff(
        live_db, "--flush-every", "1", "-q", "--keep-pcap", str(evidence), "--policy", POLICY
    )
    _wait_for(lambda: _started(live_db), True)
    time.sleep(1.0)  # tcpdump is listening once the run row exists; give it a moment
    lab.feed(*CAPTURES)
    time.sleep(1.5)
    code, err = _stop(proc)
    assert code == 0, err
    api.replay([str(c) for c in CAPTURES], db=replay_db, policy=POLICY)
    # (Findings: a live run writes them at every flush; its occurrences must not add up.)
    for sql in (FLOWS, ASSOCIATIONS, MESSAGES, ASSETS, FINDINGS):
        assert Counter(_query(live_db, sql)) == Counter(_query(replay_db, sql)), sql
    ((command, source, received, dropped, packets, flushes, finished),) = _query(
        live_db,
        "SELECT command, source, received, dropped, packets, flushes, finished_at FROM runs",
    )
    assert (command, source, dropped) == ("sniff", f"live:{lab.if_a}", 0)
    assert received >= packets == _query(replay_db, "SELECT packets FROM runs")[0][0]
    assert flushes >= 2 and finished is not None
    # The frames' bytes, and the capture times of the first and the last (the live clock).
    ((nbytes, first, last),) = _query(live_db, "SELECT bytes, first_ts, last_ts FROM runs")
    assert nbytes == _query(replay_db, "SELECT bytes FROM runs")[0][0]
    assert started_at <= first.timestamp() <= last.timestamp() <= time.time()
    # --keep-pcap kept every frame as evidence, readable as any capture.
    kept = 0
    for path in sorted(evidence.glob("medmon-*.pcap")):
        with CaptureReader(str(path)) as reader:
            kept += sum(1 for _ in reader)
    assert kept == packets


def test_sigterm_and_sigkill_keep_what_was_recorded(lab: Lab, tmp_path: Path) -> None:
    db = str(tmp_path / "live.duckdb")
    proc = lab.sniff(db, "--flush-every", "0.5", "-q")
    _wait_for(lambda: _started(db), True)
    time.sleep(1.0)
    lab.feed(CAPTURES[0])
    lab.feed(CAPTURES[2], rate="--pps=50")  # keeps packets coming so that flushes happen
    _wait_for(lambda: _query(db, "SELECT count(*) FROM flows WHERE app = 'http'")[0][0], 5)
    # A crash: SIGKILL medmon (and the tcpdump it started: ours, by PID).
    children = _children(proc.pid)
    code, _err = _stop(proc, signal.SIGKILL)
    for pid in children:
        _kill(pid)
    assert code == -signal.SIGKILL
    assert _query(db, "SELECT count(*) FROM flows WHERE app = 'http'") == [(5,)]
    # The next sensor run goes on in the same register; SIGTERM ends it cleanly.
    proc = lab.sniff(db, "--flush-every", "0.5", "-q")
    _wait_for(lambda: _query(db, "SELECT count(*) FROM runs")[0][0], 2)
    time.sleep(1.0)
    lab.feed(CAPTURES[1])
    code, err = _stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert _query(db, "SELECT count(*) FROM flows WHERE app = 'http'") == [(5,)]
    assert _query(db, "SELECT count(*) FROM dicom_associations WHERE run_id = 2") == [(2,)]
    assert _query(db, "SELECT finished_at IS NOT NULL FROM runs WHERE run_id = 2") == [(True,)]


def test_drops_are_recorded_when_medmon_does_not_keep_up(lab: Lab, tmp_path: Path) -> None:
    db = str(tmp_path / "live.duckdb")
    proc = lab.sniff(db, "--flush-every", "1", "--buffer-mib", "1", "-q")
    _wait_for(lambda: _started(db), True)
    time.sleep(1.0)
    medmon = [p for p in [proc.pid, *_children(proc.pid)] if _comm(p).startswith("python")]
    for pid in medmon:
        os.kill(pid, signal.SIGSTOP)  # medmon stops reading: tcpdump's pipe and buffer fill
    try:
        lab.feed(CAPTURES[0], rate="--topspeed", loop=3000)
    finally:
        for pid in medmon:
            os.kill(pid, signal.SIGCONT)
    time.sleep(1.0)
    code, err = _stop(proc)
    assert code == 0, err
    ((dropped_kernel, dropped, packets),) = _query(
        db, "SELECT dropped_kernel, dropped, packets FROM runs"
    )
    # (The kernel's counter is the capture socket's, as tcpdump reports it.)
    assert dropped_kernel > 0 and dropped >= dropped_kernel
    assert packets < 71 * 3000  # medmon did not see everything that was sent
    assert "packets dropped" in err


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out.append(kid)
            out.extend(_children(kid))
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_bad_interface_and_filter_are_one_line_and_record_nothing(tmp_path: Path) -> None:
    _need()
    from click.testing import CliRunner

    from monitor.cli import cli

    db = str(tmp_path / "live.duckdb")
    runner = CliRunner()
    result = runner.invoke(cli, ["sniff", "-i", "mm-nosuch0", "--db", db])
    assert result.exit_code == 2
    assert result.stderr.strip() == "medmon: error: mm-nosuch0: no such interface"
    result = runner.invoke(cli, ["sniff", "-i", "lo", "--bpf", "tcp port", "--db", db])
    assert result.exit_code == 2
    assert result.stderr.strip() == "medmon: error: lo: bad BPF filter 'tcp port': syntax error"
    assert _query(db, "SELECT count(*) FROM runs") == [(0,)]
    result = runner.invoke(cli, ["sniff", "--check", "mm-nosuch0"])
    assert result.exit_code == 2
    assert result.stdout.splitlines()[0].startswith("FAIL: mm-nosuch0")


SITE_RULE = """\
meta: {title: Our intranet web server, maintainer: biomed@hospital.test}
rules:
  - id: site.intranet-web
    rev: 1
    description: the intranet server's Python http.server banner
    references: ["tests/test_sniff.py"]
    match: {http.server: '^SimpleHTTP/'}
    set: {device_class: server}
    confidence: 0.95
    examples: [{http.server: SimpleHTTP/0.6 Python/3.11.7}]
"""


def test_sighup_reads_the_site_rules_again(lab: Lab, tmp_path: Path) -> None:
    db, site = str(tmp_path / "live.duckdb"), tmp_path / "site"
    site.mkdir()
    proc = lab.sniff(db, "--flush-every", "0.5", "-q", "--rules", str(site))
    _wait_for(lambda: _started(db), True)
    (site / "intranet.yaml").write_text(SITE_RULE)
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)  # the next flush reads the rules again
    lab.feed(CAPTURES[0])
    time.sleep(1.0)
    code, err = _stop(proc)
    assert code == 0, err
    rows = _query(db, "SELECT device_class, evidence->>'$.device_class.rule' FROM assets "
                      "WHERE ip = '10.10.0.80'")  # fmt: skip
    assert rows == [("server", "site.intranet-web")]


def test_an_interface_that_vanishes_ends_the_run_with_an_error(lab: Lab, tmp_path: Path) -> None:
    """tcpdump ends by itself: what was captured is written, and the exit code is 2 (a service
    manager restarts the sensor)."""
    db = str(tmp_path / "live.duckdb")
    proc = lab.sniff(db, "--flush-every", "0.5", "-q")
    _wait_for(lambda: _started(db), True)
    time.sleep(1.0)
    lab.feed(CAPTURES[0])
    time.sleep(1.0)
    _run("ip", "-n", lab.ns_b, "link", "del", lab.if_b)  # takes its veth peer with it
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"medmon: error: {lab.if_a}: tcpdump ended:")
    assert _query(db, "SELECT count(*) FROM flows WHERE app = 'http'") == [(5,)]
    assert _query(db, "SELECT finished_at IS NOT NULL FROM runs") == [(True,)]
