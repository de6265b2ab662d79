"""TLS analyzer (monitor.parsers.tls): the sample capture through the real pipeline, checked
against tshark's fields and against JA4 computed here again from tshark's fields; the FoxIO JA4
and JA4S documentation's worked examples; hand-built malformed records for each anomaly."""

from __future__ import annotations

import datetime
import hashlib
import struct

import pytest
from wire import tcp_payloads as w

from monitor.parsers import detect, tls
from monitor.parsers.tls import (
    ClientHello,
    ServerHello,
    cipher_name,
    ja4,
    ja4s,
    parse_certificate,
    parse_certificate_der,
    parse_client_hello,
    parse_server_hello,
    version_name,
)

from conftest import PCAPS, tshark

TLS_PCAP = PCAPS / "generic" / "tls.pcap"
NAME = "web01.hospital.example"
CERT_NAME = "CN=web01.hospital.example,O=Example Hospital Test Lab"
GREASE = 0x3A3A

# -- builders for the documentation's examples (valid hellos, built from the listed values) ------


def _with(hello: ClientHello, **changes: object) -> ClientHello:
    """A copy of ``hello`` with some fields changed."""
    values = {name: getattr(hello, name) for name in ClientHello.FIELDS}
    return ClientHello(**{**values, **changes})  # type: ignore[arg-type]


def _ext(ext_type: int, data: bytes) -> bytes:
    return struct.pack("!HH", ext_type, len(data)) + data


def _u16s(values: list[int]) -> bytes:
    return struct.pack(f"!{len(values)}H", *values)


def _record(handshake_type: int, body: bytes, version: int = 0x0301) -> bytes:
    msg = bytes([handshake_type]) + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", 22, version, len(msg)) + msg


def ja4_doc_client_hello() -> bytes:
    """The ClientHello of the JA4.md "Example" section: the ciphers and extensions in the order
    the document lists them as seen (its JA4_ro line), ALPN h2, its eight signature algorithms,
    supported_versions {TLS 1.3, TLS 1.2}; GREASE added to ciphers, extensions, versions and
    signature algorithms, which JA4 must ignore."""
    ciphers = [GREASE, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
               0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]  # fmt: skip
    sigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    payloads = {
        0x0000: struct.pack("!HBH", len(NAME) + 3, 0, len(NAME)) + NAME.encode(),
        0x0010: b"\x00\x0c\x02h2\x08http/1.1",
        0x000D: struct.pack("!H", 2 * len(sigalgs) + 2) + _u16s([GREASE, *sigalgs]),
        0x002B: bytes([6]) + _u16s([GREASE, 0x0304, 0x0303]),
    }
    order = [GREASE, 0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005,
             0x0023, 0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015]  # fmt: skip
    exts = b"".join(_ext(t, payloads.get(t, b"")) for t in order)
    body = (
        b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 2 * len(ciphers)) + _u16s(ciphers)
        + b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    )  # fmt: skip
    return _record(1, body)


def ja4s_doc_server_hello(random: bytes = bytes(32)) -> bytes:
    """The ServerHello of JA4S.md: TLS 1.2, cipher 0xc030, extensions 0005,0017,ff01,0000."""
    exts = b"".join(_ext(t, b"") for t in (0x0005, 0x0017, 0xFF01, 0x0000))
    body = b"\x03\x03" + random + b"\x00\xc0\x30\x00" + struct.pack("!H", len(exts)) + exts
    return _record(2, body, 0x0303)


# -- the JA4 documentation's worked examples ------------------------------------------------------


def test_ja4_of_the_documentation_example() -> None:
    # JA4.md: "JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1"; steps: 15 ciphers and 16 extensions
    # without GREASE; sha256("002f,0035,...,cca9")[:12] = 8daaf6152771; sha256 of the sorted
    # extensions without 0000/0010, "_", the signature algorithms in order [:12] = e5627efa2ab1.
    h = w.Harness(tls.TlsAnalyzer).feed([(True, ja4_doc_client_hello())])
    assert ("10.20.0.11", "tls.ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1") in h.observations
    sorted_ciphers = "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
    assert hashlib.sha256(sorted_ciphers.encode()).hexdigest()[:12] == "8daaf6152771"


