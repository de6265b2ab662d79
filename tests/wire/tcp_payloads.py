"""Named TCP payload fixtures for the TLS, HTTP, SSH, SMB, FTP and Telnet analyzers (STYLE S9),
and the small harness their tests share.

SMB exchanges: captured on loopback in a private network namespace on 2026-12-04, from
smbclient 4.17.12-Debian to smbd 4.17.12-Debian (Debian 12; config: ``server min protocol =
NT1``, ``server max protocol = SMB3``, ``netbios name = PACS-SMB01``, a read-only guest share)
with tcpdump 4.99.3, anonymous (``smbclient -U% -N``: no user name, no password), and read back
through medmon's own ``source`` + ``decode``. Each exchange is the TCP payload of its segments
in capture order, ``(from_client, bytes)``; each message filled one segment. Decoded with
tshark 4.0.17 (``-Y 'smb || smb2'``)::

    SMB2_DIRECT_445           offered 2.0.2,2.1,3.0,3.0.2,3.1.1 -> 3.1.1; NTLMSSP VERSION 6.1.0
                              both ways; CHALLENGE MsvAvNbComputerName PACS-SMB01
    SMB1_NT1_DIRECT_445       offered NT LANMAN 1.0,NT LM 0.12 -> index 0; SESSION_SETUP_ANDX
                              WordCount 12 (extended security), Unicode: request NativeOS Unix,
                              NativeLanMan Samba; response Windows 6.1, Samba 4.17.12-Debian
    SMB1_NT1_NETBIOS_139      the same behind an RFC 1002 session request/positive response
    SMB1_TO_SMB2_UPGRADE_445  SMB1 NEGOTIATE offering NT LANMAN 1.0,NT LM 0.12,SMB 2.002,SMB 2.???
                              answered by SMB2 0x02ff, then SMB2 NEGOTIATE -> 3.1.1
    SMB1_NT1_NO_SPNEGO_445    ``client use spnego = no``: SESSION_SETUP_ANDX WordCount 13 with
                              empty passwords and account name, response WordCount 3

Malformed payloads at the end are hand-built, each named for its defect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from monitor.flows import FlowTable, ip_text
from monitor.parsers.base import Analyzer, FlowContext, ParserSpec
from monitor.source import CaptureReader
from monitor.streams import StreamManager

#: One observation as the tests see it: (address of the host it is about, kind, value).
Obs = tuple[str, str, str]

CLIENT_IP = bytes([10, 20, 0, 11])
SERVER_IP = bytes([10, 10, 0, 80])


class Harness:
    """A FlowContext that records observations and anomalies, and an analyzer fed by hand."""

    def __init__(self, factory: Callable[[FlowContext], Any], server_port: int = 0) -> None:
        self.observations: list[Obs] = []
        self.about_client: list[tuple[bool, str, str]] = []
        self.anomalies: list[tuple[str, str | None]] = []
        ctx = FlowContext(
            flow_uid="Ctest",
            client_ip=CLIENT_IP,
            server_ip=SERVER_IP,
            client_port=50000,
            server_port=server_port,
            emit=lambda record: None,
            anomaly=lambda name, detail: self.anomalies.append((name, detail)),
            observe=self._observe,
        )
        self.analyzer: Any = factory(ctx)

    def _observe(self, about_client: bool, kind: str, value: str, ts_ns: int) -> None:
        assert isinstance(value, str)
        self.about_client.append((about_client, kind, value))
        self.observations.append((ip_text(CLIENT_IP if about_client else SERVER_IP), kind, value))

    def feed(self, exchange: Iterable[tuple[bool, bytes]], chunk: int = 0) -> Harness:
        """Deliver ``(from_client, bytes)`` in order (in ``chunk``-byte pieces when set), as
        the stream manager does: nothing more once the analyzer is done."""
        for from_client, data in exchange:
            pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
            for piece in pieces:
                if self.analyzer.done:
                    return self
                self.analyzer.data(from_client, piece, 1)
        return self

    def anomaly_names(self) -> list[str]:
        return [name for name, _ in self.anomalies]


@dataclasses.dataclass
class CaptureRun:
    """What a capture produced through source -> flows -> streams -> one analyzer."""

    observations: list[Obs]
    anomalies: list[tuple[str, str | None]]
    #: per analyzer built: whether it reported done before the stream manager closed it
    done_before_close: list[bool]


def observe_capture(path: Path | str, spec: ParserSpec) -> CaptureRun:
    """Run a capture through medmon's ``CaptureReader``, ``FlowTable`` and ``StreamManager``
    (strict) with a registry of just ``spec``; collect each analyzer's observations."""
    run = CaptureRun([], [], [])
    assert spec.analyzer is not None
    build = spec.analyzer

    def factory(ctx: FlowContext) -> Analyzer:
        def observe(about_client: bool, kind: str, value: str, ts_ns: int) -> None:
            ip = ctx.client_ip if about_client else ctx.server_ip
            run.observations.append((ip_text(ip), kind, value))

        ctx.observe = observe
        analyzer = build(ctx)
        index = len(run.done_before_close)
        run.done_before_close.append(False)
        close = analyzer.close

        def closing() -> None:
            run.done_before_close[index] = analyzer.done
            close()

        return _Closing(analyzer, closing)

    manager = StreamManager(
        (dataclasses.replace(spec, analyzer=factory),),
        emit=lambda record: None,
        anomaly=lambda name, uid, detail: run.anomalies.append((name, detail)),
        strict=True,
    )
    table = FlowTable(lambda flow: None, streams=manager)
    with CaptureReader(str(path)) as reader:
        table.process(reader)
    table.flush()
    return run


