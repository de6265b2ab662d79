"""TLS handshake analyzer: versions, SNI, cipher, JA4/JA4S and the leaf certificate's names.

Only the cleartext start of a TLS connection is read; the analyzer is ``done`` as soon as the
server's Certificate (TLS <= 1.2), its ServerHello (TLS 1.3: the rest is encrypted), a
ServerHelloDone, a ChangeCipherSpec, Alert or ApplicationData record was seen, or 64 KiB of one
direction went by, so bulk data is never reassembled.

Record layer, RFC 8446 §5.1 TLSPlaintext (RFC 5246 §6.2.1)::

    0 ContentType uint8 (20 change_cipher_spec, 21 alert, 22 handshake, 23 application_data)
    1 legacy_record_version uint16 (0x0300..0x0304)   3 length uint16   5 fragment

Handshake messages may span records and a record may hold several (RFC 8446 §5.1); they are
reassembled per direction (RFC 8446 §4, RFC 5246 §7.4)::

    0 msg_type uint8 (1 client_hello, 2 server_hello, 11 certificate, 14 server_hello_done)
    1 length uint24   4 body

ClientHello body, RFC 8446 §4.1.2 (RFC 5246 §7.4.1.2)::

    0 legacy_version uint16   2 random[32]   34 legacy_session_id <0..32> (uint8 length)
    .. cipher_suites <2..2^16-2> (uint16 length, uint16 each)
    .. legacy_compression_methods <1..2^8-1> (uint8 length)
    .. extensions <8..2^16-1> (uint16 length; absent in old SSL 3.0/TLS 1.0 hellos)

ServerHello body, RFC 8446 §4.1.3::

    0 legacy_version uint16   2 random[32]   34 legacy_session_id_echo (uint8 length)
    .. cipher_suite uint16   .. legacy_compression_method uint8   .. extensions (uint16 length)

A ServerHello whose random is ``HELLO_RETRY_REQUEST_RANDOM`` is a HelloRetryRequest: it is
skipped and the second ServerHello is read. Extension, RFC 8446 §4.2: ``0 extension_type uint16
2 length uint16 4 data``. The ones read:

- server_name (0), RFC 6066 §3: ``0 list length uint16``, entries ``0 name_type uint8 (0
  host_name) 1 length uint16 3 HostName``.
- application_layer_protocol_negotiation (16), RFC 7301 §3.1: ``0 list length uint16``, entries
  ``0 length uint8 1 protocol name``.
- signature_algorithms (13), RFC 8446 §4.2.3: ``0 length uint16`` then uint16 schemes.
- supported_versions (43), RFC 8446 §4.2.1: ClientHello ``0 length uint8`` then uint16
  versions; ServerHello ``0 selected_version uint16``.

Certificate body (TLS <= 1.2), RFC 5246 §7.4.2: ``0 certificate_list length uint24``, entries
``0 length uint24 3 ASN.1 DER certificate``; the first is the server's (leaf) certificate.
X.509 (RFC 5280 §4.1) is read with the ``cryptography`` package when it is installed, else by
:func:`parse_certificate_der`, a minimal DER walk of the TBSCertificate::

    Certificate SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER,
      signature AlgorithmIdentifier, issuer Name, validity SEQUENCE { notBefore, notAfter },
      subject Name, ... }, ... }

JA4 and JA4S follow the FoxIO JA4 specification (``technical_details/JA4.md`` and ``JA4S.md``
of github.com/FoxIO-LLC/ja4): GREASE values (RFC 8701) are dropped everywhere.

Observations: ``tls.client_version``, ``tls.supported_versions``, ``tls.sni``, ``tls.ja4``
(client); ``tls.version``, ``tls.cipher``, ``tls.ja4s``, ``tls.server_name``,
``tls.cert_subject``, ``tls.cert_issuer``, ``tls.cert_not_after`` (server).
"""

from __future__ import annotations

import hashlib
import importlib
import struct
from dataclasses import dataclass
from typing import Any

from monitor.parsers.base import FlowContext, ParserSpec, Value, side
from monitor.parsers.detect import probe_tls
from monitor.parsers.text import MAX_VALUE_CHARS, clean_value