def test_ja4s_of_the_documentation_example() -> None:
    # JA4S.md: "JA4S = t120400_c030_4e8089b08790" (extensions hashed in the order seen).
    h = w.Harness(tls.TlsAnalyzer).feed([(False, ja4s_doc_server_hello())])
    assert h.about_client == [
        (False, "tls.version", "TLS 1.2"),
        (False, "tls.cipher", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
        (False, "tls.ja4s", "t120400_c030_4e8089b08790"),
    ]


def test_client_hello_observations_drop_grease() -> None:
    h = w.Harness(tls.TlsAnalyzer).feed([(True, ja4_doc_client_hello())])
    assert h.about_client == [
        (True, "tls.client_version", "TLS 1.2"),
        (True, "tls.supported_versions", "TLS 1.3,TLS 1.2"),
        (True, "tls.sni", NAME),
        (True, "tls.ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1"),
        (True, "tls.cipher_suites", "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,"
         "009c,009d,002f,0035"),
    ]  # fmt: skip
    assert not h.analyzer.done  # the ServerHello is still to come


def test_a_hello_split_over_records_and_segments_gives_the_same_ja4() -> None:
    record = ja4_doc_client_hello()
    msg = record[5:]
    split = _two_records(msg, 100)
    h = w.Harness(tls.TlsAnalyzer).feed([(True, split)], chunk=7)
    assert ("10.20.0.11", "tls.ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1") in h.observations


def _two_records(msg: bytes, at: int) -> bytes:
    head, tail = msg[:at], msg[at:]
    return b"".join(struct.pack("!BHH", 22, 0x0301, len(p)) + p for p in (head, tail))


def test_hello_retry_request_is_skipped_for_the_real_server_hello() -> None:
    hrr = ja4s_doc_server_hello(tls.HELLO_RETRY_REQUEST_RANDOM)
    h = w.Harness(tls.TlsAnalyzer).feed([(False, hrr), (False, ja4s_doc_server_hello())])
    assert [kind for _, kind, _ in h.about_client] == ["tls.version", "tls.cipher", "tls.ja4s"]


def test_names_of_versions_and_ciphers() -> None:
    assert [version_name(v) for v in (0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x7F1C)] == [
        "SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3", "0x7f1c",
    ]  # fmt: skip
    assert cipher_name(0x1303) == "TLS_CHACHA20_POLY1305_SHA256"
    assert cipher_name(0x0005) == "TLS_RSA_WITH_RC4_128_SHA"
    assert cipher_name(0x000A) == "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
    assert cipher_name(0x0002) == "TLS_RSA_WITH_NULL_SHA"
    assert cipher_name(0xCCA8) == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
    assert cipher_name(0xC0FF) == "0xc0ff"


def test_ja4_memo_is_bounded_and_keyed_on_every_field_but_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tls, "MAX_MEMO_ENTRIES", 2)
    monkeypatch.setattr(tls, "_JA4_MEMO", {})
    base = ClientHello(0x0303, (0x1301, 0x1302), (0x0000, 0x000D), "a.example", None, (0x0403,), ())
    assert ja4(base) == ja4(_with(base, server_name="b.example"))
    other = _with(base, signature_algorithms=(0x0804,))
    assert ja4(other) != ja4(base)
    assert ja4(_with(base, legacy_version=0x0301)).startswith("t10d")
    assert len(tls._JA4_MEMO) <= 2
    assert ja4(base) == tls._ja4(base) and ja4(other) == tls._ja4(other)


