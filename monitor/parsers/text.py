"""How parsers turn wire bytes into recorded text (observation values).

Every value a parser records from the wire (a host name, a banner, a User-Agent) goes through
:func:`clean_text`, so that no value is longer than :data:`MAX_VALUE_CHARS` characters and none
carries a control character (C0, DEL or C1: Unicode category Cc) into a register, a CSV cell or a
terminal. Two rules are in use, and a parser names the one it applies:

- **Datagram rule** (the defaults: DHCP, DNS/mDNS/LLMNR, NetBIOS, SSDP/WS-Discovery, SNMP): the
  bytes are UTF-8 when they decode as such, else Latin-1 (:data:`UTF8_ELSE_LATIN1`; NetBIOS OEM
  strings are always :data:`LATIN1`), cut to the cap, and each control character becomes ``?``.
  Spaces are kept.
- **Stream rule** (:func:`clean_value`: HTTP, TLS, SSH, SMB, FTP): UTF-8 with each invalid byte
  as U+FFFD (:data:`UTF8_REPLACE`), control characters removed, surrounding white space stripped
  before and after the cap.

Changing either rule changes recorded values, hence the golden files of ``pcaps/``.
"""

from __future__ import annotations

from typing import Final, Literal

#: Longest recorded value, in characters.
MAX_VALUE_CHARS = 256

# Decodings: how bytes become text.
#: Valid UTF-8 as such, else the whole value as Latin-1.
UTF8_ELSE_LATIN1: Final = "utf-8, else latin-1"
#: UTF-8, each invalid byte as U+FFFD.
UTF8_REPLACE: Final = "utf-8, invalid bytes replaced"
#: One character per byte (OEM strings).
LATIN1: Final = "latin-1"
Decoding = Literal["utf-8, else latin-1", "utf-8, invalid bytes replaced", "latin-1"]

#: C0 controls, DEL and C1 controls (Unicode category Cc).
CONTROL_CHARACTERS = (*range(0x20), *range(0x7F, 0xA0))
_MARK_CONTROLS = dict.fromkeys(CONTROL_CHARACTERS, "?")
_DROP_CONTROLS: dict[int, None] = dict.fromkeys(CONTROL_CHARACTERS)


def decode(raw: bytes | bytearray | memoryview, decoding: Decoding = UTF8_ELSE_LATIN1) -> str:
    """``raw`` as text by ``decoding`` (see the module docstring). Never raises."""
    if decoding == UTF8_ELSE_LATIN1:
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            return str(raw, "latin-1")
    if decoding == UTF8_REPLACE:
        return str(raw, "utf-8", "replace")
    return str(raw, "latin-1")


def clean_text(
    raw: bytes | bytearray | memoryview | str,
    *,
    decoding: Decoding = UTF8_ELSE_LATIN1,
    controls: Literal["?", ""] = "?",
    strip: bool = False,
) -> str:
    """Recorded text of ``raw`` (a ``str`` is taken as already decoded).

    ``controls``: what a control character becomes (``?``, or ``""``: removed). ``strip``: white
    space around the value is dropped, before and after the cap. The defaults are the datagram
    rule of the module docstring.
    """
    if isinstance(raw, str):
        text = raw
    elif decoding == UTF8_REPLACE:
        text = str(raw, "utf-8", "replace")
    else:
        text = decode(raw, decoding)
    # A printable text holds no control character (they are all non-printable): most values
    # skip the translation, the costly step.
    if strip:
        if not text.isprintable():
            text = text.translate(_MARK_CONTROLS if controls else _DROP_CONTROLS)
        return text.strip()[:MAX_VALUE_CHARS].strip()
    if controls:
        text = text[:MAX_VALUE_CHARS]  # one character for one: cap first, translate less
        return text if text.isprintable() else text.translate(_MARK_CONTROLS)
    if not text.isprintable():
        text = text.translate(_DROP_CONTROLS)
    return text[:MAX_VALUE_CHARS]


def clean_value(raw: bytes | bytearray | memoryview | str) -> str:
    """The stream rule: UTF-8 (invalid bytes replaced), control characters removed, at most
    :data:`MAX_VALUE_CHARS` characters, surrounding white space stripped."""
    return clean_text(raw, decoding=UTF8_REPLACE, controls="", strip=True)
