"""Which device is behind an address: MAC first, IP over time, DHCP leases.

A device is an *asset* with a stable ``asset_id``: ``mac:aa:bb:cc:dd:ee:ff`` when medmon knows
its own MAC address, else ``ip:10.20.0.5``. A device whose address changes (a new DHCP lease)
keeps its MAC and so its asset; a device known first by its address and later by its MAC is
merged into the MAC asset.

The difficulty is that a SPAN port of a routed network shows the *router's* MAC as the source
of every packet from another subnet. So a MAC seen beside an address is that address's own
only when nothing says otherwise:

- **Authoritative bindings** come from the device itself: an ARP sender (``arp.ip``) and a
  DHCP lease (``dhcp.lease``: the server gave ``yiaddr`` to ``chaddr``). An address with an
  authoritative binding gets the most recently bound MAC.
- **Flow bindings** (the MAC in the frames of a flow's end) count only for a MAC that is not
  bound authoritatively to another address (a router's interface answers ARP for its own
  address) and that is seen with at most :data:`MAX_ADDRESSES_PER_MAC` IPv4 addresses (more
  is a gateway forwarding for a subnet), and only when exactly one such MAC remains.
- Multicast and broadcast MACs, and multicast, broadcast and unspecified addresses, are never
  devices.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

#: More IPv4 addresses than this behind one MAC in one run: a router or gateway.
MAX_ADDRESSES_PER_MAC = 3


@dataclass(frozen=True, slots=True)
class Binding:
    """``ip`` seen with ``mac``; ``source`` 'arp', 'dhcp' (authoritative) or 'flow'."""

    ip: str
    mac: str
    source: str
    last_ns: int = 0


@dataclass
class Identities:
    """The outcome: each address's and each MAC's asset id."""

    by_ip: dict[str, str] = field(default_factory=dict)
    by_mac: dict[str, str] = field(default_factory=dict)
    #: MACs judged to be gateways (never an asset of their own through flows).
    gateways: set[str] = field(default_factory=set)
    #: asset id -> the MAC of a MAC asset.
    mac_of: dict[str, str] = field(default_factory=dict)

    def asset_for(self, ip: str | None, mac: str | None) -> str | None:
        """The asset an observation about ``ip`` and/or ``mac`` belongs to (None: no device):
        the address decides when there is one, else the MAC."""
        if ip and is_device_ip(ip):
            return self.by_ip.get(ip) or f"ip:{ip}"
        if mac and is_device_mac(mac) and mac not in self.gateways:
            asset = self.by_mac.get(mac) or mac_asset(mac)
            self.by_mac[mac] = asset
            self.mac_of[asset] = mac
            return asset
        return None


def mac_asset(mac: str) -> str:
    """The asset id of a device known by its MAC."""
    return f"mac:{mac}"


def is_device_mac(mac: str | None) -> bool:
    """A unicast MAC (not multicast/broadcast, not all zeros)."""
    if not mac or len(mac) < 2:
        return False
    try:
        first = int(mac[:2], 16)
    except ValueError:
        return False
    return not first & 1 and mac != "00:00:00:00:00:00"


def ipv4_octets(ip: str) -> tuple[int, int, int, int] | None:
    """The four octets of a dotted-quad IPv4 address, or None (much cheaper than
    :mod:`ipaddress` for the common case, which matters with thousands of hosts)."""
    parts = ip.split(".")
    if len(parts) != 4:
        return None
    try:
        a, b, c, d = (int(x) for x in parts)
    except ValueError:
        return None
    if not (0 <= a <= 255 and 0 <= b <= 255 and 0 <= c <= 255 and 0 <= d <= 255):
        return None
    return a, b, c, d


def ipv6_bytes(ip: str) -> bytes | None:
    """The 16 bytes of an IPv6 address in text, or None (a scope id, or not IPv6)."""
    try:
        return socket.inet_pton(socket.AF_INET6, ip)
    except (OSError, ValueError):
        return None


#: IPv6 /64 prefix -> whether the addresses in it are private or link-local (see
#: :func:`ipv6_internal`).
_V6_INTERNAL: dict[bytes, bool] = {}


def ipv6_internal(ip: str) -> bool | None:
    """Whether an IPv6 address is private or link-local, as :mod:`ipaddress` says
    (``is_private or is_link_local``), or None when that must be asked address by address.

    Every such range of Python 3.11-3.13 outside ``::/64`` and ``2001::/23`` is a /64 or
    shorter, so the answer is kept per /64: a site's thousands of addresses cost a few
    :mod:`ipaddress` look-ups, not one each (they take about 10 us)."""
    raw = ipv6_bytes(ip)
    if raw is None or not any(raw[:8]) or (raw[0] == 0x20 and raw[1] == 0x01 and raw[2] < 2):
        return None
    prefix = raw[:8]
    known = _V6_INTERNAL.get(prefix)
    if known is None:
        if len(_V6_INTERNAL) >= 65536:
            _V6_INTERNAL.clear()
        addr = ipaddress.IPv6Address(raw)
        known = _V6_INTERNAL[prefix] = addr.is_private or addr.is_link_local
    return known


@lru_cache(maxsize=65536)
def is_device_ip(ip: str | None) -> bool:
    """A unicast, specified address (not multicast, the limited broadcast or unspecified; a
    subnet's directed broadcast is recognised by its broadcast MAC, see :func:`sightings`)."""
    if not ip:
        return False
    v4 = ipv4_octets(ip)
    if v4 is not None:
        return 1 <= v4[0] < 224 and ip != "255.255.255.255"
    raw = ipv6_bytes(ip)
    if raw is not None:  # not multicast (ff00::/8), not unspecified (::)
        return raw[0] != 0xFF and any(raw)
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if a.is_multicast or a.is_unspecified:
        return False
    return ip != "255.255.255.255"


def resolve(bindings: Iterable[Binding]) -> Identities:
    """Decide each address's asset from what the run saw (see the module docstring)."""
    auth: dict[str, dict[str, int]] = defaultdict(dict)  # ip -> mac -> last_ns
    auth_macs: dict[str, set[str]] = defaultdict(set)  # mac -> ips bound authoritatively
    flow: dict[str, set[str]] = defaultdict(set)  # ip -> macs
    flow_v4: dict[str, set[str]] = defaultdict(set)  # mac -> IPv4 addresses
    ips: set[str] = set()
    for b in bindings:
        if not is_device_ip(b.ip):
            if b.source != "flow" and is_device_mac(b.mac):
                auth_macs[b.mac]  # a MAC-only device (DHCP before its lease)
            continue
        ips.add(b.ip)
        if not is_device_mac(b.mac):
            continue
        if b.source == "flow":
            flow[b.ip].add(b.mac)
            if ":" not in b.ip:
                flow_v4[b.mac].add(b.ip)
        else:
            seen = auth[b.ip]
            seen[b.mac] = max(seen.get(b.mac, 0), b.last_ns)
            auth_macs[b.mac].add(b.ip)
    out = Identities()
    out.gateways = {m for m, v4 in flow_v4.items() if len(v4) > MAX_ADDRESSES_PER_MAC}
    for ip in sorted(ips):
        mac: str | None = None
        if ip in auth:
            mac = max(auth[ip].items(), key=lambda kv: (kv[1], kv[0]))[0]
        else:
            own = [
                m
                for m in flow.get(ip, ())
                if m not in out.gateways and not (auth_macs.get(m, set()) - {ip})
            ]
            if len(own) == 1:
                mac = own[0]
        if mac is not None:
            asset = mac_asset(mac)
            out.by_ip[ip] = asset
            out.by_mac[mac] = asset
            out.mac_of[asset] = mac
        else:
            out.by_ip[ip] = f"ip:{ip}"
    for mac, bound in auth_macs.items():
        if mac not in out.by_mac and not bound:
            asset = mac_asset(mac)
            out.by_mac[mac] = asset
            out.mac_of[asset] = mac
    return out
