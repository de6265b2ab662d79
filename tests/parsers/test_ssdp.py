"""monitor.parsers.ssdp on MiniDLNA, GSSDP and wsdd datagrams; malformed cases by hand, each
named for its defect."""

from __future__ import annotations

from wire import udp_datagrams as w

from monitor.parsers import ssdp

A = w.HOST_A
B = w.HOST_B
MINIDLNA_SERVER = "Debian DLNADOC/1.50 UPnP/1.0 MiniDLNA/1.3.0"
MEDIA_SERVER = "urn:schemas-upnp-org:device:MediaServer:1"


def test_parse_notify_alive() -> None:
    msg = ssdp.parse_ssdp(w.SSDP_NOTIFY_ALIVE_MEDIASERVER_MINIDLNA)
    assert msg == ssdp.SsdpMessage(
        method=ssdp.NOTIFY, server=MINIDLNA_SERVER, nt=MEDIA_SERVER, nts="ssdp:alive"
    )


def test_notify_alive_of_a_device_type() -> None:
    rec = w.run(ssdp.handle_ssdp, w.SSDP_NOTIFY_ALIVE_MEDIASERVER_MINIDLNA, src=A, dport=1900)
    assert rec.observations == [
        (*A, "ssdp.server", MINIDLNA_SERVER),
        (*A, "ssdp.device_type", MEDIA_SERVER),
    ]


def test_notify_of_a_service_type_is_not_a_device_type() -> None:
    rec = w.run(ssdp.handle_ssdp, w.SSDP_NOTIFY_ALIVE_SERVICE_MINIDLNA, src=A)
    assert rec.observations == [(*A, "ssdp.server", MINIDLNA_SERVER)]


def test_byebye_has_no_server_but_names_the_device_type() -> None:
    rec = w.run(ssdp.handle_ssdp, w.SSDP_NOTIFY_BYEBYE_MEDIASERVER_MINIDLNA, src=A)
    assert rec.observations == [(*A, "ssdp.device_type", MEDIA_SERVER)]


def test_search_response() -> None:
    rec = w.run(ssdp.handle_ssdp, w.SSDP_RESPONSE_MEDIASERVER_MINIDLNA, src=A, sport=1900)
    assert rec.observations == [
        (*A, "ssdp.server", MINIDLNA_SERVER),
        (*A, "ssdp.device_type", MEDIA_SERVER),
    ]
    rec = w.run(ssdp.handle_ssdp, w.SSDP_RESPONSE_UUID_MINIDLNA, src=A, sport=1900)
    assert rec.observations == [(*A, "ssdp.server", MINIDLNA_SERVER)]


def test_location_is_never_recorded() -> None:
    assert b"LOCATION: http://10.99.0.1:8200/rootDesc.xml" in w.SSDP_RESPONSE_UUID_MINIDLNA
    for payload in (w.SSDP_RESPONSE_UUID_MINIDLNA, w.SSDP_NOTIFY_ALIVE_MEDIASERVER_MINIDLNA):
        rec = w.run(ssdp.handle_ssdp, payload, src=A)
        assert not any("rootDesc" in v or "8200" in v for *_x, v in rec.observations)


def test_msearch_user_agent_is_about_the_searcher() -> None:
    rec = w.run(ssdp.handle_ssdp, w.SSDP_MSEARCH_ALL_GSSDP, src=B, dport=1900)
    assert rec.observations == [
        (*B, "ssdp.user_agent", "Linux/6.18.44-fc-v1272 UPnP/1.0 GSSDP/1.6.2")
    ]


# ---------------------------------------------------------------------------- WS-Discovery


def test_probe_matches_types() -> None:
    msg = ssdp.parse_wsd(w.WSD_PROBE_MATCHES_WSDD)
    assert msg == ssdp.WsdMessage(
        action="http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches",
        types=("wsdp:Device pub:Computer",),
    )
    rec = w.run(ssdp.handle_wsd, w.WSD_PROBE_MATCHES_WSDD, src=A, sport=3702)
    assert rec.observations == [(*A, "wsd.types", "wsdp:Device pub:Computer")]


def test_probe_types_are_not_the_searchers() -> None:
    assert ssdp.parse_wsd(w.WSD_PROBE_WSDD) == ssdp.WsdMessage(
        action="http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe", types=("wsdp:Device",)
    )
    assert w.run(ssdp.handle_wsd, w.WSD_PROBE_WSDD, src=B).observations == []


def test_hello_and_bye_of_wsdd_carry_no_types() -> None:
    for payload in (w.WSD_HELLO_WSDD, w.WSD_BYE_WSDD):
        rec = w.run(ssdp.handle_wsd, payload, src=A)
        assert (rec.observations, rec.anomalies) == ([], [])


# ------------------------------------------------------------------ hand-built malformed cases


def test_binary_junk_on_1900_is_malformed() -> None:
    rec = w.run(ssdp.handle_ssdp, b"\x00\x01\x02\x03 junk")
    assert rec.anomalies == [("ssdp.malformed", "the first line is not an HTTP/1.x start line")]


def test_request_line_without_http_version_is_malformed() -> None:
    notify_without_version = b"NOTIFY * FOO/1.0\r\nSERVER: x\r\n\r\n"
    assert w.run(ssdp.handle_ssdp, notify_without_version).anomalies[0][0] == "ssdp.malformed"


def test_other_methods_and_statuses_are_ignored() -> None:
    for payload in (b"SUBSCRIBE * HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 Not Found\r\n\r\n"):
        rec = w.run(ssdp.handle_ssdp, payload)
        assert (rec.observations, rec.anomalies) == ([], [])


def test_header_values_are_cleaned_and_capped() -> None:
    server_with_controls = b"NOTIFY * HTTP/1.1\r\nServer: a\x1bb" + b"c" * 400 + b"\r\n\r\n"
    (value,) = w.run(ssdp.handle_ssdp, server_with_controls).kinds()["ssdp.server"]
    assert value.startswith("a?bc") and len(value) == 256


def test_wsd_without_action_is_malformed() -> None:
    envelope_without_action = b"<s:Envelope><s:Body><d:Hello><d:Types>x</d:Types></d:Hello>"
    rec = w.run(ssdp.handle_wsd, envelope_without_action)
    assert rec.anomalies == [("wsd.malformed", "no WS-Addressing Action element")]
    assert rec.observations == []


def test_wsd_types_whitespace_is_normalised_and_xxe_is_not_expanded() -> None:
    hello_with_entity_and_spaced_types = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<s:Envelope><s:Header><a:Action>urn:x/Hello</a:Action></s:Header><s:Body><d:Hello>"
        b"<d:Types>\n  dn:NetworkVideoTransmitter \t tds:Device &e;</d:Types></d:Hello>"
    )
    rec = w.run(ssdp.handle_wsd, hello_with_entity_and_spaced_types, src=A)
    assert rec.observations == [(*A, "wsd.types", "dn:NetworkVideoTransmitter tds:Device &e;")]


def test_wsd_reads_at_most_64_kib() -> None:
    types_after_64_kib = (
        b"<a:Action>urn:x/Hello</a:Action>" + b" " * 65536 + b"<d:Types>late</d:Types>"
    )
    assert w.run(ssdp.handle_wsd, types_after_64_kib).observations == []
