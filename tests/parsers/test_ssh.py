"""SSH analyzer (monitor.parsers.ssh): banners from the sample capture and Zeek's SPAN-duplicate
capture through the real pipeline, checked against tshark's ``ssh.protocol``; hand-built
preambles for the server's extra lines and the 8 KiB bound."""

from __future__ import annotations

import pytest
from wire import tcp_payloads as w

from monitor.parsers import detect, ssh
from monitor.parsers.ssh import find_banner

from conftest import PCAPS, ROBUSTNESS, tshark

OPENSSH_92 = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"


def test_sample_capture_banners_and_done() -> None:
    run = w.observe_capture(PCAPS / "generic" / "ssh.pcap", ssh.SPEC)
    assert run.anomalies == []
    assert (
        run.observations
        == [
            ("10.10.0.20", "ssh.banner", OPENSSH_92),
            ("10.10.0.22", "ssh.banner", OPENSSH_92),
        ]
        * 2
    )
    assert run.done_before_close == [True, True]  # key exchange and session never reassembled


@pytest.mark.parametrize("capture", ["generic/ssh.pcap", "zeek/tcp_ssh-dups.pcap"])
def test_banners_agree_with_tshark(capture: str) -> None:
    path = PCAPS / capture if capture.startswith("generic") else ROBUSTNESS / capture
    if not path.exists():
        pytest.skip(f"{path} is absent")
    out = tshark("-r", str(path), "-Y", "ssh.protocol", "-T", "fields",
                 "-e", "ip.src", "-e", "ssh.protocol")  # fmt: skip
    theirs = [tuple(line.split("\t")) for line in out.splitlines()]
    run = w.observe_capture(path, ssh.SPEC)
    assert sorted((ip, v) for ip, _, v in run.observations) == sorted(theirs)


def test_zeek_span_duplicates_exact() -> None:
    path = ROBUSTNESS / "zeek" / "tcp_ssh-dups.pcap"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    run = w.observe_capture(path, ssh.SPEC)
    assert run.observations == [
        ("192.168.0.102", "ssh.banner", "SSH-2.0-OpenSSH_7.9"),
        ("192.168.0.112", "ssh.banner", "SSH-2.0-OpenSSH_7.6p1 Ubuntu-4ubuntu0.3"),
    ]


def test_server_lines_before_the_banner_are_skipped() -> None:
    server = b"Authorized use only\r\nAll access is logged\r\nSSH-2.0-dropbear_2022.83\r\n\x00\x00"
    h = w.Harness(ssh.SshAnalyzer).feed(
        [(False, server), (True, b"SSH-2.0-PuTTY_Release_0.81\r\n")], chunk=3
    )
    assert h.about_client == [
        (False, "ssh.banner", "SSH-2.0-dropbear_2022.83"),
        (True, "ssh.banner", "SSH-2.0-PuTTY_Release_0.81"),
    ]
    assert h.analyzer.done


def test_bare_lf_and_a_banner_ended_by_the_flow() -> None:
    h = w.Harness(ssh.SshAnalyzer).feed([(True, b"SSH-1.99-Cisco-1.25\n"), (False, b"SSH-2.0-x")])
    assert not h.analyzer.done
    h.analyzer.close()
    assert h.about_client == [
        (True, "ssh.banner", "SSH-1.99-Cisco-1.25"),
        (False, "ssh.banner", "SSH-2.0-x"),
    ]


def test_eight_kib_without_a_banner() -> None:
    h = w.Harness(ssh.SshAnalyzer).feed([(False, w.SSH_PREAMBLE_WITHOUT_BANNER)], chunk=1000)
    assert h.anomalies == [("ssh.no_banner", "server->client: no SSH- line in 8192 bytes")]
    assert h.observations == []
    h.feed([(True, b"SSH-2.0-OpenSSH_9.6\r\n")])
    assert h.analyzer.done


def test_find_banner() -> None:
    assert find_banner(b"hello\r\nSSH-2.0-a b\r\nrest") == (b"SSH-2.0-a b", 20)
    assert find_banner(b"hello\r\nSSH-2.0-") == (None, 7)


def test_spec_reuses_the_detection_probe() -> None:
    assert (ssh.SPEC.name, ssh.SPEC.tcp_ports, ssh.SPEC.probe) == ("ssh", (22,), detect.probe_ssh)