class _Closing:
    """Wraps an analyzer to see its ``done`` at the moment it is closed."""

    def __init__(self, inner: Any, close: Callable[[], None]) -> None:
        self._inner = inner
        self.close = close

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        self._inner.data(from_client, data, ts_ns)

    def gap(self, from_client: bool, size: int) -> None:
        self._inner.gap(from_client, size)

    @property
    def done(self) -> bool:
        return bool(self._inner.done)


# -- SMB (captured; see the module docstring) ---------------------------------------------------

#: smbclient -m SMB3 -> smbd on 445: SMB2 NEGOTIATE (3.1.1 chosen), SESSION_SETUP with NTLMSSP
#: NEGOTIATE/CHALLENGE.
SMB2_DIRECT_445: tuple[tuple[bool, bytes], ...] = (
    # frame 4, client->server: Negotiate Protocol Request
    (
        True,
        bytes.fromhex(
            "000000e2fe534d42400000000000000000001f00000000000000000000000000000000000000000000000000"
            "00000000000000000000000000000000000000000000000024000500010000007f00000057d97a98e434514b"
            "871f749ef6866517700000000400000002021002000302031103000001002600000000000100200001007726"
            "242152734c8b3b0dc73a7a9de92fade1e4f749190865431a66ebfa9d7922000002000a000000000004000200"
            "0100040003000000000000000800080000000000030002000100000005001200000000003100320037002e00"
            "30002e0030002e003100"
        ),
    ),
    # frame 6, server->client: Negotiate Protocol Response
    (
        False,
        bytes.fromhex(
            "0000011cfe534d42400000000000000000000100010000000000000000000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000004100010011030300706163732d736d6230310000"
            "000000000f000000000080000000800000008000e4ded93a4784dd01000000000000000080004a00d0000000"
            "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa32a3028a0261b246e6f745f6465"
            "66696e65645f696e5f5246433431373840706c656173655f69676e6f72650000000000000100260000000000"
            "010020000100d4af20f14670da58727db7ead4e1980e0a009a7da92c8a3643c7f986b49bba7a000002000400"
            "000000000100020000000000080004000000000001000200"
        ),
    ),
    # frame 8, client->server: Session Setup Request, NTLMSSP_NEGOTIATE
    (
        True,
        bytes.fromhex(
            "000000a2fe534d42400001000000000001000020100000000000000001000000000000000000000000000000"
            "00000000000000000000000000000000000000000000000019000001010000000000000058004a0000000000"
            "00000000604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d5353"
            "5000010000001582086200000000280000000000000028000000060100000000000f"
        ),
    ),
    # frame 9, server->client: Session Setup Response, Error: STATUS_MORE_PROCESSING_REQUIRED,
    # NTLMSSP_CHALLENGE
    (
        False,
        bytes.fromhex(
            "000000fffe534d4240000100160000c001000100110000000000000001000000000000000000000000000000"
            "0980db8f0000000000000000000000000000000000000000090000004800b700a181b43081b1a0030a0101a1"
            "0c060a2b06010401823702020aa2819b0481984e544c4d5353500002000000140014003800000015828a62f9"
            "bbd931a9b9f90500000000000000004c004c004c000000060100000000000f50004100430053002d0053004d"
            "004200300031000200140050004100430053002d0053004d004200300031000100140050004100430053002d"
            "0053004d00420030003100040000000300040076006d00070008006247da3a4784dd0100000000"
        ),
    ),
)

