"""SMB analyzer (monitor.parsers.smb): smbclient -> smbd exchanges captured on loopback (SMB2,
SMB1 on 445 and behind NetBIOS on 139, the SMB1 -> SMB2 upgrade, SMB1 without extended
security), each value as tshark 4.0 decodes it (tests/wire/tcp_payloads.py); hand-built bytes
for each malformed case. No user name, domain or credential is ever observed."""

from __future__ import annotations

import pytest
from wire import tcp_payloads as w

from monitor.parsers import smb
from monitor.parsers.smb import NtlmMessage, dialect_name, parse_ntlmssp, probe_smb

SAMBA_OS = [
    (True, "smb.native_os", "Unix"),
    (True, "smb.native_lanman", "Samba"),
]
SAMBA_SERVER_OS = [
    (False, "smb.native_os", "Windows 6.1"),
    (False, "smb.native_lanman", "Samba 4.17.12-Debian"),
]
NTLM_CHALLENGE = [
    (False, "ntlm.os_version", "6.1.0"),
    (False, "ntlm.hostname", "PACS-SMB01"),
]


def both(kind: str, value: str) -> list[tuple[bool, str, str]]:
    return [(True, kind, value), (False, kind, value)]


def _run(exchange: tuple[tuple[bool, bytes], ...], chunk: int = 0) -> w.Harness:
    return w.Harness(smb.SmbAnalyzer, server_port=445).feed(exchange, chunk=chunk)


@pytest.mark.parametrize("chunk", [0, 1, 13])
def test_smb2_negotiate_and_ntlmssp(chunk: int) -> None:
    h = _run(w.SMB2_DIRECT_445, chunk)
    assert h.about_client == [
        (True, "smb.dialects_offered", "2.0.2,2.1,3.0,3.0.2,3.1.1"),
        *both("smb.dialect", "3.1.1"),
        (True, "ntlm.os_version", "6.1.0"),
        *NTLM_CHALLENGE,
    ]
    assert h.analyzer.done and h.anomalies == []


@pytest.mark.parametrize("exchange", ["SMB1_NT1_DIRECT_445", "SMB1_NT1_NETBIOS_139"])
def test_smb1_with_extended_security(exchange: str) -> None:
    h = _run(getattr(w, exchange))
    assert h.about_client == [
        (True, "smb.dialects_offered", "NT LANMAN 1.0,NT LM 0.12"),
        *both("smb.dialect", "NT LANMAN 1.0"),
        *both("smb.version1", "true"),
        (True, "ntlm.os_version", "6.1.0"),
        *SAMBA_OS,
        *NTLM_CHALLENGE,
        *SAMBA_SERVER_OS,
    ]
    assert h.analyzer.done and h.anomalies == []


def test_smb1_multi_protocol_negotiate_upgraded_to_smb2() -> None:
    h = _run(w.SMB1_TO_SMB2_UPGRADE_445)
    assert h.about_client == [
        (True, "smb.dialects_offered", "NT LANMAN 1.0,NT LM 0.12,SMB 2.002,SMB 2.???"),
        *both("smb.dialect", "3.1.1"),  # the 0x02ff wildcard answer is not a dialect
        (True, "ntlm.os_version", "6.1.0"),
        *NTLM_CHALLENGE,
    ]
    assert "smb.version1" not in {k for _, k, _ in h.about_client}


def test_smb1_without_extended_security_never_reads_account_or_domain() -> None:
    h = _run(w.SMB1_NT1_NO_SPNEGO_445)
    assert h.about_client == [
        (True, "smb.dialects_offered", "NT LANMAN 1.0,NT LM 0.12"),
        *both("smb.dialect", "NT LANMAN 1.0"),
        *both("smb.version1", "true"),
        *SAMBA_OS,
        *SAMBA_SERVER_OS,
    ]
    # The response's PrimaryDomain is LAB: never observed.
    assert not any("LAB" in v for _, _, v in h.about_client)


def test_done_after_the_first_session_setup_response() -> None:
    h = _run(w.SMB2_DIRECT_445)
    assert h.analyzer.done
    before = list(h.observations)
    h.analyzer.data(True, w.SMB2_DIRECT_445[0][1], 2)  # ignored when called anyway
    assert h.observations == before


def test_smb1_command_seen_after_a_late_join_means_version1() -> None:
    # Only the SESSION_SETUP_ANDX request of the captured SMB1 session (the capture began late).
    h = _run(w.SMB1_NT1_DIRECT_445[2:3])
    assert h.about_client == [
        *both("smb.version1", "true"),
        (True, "ntlm.os_version", "6.1.0"),
        *SAMBA_OS,
    ]


def test_sixteen_messages_then_done() -> None:
    negotiate = w.SMB2_DIRECT_445[0]
    h = _run((negotiate,) * 20)
    assert h.analyzer.done and h.analyzer._messages == 16
    assert h.about_client == [(True, "smb.dialects_offered", "2.0.2,2.1,3.0,3.0.2,3.1.1")]


def test_large_messages_are_counted_and_skipped() -> None:
    big = b"\x00" + (100_000).to_bytes(3, "big") + b"\xfeSMB" + bytes(100_000 - 4)
    h = _run(((False, big), w.SMB2_DIRECT_445[0]), chunk=1460)
    assert h.about_client == [(True, "smb.dialects_offered", "2.0.2,2.1,3.0,3.0.2,3.1.1")]
    assert h.analyzer._messages == 2


def test_parse_ntlmssp_of_the_captured_challenge() -> None:
    blob = w.SMB2_DIRECT_445[3][1]
    assert parse_ntlmssp(blob) == NtlmMessage(2, "6.1.0", "PACS-SMB01")
    assert parse_ntlmssp(b"no signature here") is None


def test_unknown_session_packet_type_is_malformed() -> None:
    h = _run(((True, w.SMB_UNKNOWN_SESSION_PACKET_TYPE),))
    assert h.anomalies == [("smb.malformed", "client->server: session packet type 0x42")]
    assert h.analyzer.done


def test_session_setup_with_an_impossible_word_count_is_malformed() -> None:
    h = _run(((True, w.SMB1_SESSION_SETUP_WORD_COUNT_7),))
    assert h.anomaly_names() == ["smb.malformed"]
    assert h.about_client == both("smb.version1", "true")


def test_truncated_ntlmssp_challenge_is_malformed() -> None:
    h = _run(((False, w.SMB2_NTLMSSP_CHALLENGE_TRUNCATED),))
    assert h.anomalies == [
        ("smb.malformed", "server->client: NTLMSSP type 2 shorter than its NegotiateFlags")
    ]
    assert h.analyzer.done  # still the first SESSION_SETUP response


def test_dialect_names_and_probe() -> None:
    assert [dialect_name(d) for d in (0x0202, 0x0210, 0x0300, 0x0302, 0x0311, 0x0999)] == [
        "2.0.2", "2.1", "3.0", "3.0.2", "3.1.1", "0x0999",
    ]  # fmt: skip
    assert probe_smb(w.SMB2_DIRECT_445[0][1][:16], True)
    assert probe_smb(w.SMB1_NT1_DIRECT_445[1][1][:16], False)
    assert not probe_smb(w.SMB1_NT1_NETBIOS_139[0][1][:16], True)  # a session request
    assert not probe_smb(b"GET / HTTP/1.1\r\n", True)
    assert (smb.SPEC.name, smb.SPEC.tcp_ports) == ("smb", (445, 139))
