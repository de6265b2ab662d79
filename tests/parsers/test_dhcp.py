"""monitor.parsers.dhcp on datagrams of busybox udhcpc, ISC dhclient and dnsmasq; malformed
edge cases by hand, each named for its defect."""

from __future__ import annotations

from wire import udp_datagrams as w

from monitor.parsers import dhcp

UDHCPC_MAC = "02:00:00:99:00:02"
DHCLIENT_MAC = "02:00:00:99:00:03"
ZERO = ("0.0.0.0", UDHCPC_MAC)
SERVER = ("10.99.0.1", "02:00:00:99:00:01")


def test_parse_udhcpc_discover() -> None:
    msg = dhcp.parse_dhcp(w.DHCP_DISCOVER_UDHCPC)
    assert isinstance(msg, dhcp.DhcpMessage)
    assert (msg.op, msg.htype, msg.hlen, msg.xid) == (1, 1, 6, 0x33711674)
    assert msg.chaddr == UDHCPC_MAC
    assert msg.ciaddr is None and msg.yiaddr is None
    assert msg.message_type == dhcp.DHCPDISCOVER
    assert msg.option(dhcp.OPTION_HOST_NAME) == b"wks-rad-01"
    assert msg.anomalies == ()


def test_udhcpc_discover_observations_are_about_chaddr() -> None:
    rec = w.run(dhcp.handle_dhcp, w.DHCP_DISCOVER_UDHCPC, src=ZERO, sport=68, dport=67)
    assert rec.anomalies == []
    assert rec.observations == [
        (None, UDHCPC_MAC, "dhcp.parameter_request_list", "1,3,6,12,15,28,42"),
        (None, UDHCPC_MAC, "dhcp.hostname", "wks-rad-01"),
        (None, UDHCPC_MAC, "dhcp.vendor_class_identifier", "medmon-udhcpc"),
        (None, UDHCPC_MAC, "dhcp.client_identifier", "01:02:00:00:99:00:02"),
        # option 81 with flag E clear: the ASCII encoding
        (None, UDHCPC_MAC, "dhcp.fqdn", "wks-rad-01.hospital.example"),
    ]


def test_udhcpc_request_names_the_requested_address() -> None:
    rec = w.run(dhcp.handle_dhcp, w.DHCP_REQUEST_UDHCPC, src=ZERO, sport=68, dport=67)
    assert rec.kinds()["dhcp.requested_ip"] == ["10.99.0.79"]
    assert rec.kinds()["dhcp.hostname"] == ["wks-rad-01"]


def test_dhclient_discover_with_canonical_fqdn_and_user_class() -> None:
    rec = w.run(dhcp.handle_dhcp, w.DHCP_DISCOVER_DHCLIENT, src=("0.0.0.0", DHCLIENT_MAC))
    assert rec.anomalies == []
    assert {(ip, mac) for ip, mac, _k, _v in rec.observations} == {(None, DHCLIENT_MAC)}
    assert rec.kinds() == {
        "dhcp.hostname": ["wks-rad-02"],
        # option 81 flags 0x05: S and E, the name in canonical wire format
        "dhcp.fqdn": ["wks-rad-02.hospital.example"],
        "dhcp.parameter_request_list": ["1,28,3,15,6,12,42"],
        "dhcp.vendor_class_identifier": ["medmon-isc-dhclient"],
        "dhcp.user_class": ["medmon-uc"],
    }


def test_dhclient_request() -> None:
    rec = w.run(dhcp.handle_dhcp, w.DHCP_REQUEST_DHCLIENT, src=("0.0.0.0", DHCLIENT_MAC))
    assert rec.kinds()["dhcp.requested_ip"] == ["10.99.0.80"]


def test_ack_binds_the_lease_and_names_the_server() -> None:
    rec = w.run(
        dhcp.handle_dhcp, w.DHCP_ACK_DNSMASQ_TO_UDHCPC, src=SERVER, dst=("10.99.0.79", None)
    )
    assert rec.anomalies == []
    assert rec.observations == [
        ("10.99.0.79", UDHCPC_MAC, "dhcp.lease", "10.99.0.79"),
        ("10.99.0.1", "02:00:00:99:00:01", "dhcp.server", "true"),
    ]
    rec = w.run(dhcp.handle_dhcp, w.DHCP_ACK_DNSMASQ_TO_DHCLIENT, src=SERVER)
    assert rec.observations[0] == ("10.99.0.80", DHCLIENT_MAC, "dhcp.lease", "10.99.0.80")


def test_relayed_ack_names_the_server_by_its_identifier_without_the_relay_mac() -> None:
    relay = ("10.99.0.254", "02:00:00:99:00:fe")
    rec = w.run(dhcp.handle_dhcp, w.DHCP_ACK_DNSMASQ_TO_UDHCPC, src=relay)
    assert rec.observations[-1] == ("10.99.0.1", None, "dhcp.server", "true")


