"""monitor.parsers.snmp on net-snmp datagrams (snmpget, snmptrap, snmpd); malformed BER by
hand, each named for its defect. A site's own community must never be recorded."""

from __future__ import annotations

import pytest
from wire import udp_datagrams as w

from monitor.parsers import snmp

A = w.HOST_A  # the agent (snmpd)
B = w.HOST_B  # the manager (snmpget)
ALL_SNMP = [
    (name, getattr(w, name)) for name in dir(w) if name.startswith("SNMP_")
]  # fmt: skip


def test_decode_oid() -> None:
    assert snmp.decode_oid(bytes.fromhex("2b06010201010100")) == "1.3.6.1.2.1.1.1.0"
    assert snmp.decode_oid(bytes.fromhex("2b06010401bf0803020a")) == "1.3.6.1.4.1.8072.3.2.10"
    assert snmp.decode_oid(bytes.fromhex("2b0681")) is None  # last arc unfinished


def test_parse_v1_response() -> None:
    msg = snmp.parse_snmp(w.SNMP_V1_RESPONSE_PUBLIC)
    assert msg == snmp.SnmpMessage(
        version="1",
        version_raw=0,
        default_community="public",
        pdu_type=snmp.RESPONSE,
        system=(
            (snmp.SYS_DESCR, "medmon test agent Linux 6.1 x86_64"),
            (snmp.SYS_OBJECT_ID, "1.3.6.1.4.1.8072.3.2.10"),
            (snmp.SYS_NAME, "medmon-agent"),
        ),
    )


def test_v1_get_with_public_is_about_both_ends() -> None:
    rec = w.run(snmp.handle_snmp, w.SNMP_V1_GET_PUBLIC, src=B, dst=A, dport=161)
    assert rec.observations == [
        (*B, "snmp.version", "1"),
        (*B, "snmp.default_community", "public"),
        (*A, "snmp.version", "1"),
        (*A, "snmp.default_community", "public"),
    ]


def test_v2c_response_system_group_is_about_the_agent() -> None:
    rec = w.run(snmp.handle_snmp, w.SNMP_V2C_RESPONSE_PUBLIC, src=A, dst=B, sport=161)
    assert rec.anomalies == []
    assert rec.observations[4:] == [
        (*A, "snmp.sys_descr", "medmon test agent Linux 6.1 x86_64"),
        (*A, "snmp.sys_object_id", "1.3.6.1.4.1.8072.3.2.10"),
        (*A, "snmp.sys_name", "medmon-agent"),
    ]
    assert rec.kinds()["snmp.version"] == ["2c", "2c"]


def test_v1_private_and_v2c_trap() -> None:
    rec = w.run(snmp.handle_snmp, w.SNMP_V1_GET_PRIVATE, src=B, dst=A)
    assert rec.kinds() == {"snmp.version": ["1", "1"], "snmp.default_community": ["private"] * 2}
    rec = w.run(snmp.handle_snmp, w.SNMP_V2C_TRAP_PUBLIC, src=B, dst=A, dport=162)
    assert rec.kinds() == {"snmp.version": ["2c", "2c"], "snmp.default_community": ["public"] * 2}


@pytest.mark.parametrize(
    "name", ["SNMP_V3_DISCOVERY", "SNMP_V3_REPORT", "SNMP_V3_ENCRYPTED_GET"]
)  # fmt: skip
def test_v3_is_version_only(name: str) -> None:
    rec = w.run(snmp.handle_snmp, getattr(w, name), src=B, dst=A)
    assert rec.observations == [(*B, "snmp.version", "3"), (*A, "snmp.version", "3")]
    assert rec.anomalies == []


def test_site_community_is_dropped_in_the_parser() -> None:
    assert w.SITE_COMMUNITY.encode() in w.SNMP_V2C_GET_SITE_COMMUNITY
    for payload in (w.SNMP_V2C_GET_SITE_COMMUNITY, w.SNMP_V2C_RESPONSE_SITE_COMMUNITY):
        msg = snmp.parse_snmp(payload)
        assert isinstance(msg, snmp.SnmpMessage)
        assert msg.default_community is None
        assert w.SITE_COMMUNITY not in repr(msg)