#: smbclient -m NT1 -> smbd (server min protocol = NT1) on 445: SMB1 NEGOTIATE (NT LANMAN 1.0
#: chosen), SESSION_SETUP_ANDX with extended security, Unicode strings.
SMB1_NT1_DIRECT_445: tuple[tuple[bool, bytes], ...] = (
    # frame 42, client->server: Negotiate Protocol Request
    (
        True,
        bytes.fromhex(
            "0000003eff534d4272000000001843c80000000000000000000000000000feff00000000001b00024e54204c"
            "414e4d414e20312e3000024e54204c4d20302e313200"
        ),
    ),
    # frame 44, server->client: Negotiate Protocol Response
    (
        False,
        bytes.fromhex(
            "0000009fff534d4272000000008843c80000000000000000000000000000feff000000001100000332000100"
            "044100000000010067360000fdf3808030410d3b4784dd010000005a00706163732d736d6230310000000000"
            "00604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa32a3028a0261b246e6f745f64"
            "6566696e65645f696e5f5246433431373840706c656173655f69676e6f7265"
        ),
    ),
    # frame 46, client->server: Session Setup AndX Request, NTLMSSP_NEGOTIATE
    (
        True,
        bytes.fromhex(
            "0000009cff534d4273000000001843c800000000000000000000000000006636000001000cff000000ffff02"
            "000100000000004a000000000054c000806100604806062b0601050502a03e303ca00e300c060a2b06010401"
            "823702020aa22a04284e544c4d53535000010000001582086200000000280000000000000028000000060100"
            "000000000f0055006e00690078000000530061006d00620061000000"
        ),
    ),
    # frame 47, server->client: Session Setup AndX Response, NTLMSSP_CHALLENGE, Error:
    # STATUS_MORE_PROCESSING_REQUIRED
    (
        False,
        bytes.fromhex(
            "0000012cff534d4273160000c08803c800000000000000000000000000006636588f010004ff0000000000b7"
            "000101a181b43081b1a0030a0101a10c060a2b06010401823702020aa2819b0481984e544c4d535350000200"
            "0000140014003800000015828a627941b166e54a56e500000000000000004c004c004c000000060100000000"
            "000f50004100430053002d0053004d004200300031000200140050004100430053002d0053004d0042003000"
            "31000100140050004100430053002d0053004d00420030003100040000000300040076006d00070008002a9c"
            "0d3b4784dd0100000000570069006e0064006f0077007300200036002e0031000000530061006d0062006100"
            "200034002e00310037002e00310032002d00440065006200690061006e0000004c00410042000000"
        ),
    ),
)