def test_ja4_alpn_characters_follow_the_specification() -> None:
    # JA4.md "ALPN Extension Value": non-alphanumeric first/last bytes use the hex form.
    base = ClientHello(0x0303, (0x1301,), (0x0010,), None, b"h2", (), ())
    cases = {b"h2": "h2", b"http/1.1": "h1", b"\xab": "ab", b"\xab\xcd": "ad", b"0\xab": "3b",
             b"0\xab\xcd1": "01", None: "00"}  # fmt: skip
    for alpn, chars in cases.items():
        hello = ClientHello(0x0303, (0x1301,), (0x0010,) if alpn else (), None, alpn, (), ())
        assert ja4(hello)[8:10] == chars, alpn
    assert ja4(base).startswith("t12i0101h2_")
    empty = ServerHello(0x0303, 0x002F, (), None, None, False)
    assert ja4s(empty) == "t120000_002f_000000000000"


# -- the sample capture through the pipeline ---------------------------------------------------


def test_sample_capture_observations() -> None:
    run = w.observe_capture(TLS_PCAP, tls.SPEC)
    assert run.anomalies == []
    assert run.done_before_close == [True, True, True, True]
    server = "10.10.0.80"
    cert = [
        (server, "tls.cert_subject", CERT_NAME),
        (server, "tls.cert_issuer", CERT_NAME),
        (server, "tls.cert_not_after", "2036-12-01T22:12:06Z"),
    ]
    # (tls.cipher_suites: test_offered_cipher_suites_equal_tsharks)
    assert [o for o in run.observations if o[1] != "tls.cipher_suites"] == [
        ("10.40.0.31", "tls.client_version", "TLS 1.2"),
        ("10.40.0.31", "tls.sni", NAME),
        ("10.40.0.31", "tls.ja4", "t12d2807h2_d943125447b4_a44c6288192a"),
        (server, "tls.version", "TLS 1.2"),
        (server, "tls.cipher", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
        (server, "tls.ja4s", "t120300_c030_460f64128655"),
        (server, "tls.server_name", NAME),
        *cert,
        ("10.10.0.20", "tls.client_version", "TLS 1.2"),
        ("10.10.0.20", "tls.supported_versions", "TLS 1.3"),
        ("10.10.0.20", "tls.sni", NAME),
        ("10.10.0.20", "tls.ja4", "t13d0412h2_16476d049b0b_85302d7e289e"),
        (server, "tls.version", "TLS 1.3"),
        (server, "tls.cipher", "TLS_AES_256_GCM_SHA384"),
        (server, "tls.ja4s", "t130200_1302_a56c5b993250"),
        (server, "tls.server_name", NAME),
        ("10.20.0.11", "tls.client_version", "TLS 1.0"),
        ("10.20.0.11", "tls.sni", NAME),
        ("10.20.0.11", "tls.ja4", "t10d0906h2_c491f621fb4c_d4d584b446d3"),
        (server, "tls.version", "TLS 1.0"),
        (server, "tls.cipher", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
        (server, "tls.ja4s", "t100400_c014_8cb429d90fad"),
        (server, "tls.server_name", NAME),
        *cert,
        ("10.30.0.10", "tls.client_version", "TLS 1.1"),
        ("10.30.0.10", "tls.sni", NAME),
        ("10.30.0.10", "tls.ja4", "t11d090600_c491f621fb4c_195413a0cc0f"),
        (server, "tls.version", "TLS 1.1"),
        (server, "tls.cipher", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
        (server, "tls.ja4s", "t110500_c014_a9440a032a1a"),
        (server, "tls.server_name", NAME),
        *cert,
    ]


def _h12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def test_sample_capture_agrees_with_tshark() -> None:
    """SNI, versions, ciphers and certificate names as tshark reads them, and JA4/JA4S computed
    here from tshark's cipher, extension, signature algorithm and ALPN fields."""
    out = tshark(
        "-r", str(TLS_PCAP), "-Y", "tls.handshake.type == 1 || tls.handshake.type == 2",
        "-T", "fields", "-E", "occurrence=a", "-e", "tls.handshake.type",
        "-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.ciphersuite",
        "-e", "tls.handshake.version", "-e", "tls.handshake.extension.type",
        "-e", "tls.handshake.sig_hash_alg", "-e", "tls.handshake.extensions_alpn_str",
        "-e", "tls.handshake.extensions.supported_version",
    )  # fmt: skip
    expect: list[tuple[str, str]] = []
    for line in out.splitlines():
        kind, sni, ciphers, version, exts, sigalgs, alpn, supported = line.split("\t")
        cs = [int(c, 16) for c in ciphers.split(",")]
        ext = [int(e) for e in exts.split(",")]
        sv = [int(v, 16) for v in supported.split(",") if v]
        v = max(sv) if sv else int(version, 16)
        first_alpn = alpn.split(",")[0]
        chars = first_alpn[0] + first_alpn[-1] if first_alpn else "00"
        if kind.split(",")[0] == "1":
            expect += [("tls.sni", sni), ("tls.client_version", version_name(int(version, 16)))]
            kept = ",".join(sorted(f"{e:04x}" for e in ext if e not in (0, 16)))
            sig = ",".join(s[2:] for s in sigalgs.split(",") if s)
            ja4_c = _h12(kept + ("_" + sig if sig else ""))
            ja4_b = _h12(",".join(sorted(f"{c:04x}" for c in cs)))
            digits = f"{len(cs):02d}{len(ext):02d}"
            version_code = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}[v]
            expect.append(("tls.ja4", f"t{version_code}d{digits}{chars}_{ja4_b}_{ja4_c}"))
        else:
            ja4s_c = _h12(",".join(f"{e:04x}" for e in ext))
            version_code = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}[v]
            expect += [
                ("tls.version", version_name(v)),
                ("tls.cipher", cipher_name(cs[0])),
                ("tls.ja4s", f"t{version_code}{len(ext):02d}{chars}_{cs[0]:04x}_{ja4s_c}"),
            ]
    run = w.observe_capture(TLS_PCAP, tls.SPEC)
    ours = [(k, v) for _, k, v in run.observations if k in {k for k, _ in expect}]
    assert sorted(ours) == sorted(expect)
    names = tshark(
        "-r", str(TLS_PCAP), "-Y", "tls.handshake.type == 11", "-T", "fields",
        "-e", "x509sat.printableString", "-e", "x509sat.uTF8String", "-e", "x509af.utcTime",
    )  # fmt: skip
    for line in names.splitlines():
        strings = ",".join(s for s in line.split("\t")[:2] if s).split(",")
        organization, common_name = strings[0], strings[1]
        assert f"CN={common_name},O={organization}" == CERT_NAME
        not_after = line.split("\t")[2].split(",")[1]  # "2036-12-01 22:12:06 (UTC)"
        assert not_after.replace(" (UTC)", "Z").replace(" ", "T") == "2036-12-01T22:12:06Z"


# -- certificates -------------------------------------------------------------------------------


def _certificate(not_after: datetime.datetime) -> bytes:
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Radiology+IT"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "PACS"),
                ]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, " pacs01 ")]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.EMAIL_ADDRESS, "pacs@example.org")]
            ),
        ]
    )
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Hospital CA ü")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(42)
        .not_valid_before(start)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def test_a_certificate_is_read_once_and_cryptography_loads_when_first_needed() -> None:
    der = _certificate(datetime.datetime(2040, 1, 1, tzinfo=datetime.UTC))
    tls._CERT_MEMO.clear()
    first = parse_certificate(der)
    assert tls._x509_loaded and isinstance(first, tls.Certificate)
    assert parse_certificate(der) is first  # the second handshake's copy: the memo
    assert parse_certificate(der + b"") is first
    assert parse_certificate(b"notaDER!") is not first


