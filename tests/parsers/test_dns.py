"""monitor.parsers.dns on dig/dnsmasq, python-zeroconf and scapy datagrams and on the DNS of
public captures (cross-checked with tshark); malformed names by hand, each named for its
defect."""

from __future__ import annotations

import struct

import pytest
from wire import udp_datagrams as w

from monitor.parsers import dns

from conftest import PCAPS, ROBUSTNESS, tshark

A = w.HOST_A
B = w.HOST_B


def test_parse_dig_query() -> None:
    msg = dns.parse_dns(w.DNS_QUERY_A_DIG)
    assert isinstance(msg, dns.DnsMessage)
    assert (msg.id, msg.qr, msg.opcode) == (0xF397, False, 0)
    assert msg.questions == (dns.Question("pacs01.hospital.example", dns.TYPE_A, 1),)
    assert [r.rtype for r in msg.records] == [41]  # the EDNS OPT pseudo-record


def test_parse_dnsmasq_answer_through_a_pointer() -> None:
    msg = dns.parse_dns(w.DNS_RESPONSE_A_DNSMASQ)
    assert isinstance(msg, dns.DnsMessage)
    assert msg.qr and msg.rcode == 0
    answer = msg.records[0]
    assert (answer.name, answer.rtype, answer.data) == ("pacs01.hospital.example", 1, "10.99.0.10")


def test_query_is_about_the_querier_in_lower_case() -> None:
    rec = w.run(dns.handle_dns, w.DNS_QUERY_AAAA_MIXED_CASE_DIG, src=B, sport=42767, dport=53)
    assert rec.observations == [(*B, "dns.query", "wks-rad-01.hospital.example")]
    assert rec.anomalies == []


def test_response_from_port_53_names_the_server_once() -> None:
    rec = w.run(dns.handle_dns, w.DNS_RESPONSE_A_DNSMASQ, src=A, sport=53, dport=53194)
    assert rec.observations == [(*A, "dns.server", "true")]
    rec = w.run(dns.handle_dns, w.DNS_RESPONSE_REFUSED_DNSMASQ, src=A, sport=53, dport=42767)
    assert rec.observations == [(*A, "dns.server", "true")]


def test_response_to_port_53_says_nothing_about_its_sender() -> None:
    rec = w.run(dns.handle_dns, w.DNS_RESPONSE_A_DNSMASQ, src=A, sport=5300, dport=53)
    assert rec.observations == []


def _oracle_queries(path: str) -> set[tuple[str, str]]:
    out = tshark(
        "-r", path, "-Y", "dns.flags.response == 0 && dns.flags.opcode == 0 && udp",
        "-T", "fields", "-E", "occurrence=a", "-e", "ip.src", "-e", "ipv6.src",
        "-e", "dns.qry.name",
    )  # fmt: skip
    pairs = set()
    for line in out.splitlines():
        ip4, ip6, names = line.split("\t")
        for name in names.split(","):
            pairs.add((ip4 or ip6, name.lower()))
    return pairs


def _ours(path: str) -> tuple[set[tuple[str, str]], set[str]]:
    queries, servers = set(), set()
    for _n, src, mac, sport, dport, payload in w.udp_payloads(path):
        if 53 not in (sport, dport):
            continue
        rec = w.run(dns.handle_dns, payload, src=(src, mac), sport=sport, dport=dport)
        assert rec.anomalies == []
        for ip, _mac, kind, value in rec.observations:
            if kind == "dns.query":
                assert ip is not None
                queries.add((ip, value))
            else:
                assert (kind, value) == ("dns.server", "true")
                servers.add(str(ip))
    return queries, servers


def test_generic_capture_queries_agree_with_tshark() -> None:
    path = str(PCAPS / "generic" / "dns.pcap")
    queries, servers = _ours(path)
    assert queries == _oracle_queries(path)
    assert ("10.20.0.11", "pacs01.hospital.example") in queries
    assert servers == {"10.10.0.53"}


@pytest.mark.parametrize("name", ["nflog.pcap", "LINKTYPE_PKTAP.pcap"])
def test_robustness_captures_agree_with_tshark(name: str) -> None:
    path = ROBUSTNESS / "tcpdump" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    queries, servers = _ours(str(path))
    assert queries == _oracle_queries(str(path))
    if name == "nflog.pcap":  # four responses from one resolver, no query
        assert (queries, servers) == (set(), {"74.82.42.42"})
    else:  # one query from a Mac, captured with its PKTAP header
        assert queries == {("10.32.4.27", "in.m.yahoo.com")}


# ------------------------------------------------------------------------------------- mDNS


def test_mdns_ipp_announcement() -> None:
    rec = w.run(dns.handle_mdns, w.MDNS_ANNOUNCE_IPP_ZEROCONF, src=A, sport=5353, dport=5353)
    assert rec.anomalies == []
    assert {(ip, mac) for ip, mac, _k, _v in rec.observations} == {A}
    assert rec.kinds() == {
        "mdns.service": ["_ipp._tcp.local"],
        "mdns.model": ["ACME LaserJet 400"],  # ty= and product=(...) name one model
        "mdns.name": ["printer-3.local"],
    }