#: The same over the NetBIOS session service on 139: a session request and positive response
#: first (RFC 1002 §4.3.2).
SMB1_NT1_NETBIOS_139: tuple[tuple[bool, bytes], ...] = (
    # frame 70, client->server: Session request, to 127.0.0.1<20> from VM<00>
    (
        True,
        bytes.fromhex(
            "8100004420444244434448434f4441434f4441434f4442434143414341434143414341434100204647454e43"
            "41434143414341434143414341434143414341434143414341414100"
        ),
    ),
    # frame 72, server->client: Positive session response
    (False, bytes.fromhex("82000000")),
    # frame 74, client->server: Negotiate Protocol Request
    (
        True,
        bytes.fromhex(
            "0000003eff534d4272000000001843c80000000000000000000000000000feff00000000001b00024e54204c"
            "414e4d414e20312e3000024e54204c4d20302e313200"
        ),
    ),
    # frame 75, server->client: Negotiate Protocol Response
    (
        False,
        bytes.fromhex(
            "0000009fff534d4272000000008843c80000000000000000000000000000feff000000001100000332000100"
            "04410000000001006a360000fdf380806034413b4784dd010000005a00706163732d736d6230310000000000"
            "00604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa32a3028a0261b246e6f745f64"
            "6566696e65645f696e5f5246433431373840706c656173655f69676e6f7265"
        ),
    ),
    # frame 76, client->server: Session Setup AndX Request, NTLMSSP_NEGOTIATE
    (
        True,
        bytes.fromhex(
            "0000009cff534d4273000000001843c800000000000000000000000000006936000001000cff000000ffff02"
            "000100000000004a000000000054c000806100604806062b0601050502a03e303ca00e300c060a2b06010401"
            "823702020aa22a04284e544c4d53535000010000001582086200000000280000000000000028000000060100"
            "000000000f0055006e00690078000000530061006d00620061000000"
        ),
    ),
    # frame 77, server->client: Session Setup AndX Response, NTLMSSP_CHALLENGE, Error:
    # STATUS_MORE_PROCESSING_REQUIRED
    (
        False,
        bytes.fromhex(
            "0000012cff534d4273160000c08803c800000000000000000000000000006936523b010004ff0000000000b7"
            "000101a181b43081b1a0030a0101a10c060a2b06010401823702020aa2819b0481984e544c4d535350000200"
            "0000140014003800000015828a6204db088fd149b79300000000000000004c004c004c000000060100000000"
            "000f50004100430053002d0053004d004200300031000200140050004100430053002d0053004d0042003000"
            "31000100140050004100430053002d0053004d00420030003100040000000300040076006d0007000800f290"
            "413b4784dd0100000000570069006e0064006f0077007300200036002e0031000000530061006d0062006100"
            "200034002e00310037002e00310032002d00440065006200690061006e0000004c00410042000000"
        ),
    ),
)