def _load_x509() -> Any:
    """The ``cryptography`` X.509 reader (a dependency), or None: a minimal DER walk is used
    without it. Imported by name so that type-checking this module (mypyc's build does, in an
    environment without the package) never depends on it being installed; imported at the
    first certificate, not at start-up (20 ms, for runs that see none)."""
    global _x509, _x509_loaded
    if not _x509_loaded:
        _x509_loaded = True
        try:
            _x509 = importlib.import_module("cryptography.x509")
        except ImportError:  # pragma: no cover - the DER walk is tested on its own
            _x509 = None
    return _x509


_x509: Any = None
_x509_loaded = False

UNPACK_U8 = struct.Struct("!B").unpack_from
UNPACK_U16 = struct.Struct("!H").unpack_from
UNPACK_EXTENSION_HEADER = struct.Struct("!HH").unpack_from  # extension_type, length
RECORD_HEADER_LENGTH = 5
HANDSHAKE_HEADER_LENGTH = 4

# RFC 8446 §5.1 ContentType.
CONTENT_TYPE_CHANGE_CIPHER_SPEC = 20
CONTENT_TYPE_ALERT = 21
CONTENT_TYPE_HANDSHAKE = 22
CONTENT_TYPE_APPLICATION_DATA = 23
CONTENT_TYPE_HEARTBEAT = 24  # RFC 6520

# RFC 8446 §4 HandshakeType.
HANDSHAKE_TYPE_CLIENT_HELLO = 1
HANDSHAKE_TYPE_SERVER_HELLO = 2
HANDSHAKE_TYPE_CERTIFICATE = 11
HANDSHAKE_TYPE_SERVER_HELLO_DONE = 14

# RFC 8446 §4.2 ExtensionType.
EXTENSION_SERVER_NAME = 0x0000
EXTENSION_SIGNATURE_ALGORITHMS = 0x000D
EXTENSION_APPLICATION_LAYER_PROTOCOL_NEGOTIATION = 0x0010
EXTENSION_SUPPORTED_VERSIONS = 0x002B
SERVER_NAME_TYPE_HOST_NAME = 0

#: RFC 8446 §4.1.3: SHA-256("HelloRetryRequest"), the random of a HelloRetryRequest.
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)

#: Largest TLSCiphertext fragment (RFC 5246 §6.2.3: 2^14 + 2048).
MAX_RECORD_LENGTH = (1 << 14) + 2048
#: Bytes of one direction read at most before giving up on the handshake.
MAX_HANDSHAKE_BYTES = 64 << 10

ANOMALY_MALFORMED = "tls.malformed"
ANOMALY_HANDSHAKE_TOO_LARGE = "tls.handshake_too_large"
ANOMALY_BAD_CERTIFICATE = "tls.bad_certificate"

TLS_VERSIONS = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
#: JA4 version field (JA4.md "TLS and DTLS Version"); anything else is "00".
JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}

#: IANA TLS Cipher Suites registry names of the common suites (RFC 8446 Appendix B.4, RFC 5246
#: Appendix A.5, RFC 5288, RFC 5289, RFC 7905, RFC 4492, RFC 8422, RFC 7465 for RC4).
CIPHER_SUITES: dict[int, str] = {
    0x0000: "TLS_NULL_WITH_NULL_NULL",
    0x0001: "TLS_RSA_WITH_NULL_MD5",
    0x0002: "TLS_RSA_WITH_NULL_SHA",
    0x003B: "TLS_RSA_WITH_NULL_SHA256",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0x5600: "TLS_FALLBACK_SCSV",
    0xC002: "TLS_ECDH_ECDSA_WITH_RC4_128_SHA",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    0xC008: "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC010: "TLS_ECDHE_RSA_WITH_NULL_SHA",
    0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

#: RFC 5280 / RFC 4514 §3 attribute type short names (the ones ``cryptography`` also uses).
X509_NAME_OIDS = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}


#: RFC 8701 §2 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa.
GREASE_VALUES = frozenset(range(0x0A0A, 0x10000, 0x1010))


