"""HTTP analyzer (monitor.parsers.http): the sample and Zeek captures through the real
pipeline, checked against tshark's fields; hand-built heads for body skipping, limits and each
anomaly. Request targets and credentials never reach an observation."""

from __future__ import annotations

import pytest
from wire import tcp_payloads as w

from monitor.parsers import detect, http
from monitor.parsers.http import host_name
from monitor.parsers.text import clean_value

from conftest import PCAPS, ROBUSTNESS, tshark

HTTP_PCAP = PCAPS / "generic" / "http.pcap"
CLIENT, SERVER = "10.20.0.11", "10.10.0.80"


def _harness(*exchange: tuple[bool, bytes], chunk: int = 0) -> w.Harness:
    return w.Harness(http.HttpAnalyzer).feed(exchange, chunk=chunk)


def test_sample_capture_observations() -> None:
    run = w.observe_capture(HTTP_PCAP, http.SPEC)
    assert run.anomalies == []
    server = ("10.10.0.80", "http.server", "SimpleHTTP/0.6 Python/3.11.2")
    assert run.observations == [
        ("10.40.0.31", "http.user_agent", "curl/7.88.1"),
        ("10.10.0.80", "http.host", "10.10.0.80"),
        server,
        ("10.40.0.31", "http.user_agent", "ClinicalViewer/2.1 (Windows NT 10.0; Win64; x64)"),
        ("10.10.0.80", "http.host", "10.10.0.80"),
        server,
        ("10.20.0.11", "http.user_agent", "CT-Console/5.3 (example modality software)"),
        ("10.10.0.80", "http.host", "intranet.hospital.example"),
        server,
        ("10.20.0.11", "http.user_agent", "curl/7.88.1"),
        ("10.10.0.80", "http.host", "10.10.0.80"),
        server,
        ("10.40.0.31", "http.user_agent", "curl/7.88.1"),
        ("10.10.0.80", "http.host", "10.10.0.80"),
        server,
    ]
    # The last request's target carries the PHI canaries: no observation may.
    assert not any("CANARY" in v or "results" in v for _, _, v in run.observations)


@pytest.mark.parametrize(
    "capture", ["generic/http.pcap", "zeek/http-vlan-0.pcap", "zeek/tcp_missing-syn.pcap"]
)
def test_values_agree_with_tshark(capture: str) -> None:
    path = PCAPS / capture if capture.startswith("generic") else ROBUSTNESS / capture
    if not path.exists():
        pytest.skip(f"{path} is absent")
    out = tshark(
        "-r", str(path), "-Y", "http", "-T", "fields",
        "-e", "http.user_agent", "-e", "http.host", "-e", "http.server",
    )  # fmt: skip
    theirs: set[tuple[str, str]] = set()
    for line in out.splitlines():
        agent, host, server = line.split("\t")
        for kind, value in (("http.user_agent", agent), ("http.server", server)):
            if value:
                theirs.add((kind, value))
        if host:
            theirs.add(("http.host", host.split(":")[0]))
    run = w.observe_capture(path, http.SPEC)
    assert {(k, v) for _, k, v in run.observations} == theirs


def test_zeek_vlan_capture_exact() -> None:
    path = ROBUSTNESS / "zeek" / "http-vlan-0.pcap"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    run = w.observe_capture(path, http.SPEC)
    assert run.observations == [
        ("141.142.228.5", "http.user_agent", "Wget/1.14 (darwin12.2.0)"),
        ("192.150.187.43", "http.host", "bro.org"),
        ("192.150.187.43", "http.server", "Apache/2.4.3 (Fedora)"),
    ]


def test_responses_without_a_status_line_are_malformed() -> None:
    # Zeek's ipv6-http-atomic-frag.pcap: the server answers with bare HTML, no status line.
    path = ROBUSTNESS / "zeek" / "ipv6-http-atomic-frag.pcap"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    run = w.observe_capture(path, http.SPEC)
    assert run.observations == []
    assert {name for name, _ in run.anomalies} == {"http.malformed"}
    assert run.anomalies[0][1] == "server->client: status line b'<html>'"
    assert run.done_before_close == [True, True, True, True]


