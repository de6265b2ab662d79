"""Which device is behind an address: ARP and DHCP bind, gateways do not, multicast is nobody."""

from __future__ import annotations

from monitor.fingerprint.identity import Binding, is_device_ip, is_device_mac, resolve

ROUTER = "02:00:0a:0a:00:01"
HOST = "00:50:c2:2e:00:01"


def test_a_flow_mac_is_the_hosts_own_when_nothing_says_otherwise() -> None:
    ident = resolve([Binding("10.20.0.5", HOST, "flow")])
    assert ident.by_ip == {"10.20.0.5": f"mac:{HOST}"}
    assert ident.asset_for("10.20.0.5", None) == f"mac:{HOST}"


def test_a_routers_mac_seen_with_many_addresses_is_a_gateway() -> None:
    remote = [Binding(f"10.40.0.{i}", ROUTER, "flow") for i in range(10, 15)]
    ident = resolve(remote)
    assert ROUTER in ident.gateways
    assert ident.by_ip["10.40.0.10"] == "ip:10.40.0.10"
    # A MAC-only fact about the gateway's MAC names no device.
    assert ident.asset_for(None, ROUTER) is None


def test_a_mac_that_arp_binds_to_another_address_is_not_this_ones() -> None:
    # The router's leg answers ARP for 10.20.0.1; a server in another subnet is seen behind it.
    ident = resolve(
        [
            Binding("10.20.0.1", ROUTER, "arp", 5),
            Binding("10.10.0.80", ROUTER, "flow", 6),
            Binding("10.10.0.80", "02:00:0a:0a:00:50", "flow", 7),
        ]
    )
    assert ident.by_ip["10.20.0.1"] == f"mac:{ROUTER}"
    assert ident.by_ip["10.10.0.80"] == "mac:02:00:0a:0a:00:50"


def test_two_candidate_macs_and_no_binding_leave_the_address_alone() -> None:
    ident = resolve([Binding("10.0.0.9", HOST, "flow"), Binding("10.0.0.9", ROUTER, "flow")])
    assert ident.by_ip["10.0.0.9"] == "ip:10.0.0.9"


def test_a_new_dhcp_lease_keeps_the_device() -> None:
    ident = resolve(
        [
            Binding("10.40.0.50", HOST, "dhcp", 100),
            Binding("10.40.0.77", HOST, "dhcp", 200),
            Binding("10.40.0.77", HOST, "flow", 210),
        ]
    )
    assert ident.by_ip["10.40.0.50"] == ident.by_ip["10.40.0.77"] == f"mac:{HOST}"
    # The DHCP client before it has an address is known by its MAC alone.
    assert ident.asset_for(None, HOST) == f"mac:{HOST}"


def test_the_latest_authoritative_binding_wins() -> None:
    ident = resolve(
        [Binding("10.0.0.5", HOST, "arp", 10), Binding("10.0.0.5", "00:1b:c5:00:00:02", "dhcp", 20)]
    )
    assert ident.by_ip["10.0.0.5"] == "mac:00:1b:c5:00:00:02"


def test_multicast_broadcast_and_unspecified_are_not_devices() -> None:
    assert not is_device_mac("01:00:5e:00:00:fb")
    assert not is_device_mac("ff:ff:ff:ff:ff:ff")
    assert not is_device_mac("00:00:00:00:00:00")
    assert is_device_mac(HOST)
    for ip in ("224.0.0.251", "ff02::fb", "255.255.255.255", "0.0.0.0", "::", "nonsense"):
        assert not is_device_ip(ip), ip
    ident = resolve([Binding("224.0.0.251", "01:00:5e:00:00:fb", "flow")])
    assert ident.by_ip == {}
    assert ident.asset_for("224.0.0.251", "01:00:5e:00:00:fb") is None


def test_ipv6_classification_agrees_with_ipaddress() -> None:
    """The /64-cached IPv6 answers of is_internal and is_device_ip are ipaddress's, on the
    special ranges and on random addresses in and around them."""
    import ipaddress
    import random

    from monitor.register.inventory import is_internal

    rng = random.Random(7)
    samples = [
        *("2001:db8::1", "fd00::5", "fe80::1", "::1", "::", "::ffff:10.0.0.1", "2001:0:1::1"),
        *("2001:1::1", "2001:200::1", "2002::1", "64:ff9b::1", "100::1", "ff02::1"),
        *("2607:f8b0::1", "fc00::", "febf::1", "fec0::1", "fe80::1%eth0"),
    ]
    samples += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(500)]
    for top in (0x2001, 0xFD12, 0xFE80, 0x0100, 0x2002, 0x0000, 0xFF02):
        samples += [
            str(ipaddress.IPv6Address(top << 112 | rng.getrandbits(100))) for _ in range(200)
        ]
    for ip in samples:
        a = ipaddress.ip_address(ip)
        assert is_internal(ip) == (a.is_private or a.is_link_local), ip
        assert is_device_ip(ip) == (not (a.is_multicast or a.is_unspecified)), ip