def is_grease(value: int) -> bool:
    """RFC 8701 §2 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def version_name(value: int) -> str:
    """``TLS 1.2`` for 0x0303; unknown versions as ``0xXXXX``."""
    return TLS_VERSIONS.get(value) or f"0x{value:04x}"


def cipher_list(suites: tuple[int, ...]) -> str:
    """The offered cipher suites as sent, ``c02b,c02f,...`` (4 hex digits each, GREASE already
    dropped), cut at :data:`~monitor.parsers.text.MAX_VALUE_CHARS`. Memoised: a client sends
    the same list in every handshake."""
    value = _CIPHER_LIST_MEMO.get(suites)
    if value is None:
        if len(_CIPHER_LIST_MEMO) >= MAX_MEMO_ENTRIES:
            _CIPHER_LIST_MEMO.clear()
        value = _CIPHER_LIST_MEMO[suites] = ",".join(f"{v:04x}" for v in suites)[:MAX_VALUE_CHARS]
    return value


def version_list(versions: tuple[int, ...]) -> str:
    """supported_versions named and joined, ``TLS 1.3,TLS 1.2`` (memoised like
    :func:`cipher_list`)."""
    value = _VERSION_LIST_MEMO.get(versions)
    if value is None:
        if len(_VERSION_LIST_MEMO) >= MAX_MEMO_ENTRIES:
            _VERSION_LIST_MEMO.clear()
        value = _VERSION_LIST_MEMO[versions] = ",".join(version_name(v) for v in versions)
    return value


def cipher_name(value: int) -> str:
    """IANA name of a cipher suite, or ``0xXXXX``."""
    return CIPHER_SUITES.get(value) or f"0x{value:04x}"


# -- wire units -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParseError:
    """A unit that could not be decoded (becomes ``tls.malformed``)."""

    detail: str


class ClientHello(Value):
    """RFC 8446 §4.1.2 ClientHello, the fields read (GREASE values dropped): the extension
    types in the order sent, the first ALPN protocol name (raw)."""

    FIELDS = ("legacy_version", "cipher_suites", "extensions", "server_name", "alpn",
              "signature_algorithms", "supported_versions")  # fmt: skip

    def __init__(
        self,
        legacy_version: int,
        cipher_suites: tuple[int, ...],
        extensions: tuple[int, ...],
        server_name: str | None,
        alpn: bytes | None,
        signature_algorithms: tuple[int, ...],
        supported_versions: tuple[int, ...],
    ) -> None:
        self.legacy_version = legacy_version
        self.cipher_suites = cipher_suites
        self.extensions = extensions
        self.server_name = server_name
        self.alpn = alpn
        self.signature_algorithms = signature_algorithms
        self.supported_versions = supported_versions


class ServerHello(Value):
    """RFC 8446 §4.1.3 ServerHello, the fields read (``selected_version``: that of the
    supported_versions extension, when present)."""

    FIELDS = ("legacy_version", "cipher_suite", "extensions", "selected_version", "alpn",
              "hello_retry_request")  # fmt: skip

    def __init__(
        self,
        legacy_version: int,
        cipher_suite: int,
        extensions: tuple[int, ...],
        selected_version: int | None,
        alpn: bytes | None,
        hello_retry_request: bool,
    ) -> None:
        self.legacy_version = legacy_version
        self.cipher_suite = cipher_suite
        self.extensions = extensions
        self.selected_version = selected_version
        self.alpn = alpn
        self.hello_retry_request = hello_retry_request

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions when present (RFC 8446 §4.2.1)."""
        return self.selected_version if self.selected_version is not None else self.legacy_version


@dataclass(frozen=True, slots=True)
class Certificate:
    """The leaf certificate's names (RFC 4514 strings) and expiry (ISO 8601 UTC)."""

    subject: str
    issuer: str
    not_after: str


def _extension_blocks(
    body: bytes, off: int, wanted: frozenset[int]
) -> tuple[list[int], list[tuple[int, int, int]]]:
    """The extensions block at ``off`` (RFC 8446 §4.2): the non-GREASE extension types in order,
    and ``(type, start, end)`` of the ones in ``wanted``; none when the hello ends before it.

    Only the framing is read here, so a block that runs past the hello fails before any
    extension's content is looked at.
    """
    types: list[int] = []
    found: list[tuple[int, int, int]] = []
    if off >= len(body):
        return types, found
    (total,) = UNPACK_U16(body, off)
    off += 2
    end = off + total
    if end > len(body):
        raise ValueError("extensions length runs past the hello")
    while off < end:
        ext_type, ext_len = UNPACK_EXTENSION_HEADER(body, off)
        off += 4
        stop = off + ext_len
        if stop > end:
            raise ValueError(f"extension 0x{ext_type:04x} runs past the extensions block")
        if ext_type not in GREASE_VALUES:
            types.append(ext_type)
            if ext_type in wanted:
                found.append((ext_type, off, stop))
        off = stop
    return types, found


