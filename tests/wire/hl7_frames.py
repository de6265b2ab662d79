"""HL7 v2 messages over MLLP, as python-hl7 put them on the wire.

Origin: python-hl7 0.4.5. Each ``*_TEXT`` message below was parsed with ``hl7.parse`` and sent
by ``hl7.client.MLLPClient.send_message`` (one TCP connection per message) to an asyncio MLLP
server (``hl7.mllp.start_hl7_server``) on 127.0.0.1 that answered each message with
``Message.create_ack`` (MSH-7 fixed to ACK_DATETIME, MSH-10 'ACK-' + the control ID). A
recording TCP relay between the two, also on 127.0.0.1, kept the bytes of each direction:
``<NAME>_MLLP`` is what the client sent, ``<NAME>_ACK_MLLP`` what the server sent back.
:func:`record_exchanges` does it again; ``tests/parsers/test_hl7_wire.py`` checks that it
still gives these bytes.

Every message carries the PHI canaries (STYLE S9): PID ``PHI-CANARY-0001`` / ``CANARY^PHI`` /
``19000101`` / ``1 CANARY STREET``, and the ORU OBX-5 value ``CANARY-OBX-VALUE``. They must
never reach a record or an anomaly.

Decoded (segments, CR-separated; the MLLP block is 0x0b message 0x1c 0x0d):

- ADT_A01_V25: MSH (sending application 'ADT1^1.2.840.114350.1.13.0.1.7.5.737384.2^ISO',
  receiving facility with an escaped field separator 'CARDIO\\F\\ICU', ADT^A01^ADT_A01, 2.5)
  EVN PID NK1 PV1.
- ORU_R01_V251: MSH (MONITOR^1.2.3^ISO, ORU^R01^ORU_R01, 2.5.1) PID OBR OBX (OBX-5 canary,
  OBX-18 'BEDSIDE-MONITOR-7^ACME^1.2.3.4^ISO').
- ORU_R01_V27_PRT: MSH (MSH-12 as VID '2.7^USA') PID OBR OBX PRT (PRT-10 'INFUSION-PUMP-12^...',
  PRT-16..22 UDI device identifier, dates, lot, serial, donation id, device type).
- ORM_O01_V23: MSH (MSH-9 'ORM^O01' without structure, MSH-12 '2.3') PID ORC OBR.
- ADT_V21: MSH (MSH-9 'ADT' only: v2.1 has no trigger component, MSH-12 '2.1') EVN PID.
- CUSTOM_DELIMITERS: MSH-1 '#', MSH-2 '$*!@' (component '$', repetition '*', escape '!',
  subcomponent '@') ADT^A04 v2.5 with PID.
- the ACKs: MSH (ACK^<trigger>^ACK, sending = the message's receiving application) MSA|AA|<id>.
  python-hl7's create_ack needs MSH-9.2, so the v2.1 message's ACK (MSH-9 'ACK') is built by
  the server with ``hl7.parse`` from the v2.1 fields instead.
"""

from __future__ import annotations

ACK_DATETIME = "20240102030459"

PID_CANARY = "PID|1||PHI-CANARY-0001^^^HOSP^MR||CANARY^PHI||19000101|F|||1 CANARY STREET^^CITY"
#: Every canary string, for the PHI assertions.
CANARIES = (
    "PHI-CANARY-0001",
    "CANARY^PHI",
    "CANARY",
    "19000101",
    "CANARY STREET",
    "CANARY-OBX-VALUE",
)


def _seg(name: str, fields: dict[int, str], fs: str = "|") -> str:
    """A segment with the given fields at their 1-based positions (the rest empty)."""
    last = max(fields)
    return fs.join([name] + [fields.get(i, "") for i in range(1, last + 1)])