#: smbclient -m SMB3 with client min protocol = NT1: an SMB1 multi-protocol NEGOTIATE answered by
#: SMB2 (dialect 0x02ff), then SMB2 NEGOTIATE and SESSION_SETUP.
SMB1_TO_SMB2_UPGRADE_445: tuple[tuple[bool, bytes], ...] = (
    # frame 100, client->server: Negotiate Protocol Request
    (
        True,
        bytes.fromhex(
            "00000054ff534d4272000000001843c80000000000000000000000000000feff00000000003100024e54204c"
            "414e4d414e20312e3000024e54204c4d20302e31320002534d4220322e3030320002534d4220322e3f3f3f00"
        ),
    ),
    # frame 102, server->client: Negotiate Protocol Response
    (
        False,
        bytes.fromhex(
            "000000cafe534d42400000000000000000000100010000000000000000000000000000000000000000000000"
            "00000000000000000000000000000000000000000000000041000100ff020000706163732d736d6230310000"
            "0000000007000000000080000000800000008000086b743b4784dd01000000000000000080004a0000000000"
            "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa32a3028a0261b246e6f745f6465"
            "66696e65645f696e5f5246433431373840706c656173655f69676e6f7265"
        ),
    ),
    # frame 104, client->server: Negotiate Protocol Request
    (
        True,
        bytes.fromhex(
            "000000e2fe534d42400000000000000000001f00000000000000000001000000000000000000000000000000"
            "00000000000000000000000000000000000000000000000024000500010000007f0000003c208644d2319747"
            "b54f1773381d207f70000000040000000202100200030203110300000100260000000000010020000100d2b3"
            "cb60a25e86c9d2c2b8ffa921f4f6c5064069c5cf0b8c71473b4f8a3f968f000002000a000000000004000200"
            "0100040003000000000000000800080000000000030002000100000005001200000000003100320037002e00"
            "30002e0030002e003100"
        ),
    ),
    # frame 105, server->client: Negotiate Protocol Response
    (
        False,
        bytes.fromhex(
            "0000011cfe534d42400000000000000000000100010000000000000001000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000004100010011030300706163732d736d6230310000"
            "000000000f0000000000800000008000000080004e9d743b4784dd01000000000000000080004a00d0000000"
            "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa32a3028a0261b246e6f745f6465"
            "66696e65645f696e5f5246433431373840706c656173655f69676e6f72650000000000000100260000000000"
            "010020000100d2e2a2ea0f0f4fd954bb5cc493b4367867a0d9eb9caee20728c6a07cefb9822c000002000400"
            "000000000100020000000000080004000000000001000200"
        ),
    ),
    # frame 106, client->server: Session Setup Request, NTLMSSP_NEGOTIATE
    (
        True,
        bytes.fromhex(
            "000000a2fe534d42400001000000000001000020100000000000000002000000000000000000000000000000"
            "00000000000000000000000000000000000000000000000019000001010000000000000058004a0000000000"
            "00000000604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d5353"
            "5000010000001582086200000000280000000000000028000000060100000000000f"
        ),
    ),
    # frame 107, server->client: Session Setup Response, Error:
    # STATUS_MORE_PROCESSING_REQUIRED, NTLMSSP_CHALLENGE
    (
        False,
        bytes.fromhex(
            "000000fffe534d4240000100160000c001000100110000000000000002000000000000000000000000000000"
            "32e6ec4e0000000000000000000000000000000000000000090000004800b700a181b43081b1a0030a0101a1"
            "0c060a2b06010401823702020aa2819b0481984e544c4d5353500002000000140014003800000015828a6243"
            "4c5a568a11b8fc00000000000000004c004c004c000000060100000000000f50004100430053002d0053004d"
            "004200300031000200140050004100430053002d0053004d004200300031000100140050004100430053002d"
            "0053004d00420030003100040000000300040076006d000700080006db743b4784dd0100000000"
        ),
    ),
)

#: smbclient -m NT1 with client use spnego = no, anonymous (-U%): SMB1 NEGOTIATE without extended
#: security and a SESSION_SETUP_ANDX of WordCount 13 (empty passwords and account name) and its
#: WordCount 3 response.
SMB1_NT1_NO_SPNEGO_445: tuple[tuple[bool, bytes], ...] = (
    # frame 4, client->server: Negotiate Protocol Request
    (
        True,
        bytes.fromhex(
            "0000003eff534d4272000000001843c00000000000000000000000000000feff00000000001b00024e54204c"
            "414e4d414e20312e3000024e54204c4d20302e313200"
        ),
    ),
    # frame 6, server->client: Negotiate Protocol Response
    (
        False,
        bytes.fromhex(
            "0000006bff534d4272000000008803c00000000000000000000000000000feff000000001100000332000100"
            "0441000000000100db640000fdf380008885fbf74784dd01000008260056085bbc038745ed4c004100420000"
            "0050004100430053002d0053004d004200300031000000"
        ),
    ),
    # frame 8, client->server: Session Setup AndX Request, User: anonymous
    (
        True,
        bytes.fromhex(
            "00000058ff534d4273000000001843c00000000000000000000000000000d964000001000dff000000ffff02"
            "00d964db640000000000000000000054c000001b00000000000055006e00690078000000530061006d006200"
            "61000000"
        ),
    ),
    # frame 9, server->client: Session Setup AndX Response
    (
        False,
        bytes.fromhex(
            "00000074ff534d4273000000008803c00000000000000000000000000000d9641e67010003ff00000000004b"
            "0000570069006e0064006f0077007300200036002e0031000000530061006d0062006100200034002e003100"
            "37002e00310032002d00440065006200690061006e0000004c00410042000000"
        ),
    ),
)

# -- FTP and Telnet ------------------------------------------------------------------------------