@pytest.mark.parametrize("year", [2049, 2051])  # UTCTime, then GeneralizedTime (RFC 5280)
def test_der_walk_matches_cryptography(year: int) -> None:
    der = _certificate(datetime.datetime(year, 6, 30, 12, 0, 5, tzinfo=datetime.UTC))
    walked = parse_certificate_der(der)
    assert walked == parse_certificate(der)
    assert isinstance(walked, tls.Certificate)
    assert walked.subject == (
        "1.2.840.113549.1.9.1=pacs@example.org,CN=\\ pacs01\\ ,"
        "OU=PACS+O=Example\\, Radiology\\+IT,C=US"  # DER sorts the SET of a multi-valued RDN
    )
    assert walked.issuer == "CN=Example Hospital CA ü"
    assert walked.not_after == f"{year}-06-30T12:00:05Z"


# -- anomalies ----------------------------------------------------------------------------------


def test_bytes_that_are_not_tls_are_malformed() -> None:
    h = w.Harness(tls.TlsAnalyzer).feed([(True, w.TLS_PLAIN_HTTP_ON_443)])
    assert h.anomaly_names() == ["tls.malformed"]
    assert h.analyzer.done and h.observations == []


def test_cipher_suites_overrunning_the_hello_are_malformed() -> None:
    h = w.Harness(tls.TlsAnalyzer).feed([(True, w.TLS_CLIENT_HELLO_CIPHER_LENGTH_OVERRUN)])
    assert h.anomaly_names() == ["tls.malformed"]
    assert isinstance(
        parse_client_hello(w.TLS_CLIENT_HELLO_CIPHER_LENGTH_OVERRUN[9:]), tls.ParseError
    )
    assert isinstance(parse_server_hello(b"\x03\x03"), tls.ParseError)