def _u16_list(data: bytes, off: int, length: int) -> tuple[int, ...]:
    if off + length > len(data) or length % 2:
        raise ValueError("uint16 list length is odd or runs past its field")
    return struct.unpack_from(f"!{length // 2}H", data, off)


def _without_grease(values: tuple[int, ...]) -> tuple[int, ...]:
    return tuple([v for v in values if v not in GREASE_VALUES])


def _first_alpn(data: bytes) -> bytes | None:
    """First protocol name of an ALPN extension (RFC 7301 §3.1)."""
    if len(data) < 3:
        return None
    n = data[2]
    return data[3 : 3 + n]


def _server_name(data: bytes) -> str | None:
    """The host_name of a server_name extension (RFC 6066 §3)."""
    (total,) = UNPACK_U16(data, 0)
    off, end = 2, min(2 + total, len(data))
    while off + 3 <= end:
        name_type = data[off]
        (n,) = UNPACK_U16(data, off + 1)
        off += 3
        if name_type == SERVER_NAME_TYPE_HOST_NAME:
            return clean_value(data[off : off + n])
        off += n
    return None


#: The ClientHello extensions whose content is read; the others are only listed.
CLIENT_HELLO_READ = frozenset(
    (
        EXTENSION_SERVER_NAME,
        EXTENSION_APPLICATION_LAYER_PROTOCOL_NEGOTIATION,
        EXTENSION_SIGNATURE_ALGORITHMS,
        EXTENSION_SUPPORTED_VERSIONS,
    )
)
#: The ServerHello extensions whose content is read.
SERVER_HELLO_READ = frozenset(
    (EXTENSION_APPLICATION_LAYER_PROTOCOL_NEGOTIATION, EXTENSION_SUPPORTED_VERSIONS)
)


def parse_client_hello(body: bytes) -> ClientHello | ParseError:
    """Decode a ClientHello body (after the 4-byte handshake header). Never raises."""
    try:
        (legacy_version,) = UNPACK_U16(body, 0)
        off = 34 + 1 + body[34]
        (n,) = UNPACK_U16(body, off)
        ciphers = _u16_list(body, off + 2, n)
        off += 2 + n
        off += 1 + body[off]
        if off > len(body):
            raise ValueError("compression methods run past the hello")
        sni = alpn = None
        sigalgs: tuple[int, ...] = ()
        versions: tuple[int, ...] = ()
        types, found = _extension_blocks(body, off, CLIENT_HELLO_READ)
        for ext_type, start, stop in found:
            if ext_type == EXTENSION_SERVER_NAME:
                if stop > start:
                    sni = _server_name(body[start:stop])
            elif ext_type == EXTENSION_APPLICATION_LAYER_PROTOCOL_NEGOTIATION:
                alpn = _first_alpn(body[start:stop])
            elif ext_type == EXTENSION_SIGNATURE_ALGORITHMS:
                if stop - start >= 2:
                    data = body[start:stop]
                    sigalgs = _u16_list(data, 2, UNPACK_U16(data, 0)[0])
            elif stop > start:  # supported_versions
                versions = _u16_list(body[start:stop], 1, body[start])
    except (IndexError, ValueError, struct.error) as exc:
        return ParseError(f"ClientHello: {exc or type(exc).__name__}")
    return ClientHello(
        legacy_version=legacy_version,
        cipher_suites=_without_grease(ciphers),
        extensions=tuple(types),
        server_name=sni or None,
        alpn=alpn,
        signature_algorithms=_without_grease(sigalgs),
        supported_versions=_without_grease(versions),
    )