#: vsftpd 3.0.3 (Debian 12, default ``ftpd_banner``, listening on 127.0.0.1:21 in a private
#: namespace) greeting a Python socket client that sends QUIT; tcpdump 4.99.3, 2026-12-04,
#: payloads read back with ``tshark -e tcp.payload``.
FTP_VSFTPD_GREETING: tuple[tuple[bool, bytes], ...] = (
    (False, b"220 (vsFTPd 3.0.3)\r\n"),
    (True, b"QUIT\r\n"),
    (False, b"221 Goodbye.\r\n"),
)
#: Hand-built (no Telnet server in the lab): a server opening as RFC 854/RFC 1091 describe,
#: IAC DO TERMINAL-TYPE (ff fd 18), IAC WILL ECHO (ff fb 01), IAC WILL SUPPRESS-GO-AHEAD
#: (ff fb 03), then a login prompt.
TELNET_SERVER_OPENING = bytes.fromhex("fffd18fffb01fffb03") + b"\r\nlogin: "

# -- malformed, hand-built ----------------------------------------------------------------------

#: An HTTP request sent to port 443: not a TLS record (content type 'G').
TLS_PLAIN_HTTP_ON_443 = b"GET / HTTP/1.1\r\nHost: web01\r\n\r\n"
#: A ClientHello whose cipher_suites length (0x0400) runs past the hello.
TLS_CLIENT_HELLO_CIPHER_LENGTH_OVERRUN = (
    bytes.fromhex("160301002b010000270303") + bytes(32) + bytes.fromhex("0004001301")
)
#: A TLS 1.2 ServerHello (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, no extensions) followed by a
#: Certificate whose only entry is 8 bytes that are not DER.
TLS_CERTIFICATE_NOT_DER = (
    bytes.fromhex("160303002a" "02000026" "0303") + bytes(32) + bytes.fromhex("00" "c02f" "00")
    + bytes.fromhex("1603030012" "0b00000e" "00000b" "000008") + b"notaDER!"
)  # fmt: skip
#: An HTTP request whose two Content-Length values disagree (RFC 9112 §6.3 item 5).
HTTP_CONTENT_LENGTH_CONFLICT = (
    b"POST /upload HTTP/1.1\r\nHost: pacs01\r\nContent-Length: 12, 13\r\n\r\nhello world!"
)
#: A request head that never ends: 17 KiB of header lines.
HTTP_HEAD_WITHOUT_END = b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 17_000 + b"\r\n"
#: A server that talks before the client sends its version line: 8 KiB of other lines.
SSH_PREAMBLE_WITHOUT_BANNER = b"Welcome to the imaging gateway\r\n" * 300
#: A session-service header of type 0x42, which RFC 1002 §4.3.1 does not define.
SMB_UNKNOWN_SESSION_PACKET_TYPE = bytes.fromhex("42000004") + b"\xffSMB"
#: An SMB1 SESSION_SETUP_ANDX request with WordCount 7 (only 10, 12 and 13 exist).
SMB1_SESSION_SETUP_WORD_COUNT_7 = (
    bytes.fromhex("00000031") + b"\xffSMB" + bytes([0x73]) + bytes(4) + bytes([0x18])
    + bytes.fromhex("03c0") + bytes(20) + bytes.fromhex("07") + bytes(14) + bytes(2)
)  # fmt: skip
#: An SMB2 SESSION_SETUP response whose security buffer holds an NTLMSSP CHALLENGE cut after
#: 16 bytes (its TargetInfoFields are missing).
SMB2_NTLMSSP_CHALLENGE_TRUNCATED = (
    bytes.fromhex("00000058") + b"\xfeSMB" + bytes.fromhex("4000") + bytes(6)
    + bytes.fromhex("0100") + bytes(2) + bytes.fromhex("01000000") + bytes(44)
    + bytes.fromhex("0900" "0000" "4800" "1000")
    + b"NTLMSSP\x00" + bytes.fromhex("0200000000000000")
)  # fmt: skip
#: An FTP server whose first line is not an RFC 959 reply.
FTP_GREETING_NOT_A_REPLY = b"hello there\r\n"
