"""UDP datagrams of DHCP, DNS, mDNS, LLMNR, NetBIOS, SSDP, WS-Discovery and SNMP, as real
implementations put them on the wire (the UDP payload only).

Origin: captured 2026-12-04 with tcpdump 4.99 on a veth pair between two network namespaces
made for the purpose (``mm-a`` 10.99.0.1, MAC 02:00:00:99:00:01; ``mm-b`` 10.99.0.2, MAC
02:00:00:99:00:02, 02:00:00:99:00:03 while ISC dhclient ran), Debian 12 packages:

- DHCP: dnsmasq 2.89 (``--dhcp-range=10.99.0.50,10.99.0.99,12h``) in mm-a; in mm-b
  ``busybox udhcpc -x hostname:wks-rad-01 -V medmon-udhcpc -F wks-rad-01.hospital.example``,
  then ``dhclient`` 4.4.3-P1 with ``send host-name "wks-rad-02"; send fqdn.fqdn
  "wks-rad-02.hospital.example."; send fqdn.encoded on; send user-class "medmon-uc"; send
  vendor-class-identifier "medmon-isc-dhclient";``.
- DNS: ``dig @10.99.0.1`` (BIND 9.18) to the same dnsmasq (``--address=/pacs01.hospital.example
  /10.99.0.10``, no upstream).
- mDNS: python-zeroconf 0.147 registering ``Printer 3._ipp._tcp.local.`` and ``Infusion
  Hub._http._tcp.local.`` (host printer-3.local, 10.99.0.1 and fd99::1) in mm-a, browsing
  with ``ZeroconfServiceTypes.find`` in mm-b. LLMNR: no LLMNR implementation is packaged for
  Debian 12 besides systemd-resolved (which would take over the machine's resolver), so the
  one LLMNR query is scapy 2.8.0's ``LLMNRQuery`` sent from mm-b.
- NetBIOS: Samba nmbd 4.17.12 (``netbios name = WKS-RAD-01``, ``workgroup = RADIOLOGY``,
  ``local master = yes``) in mm-a and a second one (WKS-RAD-02) in mm-b, ``nmblookup -B
  10.99.0.255 WKS-RAD-01`` from mm-b.
- SSDP: MiniDLNA 1.3.0 in mm-a; GSSDP 1.6.2 ResourceBrowser (python3-gi) searching ``ssdp:all``
  and ``urn:schemas-upnp-org:device:MediaServer:1`` from mm-b.
- WS-Discovery: wsdd 0.7.0 (``-n WKS-RAD-01 -w RADIOLOGY``) in mm-a, ``wsdd --discovery`` in mm-b.
- SNMP: net-snmp 5.9.3 snmpd in mm-a (``rocommunity public``, ``rocommunity`` SITE_COMMUNITY,
  ``sysName medmon-agent``, ``sysDescr medmon test agent Linux 6.1 x86_64``, a USM user
  ``mmuser`` SHA/AES); ``snmpget -On`` of sysDescr.0, sysObjectID.0 and sysName.0 with v1
  ``public``, v2c ``public``, v2c SITE_COMMUNITY, v1 ``private`` (unanswered) and v3 authPriv,
  and ``snmptrap -v 2c -c public`` (coldStart) from mm-b.

Each constant's comment gives its implementation, addresses and ports, the frame of the
capture and what it decodes to. The captured names are test names: no PHI, and
SITE_COMMUNITY is a made-up secret whose whole point is that it is never recorded.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

from monitor.decode import LINKTYPE_PKTAP, Packet, decode
from monitor.parsers.base import DatagramContext
from monitor.source import CaptureReader

#: The made-up "site" SNMP community of SNMP_V2C_*_SITE_COMMUNITY: not a default, so it must
#: never appear in an observation, a record or an anomaly.
SITE_COMMUNITY = "H0sp1tal-RO-7x"
#: Addresses of the two namespaces the datagrams were captured between.
HOST_A = ("10.99.0.1", "02:00:00:99:00:01")
HOST_B = ("10.99.0.2", "02:00:00:99:00:02")

# ------------------------------------------------------------------ DHCP


#: busybox udhcpc 1.35.0, chaddr 02:00:00:99:00:02, 0.0.0.0:68 -> 255.255.255.255:67; all.pcap
#: frame 39, 325 bytes.
#: op 1, options: 53=1 DISCOVER, 61 client id 01:02:00:00:99:00:02, 55 PRL 1,3,6,12,15,28,42, 12
#: 'wks-rad-01', 60 'medmon-udhcpc', 81 flags 0x01 ASCII 'wks-rad-01.hospital.example'
DHCP_DISCOVER_UDHCPC = bytes.fromhex(
    "0101060033711674000000000000000000000000000000000000000002000099000200000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501013902024037070103060c0f1c2a0c0a776b732d7261"
    "642d30313c0d6d65646d6f6e2d7564686370633d0701020000990002511e010000776b732d7261642d30312e"
    "686f73706974616c2e6578616d706c65ff"
)

#: dnsmasq 2.89 -> udhcpc, 10.99.0.1:67 -> 10.99.0.79:68; all.pcap frame 53, 319 bytes.
#: op 2, yiaddr 10.99.0.79, 53=2 OFFER, 54 server 10.99.0.1
DHCP_OFFER_DNSMASQ = bytes.fromhex(
    "020106003371167400000000000000000a63004f0a6300010000000002000099000200000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000006382536335010236040a63000133040000a8c03a04000054603b0400"
    "0093a80104ffffff001c040a6300ff03040a63000106040a6300010c0a776b732d7261642d3031510d01ffff"
    "776b732d7261642d3031ff"
)

#: busybox udhcpc 1.35.0, 0.0.0.0:68 -> 255.255.255.255:67; all.pcap frame 55, 337 bytes.
#: op 1, 53=3 REQUEST, 50 requested 10.99.0.79, 54 server 10.99.0.1, 12, 60, 61, 81, 55
DHCP_REQUEST_UDHCPC = bytes.fromhex(
    "0101060033711674000300000000000000000000000000000000000002000099000200000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000006382536335010332040a63004f36040a630001390202403707010306"
    "0c0f1c2a0c0a776b732d7261642d30313c0d6d65646d6f6e2d7564686370633d0701020000990002511e0100"
    "00776b732d7261642d30312e686f73706974616c2e6578616d706c65ff"
)

#: dnsmasq 2.89, 10.99.0.1:67 -> 10.99.0.79:68; all.pcap frame 56, 319 bytes.
#: op 2, yiaddr 10.99.0.79, chaddr 02:00:00:99:00:02, 53=5 ACK, 54 server 10.99.0.1
DHCP_ACK_DNSMASQ_TO_UDHCPC = bytes.fromhex(
    "020106003371167400030000000000000a63004f0a6300010000000002000099000200000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000006382536335010536040a63000133040000a8c03a04000054603b0400"
    "0093a80104ffffff001c040a6300ff03040a63000106040a6300010c0a776b732d7261642d3031510d01ffff"
    "776b732d7261642d3031ff"
)

#: ISC dhclient 4.4.3-P1, chaddr 02:00:00:99:00:03, 0.0.0.0:68 -> 255.255.255.255:67; all.pcap
#: frame 59, 331 bytes.
#: op 1, 53=1, 12 'wks-rad-02', 81 flags 0x05 (S, E) canonical wire
#: 'wks-rad-02.hospital.example', 55 PRL 1,28,3,15,6,12,42, 60 'medmon-isc-dhclient', 77
#: 'medmon-uc' (bare text, not RFC 3004 instances)
DHCP_DISCOVER_DHCLIENT = bytes.fromhex(
    "010106007b802816000000000000000000000000000000000000000002000099000300000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501010c0a776b732d7261642d303251200500000a776b73"
    "2d7261642d303208686f73706974616c076578616d706c65003707011c030f060c2a3c136d65646d6f6e2d69"
    "73632d6468636c69656e744d096d65646d6f6e2d7563ff"
)

#: ISC dhclient 4.4.3-P1, 0.0.0.0:68 -> 255.255.255.255:67; all.pcap frame 63, 343 bytes.
#: op 1, 53=3, 54 server 10.99.0.1, 50 requested 10.99.0.80, 12, 81, 55, 60, 77
DHCP_REQUEST_DHCLIENT = bytes.fromhex(
    "010106007b802816000000000000000000000000000000000000000002000099000300000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000006382536335010336040a63000132040a6300500c0a776b732d726164"
    "2d303251200500000a776b732d7261642d303208686f73706974616c076578616d706c65003707011c030f06"
    "0c2a3c136d65646d6f6e2d6973632d6468636c69656e744d096d65646d6f6e2d7563ff"
)

#: dnsmasq 2.89, 10.99.0.1:67 -> 10.99.0.80:68; all.pcap frame 64, 320 bytes.
#: op 2, yiaddr 10.99.0.80, chaddr 02:00:00:99:00:03, 53=5 ACK, 54 server 10.99.0.1
DHCP_ACK_DNSMASQ_TO_DHCLIENT = bytes.fromhex(
    "020106007b80281600000000000000000a6300500a6300010000000002000099000300000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000006382536335010536040a63000133040000a8c03a04000054603b0400"
    "0093a80104ffffff001c040a6300ff03040a63000106040a6300010c0a776b732d7261642d3032510e05ffff"
    "0a776b732d7261642d3032ff"
)

# ------------------------------------------------------------------ DNS


#: dig 9.18 -> dnsmasq 2.89, 10.99.0.2:53194 -> 10.99.0.1:53; all.pcap frame 79, 64 bytes.
#: id 0xf397, RD, 1 question pacs01.hospital.example A IN, OPT additional
DNS_QUERY_A_DIG = bytes.fromhex(
    "f397012000010000000000010670616373303108686f73706974616c076578616d706c650000010001000029"
    "04d000000000000c000a0008dd71de4ac495cd1c"
)

#: dnsmasq 2.89, 10.99.0.1:53 -> 10.99.0.2:53194; all.pcap frame 80, 68 bytes.
#: QR AA RD RA, answer pacs01.hospital.example (pointer 0xc00c) A 10.99.0.10, OPT
DNS_RESPONSE_A_DNSMASQ = bytes.fromhex(
    "f397858000010001000000010670616373303108686f73706974616c076578616d706c650000010001c00c00"
    "0100010000000000040a63000a00002904d0000000000000"
)

#: dig 9.18, 10.99.0.2:42767 -> 10.99.0.1:53; all.pcap frame 83, 68 bytes.
#: question WKS-RAD-01.Hospital.Example AAAA IN, OPT
DNS_QUERY_AAAA_MIXED_CASE_DIG = bytes.fromhex(
    "8ee6012000010000000000010a574b532d5241442d303108486f73706974616c074578616d706c6500001c00"
    "0100002904d000000000000c000a00081ab202e0004222b9"
)

#: dnsmasq 2.89 (no upstream), 10.99.0.1:53 -> 10.99.0.2:42767; all.pcap frame 84, 62 bytes.
#: QR RCODE 5 REFUSED, the question echoed, OPT
DNS_RESPONSE_REFUSED_DNSMASQ = bytes.fromhex(
    "8ee6818500010000000000010a574b532d5241442d303108486f73706974616c074578616d706c6500001c00"
    "0100002904d0000000000006000f0002000e"
)

#: python-zeroconf 0.147 register_service on 10.99.0.1, 5353 -> 224.0.0.251:5353; all.pcap frame
#: 112, 209 bytes.
#: QR AA; PTR _ipp._tcp.local -> Printer 3._ipp._tcp.local, SRV printer-3.local:631, TXT
#: txtvers=1 ty='ACME LaserJet 400' product='(ACME LaserJet 400)' rp=ipp/print, A printer-3.local
#: 10.99.0.1, AAAA printer-3.local fd99::1
MDNS_ANNOUNCE_IPP_ZEROCONF = bytes.fromhex(
    "000084000000000500000000045f697070045f746370056c6f63616c00000c000100001194000c095072696e"
    "7465722033c00cc02700218001000000780012000000000277097072696e7465722d33c016c0270010800100"
    "001194004809747874766572733d311474793d41434d45204c617365724a6574203430301b70726f64756374"
    "3d2841434d45204c617365724a657420343030290c72703d6970702f7072696e74c045000180010000007800"
    "040a630001c045001c8001000000780010fd990000000000000000000000000001"
)

#: python-zeroconf 0.147 register_service on 10.99.0.1, 5353 -> 224.0.0.251:5353; all.pcap frame
#: 143, 157 bytes.
#: QR AA; PTR _http._tcp.local -> Infusion Hub._http._tcp.local, SRV printer-3.local:80, TXT
#: md='PumpHub 9' model=PH-9000
MDNS_ANNOUNCE_HTTP_ZEROCONF = bytes.fromhex(
    "000084000000000500000000055f68747470045f746370056c6f63616c00000c000100001194000f0c496e66"
    "7573696f6e20487562c00cc02800218001000000780012000000000050097072696e7465722d33c017c02800"
    "10800100001194001b0c6d643d50756d7048756220390d6d6f64656c3d50482d39303030c049002f80010000"
    "00780005c049000140c049000180010000007800040a630001"
)

#: python-zeroconf 0.147 ZeroconfServiceTypes.find on 10.99.0.2, 5353 -> 224.0.0.251:5353;
#: all.pcap frame 147, 46 bytes.
#: QR 0; question _services._dns-sd._udp.local PTR (QU)
MDNS_SERVICES_QUERY_ZEROCONF = bytes.fromhex(
    "000000000001000000000000095f7365727669636573075f646e732d7364045f756470056c6f63616c00000c8001"
)

#: python-zeroconf 0.147 responder on 10.99.0.1, 5353 -> 224.0.0.251:5353; all.pcap frame 148, 84
#: bytes.
#: QR AA; PTR _services._dns-sd._udp.local -> _ipp._tcp.local, -> _http._tcp.local
MDNS_SERVICES_RESPONSE_ZEROCONF = bytes.fromhex(
    "000084000000000200000000095f7365727669636573075f646e732d7364045f756470056c6f63616c00000c"
    "000100001194000c045f697070045f746370c023c00c000c0001000011940008055f68747470c039"
)

#: scapy 2.8.0 LLMNRQuery (no LLMNR responder/resolver available here), 10.99.0.2:50123 ->
#: 224.0.0.252:5355; all.pcap frame 152, 28 bytes.
#: id 0x1f2e, 1 question wks-rad-03 A IN
LLMNR_QUERY_SCAPY = bytes.fromhex("1f2e000000010000000000000a776b732d7261642d30330000010001")

# ------------------------------------------------------------------ NetBIOS


#: Samba nmbd 4.17.12, 10.99.0.1:137 -> 10.99.0.255:137; all.pcap frame 3, 68 bytes.
#: opcode 5 registration, RD B; question WKS-RAD-01<00> NB IN; additional pointer 0xc00c NB TTL 0
#: NB_FLAGS 0x0000 (unique, B-node) 10.99.0.1
NBNS_REGISTRATION_UNIQUE_NMBD = bytes.fromhex(
    "232129100001000000000001204648454c4644434e464345424545434e444144424341434143414341434141"
    "410000200001c00c0020000100000000000600000a630001"
)

#: Samba nmbd 4.17.12, 10.99.0.1:137 -> 10.99.0.255:137; all.pcap frame 4, 68 bytes.
#: opcode 5; RADIOLOGY<00>, NB_FLAGS 0x8000 (group) 10.99.0.1
NBNS_REGISTRATION_GROUP_NMBD = bytes.fromhex(
    "23222910000100000000000120464345424545454a4550454d45504548464a43414341434143414341434141"
    "410000200001c00c0020000100000000000680000a630001"
)

#: Samba nmbd 4.17.12, 10.99.0.1:137 -> 10.99.0.255:137; all.pcap frame 71, 68 bytes.
#: opcode 5; '\x01\x02__MSBROWSE__\x02'<01>, NB_FLAGS 0x8000 (group)
NBNS_REGISTRATION_MSBROWSE_NMBD = bytes.fromhex(
    "232b29100001000000000001204142414346504650454e464445434643455046484644454646504650414341"
    "420000200001c00c0020000100000000000680000a630001"
)

#: Samba nmbd 4.17.12, 10.99.0.2:137 -> 10.99.0.255:137; all.pcap frame 131, 68 bytes.
#: opcode 6 release of RADIOLOGY<1d>
NBNS_RELEASE_NMBD = bytes.fromhex(
    "23383010000100000000000120464345424545454a4550454d45504548464a43414341434143414341434142"
    "4e0000200001c00c0020000100000000000600000a630002"
)

#: Samba nmblookup 4.17.12, 10.99.0.2:60652 -> 10.99.0.255:137; all.pcap frame 251, 50 bytes.
#: opcode 0 query, RD B; question WKS-RAD-01<00> NB IN
NBNS_QUERY_NMBLOOKUP = bytes.fromhex(
    "656c01100001000000000000204648454c4644434e464345424545434e444144424341434143414341434141"
    "410000200001"
)

#: Samba nmbd 4.17.12, 10.99.0.1:137 -> 10.99.0.2:60652; all.pcap frame 252, 62 bytes.
#: R opcode 0 AA RD, rcode 0; answer WKS-RAD-01<00> NB TTL 259200, NB_FLAGS 0x0000 10.99.0.1
NBNS_QUERY_RESPONSE_NMBD = bytes.fromhex(
    "656c85800000000100000000204648454c4644434e464345424545434e444144424341434143414341434141"
    "4100002000010003f480000600000a630001"
)

#: Samba nmbd 4.17.12, 10.99.0.1:138 -> 10.99.0.255:138; all.pcap frame 6, 212 bytes.
#: datagram 0x11 direct group, source WKS-RAD-01<00>, destination RADIOLOGY<1d>; SMB TRANSACTION
#: to \MAILSLOT\BROWSE; HostAnnouncement: ServerName WKS-RAD-01, OS version 6.1, comment 'medmon
#: test'
BROWSER_HOST_ANNOUNCEMENT_NMBD = bytes.fromhex(
    "110a23240a630001008a00c60000204648454c4644434e464345424545434e44414442434143414341434143"
    "4141410020464345424545454a4550454d45504548464a434143414341434143414341424e00ff534d422500"
    "00000000000000000000000000000000000000000000000000001100002c0000000000000000000000000000"
    "00000000002c00560003000100010002003d005c4d41494c534c4f545c42524f57534500010060ea0000574b"
    "532d5241442d30310000000000000601039a81000f0155aa6d65646d6f6e207465737400"
)

#: Samba nmbd 4.17.12, 10.99.0.1:138 -> 10.99.0.255:138; all.pcap frame 121, 212 bytes.
#: LocalMasterAnnouncement (opcode 15): ServerName WKS-RAD-01, OS version 6.1
BROWSER_LOCAL_MASTER_ANNOUNCEMENT_NMBD = bytes.fromhex(
    "110a23320a630001008a00c60000204648454c4644434e464345424545434e44414442434143414341434143"
    "4141410020464345424545454a4550454d45504548464a434143414341434143414341424f00ff534d422500"
    "00000000000000000000000000000000000000000000000000001100002c0000000000000000000000000000"
    "00000000002c00560003000100010002003d005c4d41494c534c4f545c42524f575345000f02c0d40100574b"
    "532d5241442d30310000000000000601039a84000f0155aa6d65646d6f6e207465737400"
)

#: Samba nmbd 4.17.12, 10.99.0.1:138 -> 10.99.0.255:138; all.pcap frame 122, 211 bytes.
#: DomainAnnouncement (opcode 12) of RADIOLOGY: not a host announcement
BROWSER_DOMAIN_ANNOUNCEMENT_NMBD = bytes.fromhex(
    "110a23330a630001008a00c50000204648454c4644434e464345424545434e44414442434143414341434143"
    "41414100204142414346504650454e4644454346434550464846444546465046504143414200ff534d422500"
    "00000000000000000000000000000000000000000000000000001100002b0000000000000000000000000000"
    "00000000002b00560003000100010002003c005c4d41494c534c4f545c42524f575345000c02c0d401005241"
    "44494f4c4f4759000000000000000601001000800f0155aa574b532d5241442d303100"
)

#: Samba nmbd 4.17.12, 10.99.0.2:138 -> 10.99.0.255:138; all.pcap frame 57, 193 bytes.
#: RequestElection (opcode 8)
BROWSER_ELECTION_REQUEST_NMBD = bytes.fromhex(
    "110a23270a630002008a00b30000204648454c4644434e464345424545434e44414443434143414341434143"
    "4141410020464345424545454a4550454d45504548464a434143414341434143414341424f00ff534d422500"
    "0000000000000000000000000000000000000000000000000000110000190000000000000000000000000000"
    "00000000001900560003000100010002002a005c4d41494c534c4f545c42524f5753450008010a0f01417017"
    "000000000000574b532d5241442d303200"
)

# ------------------------------------------------------------------ SSDP


#: MiniDLNA 1.3.0, 10.99.0.1:52741 -> 239.255.255.250:1900; all.pcap frame 167, 324 bytes.
SSDP_NOTIFY_ALIVE_MEDIASERVER_MINIDLNA = (
    b"NOTIFY * HTTP/1.1\r\n"
    b"HOST:239.255.255.250:1900\r\n"
    b"CACHE-CONTROL:max-age=70\r\n"
    b"LOCATION:http://10.99.0.1:8200/rootDesc.xml\r\n"
    b"SERVER: Debian DLNADOC/1.50 UPnP/1.0 MiniDLNA/1.3.0\r\n"
    b"NT:urn:schemas-upnp-org:device:MediaServer:1\r\n"
    b"USN:uuid:4d696e69-444c-164e-9d41-020000990001::urn:schemas-upnp-org:device:MediaServer:1\r\n"
    b"NTS:ssdp:alive\r\n"
    b"\r\n"
)

#: MiniDLNA 1.3.0, 10.99.0.1:52741 -> 239.255.255.250:1900; all.pcap frame 168, 336 bytes.
SSDP_NOTIFY_ALIVE_SERVICE_MINIDLNA = (
    b"NOTIFY * HTTP/1.1\r\n"
    b"HOST:239.255.255.250:1900\r\n"
    b"CACHE-CONTROL:max-age=70\r\n"
    b"LOCATION:http://10.99.0.1:8200/rootDesc.xml\r\n"
    b"SERVER: Debian DLNADOC/1.50 UPnP/1.0 MiniDLNA/1.3.0\r\n"
    b"NT:urn:schemas-upnp-org:service:ContentDirectory:1\r\n"
    b"USN:uuid:4d696e69-444c-164e-9d41-020000990001::urn:schemas-upnp-org:service:ContentDirectory:1\r\n"
    b"NTS:ssdp:alive\r\n"
    b"\r\n"
)

#: MiniDLNA 1.3.0, 10.99.0.1:52741 -> 239.255.255.250:1900; all.pcap frame 161, 201 bytes.
SSDP_NOTIFY_BYEBYE_MEDIASERVER_MINIDLNA = (
    b"NOTIFY * HTTP/1.1\r\n"
    b"HOST:239.255.255.250:1900\r\n"
    b"NT:urn:schemas-upnp-org:device:MediaServer:1\r\n"
    b"USN:uuid:4d696e69-444c-164e-9d41-020000990001::urn:schemas-upnp-org:device:MediaServer:1\r\n"
    b"NTS:ssdp:byebye\r\n"
    b"\r\n"
)

#: GSSDP 1.6.2 (python3-gi ResourceBrowser), 10.99.0.2:52566 -> 239.255.255.250:1900; all.pcap
#: frame 177, 151 bytes.
SSDP_MSEARCH_ALL_GSSDP = (
    b"M-SEARCH * HTTP/1.1\r\n"
    b"Host: 239.255.255.250:1900\r\n"
    b'Man: "ssdp:discover"\r\n'
    b"ST: ssdp:all\r\n"
    b"MX: 3\r\n"
    b"User-Agent: Linux/6.18.44-fc-v1272 UPnP/1.0 GSSDP/1.6.2\r\n"
    b"\r\n"
)

#: MiniDLNA 1.3.0, 10.99.0.1:1900 -> 10.99.0.2:52566; all.pcap frame 181, 345 bytes.
SSDP_RESPONSE_MEDIASERVER_MINIDLNA = (
    b"HTTP/1.1 200 OK\r\n"
    b"CACHE-CONTROL: max-age=70\r\n"
    b"DATE: Fri, 04 Dec 2026 23:30:17 GMT\r\n"
    b"ST: urn:schemas-upnp-org:device:MediaServer:1\r\n"
    b"USN: uuid:4d696e69-444c-164e-9d41-020000990001::urn:schemas-upnp-org:device:MediaServer:1\r\n"
    b"EXT:\r\n"
    b"SERVER: Debian DLNADOC/1.50 UPnP/1.0 MiniDLNA/1.3.0\r\n"
    b"LOCATION: http://10.99.0.1:8200/rootDesc.xml\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

#: MiniDLNA 1.3.0, 10.99.0.1:1900 -> 10.99.0.2:52566; all.pcap frame 179, 302 bytes.
SSDP_RESPONSE_UUID_MINIDLNA = (
    b"HTTP/1.1 200 OK\r\n"
    b"CACHE-CONTROL: max-age=70\r\n"
    b"DATE: Fri, 04 Dec 2026 23:30:17 GMT\r\n"
    b"ST: uuid:4d696e69-444c-164e-9d41-020000990001\r\n"
    b"USN: uuid:4d696e69-444c-164e-9d41-020000990001\r\n"
    b"EXT:\r\n"
    b"SERVER: Debian DLNADOC/1.50 UPnP/1.0 MiniDLNA/1.3.0\r\n"
    b"LOCATION: http://10.99.0.1:8200/rootDesc.xml\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

#: wsdd 0.7.0 (-n WKS-RAD-01 -w RADIOLOGY), 10.99.0.1:40433 -> 239.255.255.250:3702; all.pcap
#: frame 207, 1134 bytes.
#: 2005/04 Hello: EndpointReference and XAddrs, no Types element (wsdd omits it)
WSD_HELLO_WSDD = (
    b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.o'
    b'rg/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addre'
    b'ssing" xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:wsx="ht'
    b'tp://schemas.xmlsoap.org/ws/2004/09/mex" xmlns:wsdp="http://schemas.xmlsoap.org/'
    b'ws/2006/02/devprof" xmlns:pnpx="http://schemas.microsoft.com/windows/pnpx/2005/1'
    b'0" xmlns:pub="http://schemas.microsoft.com/windows/pub/2005/07"><soap:Header><ws'
    b"a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To><wsa:Action>http://sch"
    b"emas.xmlsoap.org/ws/2005/04/discovery/Hello</wsa:Action><wsa:MessageID>urn:uuid:"
    b"ac55eee6-f03a-11f1-a19a-020000990001</wsa:MessageID><wsd:AppSequence InstanceId="
    b'"1796427021" SequenceId="urn:uuid:ac55efc2-f03a-11f1-a19a-020000990001" MessageN'
    b'umber="0" /></soap:Header><soap:Body><wsd:Hello><wsa:EndpointReference><wsa:Addr'
    b"ess>urn:uuid:e5e61fb5-d685-5b50-9ba7-acb6e6962ef3</wsa:Address></wsa:EndpointRef"
    b"erence><wsd:XAddrs>http://10.99.0.1:5357/e5e61fb5-d685-5b50-9ba7-acb6e6962ef3</w"
    b"sd:XAddrs><wsd:MetadataVersion>1</wsd:MetadataVersion></wsd:Hello></soap:Body></"
    b"soap:Envelope>"
)

#: wsdd 0.7.0 --discovery, 10.99.0.2:37127 -> 239.255.255.250:3702; all.pcap frame 211, 802
#: bytes.
#: Probe for Types wsdp:Device (the searcher's wish)
WSD_PROBE_WSDD = (
    b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.o'
    b'rg/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addre'
    b'ssing" xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:wsx="ht'
    b'tp://schemas.xmlsoap.org/ws/2004/09/mex" xmlns:wsdp="http://schemas.xmlsoap.org/'
    b'ws/2006/02/devprof" xmlns:pnpx="http://schemas.microsoft.com/windows/pnpx/2005/1'
    b'0" xmlns:pub="http://schemas.microsoft.com/windows/pub/2005/07"><soap:Header><ws'
    b"a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To><wsa:Action>http://sch"
    b"emas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action><wsa:MessageID>urn:uuid:"
    b"afee1786-f03a-11f1-b3a6-020000990002</wsa:MessageID></soap:Header><soap:Body><ws"
    b"d:Probe><wsd:Types>wsdp:Device</wsd:Types></wsd:Probe></soap:Body></soap:Envelop"
    b"e>"
)

#: wsdd 0.7.0, 10.99.0.1:3702 -> 10.99.0.2:37127; all.pcap frame 212, 1247 bytes.
#: ProbeMatches: one ProbeMatch, Types 'wsdp:Device pub:Computer'
WSD_PROBE_MATCHES_WSDD = (
    b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.o'
    b'rg/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addre'
    b'ssing" xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:wsx="ht'
    b'tp://schemas.xmlsoap.org/ws/2004/09/mex" xmlns:wsdp="http://schemas.xmlsoap.org/'
    b'ws/2006/02/devprof" xmlns:pnpx="http://schemas.microsoft.com/windows/pnpx/2005/1'
    b'0" xmlns:pub="http://schemas.microsoft.com/windows/pub/2005/07"><soap:Header><ws'
    b"a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To><ws"
    b"a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Actio"
    b"n><wsa:MessageID>urn:uuid:afee4742-f03a-11f1-a19a-020000990001</wsa:MessageID><w"
    b"sa:RelatesTo>urn:uuid:afee1786-f03a-11f1-b3a6-020000990002</wsa:RelatesTo><wsd:A"
    b'ppSequence InstanceId="1796427021" SequenceId="urn:uuid:afee48c8-f03a-11f1-a19a-'
    b'020000990001" MessageNumber="1" /></soap:Header><soap:Body><wsd:ProbeMatches><ws'
    b"d:ProbeMatch><wsa:EndpointReference><wsa:Address>urn:uuid:e5e61fb5-d685-5b50-9ba"
    b"7-acb6e6962ef3</wsa:Address></wsa:EndpointReference><wsd:Types>wsdp:Device pub:C"
    b"omputer</wsd:Types><wsd:MetadataVersion>1</wsd:MetadataVersion></wsd:ProbeMatch>"
    b"</wsd:ProbeMatches></soap:Body></soap:Envelope>"
)

#: wsdd 0.7.0, 10.99.0.1:40433 -> 239.255.255.250:3702; all.pcap frame 223, 1001 bytes.
#: Bye
WSD_BYE_WSDD = (
    b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.o'
    b'rg/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addre'
    b'ssing" xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:wsx="ht'
    b'tp://schemas.xmlsoap.org/ws/2004/09/mex" xmlns:wsdp="http://schemas.xmlsoap.org/'
    b'ws/2006/02/devprof" xmlns:pnpx="http://schemas.microsoft.com/windows/pnpx/2005/1'
    b'0" xmlns:pub="http://schemas.microsoft.com/windows/pub/2005/07"><soap:Header><ws'
    b"a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To><wsa:Action>http://sch"
    b"emas.xmlsoap.org/ws/2005/04/discovery/Bye</wsa:Action><wsa:MessageID>urn:uuid:b2"
    b'd30920-f03a-11f1-a19a-020000990001</wsa:MessageID><wsd:AppSequence InstanceId="1'
    b'796427021" SequenceId="urn:uuid:b2d30aba-f03a-11f1-a19a-020000990001" MessageNum'
    b'ber="3" /></soap:Header><soap:Body><wsd:Bye><wsa:EndpointReference><wsa:Address>'
    b"urn:uuid:e5e61fb5-d685-5b50-9ba7-acb6e6962ef3</wsa:Address></wsa:EndpointReferen"
    b"ce></wsd:Bye></soap:Body></soap:Envelope>"
)

# ------------------------------------------------------------------ SNMP


#: net-snmp 5.9.3 snmpget -v1 -c public, 10.99.0.2:51516 -> 10.99.0.1:161; all.pcap frame 91, 71
#: bytes.
#: version 0, community 'public', GetRequest sysDescr.0 sysObjectID.0 sysName.0 (NULL values)
SNMP_V1_GET_PUBLIC = bytes.fromhex(
    "304502010004067075626c6963a038020416b80874020100020100302a300c06082b06010201010100050030"
    "0c06082b060102010102000500300c06082b060102010105000500"
)

#: net-snmp 5.9.3 snmpd, 10.99.0.1:161 -> 10.99.0.2:51516; all.pcap frame 92, 127 bytes.
#: GetResponse: sysDescr.0 'medmon test agent Linux 6.1 x86_64', sysObjectID.0
#: 1.3.6.1.4.1.8072.3.2.10, sysName.0 'medmon-agent'
SNMP_V1_RESPONSE_PUBLIC = bytes.fromhex(
    "307d02010004067075626c6963a270020416b808740201000201003062302e06082b0601020101010004226d"
    "65646d6f6e2074657374206167656e74204c696e757820362e31207838365f3634301606082b060102010102"
    "00060a2b06010401bf0803020a301806082b06010201010500040c6d65646d6f6e2d6167656e74"
)

#: net-snmp 5.9.3 snmpget -v2c -c public, 10.99.0.2:34564 -> 10.99.0.1:161; all.pcap frame 93, 71
#: bytes.
#: version 1, community 'public', GetRequest of the same three
SNMP_V2C_GET_PUBLIC = bytes.fromhex(
    "304502010104067075626c6963a038020442680527020100020100302a300c06082b06010201010100050030"
    "0c06082b060102010102000500300c06082b060102010105000500"
)

#: net-snmp 5.9.3 snmpd, 10.99.0.1:161 -> 10.99.0.2:34564; all.pcap frame 94, 127 bytes.
#: Response with the same three values
SNMP_V2C_RESPONSE_PUBLIC = bytes.fromhex(
    "307d02010104067075626c6963a2700204426805270201000201003062302e06082b0601020101010004226d"
    "65646d6f6e2074657374206167656e74204c696e757820362e31207838365f3634301606082b060102010102"
    "00060a2b06010401bf0803020a301806082b06010201010500040c6d65646d6f6e2d6167656e74"
)

#: net-snmp 5.9.3 snmpget -v2c -c SITE_COMMUNITY, 10.99.0.2:57898 -> 10.99.0.1:161; all.pcap
#: frame 95, 79 bytes.
#: version 1, a site community (not a default: it must never be recorded), GetRequest
SNMP_V2C_GET_SITE_COMMUNITY = bytes.fromhex(
    "304d020101040e483073703174616c2d524f2d3778a0380204798e0a04020100020100302a300c06082b0601"
    "02010101000500300c06082b060102010102000500300c06082b060102010105000500"
)

#: net-snmp 5.9.3 snmpd, 10.99.0.1:161 -> 10.99.0.2:57898; all.pcap frame 96, 136 bytes.
#: Response, the site community echoed
SNMP_V2C_RESPONSE_SITE_COMMUNITY = bytes.fromhex(
    "308185020101040e483073703174616c2d524f2d3778a2700204798e0a040201000201003062302e06082b06"
    "01020101010004226d65646d6f6e2074657374206167656e74204c696e757820362e31207838365f36343016"
    "06082b06010201010200060a2b06010401bf0803020a301806082b06010201010500040c6d65646d6f6e2d61"
    "67656e74"
)

#: net-snmp 5.9.3 snmpget -v1 -c private, 10.99.0.2:56542 -> 10.99.0.1:161; all.pcap frame 97, 44
#: bytes.
#: version 0, community 'private' (the agent does not answer it), GetRequest sysName.0
SNMP_V1_GET_PRIVATE = bytes.fromhex(
    "302a020100040770726976617465a01c020433c4bff1020100020100300e300c06082b060102010105000500"
)

#: net-snmp 5.9.3 snmpget -v3 -l authPriv (SHA/AES), 10.99.0.2:46766 -> 10.99.0.1:161; all.pcap
#: frame 98, 64 bytes.
#: msgVersion 3, engine-ID discovery: empty user, reportable, GetRequest in plaintext scoped PDU
SNMP_V3_DISCOVERY = bytes.fromhex(
    "303e020103301102044dd67433020300ffe30401040201030410300e04000201000201000400040004003014"
    "04000400a00e02043ec69a220201000201003000"
)

#: net-snmp 5.9.3 snmpd, 10.99.0.1:161 -> 10.99.0.2:46766; all.pcap frame 99, 115 bytes.
#: msgVersion 3, Report usmStatsUnknownEngineIDs.0
SNMP_V3_REPORT = bytes.fromhex(
    "3071020103301102044dd67433020300ffe30401000201030421301f041180001f88808e41bb40fa4c136b00"
    "0000000201010201030400040004003036041180001f88808e41bb40fa4c136b000000000400a81f02043ec6"
    "9a220201000201003011300f060a2b060106030f01010400410101"
)

#: net-snmp 5.9.3 snmpget, 10.99.0.2:46766 -> 10.99.0.1:161; all.pcap frame 100, 169 bytes.
#: msgVersion 3, user 'mmuser', authPriv: encryptedPDU
SNMP_V3_ENCRYPTED_GET = bytes.fromhex(
    "3081a6020103301102044dd67432020300ffe3040107020103043b3039041180001f88808e41bb40fa4c136b"
    "0000000002010102010304066d6d75736572040c44ae11e21a9d710af64afb76040894c5b734e25577890451"
    "7f800371bfa32acf94082b9e00afa4858a0e20a3b3f90e048ca6c1aca08b9ca1eb202170df70856a6d814b87"
    "945a7b61bea9f194ccce98ae0bb6e1b6b2200c04ddb439fcd0067bb6e746a75963e0e5c329"
)

#: net-snmp 5.9.3 snmptrap -v 2c -c public, 10.99.0.2 -> 10.99.0.1:162; all.pcap frame 102, 71
#: bytes.
#: version 1, SNMPv2-Trap: sysUpTime.0, snmpTrapOID.0 = coldStart
SNMP_V2C_TRAP_PUBLIC = bytes.fromhex(
    "304502010104067075626c6963a7380204539aa9a0020100020100302a300f06082b0601020101030043030b"
    "c4f23017060a2b06010603010104010006092b0601060301010501"
)


# ---------------------------------------------------------------------- a recording context


class Recorder:
    """A :class:`~monitor.parsers.base.DatagramContext` factory that keeps what a handler
    reports: ``observations`` as ``(ip, mac, kind, value)`` and ``anomalies`` as ``(name,
    detail)``."""

    def __init__(self) -> None:
        self.observations: list[tuple[str | None, str | None, str, str]] = []
        self.anomalies: list[tuple[str, str | None]] = []

    def context(
        self,
        src: tuple[str, str | None] = HOST_B,
        dst: tuple[str, str | None] = HOST_A,
        sport: int = 40000,
        dport: int = 40000,
    ) -> DatagramContext:
        return DatagramContext(
            flow_uid="C-test",
            ts_ns=0,
            src_ip=src[0],
            dst_ip=dst[0],
            src_mac=src[1],
            dst_mac=dst[1],
            sport=sport,
            dport=dport,
            observe=lambda ip, mac, kind, value: self.observations.append((ip, mac, kind, value)),
            anomaly=lambda name, detail: self.anomalies.append((name, detail)),
        )

    def kinds(self) -> dict[str, list[str]]:
        """Observed values by kind, in order."""
        out: dict[str, list[str]] = {}
        for _ip, _mac, kind, value in self.observations:
            out.setdefault(kind, []).append(value)
        return out


def run(
    handler: Callable[[bytes, DatagramContext], None],
    payload: bytes,
    src: tuple[str, str | None] = HOST_B,
    dst: tuple[str, str | None] = HOST_A,
    sport: int = 40000,
    dport: int = 40000,
) -> Recorder:
    """Hand ``payload`` to ``handler`` once and return what it reported."""
    rec = Recorder()
    handler(payload, rec.context(src, dst, sport, dport))
    return rec


def udp_payloads(path: str) -> list[tuple[int, str, str | None, int, int, bytes]]:
    """``(frame number, src ip, src mac, sport, dport, UDP payload)`` of a capture's UDP
    packets, read with monitor.source and monitor.decode.

    PKTAP frames are unwrapped first: ``decode`` returns offsets into the inner frame for them.
    """
    out = []
    reader = CaptureReader(path)
    for n, (_ts, linktype, data, _wirelen) in enumerate(reader, start=1):
        if linktype == LINKTYPE_PKTAP and len(data) >= 8:
            hdrlen, linktype = struct.unpack_from("<II", data)
            data = data[hdrlen:]
        raw = decode(linktype, data)
        if raw is None:
            continue
        p = Packet._make(raw)
        if p.proto != 17 or p.sport < 0:
            continue
        payload = data[p.payload_offset : p.payload_offset + p.payload_len]
        out.append(
            (n, str(ipaddress.ip_address(p.src)), p.src_mac.hex(":") or None, p.sport, p.dport,
             bytes(payload))
        )  # fmt: skip
    reader.close()
    return out