def test_mdns_http_announcement_md_and_model_keys() -> None:
    rec = w.run(dns.handle_mdns, w.MDNS_ANNOUNCE_HTTP_ZEROCONF, src=A)
    assert rec.kinds() == {
        "mdns.service": ["_http._tcp.local"],
        "mdns.model": ["PumpHub 9", "PH-9000"],
        "mdns.name": ["printer-3.local"],
    }


def test_mdns_service_enumeration_targets_are_service_types() -> None:
    rec = w.run(dns.handle_mdns, w.MDNS_SERVICES_RESPONSE_ZEROCONF, src=A)
    assert rec.kinds() == {"mdns.service": ["_ipp._tcp.local", "_http._tcp.local"]}


def test_mdns_query_says_nothing() -> None:
    assert w.run(dns.handle_mdns, w.MDNS_SERVICES_QUERY_ZEROCONF, src=B).observations == []


def test_mdns_parse_keeps_txt_strings() -> None:
    msg = dns.parse_dns(w.MDNS_ANNOUNCE_IPP_ZEROCONF)
    assert isinstance(msg, dns.DnsMessage)
    (txt,) = [r for r in msg.records if r.rtype == dns.TYPE_TXT]
    assert b"rp=ipp/print" in txt.data  # type: ignore[operator]
    aaaa = [r.data for r in msg.records if r.rtype == dns.TYPE_AAAA]
    assert aaaa == ["fd99::1"]


# ------------------------------------------------------------------------------------ LLMNR


def test_llmnr_query() -> None:
    rec = w.run(dns.handle_llmnr, w.LLMNR_QUERY_SCAPY, src=B, sport=50123, dport=5355)
    assert rec.observations == [(*B, "llmnr.query", "wks-rad-03")]


# ------------------------------------------------------------------ hand-built malformed cases

HEADER_ONE_QUESTION = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)


def test_short_header_is_malformed() -> None:
    rec = w.run(dns.handle_dns, b"\x12\x34\x01", sport=1, dport=53)
    assert [a[0] for a in rec.anomalies] == ["dns.malformed"]
    assert w.run(dns.handle_mdns, b"\x00\x00\x84").anomalies[0][0] == "dns.malformed"


def test_question_cut_short_is_malformed() -> None:
    question_without_type = HEADER_ONE_QUESTION + b"\x03abc\x00\x00"
    rec = w.run(dns.handle_dns, question_without_type, dport=53)
    assert rec.anomalies == [("dns.malformed", "a question runs past the end of the message")]
    assert rec.observations == []


def test_pointer_loop_is_a_bad_name() -> None:
    pointer_to_itself = HEADER_ONE_QUESTION + b"\xc0\x0c\x00\x01\x00\x01"
    rec = w.run(dns.handle_dns, pointer_to_itself, dport=53)
    assert rec.anomalies == [("dns.bad_name", "more than 16 pointers in a name")]
    assert rec.observations == []


def test_two_pointers_chasing_each_other_are_a_bad_name() -> None:
    # question name: label 'a' then a pointer to offset 12 (the name itself)
    pointer_cycle_via_label = HEADER_ONE_QUESTION + b"\x01a\xc0\x0c\x00\x01\x00\x01"
    rec = w.run(dns.handle_llmnr, pointer_cycle_via_label)
    assert rec.anomalies[0][0] == "dns.bad_name"


def test_pointer_outside_the_message_is_a_bad_name() -> None:
    pointer_past_end = HEADER_ONE_QUESTION + b"\xc3\xff\x00\x01\x00\x01"
    assert w.run(dns.handle_dns, pointer_past_end, dport=53).anomalies[0][0] == "dns.bad_name"


def test_reserved_label_type_is_a_bad_name() -> None:
    extended_label_0x41 = HEADER_ONE_QUESTION + b"\x41\x00\x00\x01\x00\x01"
    assert w.run(dns.handle_dns, extended_label_0x41, dport=53).anomalies[0][0] == "dns.bad_name"


def test_name_longer_than_255_octets_is_a_bad_name() -> None:
    name_of_320_octets = (b"\x3f" + b"x" * 63) * 5 + b"\x00"
    rec = w.run(dns.handle_dns, HEADER_ONE_QUESTION + name_of_320_octets + b"\0\1\0\1", dport=53)
    assert rec.anomalies[0][0] == "dns.bad_name"


def test_mdns_rdata_overrun_is_malformed() -> None:
    response_rdata_overrun = (
        struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0)
        + b"\x04host\x05local\x00"
        + struct.pack("!HHIH", 1, 1, 120, 40)
        + b"\x0a\x63\x00\x01"
    )
    rec = w.run(dns.handle_mdns, response_rdata_overrun)
    assert rec.anomalies == [("dns.malformed", "a type 1 record's RDATA runs past the message")]
    assert rec.observations == []


def test_every_prefix_never_raises() -> None:
    for payload in (w.MDNS_ANNOUNCE_IPP_ZEROCONF, w.DNS_RESPONSE_A_DNSMASQ):
        for n in range(len(payload)):
            for handler in (dns.handle_dns, dns.handle_mdns, dns.handle_llmnr):
                w.run(handler, payload[:n], sport=53)