def test_basic_auth_is_flagged_for_both_ends_without_the_credentials() -> None:
    secret = b"YWRtaW46aG9zcGl0YWwx"  # base64 of admin:hospital1
    request = (
        b"GET /admin/config HTTP/1.1\r\nHost: Monitor-Gw.example:8080\r\n"
        b"User-Agent: NurseCall/4.2\r\nAuthorization: Basic " + secret + b"\r\n\r\n"
    )
    h = _harness((True, request))
    assert h.observations == [
        (CLIENT, "http.user_agent", "NurseCall/4.2"),
        (SERVER, "http.host", "monitor-gw.example"),
        (CLIENT, "http.basic_auth", "true"),
        (SERVER, "http.basic_auth", "true"),
    ]
    everything = repr(h.observations) + repr(h.anomalies)
    assert secret.decode() not in everything and "admin" not in everything


def test_other_authorization_schemes_are_not_basic() -> None:
    h = _harness((True, b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc\r\n\r\n"))
    assert h.observations == [(SERVER, "http.host", "a")]


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (b"pacs01.hospital.example", "pacs01.hospital.example"),
        (b"PACS01:8080", "pacs01"),
        (b"[2001:db8::7]:443", "2001:db8::7"),
        (b"user@viewer.example/path?q=1", "viewer.example"),
        (b"10.30.0.10", "10.30.0.10"),
    ],
)
def test_host_name_only(value: bytes, host: str) -> None:
    assert host_name(value) == host


def test_absolute_form_target_gives_the_host_but_not_the_path() -> None:
    h = _harness((True, b"GET http://proxy-target.example:81/a/b?patient=1 HTTP/1.1\r\n\r\n"))
    assert h.observations == [(SERVER, "http.host", "proxy-target.example")]


def test_bodies_are_skipped_by_content_length() -> None:
    # The body of the POST looks like a request head; it must not be read as one.
    body = b"GET / HTTP/1.1\r\nUser-Agent: in-the-body\r\n\r\n"
    first = b"POST /store HTTP/1.1\r\nHost: pacs01\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    second = b"GET /next HTTP/1.1\r\nHost: pacs01\r\nUser-Agent: Modality/1\r\n\r\n"
    # A challenge (401) keeps the analyzer reading: the client may answer it in clear text.
    challenge = (
        b"HTTP/1.1 401 Unauthorized\r\nServer: Orthanc/1.12\r\n"
        b'WWW-Authenticate: Basic realm="x"\r\nContent-Length: 5\r\n\r\nhello'
    )
    response = b"HTTP/1.1 200 OK\r\nServer: Orthanc/1.12\r\nContent-Length: 5\r\n\r\nhello"
    h = _harness((True, first + second), (False, challenge + response), chunk=5)
    assert h.about_client == [
        (False, "http.host", "pacs01"),
        (True, "http.user_agent", "Modality/1"),
        (False, "http.host", "pacs01"),
        (False, "http.server", "Orthanc/1.12"),
        (False, "http.server", "Orthanc/1.12"),
    ]
    assert h.analyzer.done  # after the first final response that is not a challenge


def test_done_after_the_first_final_response() -> None:
    requests = (
        b"GET /a HTTP/1.1\r\nUser-Agent: one\r\n\r\nGET /b HTTP/1.1\r\nUser-Agent: two\r\n\r\n"
    )
    response = b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\n\r\nok"
    h = _harness((True, requests), (False, response * 2))
    assert h.analyzer.done
    assert [v for _, k, v in h.observations if k == "http.server"] == ["s"]
    assert [v for _, k, v in h.observations if k == "http.user_agent"] == ["one", "two"]