def test_a_certificate_that_is_not_der_is_reported() -> None:
    h = w.Harness(tls.TlsAnalyzer).feed([(False, w.TLS_CERTIFICATE_NOT_DER)])
    assert h.anomaly_names() == ["tls.bad_certificate"]
    assert [k for _, k, _ in h.about_client] == ["tls.version", "tls.cipher", "tls.ja4s"]
    assert h.analyzer.done
    assert isinstance(parse_certificate_der(b"notaDER!"), tls.ParseError)


def test_a_handshake_that_never_ends_stops_at_64_kib() -> None:
    # A handshake message announcing 16 MiB, sent in full records: never complete.
    head = b"\x0b\xff\xff\xff" + bytes(16380)
    records = [struct.pack("!BHH", 22, 0x0303, len(head)) + head]
    records += [struct.pack("!BHH", 22, 0x0303, 16384) + bytes(16384)] * 4
    h = w.Harness(tls.TlsAnalyzer).feed([(False, r) for r in records])
    assert h.anomaly_names() == ["tls.handshake_too_large"]
    assert h.analyzer.done


def test_change_cipher_spec_ends_the_analysis() -> None:
    h = w.Harness(tls.TlsAnalyzer).feed([(False, bytes.fromhex("140303000101"))])
    assert h.analyzer.done and h.anomalies == []


def test_spec_reuses_the_detection_probe() -> None:
    assert (tls.SPEC.name, tls.SPEC.tcp_ports, tls.SPEC.probe) == (
        "tls",
        (443,),
        detect.probe_tls,
    )


def test_offered_cipher_suites_equal_tsharks() -> None:
    """``tls.cipher_suites`` is the ClientHello's list in the order sent, GREASE dropped."""
    run = w.observe_capture(TLS_PCAP, tls.SPEC)
    got = {(ip, v) for ip, k, v in run.observations if k == "tls.cipher_suites"}
    rows = tshark(
        "-r", str(TLS_PCAP), "-Y", "tls.handshake.type == 1", "-T", "fields",
        "-e", "ip.src", "-e", "tls.handshake.ciphersuite",
    ).splitlines()  # fmt: skip
    want = set()
    for row in rows:
        ip, suites = row.split("\t")
        values = [int(x, 16) for x in suites.split(",")]
        kept = [v for v in values if v not in tls.GREASE_VALUES]
        want.add((ip, ",".join(f"{v:04x}" for v in kept)[: tls.MAX_VALUE_CHARS]))
    assert len(want) == 4 and got == want