def parse_server_hello(body: bytes) -> ServerHello | ParseError:
    """Decode a ServerHello body (after the 4-byte handshake header). Never raises."""
    try:
        (legacy_version,) = UNPACK_U16(body, 0)
        if len(body) < 35:
            raise ValueError("shorter than version, random and session id length")
        hrr = body[2:34] == HELLO_RETRY_REQUEST_RANDOM
        off = 34 + 1 + body[34]
        (cipher,) = UNPACK_U16(body, off)
        off += 3  # cipher_suite, legacy_compression_method
        if off > len(body):
            raise ValueError("compression method runs past the hello")
        selected = None
        alpn = None
        types, found = _extension_blocks(body, off, SERVER_HELLO_READ)
        for ext_type, start, stop in found:
            if ext_type == EXTENSION_SUPPORTED_VERSIONS:
                if stop - start >= 2:
                    (selected,) = UNPACK_U16(body, start)
            else:
                alpn = _first_alpn(body[start:stop])
    except (IndexError, ValueError, struct.error) as exc:
        return ParseError(f"ServerHello: {exc or type(exc).__name__}")
    return ServerHello(legacy_version, cipher, tuple(types), selected, alpn, hrr)


# -- JA4 ----------------------------------------------------------------------------------------

#: ASCII letters and digits (JA4.md "ALPN Extension Value": alphanumeric first and last bytes).
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: JA4/JA4S strings kept per key at most; a full memo is emptied (a site's clients send a few
#: hundred distinct hellos, so misses stay rare).
MAX_MEMO_ENTRIES = 4096
_JA4_MEMO: dict[tuple[object, ...], str] = {}
_JA4S_MEMO: dict[tuple[object, ...], str] = {}
_CIPHER_LIST_MEMO: dict[tuple[int, ...], str] = {}
_VERSION_LIST_MEMO: dict[tuple[int, ...], str] = {}
_NO_HASH = "000000000000"


def _alpn_chars(alpn: bytes | None) -> str:
    """First and last character of the first ALPN value (JA4.md "ALPN Extension Value")."""
    if not alpn:
        return "00"
    first, last = alpn[0], alpn[-1]
    if first in _ALNUM and last in _ALNUM:
        return chr(first) + chr(last)
    hexed = alpn.hex()
    return hexed[0] + hexed[-1]


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _hex_list(values: tuple[int, ...] | list[int]) -> str:
    """``0a0a,1301`` (4 hex digits each, comma-separated)."""
    return ",".join([f"{v:04x}" for v in values])


def ja4(hello: ClientHello) -> str:
    """JA4 of a ClientHello over TCP (FoxIO JA4.md): ``t13d1516h2_8daaf6152771_e5627efa2ab1``.

    Memoised on the fields it depends on (everything but the server name).
    """
    key = (
        hello.legacy_version,
        hello.supported_versions,
        hello.cipher_suites,
        hello.extensions,
        hello.alpn,
        hello.signature_algorithms,
    )
    value = _JA4_MEMO.get(key)
    if value is None:
        if len(_JA4_MEMO) >= MAX_MEMO_ENTRIES:
            _JA4_MEMO.clear()
        value = _JA4_MEMO[key] = _ja4(hello)
    return value


def _ja4(hello: ClientHello) -> str:
    versions = hello.supported_versions
    version = JA4_VERSIONS.get(max(versions) if versions else hello.legacy_version, "00")
    ciphers = hello.cipher_suites
    exts = hello.extensions
    sni = "d" if EXTENSION_SERVER_NAME in exts else "i"
    a = (
        f"t{version}{sni}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}"
        f"{_alpn_chars(hello.alpn)}"
    )
    # Fixed-width lower-case hex sorts as the numbers do: sort the numbers.
    b = _hash12(_hex_list(sorted(ciphers))) if ciphers else _NO_HASH
    kept = sorted(
        [
            e
            for e in exts
            if e != EXTENSION_SERVER_NAME and e != EXTENSION_APPLICATION_LAYER_PROTOCOL_NEGOTIATION
        ]
    )
    if kept:
        text = _hex_list(kept)
        if hello.signature_algorithms:
            text += "_" + _hex_list(hello.signature_algorithms)
        c = _hash12(text)
    else:
        c = _NO_HASH
    return f"{a}_{b}_{c}"


def ja4s(hello: ServerHello) -> str:
    """JA4S of a ServerHello over TCP (FoxIO JA4S.md): ``t120400_c030_4e8089b08790``.

    Memoised on the fields it depends on.
    """
    key = (hello.version, hello.cipher_suite, hello.extensions, hello.alpn)
    value = _JA4S_MEMO.get(key)
    if value is None:
        if len(_JA4S_MEMO) >= MAX_MEMO_ENTRIES:
            _JA4S_MEMO.clear()
        exts = hello.extensions
        version = JA4_VERSIONS.get(hello.version, "00")
        a = f"t{version}{min(len(exts), 99):02d}{_alpn_chars(hello.alpn)}"
        c = _hash12(_hex_list(exts)) if exts else _NO_HASH
        value = _JA4S_MEMO[key] = f"{a}_{hello.cipher_suite:04x}_{c}"
    return value


# -- X.509 --------------------------------------------------------------------------------------


def _der(buf: bytes, off: int) -> tuple[int, int, int]:
    """``(tag, content offset, content end)`` of the DER TLV at ``off`` (X.690 §8.1)."""
    tag = buf[off]
    n = buf[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4:
            raise ValueError("unsupported DER length form")
        n = int.from_bytes(buf[off : off + k], "big")
        off += k
    end = off + n
    if end > len(buf):
        raise ValueError("DER length runs past the certificate")
    return tag, off, end


def _oid(data: bytes) -> str:
    """Dotted text of an OBJECT IDENTIFIER's contents (X.690 §8.19)."""
    parts = []
    value = 0
    for byte in data:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    if not parts:
        return ""
    first = min(parts[0] // 40, 2)
    return ".".join(str(p) for p in [first, parts[0] - 40 * first, *parts[1:]])


def _escape_rfc4514(value: str) -> str:
    """RFC 4514 §2.4 escaping of an attribute value."""
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


_STRING_TAGS = {0x0C: "utf-8", 0x13: "latin-1", 0x16: "latin-1", 0x14: "latin-1", 0x1E: "utf-16-be"}


def _name(buf: bytes, off: int, end: int) -> str:
    """RFC 4514 string of an X.501 Name (RDNs in reverse order, AVAs of one RDN joined by +)."""
    rdns = []
    while off < end:
        _, set_off, set_end = _der(buf, off)
        off = set_end
        avas = []
        while set_off < set_end:
            _, seq_off, seq_end = _der(buf, set_off)
            set_off = seq_end
            _, oid_off, oid_end = _der(buf, seq_off)
            vtag, v_off, v_end = _der(buf, oid_end)
            oid = _oid(buf[oid_off:oid_end])
            raw = buf[v_off:v_end]
            encoding = _STRING_TAGS.get(vtag)
            if encoding is None:
                text = "#" + buf[oid_end:v_end].hex()
            else:
                text = _escape_rfc4514(raw.decode(encoding, "replace"))
            avas.append(f"{X509_NAME_OIDS.get(oid, oid)}={text}")
        rdns.append("+".join(avas))
    return ",".join(reversed(rdns))


def _time(tag: int, raw: bytes) -> str:
    """UTCTime (0x17, RFC 5280 §4.1.2.5.1) or GeneralizedTime (0x18) as ISO 8601 UTC."""
    text = raw.decode("ascii")
    if tag == 0x17:
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    if len(text) < 15 or not text[:14].isdigit():
        raise ValueError(f"unsupported time {text!r}")
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]}T{text[8:10]}:{text[10:12]}:{text[12:14]}Z"


def parse_certificate_der(der: bytes) -> Certificate | ParseError:
    """Subject, issuer and notAfter of a DER certificate by a minimal walk. Never raises."""
    try:
        _, cert_off, _ = _der(der, 0)
        _, off, _ = _der(der, cert_off)  # tbsCertificate
        tag, _, end = _der(der, off)
        if tag == 0xA0:  # [0] EXPLICIT version
            off = end
        off = _der(der, off)[2]  # serialNumber
        off = _der(der, off)[2]  # signature
        _, i_off, i_end = _der(der, off)
        issuer = _name(der, i_off, i_end)
        _, v_off, v_end = _der(der, i_end)
        nb_end = _der(der, v_off)[2]
        na_tag, na_off, na_end = _der(der, nb_end)
        not_after = _time(na_tag, der[na_off:na_end])
        _, s_off, s_end = _der(der, v_end)
        subject = _name(der, s_off, s_end)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        return ParseError(f"certificate: {exc or type(exc).__name__}")
    return Certificate(subject, issuer, not_after)


def parse_certificate(der: bytes) -> Certificate | ParseError:
    """The leaf certificate's fields, with ``cryptography`` when installed. Never raises.

    Memoised on the certificate's bytes: a server sends the same one in every handshake, and
    reading it costs tens of microseconds."""
    value = _CERT_MEMO.get(der)
    if value is None:
        if len(_CERT_MEMO) >= MAX_MEMO_ENTRIES:
            _CERT_MEMO.clear()
        value = _CERT_MEMO[der] = _parse_certificate(der)
    return value


_CERT_MEMO: dict[bytes, Certificate | ParseError] = {}


def _parse_certificate(der: bytes) -> Certificate | ParseError:
    x509 = _load_x509()
    if x509 is None:
        return parse_certificate_der(der)
    try:
        cert: Any = x509.load_der_x509_certificate(der)
        return Certificate(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            not_after=cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    except Exception as exc:  # cryptography raises ValueError and friends on bad DER
        return ParseError(f"certificate: {type(exc).__name__}: {exc}")


def leaf_certificate(body: bytes) -> bytes | ParseError:
    """The first ASN.1Cert of a TLS <= 1.2 Certificate body (RFC 5246 §7.4.2)."""
    if len(body) < 6:
        return ParseError("Certificate: shorter than its list and first entry lengths")
    total = int.from_bytes(body[0:3], "big")
    n = int.from_bytes(body[3:6], "big")
    if total + 3 > len(body) or n + 3 > total:
        return ParseError("Certificate: a length runs past the message")
    return body[6 : 6 + n]


# -- analyzer -----------------------------------------------------------------------------------


class TlsAnalyzer:
    """TLS handshake analyzer for one flow (:class:`monitor.parsers.base.Analyzer`)."""

    __slots__ = ("_client_hello", "_ctx", "_done", "_hs_client", "_hs_server", "_rec_client",
                 "_rec_server", "_seen_client", "_seen_server", "_server_version")  # fmt: skip

    def __init__(self, ctx: FlowContext) -> None:
        self._ctx = ctx
        self._done = False
        # Per direction: the bytes of a record not complete yet, and of a handshake message
        # not complete yet. Usually empty: records and messages are read where they lie in the
        # delivered bytes, and only a part cut by a segment (or record) boundary is kept, and
        # joined again with the next (a copy each time, bounded by MAX_HANDSHAKE_BYTES).
        self._rec_client = b""
        self._rec_server = b""
        self._hs_client = b""
        self._hs_server = b""
        #: per direction: bytes taken so far (bounded by MAX_HANDSHAKE_BYTES)
        self._seen_client = 0
        self._seen_server = 0
        self._client_hello: ClientHello | None = None
        self._server_version: int | None = None

    @property
    def done(self) -> bool:
        return self._done

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        if self._done:
            return
        if from_client:
            seen = self._seen_client = self._seen_client + len(data)
            buf = self._rec_client + data if self._rec_client else data
        else:
            seen = self._seen_server = self._seen_server + len(data)
            buf = self._rec_server + data if self._rec_server else data
        n = len(buf)
        off = 0
        while not self._done and n - off >= RECORD_HEADER_LENGTH:
            ctype = buf[off]
            version = buf[off + 1] << 8 | buf[off + 2]
            length = buf[off + 3] << 8 | buf[off + 4]
            if (
                ctype < CONTENT_TYPE_CHANGE_CIPHER_SPEC
                or ctype > CONTENT_TYPE_HEARTBEAT
                or version >> 8 != 3
                or length > MAX_RECORD_LENGTH
            ):
                self._malformed(
                    from_client,
                    f"record header {buf[off : off + 5].hex()} at direction offset "
                    f"{seen - n + off}",
                )
                return
            end = off + RECORD_HEADER_LENGTH + length
            if end > n:
                break
            if ctype == CONTENT_TYPE_HANDSHAKE:
                self._handshake(from_client, buf, off + RECORD_HEADER_LENGTH, end, ts_ns)
            else:
                # ChangeCipherSpec, Alert, ApplicationData, Heartbeat: the cleartext part is over.
                self._done = True
            off = end
        rest = buf[off:] if off < n and not self._done else b""
        if from_client:
            self._rec_client = rest
        else:
            self._rec_server = rest
        if not self._done and seen > MAX_HANDSHAKE_BYTES:
            self._ctx.anomaly(
                ANOMALY_HANDSHAKE_TOO_LARGE,
                f"{side(from_client)}: {seen} bytes without the end of the handshake",
            )
            self._done = True

    def gap(self, from_client: bool, size: int) -> None:
        # Record framing is lost; the stream layer reported the gap already.
        self._done = True

    def close(self) -> None:
        self._done = True
        self._rec_client = self._rec_server = self._hs_client = self._hs_server = b""

    def _malformed(self, from_client: bool, detail: str) -> None:
        self._ctx.anomaly(ANOMALY_MALFORMED, f"{side(from_client)}: {detail}")
        self._done = True

    def _handshake(self, from_client: bool, buf: bytes, start: int, stop: int, ts_ns: int) -> None:
        """The handshake fragment ``buf[start:stop]`` (one record's body) of a direction."""
        pending = self._hs_client if from_client else self._hs_server
        if pending:
            hs = pending + buf[start:stop]
            off = 0
            stop = len(hs)
        else:
            hs = buf
            off = start
        while not self._done and stop - off >= HANDSHAKE_HEADER_LENGTH:
            msg_type = hs[off]
            length = hs[off + 1] << 16 | hs[off + 2] << 8 | hs[off + 3]
            end = off + HANDSHAKE_HEADER_LENGTH + length
            if end > stop:
                break
            self._message(from_client, msg_type, hs[off + HANDSHAKE_HEADER_LENGTH : end], ts_ns)
            off = end
        rest = hs[off:stop] if off < stop and not self._done else b""
        if from_client:
            self._hs_client = rest
        else:
            self._hs_server = rest

    def _message(self, from_client: bool, msg_type: int, body: bytes, ts_ns: int) -> None:
        observe = self._ctx.observe
        if from_client:
            if msg_type == HANDSHAKE_TYPE_CLIENT_HELLO and self._client_hello is None:
                hello = parse_client_hello(body)
                if isinstance(hello, ParseError):
                    self._malformed(True, hello.detail)
                    return
                self._client_hello = hello
                observe(True, "tls.client_version", version_name(hello.legacy_version), ts_ns)
                if hello.supported_versions:
                    names = version_list(hello.supported_versions)
                    observe(True, "tls.supported_versions", names, ts_ns)
                if hello.server_name:
                    observe(True, "tls.sni", hello.server_name, ts_ns)
                observe(True, "tls.ja4", ja4(hello), ts_ns)
                if hello.cipher_suites:
                    observe(True, "tls.cipher_suites", cipher_list(hello.cipher_suites), ts_ns)
            return
        if msg_type == HANDSHAKE_TYPE_SERVER_HELLO and self._server_version is None:
            server = parse_server_hello(body)
            if isinstance(server, ParseError):
                self._malformed(False, server.detail)
                return
            if server.hello_retry_request:
                return  # the second ClientHello is ignored; the real ServerHello follows
            version = self._server_version = server.version
            observe(False, "tls.version", version_name(version), ts_ns)
            observe(False, "tls.cipher", cipher_name(server.cipher_suite), ts_ns)
            observe(False, "tls.ja4s", ja4s(server), ts_ns)
            client = self._client_hello
            if client is not None and client.server_name:
                observe(False, "tls.server_name", client.server_name, ts_ns)
            if version >= 0x0304:
                self._done = True  # TLS 1.3: everything after the ServerHello is encrypted
        elif msg_type == HANDSHAKE_TYPE_CERTIFICATE and self._server_version is not None:
            self._done = True
            leaf = leaf_certificate(body)
            if isinstance(leaf, ParseError):
                self._malformed(False, leaf.detail)
                return
            cert = parse_certificate(leaf)
            if isinstance(cert, ParseError):
                self._ctx.anomaly(ANOMALY_BAD_CERTIFICATE, f"server->client: {cert.detail}")
                return
            observe(False, "tls.cert_subject", clean_value(cert.subject), ts_ns)
            observe(False, "tls.cert_issuer", clean_value(cert.issuer), ts_ns)
            observe(False, "tls.cert_not_after", cert.not_after, ts_ns)
        elif msg_type == HANDSHAKE_TYPE_SERVER_HELLO_DONE:
            self._done = True  # no Certificate (anonymous or PSK suites)


SPEC = ParserSpec(
    name="tls",
    description="TLS (RFC 8446, RFC 5246): hello versions, SNI, cipher, JA4/JA4S, leaf certificate",
    tcp_ports=(443,),
    probe=probe_tls,
    analyzer=TlsAnalyzer,
)