ADT_A01_V25_TEXT = (
    "\r".join(
        [
            "MSH|^~\\&|ADT1^1.2.840.114350.1.13.0.1.7.5.737384.2^ISO|GOOD HEALTH HOSPITAL"
            "|MEDMON^1.2.3^ISO|CARDIO\\F\\ICU|20240102030405||ADT^A01^ADT_A01|ADT-0001|P|2.5",
            "EVN|A01|20240102030405",
            PID_CANARY,
            "NK1|1|CANARY^NEXT|SPO",
            "PV1|1|I|ICU^0001^01",
        ]
    )
    + "\r"
)

ORU_R01_V251_TEXT = (
    "\r".join(
        [
            "MSH|^~\\&|MONITOR^1.2.3^ISO|ICU-3|EMR|HOSP|20240102030406||ORU^R01^ORU_R01|ORU-0001|P"
            "|2.5.1",
            PID_CANARY,
            "OBR|1|||8867-4^Heart rate^LN",
            _seg(
                "OBX",
                {
                    1: "1",
                    2: "ST",
                    3: "8867-4^Heart rate^LN",
                    5: "CANARY-OBX-VALUE",
                    6: "/min",
                    11: "F",
                    14: "20240102030406",
                    18: "BEDSIDE-MONITOR-7^ACME^1.2.3.4^ISO",
                },
            ),
        ]
    )
    + "\r"
)

ORU_R01_V27_PRT_TEXT = (
    "\r".join(
        [
            "MSH|^~\\&|PUMPGW^2.16.840.1.113883.3.1^ISO|ICU-4|EMR|HOSP|20240102030407||ORU^R01^ORU_R01"
            "|ORU-0002|P|2.7^USA",
            PID_CANARY,
            "OBR|1|||MDC_PUMP^Infusion^MDC",
            _seg("OBX", {1: "1", 2: "ST", 3: "RATE^Rate^L", 5: "CANARY-OBX-VALUE", 11: "F"}),
            _seg(
                "PRT",
                {
                    2: "UC",
                    4: "EQUIP^Equipment^HL70912",
                    10: "INFUSION-PUMP-12^ACME^1.2.3.4.5^ISO",
                    16: "(01)00812345678901",
                    17: "20230101",
                    18: "20280101",
                    19: "LOT-42",
                    20: "SN-0042",
                    21: "DON-1",
                    22: "PUMP^Infusion pump^L",
                },
            ),
        ]
    )
    + "\r"
)

ORM_O01_V23_TEXT = (
    "\r".join(
        [
            "MSH|^~\\&|CPOE|HOSP|RIS|RAD|20240102030408||ORM^O01|ORM-0001|P|2.3",
            PID_CANARY,
            "ORC|NW|ORD-1",
            "OBR|1|ORD-1||71020^CHEST XRAY^CPT",
        ]
    )
    + "\r"
)

ADT_V21_TEXT = (
    "\r".join(
        [
            "MSH|^~\\&|LAB|MAIN||ICU|19980101120000||ADT|MSG-21|P|2.1",
            "EVN|A08|19980101120000",
            PID_CANARY,
        ]
    )
    + "\r"
)

CUSTOM_DELIMITERS_TEXT = (
    "\r".join(
        [
            "MSH#$*!@#REG$1.2.9$ISO#HOSP#MEDMON#IT!F!OPS#20240102030409##ADT$A04$ADT_A01#ADT-0004#P#2.5",
            PID_CANARY.replace("|", "#").replace("^", "$"),
        ]
    )
    + "\r"
)

#: name -> message text, in the order they were sent.
MESSAGES: dict[str, str] = {
    "ADT_A01_V25": ADT_A01_V25_TEXT,
    "ORU_R01_V251": ORU_R01_V251_TEXT,
    "ORU_R01_V27_PRT": ORU_R01_V27_PRT_TEXT,
    "ORM_O01_V23": ORM_O01_V23_TEXT,
    "ADT_V21": ADT_V21_TEXT,
    "CUSTOM_DELIMITERS": CUSTOM_DELIMITERS_TEXT,
}