def test_site_community_never_appears_in_any_observation_or_anomaly() -> None:
    everything: list[str] = []
    for _name, payload in ALL_SNMP:
        for n in range(len(payload) + 1):  # whole datagrams and every cut of them
            rec = w.run(snmp.handle_snmp, payload[:n], src=B, dst=A)
            everything += [repr(o) for o in rec.observations]
            everything += [repr(a) for a in rec.anomalies]
    text = "\n".join(everything)
    assert "H0sp1tal" not in text and w.SITE_COMMUNITY not in text
    # ... while the site-community response's system group is still read
    rec = w.run(snmp.handle_snmp, w.SNMP_V2C_RESPONSE_SITE_COMMUNITY, src=A, dst=B)
    assert rec.kinds() == {
        "snmp.version": ["2c", "2c"],
        "snmp.sys_descr": ["medmon test agent Linux 6.1 x86_64"],
        "snmp.sys_object_id": ["1.3.6.1.4.1.8072.3.2.10"],
        "snmp.sys_name": ["medmon-agent"],
    }


def test_default_communities_are_case_sensitive() -> None:
    public_capitalised = w.SNMP_V1_GET_PUBLIC.replace(b"public", b"Public")
    rec = w.run(snmp.handle_snmp, public_capitalised)
    assert "snmp.default_community" not in rec.kinds()


# ------------------------------------------------------------------ hand-built malformed cases


def test_not_a_sequence_is_malformed() -> None:
    rec = w.run(snmp.handle_snmp, b"\x02\x01\x00")
    assert rec.anomalies == [("snmp.malformed", "Message: tag 0x02, expected 0x30")]
    assert rec.observations == []


def test_length_past_the_datagram_is_malformed() -> None:
    message_length_overrun = b"\x30\x7f" + w.SNMP_V1_GET_PUBLIC[2:]
    rec = w.run(snmp.handle_snmp, message_length_overrun)
    assert rec.anomalies == [("snmp.malformed", "a length of 127 runs past its enclosing value")]


def test_indefinite_length_is_malformed() -> None:
    indefinite_length = b"\x30\x80" + w.SNMP_V1_GET_PUBLIC[2:] + b"\x00\x00"
    rec = w.run(snmp.handle_snmp, indefinite_length)
    assert rec.anomalies[0][0] == "snmp.malformed"
    assert "indefinite" in str(rec.anomalies[0][1])


def test_multi_byte_tag_is_malformed() -> None:
    assert w.run(snmp.handle_snmp, b"\x3f\x01\x00").anomalies[0][0] == "snmp.malformed"


def test_unknown_pdu_tag_is_malformed() -> None:
    p = w.SNMP_V1_GET_PUBLIC
    pdu_tag_0xaf = p[: p.index(b"\xa0")] + b"\xaf" + p[p.index(b"\xa0") + 1 :]
    rec = w.run(snmp.handle_snmp, pdu_tag_0xaf)
    assert rec.anomalies == [("snmp.malformed", "PDU tag 0xaf is not an SNMP PDU")]


def test_varbind_overrunning_its_list_is_malformed_and_records_no_system_value() -> None:
    p = w.SNMP_V1_RESPONSE_PUBLIC
    cut_inside_sys_name = p[:-3]
    rec = w.run(snmp.handle_snmp, cut_inside_sys_name, src=A, dst=B)
    assert [a[0] for a in rec.anomalies] == ["snmp.malformed"]
    assert rec.observations == []


def test_unknown_version_is_named_unknown() -> None:
    version_two = b"\x30\x03\x02\x01\x02"
    rec = w.run(snmp.handle_snmp, version_two)
    assert rec.kinds() == {"snmp.version": ["unknown-2", "unknown-2"]}