def test_head_responses_1xx_and_304_have_no_body() -> None:
    requests = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    responses = (
        b"HTTP/1.1 401 Unauthorized\r\nServer: one\r\nContent-Length: 100\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 304 Not Modified\r\nServer: two\r\n\r\n"
    )
    h = _harness((True, requests), (False, responses))
    assert [v for _, k, v in h.observations if k == "http.server"] == ["one", "two"]
    assert h.analyzer._heads == {True: 2, False: 2}


def test_eight_exchanges_then_done() -> None:
    requests = b"".join(
        b"GET /%d HTTP/1.1\r\nHost: h\r\nUser-Agent: agent-%d\r\n\r\n" % (i, i) for i in range(9)
    )
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    h = _harness((True, requests), (False, response * 9))
    agents = [v for _, k, v in h.observations if k == "http.user_agent"]
    assert agents == [f"agent-{i}" for i in range(8)]
    assert h.analyzer.done


@pytest.mark.parametrize(
    "exchange",
    [
        [(False, b"HTTP/1.1 200 OK\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n")],
        [(False, b"HTTP/1.0 200 OK\r\nServer: s\r\n\r\n<html>")],  # read until close
        [(False, b"HTTP/1.1 101 Switching Protocols\r\nServer: s\r\nUpgrade: websocket\r\n\r\n")],
    ],
    ids=["chunked", "until-close", "upgrade"],
)
def test_done_when_the_body_length_is_unknown_or_the_protocol_switches(
    exchange: list[tuple[bool, bytes]],
) -> None:
    h = _harness((True, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"), *exchange)
    assert h.analyzer.done
    assert h.observations[-1] == (SERVER, "http.server", "s")
    assert h.anomalies == []


def test_connect_starts_a_tunnel() -> None:
    h = _harness((True, b"CONNECT pacs01:443 HTTP/1.1\r\nHost: pacs01:443\r\n\r\n\x16\x03\x01"))
    assert h.analyzer.done
    assert h.observations == [(SERVER, "http.host", "pacs01")]


def test_http2_preface_ends_quietly() -> None:
    h = _harness((True, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
    assert h.analyzer.done and h.anomalies == []


def test_a_head_over_16_kib_is_too_long() -> None:
    h = _harness((True, w.HTTP_HEAD_WITHOUT_END), chunk=1400)
    assert h.anomaly_names() == ["http.header_too_long"]
    assert h.analyzer.done and h.observations == []


def test_conflicting_content_lengths_are_reported() -> None:
    h = _harness((True, w.HTTP_CONTENT_LENGTH_CONFLICT))
    assert h.anomaly_names() == ["http.bad_content_length"]
    assert h.anomalies[0][1] == "client->server: Content-Length b'12, 13'"
    assert h.analyzer.done


def test_a_request_line_that_is_not_http_is_malformed_without_its_target() -> None:
    h = _harness((True, b"GET /results?patient=CANARY HTTP/9\r\n\r\n"))
    assert h.anomalies == [("http.malformed", "client->server: request line b'GET' ... b'HTTP/9'")]


def test_gap_inside_a_skipped_body_is_harmless() -> None:
    h = _harness((True, b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10))
    h.analyzer.gap(True, 50)
    assert not h.analyzer.done
    h.analyzer.gap(True, 60)  # past the body: framing is lost
    assert h.analyzer.done


def test_clean_value_removes_controls_and_caps_length() -> None:
    assert clean_value(b"Agent\x00/1.0\x1b[31m\x7f\xc2\x85") == "Agent/1.0[31m"
    assert clean_value("x" * 300) == "x" * 256
    assert clean_value(b"caf\xe9") == "caf\ufffd"


def test_spec_reuses_the_detection_probe() -> None:
    assert (http.SPEC.name, http.SPEC.tcp_ports, http.SPEC.probe) == (
        "http",
        (80, 8080),
        detect.probe_http,
    )