def record_exchanges() -> dict[str, tuple[bytes, bytes]]:
    """Send each message with python-hl7's MLLPClient to python-hl7's asyncio MLLP server, both
    on 127.0.0.1, through a recording relay; return ``{name: (client bytes, server bytes)}``."""
    import asyncio

    import hl7
    from hl7.client import MLLPClient
    from hl7.mllp import start_hl7_server

    async def answer(reader: object, writer: object) -> None:
        try:
            while True:
                msg = await reader.readmessage()  # type: ignore[attr-defined]
                msh = msg.segment("MSH")
                try:
                    ack = msg.create_ack("AA", message_id=f"ACK-{msh(10)}")
                except TypeError:
                    # create_ack copies MSH-9.2, which a v2.1 MSH-9 ('ADT') does not have.
                    ack = hl7.parse(
                        f"MSH|^~\\&|{msh(5)}|{msh(6)}|{msh(3)}|{msh(4)}|{ACK_DATETIME}||ACK"
                        f"|ACK-{msh(10)}|{msh(11)}|{msh(12)}\rMSA|AA|{msh(10)}"
                    )
                ack.segment("MSH").assign_field(ACK_DATETIME, 7)
                writer.writemessage(ack)  # type: ignore[attr-defined]
                await writer.drain()  # type: ignore[attr-defined]
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()  # type: ignore[attr-defined]

    async def run() -> dict[str, tuple[bytes, bytes]]:
        server = await start_hl7_server(answer, "127.0.0.1", 0)
        server_port = server.sockets[0].getsockname()[1]
        log: list[tuple[bytearray, bytearray]] = []

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, out: bytearray
        ) -> None:
            while data := await src.read(65536):
                out += data
                dst.write(data)
                await dst.drain()
            dst.close()

        async def relay(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", server_port)
            sent, acked = bytearray(), bytearray()
            log.append((sent, acked))
            await asyncio.gather(pump(c_reader, s_writer, sent), pump(s_reader, c_writer, acked))

        proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
        proxy_port = proxy.sockets[0].getsockname()[1]

        def client(text: str) -> None:
            with MLLPClient("127.0.0.1", proxy_port) as c:
                c.send_message(hl7.parse(text))

        out: dict[str, tuple[bytes, bytes]] = {}
        for name, text in MESSAGES.items():
            await asyncio.to_thread(client, text)
            for _ in range(200):  # until the relay saw both directions end
                if log and log[-1][1] and len(log) == len(out) + 1:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            out[name] = (bytes(log[-1][0]), bytes(log[-1][1]))
        proxy.close()
        server.close()
        return out

    return asyncio.run(run())


# -- recorded by record_exchanges() (python-hl7 0.4.5, 127.0.0.1) ---------------------------------

ADT_A01_V25_MLLP = (
    b"\x0bMSH|^~\\&|ADT1^1.2.840.114350.1.13.0.1.7.5.737384.2^ISO|GOOD"
    b" HEALTH HOSPITAL|MEDMON^1.2.3^ISO|CARDIO\\F\\ICU|2024010203040"
    b"5||ADT^A01^ADT_A01|ADT-0001|P|2.5\r"
    b"EVN|A01|20240102030405\r"
    b"PID|1||PHI-CANARY-0001^^^HOSP^MR||CANARY^PHI||19000101|F|||1 CANARY STREET^^CITY\r"
    b"NK1|1|CANARY^NEXT|SPO\r"
    b"PV1|1|I|ICU^0001^01\r"
    b"\x1c\r"
)
ADT_A01_V25_ACK_MLLP = (
    b"\x0bMSH|^~\\&|MEDMON^1.2.3^ISO|CARDIO\\F\\ICU|ADT1^1.2.840.114350."
    b"1.13.0.1.7.5.737384.2^ISO|GOOD HEALTH HOSPITAL|2024010203045"
    b"9||ACK^A01^ACK|ACK-ADT-0001|P|2.5\r"
    b"MSA|AA|ADT-0001\r"
    b"\x1c\r"
)
ORU_R01_V251_MLLP = (
    b"\x0bMSH|^~\\&|MONITOR^1.2.3^ISO|ICU-3|EMR|HOSP|20240102030406||O"
    b"RU^R01^ORU_R01|ORU-0001|P|2.5.1\r"
    b"PID|1||PHI-CANARY-0001^^^HOSP^MR||CANARY^PHI||19000101|F|||1 CANARY STREET^^CITY\r"
    b"OBR|1|||8867-4^Heart rate^LN\r"
    b"OBX|1|ST|8867-4^Heart rate^LN||CANARY-OBX-VALUE|/min|||||F||"
    b"|20240102030406||||BEDSIDE-MONITOR-7^ACME^1.2.3.4^ISO\r"
    b"\x1c\r"
)
ORU_R01_V251_ACK_MLLP = (
    b"\x0bMSH|^~\\&|EMR|HOSP|MONITOR^1.2.3^ISO|ICU-3|20240102030459||A"
    b"CK^R01^ACK|ACK-ORU-0001|P|2.5.1\r"
    b"MSA|AA|ORU-0001\r"
    b"\x1c\r"
)
ORU_R01_V27_PRT_MLLP = (
    b"\x0bMSH|^~\\&|PUMPGW^2.16.840.1.113883.3.1^ISO|ICU-4|EMR|HOSP|20"
    b"240102030407||ORU^R01^ORU_R01|ORU-0002|P|2.7^USA\r"
    b"PID|1||PHI-CANARY-0001^^^HOSP^MR||CANARY^PHI||19000101|F|||1 CANARY STREET^^CITY\r"
    b"OBR|1|||MDC_PUMP^Infusion^MDC\r"
    b"OBX|1|ST|RATE^Rate^L||CANARY-OBX-VALUE||||||F\r"
    b"PRT||UC||EQUIP^Equipment^HL70912||||||INFUSION-PUMP-12^ACME^"
    b"1.2.3.4.5^ISO||||||(01)00812345678901|20230101|20280101|LOT-"
    b"42|SN-0042|DON-1|PUMP^Infusion pump^L\r"
    b"\x1c\r"
)
ORU_R01_V27_PRT_ACK_MLLP = (
    b"\x0bMSH|^~\\&|EMR|HOSP|PUMPGW^2.16.840.1.113883.3.1^ISO|ICU-4|20"
    b"240102030459||ACK^R01^ACK|ACK-ORU-0002|P|2.7^USA\r"
    b"MSA|AA|ORU-0002\r"
    b"\x1c\r"
)
ORM_O01_V23_MLLP = (
    b"\x0bMSH|^~\\&|CPOE|HOSP|RIS|RAD|20240102030408||ORM^O01|ORM-0001|P|2.3\r"
    b"PID|1||PHI-CANARY-0001^^^HOSP^MR||CANARY^PHI||19000101|F|||1 CANARY STREET^^CITY\r"
    b"ORC|NW|ORD-1\r"
    b"OBR|1|ORD-1||71020^CHEST XRAY^CPT\r"
    b"\x1c\r"
)
ORM_O01_V23_ACK_MLLP = (
    b"\x0bMSH|^~\\&|RIS|RAD|CPOE|HOSP|20240102030459||ACK^O01^ACK|ACK-ORM-0001|P|2.3\r"
    b"MSA|AA|ORM-0001\r"
    b"\x1c\r"
)
ADT_V21_MLLP = (
    b"\x0bMSH|^~\\&|LAB|MAIN||ICU|19980101120000||ADT|MSG-21|P|2.1\r"
    b"EVN|A08|19980101120000\r"
    b"PID|1||PHI-CANARY-0001^^^HOSP^MR||CANARY^PHI||19000101|F|||1 CANARY STREET^^CITY\r"
    b"\x1c\r"
)
ADT_V21_ACK_MLLP = (
    b"\x0bMSH|^~\\&||ICU|LAB|MAIN|20240102030459||ACK|ACK-MSG-21|P|2.1\rMSA|AA|MSG-21\r\x1c\r"
)
CUSTOM_DELIMITERS_MLLP = (
    b"\x0bMSH#$*!@#REG$1.2.9$ISO#HOSP#MEDMON#IT!F!OPS#20240102030409#"
    b"#ADT$A04$ADT_A01#ADT-0004#P#2.5\r"
    b"PID#1##PHI-CANARY-0001$$$HOSP$MR##CANARY$PHI##19000101#F###1 CANARY STREET$$CITY\r"
    b"\x1c\r"
)
CUSTOM_DELIMITERS_ACK_MLLP = (
    b"\x0bMSH#$*!@#MEDMON#IT!F!OPS#REG$1.2.9$ISO#HOSP#20240102030459#"
    b"#ACK$A04$ACK#ACK-ADT-0004#P#2.5\r"
    b"MSA#AA#ADT-0004\r"
    b"\x1c\r"
)

#: name -> (client bytes, server bytes), as recorded.
RECORDED: dict[str, tuple[bytes, bytes]] = {
    "ADT_A01_V25": (ADT_A01_V25_MLLP, ADT_A01_V25_ACK_MLLP),
    "ORU_R01_V251": (ORU_R01_V251_MLLP, ORU_R01_V251_ACK_MLLP),
    "ORU_R01_V27_PRT": (ORU_R01_V27_PRT_MLLP, ORU_R01_V27_PRT_ACK_MLLP),
    "ORM_O01_V23": (ORM_O01_V23_MLLP, ORM_O01_V23_ACK_MLLP),
    "ADT_V21": (ADT_V21_MLLP, ADT_V21_ACK_MLLP),
    "CUSTOM_DELIMITERS": (CUSTOM_DELIMITERS_MLLP, CUSTOM_DELIMITERS_ACK_MLLP),
}

# -- derived from the recorded bytes, each named for its defect ------------------------------

#: Raw HL7 over TCP (no MLLP): the ADT and ORU messages back to back, blocks stripped.
RAW_ADT_THEN_ORU = ADT_A01_V25_MLLP[1:-2] + ORU_R01_V251_MLLP[1:-2]
#: The ADT block without its <EB><CR>, directly followed by the ORU block.
ADT_MISSING_END_BLOCK_THEN_ORU = ADT_A01_V25_MLLP[:-2] + ORU_R01_V251_MLLP
#: Stray bytes (not a block) before the ADT block.
GARBAGE_THEN_ADT = b"GARBAGE\x00\xff BYTES\r\n" + ADT_A01_V25_MLLP
#: An MLLP block whose first segment is not MSH (PID first: the canary must not leak).
BLOCK_WITHOUT_MSH = b"\x0b" + ADT_A01_V25_MLLP[ADT_A01_V25_MLLP.index(b"PID|") :]
#: MSH-1 is a letter: the delimiters cannot be known.
MSH_ALPHANUMERIC_FIELD_SEPARATOR = b"\x0bMSHX^~\\&XAPPXFAC\rPID|1||PHI-CANARY-0001\r\x1c\r"
#: MSH with only 8 fields (MSH-9 to MSH-12 missing).
MSH_TOO_FEW_FIELDS = (
    b"\x0bMSH|^~\\&|APP|FAC|RCV|RFAC|20240101\r" + PID_CANARY.encode() + b"\r\x1c\r"
)
#: A segment line without a 3-character name (a line break inside PID content).
SEGMENT_WITHOUT_NAME = ADT_A01_V25_MLLP.replace(b"|F|||1 CANARY", b"|F\r|||1 CANARY")