def test_offer_says_nothing() -> None:
    msg = dhcp.parse_dhcp(w.DHCP_OFFER_DNSMASQ)
    assert isinstance(msg, dhcp.DhcpMessage)
    assert (msg.message_type, msg.yiaddr) == (dhcp.DHCPOFFER, "10.99.0.79")
    assert w.run(dhcp.handle_dhcp, w.DHCP_OFFER_DNSMASQ, src=SERVER).observations == []


# ------------------------------------------------------------------ hand-built malformed cases

HEADER = w.DHCP_DISCOVER_UDHCPC[:240]


def test_too_short_is_malformed() -> None:
    rec = w.run(dhcp.handle_dhcp, w.DHCP_DISCOVER_UDHCPC[:200])
    assert [a[0] for a in rec.anomalies] == ["dhcp.malformed"]
    assert rec.observations == []


def test_bad_magic_cookie_is_malformed() -> None:
    bad_cookie = HEADER[:236] + b"\x63\x82\x53\x64" + b"\x35\x01\x01\xff"
    rec = w.run(dhcp.handle_dhcp, bad_cookie)
    assert rec.anomalies == [("dhcp.malformed", "bad magic cookie 63825364")]


def test_bad_op_is_malformed() -> None:
    op_three = b"\x03" + w.DHCP_DISCOVER_UDHCPC[1:]
    assert w.run(dhcp.handle_dhcp, op_three).anomalies[0][0] == "dhcp.malformed"


def test_option_running_past_the_end_is_truncated() -> None:
    hostname_length_overrun = HEADER + b"\x35\x01\x01" + b"\x0c\x20wks"
    rec = w.run(dhcp.handle_dhcp, hostname_length_overrun)
    assert rec.anomalies == [
        ("dhcp.truncated_option", "option 12 runs past the end of the options area")
    ]
    assert rec.observations == []  # the message type was read; the cut hostname was not


def test_option_code_without_length_is_truncated() -> None:
    code_without_length = HEADER + b"\x35\x01\x01\x0c"
    assert w.run(dhcp.handle_dhcp, code_without_length).anomalies[0][0] == "dhcp.truncated_option"


def test_wrong_fixed_length_is_reported_and_dropped() -> None:
    requested_ip_of_three_bytes = HEADER + b"\x35\x01\x03\x32\x03\x0a\x63\x00\xff"
    rec = w.run(dhcp.handle_dhcp, requested_ip_of_three_bytes)
    assert rec.anomalies == [("dhcp.bad_option_length", "option 50: 3 bytes, not 4")]
    assert rec.observations == []


def test_canonical_fqdn_label_overrun_is_bad_fqdn() -> None:
    fqdn_label_overrun = HEADER + b"\x35\x01\x01" + b"\x51\x08\x05\x00\x00\x09wks-" + b"\xff"
    rec = w.run(dhcp.handle_dhcp, fqdn_label_overrun)
    assert rec.anomalies == [("dhcp.bad_fqdn", "label of 9 bytes runs past option 81")]
    assert "dhcp.fqdn" not in rec.kinds()


def test_option_overload_reads_the_file_field() -> None:
    # Option 52 = 1: the 'file' field (offset 108) carries more options: a hostname there.
    file_options = b"\x0c\x08overload\xff".ljust(128, b"\x00")
    overloaded = HEADER[:108] + file_options + HEADER[236:] + b"\x35\x01\x01\x34\x01\x01\xff"
    rec = w.run(dhcp.handle_dhcp, overloaded)
    assert rec.anomalies == []
    assert rec.kinds() == {"dhcp.hostname": ["overload"]}


def test_control_characters_are_replaced_and_values_capped() -> None:
    hostname_with_controls = HEADER + b"\x35\x01\x01\x0c\x06ab\x1b[2J" + b"\x0c\xff" + b"x" * 255
    rec = w.run(dhcp.handle_dhcp, hostname_with_controls)
    # two instances of option 12 are one value (RFC 3396), capped at 256 characters
    (value,) = rec.kinds()["dhcp.hostname"]
    assert value.startswith("ab?[2Jx") and len(value) == 256


def test_rfc3004_user_class_instances_are_joined() -> None:
    assert dhcp.user_class(b"\x04iPXE\x03abc") == "iPXE,abc"
    assert dhcp.user_class(b"medmon-uc") == "medmon-uc"


def test_every_prefix_never_raises() -> None:
    for payload in (w.DHCP_DISCOVER_DHCLIENT, w.DHCP_ACK_DNSMASQ_TO_UDHCPC):
        for n in range(len(payload)):
            w.run(dhcp.handle_dhcp, payload[:n])
