#!/usr/bin/env python3
"""Make medmon's bundled sample captures from real programs in Linux network namespaces.

Regenerate every capture (as root, takes about half a minute):

    sudo python3 pcaps/make_captures.py            # writes into pcaps/ beside this script
    sudo python3 pcaps/make_captures.py --out DIR  # writes into DIR/generic/...
    sudo python3 pcaps/make_captures.py --only dns # one capture (expected.json is rewritten)
    python3 pcaps/make_captures.py --list          # what it would make; needs no root

Topology (all of it inside network namespaces this script creates and deletes; nothing is sent
to any other address). `mm-router` forwards IPv4 between one Linux bridge per subnet
(`br-<subnet>`, holding the gateway address .1); every host is a namespace `mm-<host>` whose
`eth0` is one end of a veth pair, the other end (`v-<host>`) being a port of its subnet's bridge:

    mm-router (ip_forward=1)
      br-it    10.10.0.1/24  -- mm-dns 10.10.0.53, mm-web 10.10.0.80, mm-admin 10.10.0.20,
                                mm-ssh 10.10.0.22, mm-hl7 10.10.0.25 (HL7 interface engine)
      br-img   10.20.0.1/24  -- mm-ct 10.20.0.11          (imaging modalities)
      br-pacs  10.30.0.1/24  -- mm-pacs 10.30.0.10        (Orthanc, DCMTK storescp)
      br-clin  10.40.0.1/24  -- mm-clin 10.40.0.31, mm-icumon 10.40.0.42 (clinical)

The topology is the data in SUBNETS and HOSTS below: add a host there (and its server or client
commands in a capture function) to extend it. MAC addresses are fixed and derived from the IP
address, locally administered: an interface holding address a.b.c.d has MAC 02:00:a:b:c:d (hex;
the router's bridges too), the router-side veth port of a host 02:01:a:b:c:d. IPv6 and all
NIC offloads are off, so frames are at most 1514 bytes with correct checksums, as on a wire.

The captures are taken with tcpdump or dumpcap on the router's bridges (a bridge in promiscuous
mode sees every frame of its subnet, as a SPAN port of the subnet's switch would). Each one is
listed in CAPTURES; see pcaps/README.md for what each is for. Afterwards the script writes
`expected.json` beside the captures: the facts tshark reports about each file (frames,
conversation counts, TCP client/server pairs) for the tests to compare against.

No 802.1Q VLAN: the kernel this was developed on has neither CONFIG_VLAN_8021Q nor bridge VLAN
filtering nor act_vlan, so no real tool could tag frames there.

The script is idempotent: it first deletes namespaces named mm-* left by a crashed run (killing,
by PID, the processes still inside them), and it deletes its namespaces and stops the processes
it started in a `finally:` block, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "mm-"
ROUTER = PREFIX + "router"
DOMAIN = "hospital.example"
SETTLE = 1.0  # seconds between starting a capture and the traffic, and after the traffic


# --------------------------------------------------------------------------------------------
# Topology: edit here.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subnet:
    name: str  # short name; the router's bridge for it is br-<name>
    cidr: str
    gateway: str  # the router's address in the subnet (on the bridge)
    zone: str  # what the subnet is for


@dataclass(frozen=True)
class Host:
    name: str  # namespace mm-<name>, router-side veth port v-<name>
    subnet: str  # Subnet.name
    ip: str
    hostname: str  # published in DNS as <hostname>.hospital.example (A and PTR)
    role: str
    aliases: tuple[str, ...] = ()  # further names in DNS (A only)
    ipv6: str | None = None  # published as AAAA only; IPv6 itself is off in the lab
    # A DHCP client: no static address (ip is ""), this fixed MAC instead of mac(ip); it
    # leases an address from the subnet's DHCP server in its capture (generic/dhcp).
    dhcp_mac: str | None = None


SUBNETS: tuple[Subnet, ...] = (
    Subnet("it", "10.10.0.0/24", "10.10.0.1", "IT services"),
    Subnet("img", "10.20.0.0/24", "10.20.0.1", "imaging modalities"),
    Subnet("pacs", "10.30.0.0/24", "10.30.0.1", "PACS"),
    Subnet("clin", "10.40.0.0/24", "10.40.0.1", "clinical workstations"),
)

HOSTS: tuple[Host, ...] = (
    Host("dns", "it", "10.10.0.53", "dns01", "DNS server (dnsmasq)", aliases=("ns1",)),
    Host(
        "web",
        "it",
        "10.10.0.80",
        "web01",
        "web server (HTTP :80, HTTPS :443)",
        aliases=("intranet",),
        ipv6="fd00:10::80",
    ),
    Host("admin", "it", "10.10.0.20", "admin-ws01", "IT admin workstation"),
    Host("ssh", "it", "10.10.0.22", "ssh01", "SSH server (OpenSSH sshd)"),
    Host("hl7", "it", "10.10.0.25", "hl7-if01", "HL7 interface engine (MLLP :2575, :6661)"),
    Host("ct", "img", "10.20.0.11", "ct01", "CT modality"),
    Host("pacs", "pacs", "10.30.0.10", "pacs01", "PACS archive"),
    Host("clin", "clin", "10.40.0.31", "clin-ws31", "clinical workstation"),
    Host("icumon", "clin", "10.40.0.42", "icu-mon42", "patient monitor gateway (HL7 ORU)"),
    # Device-fingerprinting captures (generic/dhcp, smb, snmp, cleartext, tls-legacy,
    # discovery; dicom/modalities).
    Host("fs", "it", "10.10.0.45", "fs01", "file server (Samba smbd, SMB1 allowed)"),
    Host("ups", "it", "10.10.0.161", "ups-mgmt01", "UPS management card (net-snmp snmpd)"),
    Host("legacy", "img", "10.20.0.40", "img-legacy40", "legacy imaging PC (vsftpd, telnetd)"),
    Host("pacsweb", "pacs", "10.30.0.80", "pacs-web", "PACS web viewer (TLS 1.0-1.2)"),
    Host("dhcp", "clin", "10.40.0.2", "dhcp-clin", "DHCP server of the clinical subnet"),
    Host("printer", "clin", "10.40.0.60", "prn-clin60", "network printer (mDNS, SSDP)"),
    Host(
        "pump",
        "clin",
        "",
        "infpump-0107",
        "infusion pump (busybox udhcpc)",
        dhcp_mac="02:dc:00:00:01:07",
    ),
    Host(
        "nursews",
        "clin",
        "",
        "nurse-ws12",
        "nurse station PC (ISC dhclient)",
        dhcp_mac="02:dc:00:00:00:12",
    ),
    # generic/hostile: a modality and a DHCP client whose values from the wire are hostile
    # (spreadsheet formulas, HTML/script); the client's host name is what it sends in DHCP.
    Host("hostilemod", "img", "10.20.0.66", "img-hostile66", "modality with hostile DICOM values"),
    Host(
        "hostiledev",
        "clin",
        "",
        "-2+3<b>bold</b>",
        "device with a hostile DHCP host name; sends HL7 (busybox udhcpc, python-hl7)",
        dhcp_mac="02:dc:00:00:06:66",
    ),
    # One host per modality of dicom/modalities (MODALITIES below): 10.20.0.21-30.
    *(
        Host(f"mod{i}", "img", f"10.20.0.{20 + i}", f"mod{i:02d}", "imaging modality")
        for i in range(1, 11)
    ),
)

HOST = {h.name: h for h in HOSTS}
SUBNET = {s.name: s for s in SUBNETS}
DNS_SERVER = HOST["dns"].ip
WEB = HOST["web"]
SSH_SERVER = HOST["ssh"].ip
PACS = HOST["pacs"]
HL7_SERVER = HOST["hl7"].ip

# Program -> Debian package that provides it (CI installs these).
TOOLS: dict[str, str] = {
    "ip": "iproute2",
    "ss": "iproute2",
    "ethtool": "ethtool",
    "tcpdump": "tcpdump",
    "dumpcap": "wireshark-common",
    "mergecap": "wireshark-common",
    "capinfos": "wireshark-common",
    "tshark": "tshark",
    "dig": "bind9-dnsutils",
    "dnsmasq": "dnsmasq-base",
    "curl": "curl",
    "openssl": "openssl",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "sshd": "openssh-server",
    "echoscu": "dcmtk",
    "storescu": "dcmtk",
    "findscu": "dcmtk",
    "movescu": "dcmtk",
    "storescp": "dcmtk",
    "Orthanc": "orthanc",
    # Device-fingerprinting captures (generic/dhcp, smb, snmp, cleartext, discovery).
    "busybox": "busybox",
    "udhcpc": "busybox",
    "dhclient": "isc-dhcp-client",
    "dhclient-script": "isc-dhcp-client",
    "smbd": "samba",
    "nmbd": "samba",
    "smbpasswd": "samba-common-bin",
    "nmblookup": "samba-common-bin",
    "smbclient": "smbclient",
    "snmpd": "snmpd",
    "snmpget": "snmp",
    "vsftpd": "vsftpd",
    "inetutils-inetd": "inetutils-inetd",
    "telnetd": "inetutils-telnetd",
    "inetutils-telnet": "inetutils-telnet",
    "timeout": "coreutils",
    "unshare": "util-linux",
    "env": "coreutils",
}
# Python module -> pip package, for the DICOM and HL7 captures and generic/discovery
# (imported only there).
PY_MODULES: dict[str, str] = {
    "pydicom": "pydicom",
    "pynetdicom": "pynetdicom",
    "hl7": "hl7",
    "zeroconf": "zeroconf",
    "ssdpy": "ssdpy",
}
TOOL: dict[str, str] = {}  # program -> absolute path, filled by find_tools()


def ns(host: str) -> str:
    return PREFIX + host


def mac(ip: str, kind: int = 0) -> str:
    """Stable locally administered MAC: 02:<kind>:<the four IPv4 octets in hex>."""
    return ":".join(["02", f"{kind:02x}", *(f"{int(o):02x}" for o in ip.split("."))])


def prefixlen(subnet: Subnet) -> str:
    return subnet.cidr.split("/")[1]


def fqdn(name: str) -> str:
    return f"{name}.{DOMAIN}"


def say(msg: str) -> None:
    print(msg, flush=True)


class LabError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# The lab: namespaces, processes, captures.
# --------------------------------------------------------------------------------------------
class Lab:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started: set[str] = set()  # servers started on demand (see on_demand())

    # -- running programs ----------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float = 30,
        quiet: bool = False,
    ) -> str:
        if not quiet:
            say(f"    $ {shlex.join(argv)}")
        argv = [TOOL.get(argv[0], argv[0]), *argv[1:]]
        res = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
        if res.returncode != 0:
            err = " | ".join((res.stderr or res.stdout).decode(errors="replace").splitlines())
            raise LabError(f"{shlex.join(argv)} exited {res.returncode}: {err[-500:]}")
        return res.stdout.decode(errors="replace")

    def ns_run(
        self, host: str, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 30
    ) -> str:
        """Run a client program inside a namespace and return its standard output."""
        say(f"    {ns(host)}$ {shlex.join(argv)}")
        return self.run(
            ["ip", "netns", "exec", ns(host), TOOL.get(argv[0], argv[0]), *argv[1:]],
            input=input,
            timeout=timeout,
            quiet=True,
        )

    def start(self, namespace: str, argv: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        """Start a long-running program in a namespace; it is stopped by PID in stop_all()."""
        say(f"    {namespace}$ {shlex.join(argv)} &")
        with open(self.tmp / log, "wb") as out:
            p = subprocess.Popen(
                ["ip", "netns", "exec", namespace, TOOL.get(argv[0], argv[0]), *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only us; cleanup stops it by PID
            )
        self.procs.append((log, p))
        return p

    def log_tail(self, log: str) -> str:
        text = (self.tmp / log).read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-5:])

    def wait_listening(
        self, host: str, proto: str, port: int, proc: subprocess.Popen[bytes], log: str
    ) -> None:
        flag = {"tcp": "-Hltn", "udp": "-Hlun"}[proto]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"{log}: server exited {proc.returncode}: {self.log_tail(log)}")
            out = self.run(
                ["ip", "netns", "exec", ns(host), TOOL["ss"], flag, f"sport = :{port}"],
                quiet=True,
            )
            if out.strip():
                return
            time.sleep(0.1)
        raise LabError(f"{log}: nothing listens on {proto}/{port}: {self.log_tail(log)}")

    def stop_all(self) -> None:
        for _log, p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        for _log, p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        self.procs.clear()

    # -- topology --------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        return [ROUTER, *(ns(h.name) for h in HOSTS)]

    def add_namespace(self, name: str) -> None:
        self.run(["ip", "netns", "add", name])
        # IPv6 off before any interface exists (no router solicitations, MLD, DAD noise).
        self.run(
            [
                "ip",
                "netns",
                "exec",
                name,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && "
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            ],
            quiet=True,
        )
        self.run(["ip", "-n", name, "link", "set", "lo", "up"], quiet=True)

    def no_offloads(self, namespace: str, dev: str) -> None:
        """Software checksums and segmentation, so captured frames look like wire frames."""
        self.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                TOOL["ethtool"],
                "-K",
                dev,
                "tx",
                "off",
                "sg",
                "off",
                "tso",
                "off",
                "gso",
                "off",
                "gro",
                "off",
            ],
            quiet=True,
        )

    def build(self) -> None:
        say(f"== building the topology ({len(SUBNETS)} subnets, {len(HOSTS)} hosts)")
        self.add_namespace(ROUTER)
        self.run(
            ["ip", "netns", "exec", ROUTER, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]
        )
        for s in SUBNETS:
            br = f"br-{s.name}"
            self.run(
                [
                    "ip",
                    "-n",
                    ROUTER,
                    "link",
                    "add",
                    br,
                    "address",
                    mac(s.gateway),
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                    "forward_delay",
                    "0",
                    "mcast_snooping",  # else the bridge joins 224.0.0.106 (IGMP noise)
                    "0",
                ]
            )
            self.run(["ip", "-n", ROUTER, "addr", "add", f"{s.gateway}/{prefixlen(s)}", "dev", br])
            self.run(["ip", "-n", ROUTER, "link", "set", br, "up"])
            self.no_offloads(ROUTER, br)
        etc_netns = Path("/etc/netns")
        for h in HOSTS:
            s = SUBNET[h.subnet]
            name, port = ns(h.name), f"v-{h.name}"
            self.add_namespace(name)
            port_mac = mac(h.ip, 1) if h.ip else "02:01:" + h.dhcp_mac[6:]  # type: ignore[index]
            self.run(
                [
                    "ip",
                    "-n",
                    ROUTER,
                    "link",
                    "add",
                    port,
                    "address",
                    port_mac,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "address",
                    h.dhcp_mac or mac(h.ip),
                    "netns",
                    name,
                ]
            )
            self.run(["ip", "-n", ROUTER, "link", "set", port, "master", f"br-{s.name}", "up"])
            if h.ip:  # a DHCP client gets its address and route from its lease
                self.run(["ip", "-n", name, "addr", "add", f"{h.ip}/{prefixlen(s)}", "dev", "eth0"])
            self.run(["ip", "-n", name, "link", "set", "eth0", "up"])
            if h.ip:
                self.run(["ip", "-n", name, "route", "add", "default", "via", s.gateway])
            self.no_offloads(ROUTER, port)
            self.no_offloads(name, "eth0")
            # `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf.
            d = etc_netns / name
            d.mkdir(parents=True, exist_ok=True)
            (d / "resolv.conf").write_text(f"nameserver {DNS_SERVER}\nsearch {DOMAIN}\n")

    def flush_neighbours(self) -> None:
        """Empty every ARP cache, so each capture starts with its own ARP exchanges."""
        for name in self.namespaces():
            self.run(["ip", "-n", name, "neigh", "flush", "all"], quiet=True)

    # -- captures --------------------------------------------------------------------------
    @contextlib.contextmanager
    def capture(
        self, program: str, ifaces: Sequence[str], out: Path, bpf: str = ""
    ) -> Iterator[None]:
        """tcpdump (one interface, pcap) or dumpcap (one or more, pcapng) in mm-router."""
        self.flush_neighbours()
        if program == "tcpdump":
            (iface,) = ifaces
            argv = ["tcpdump", "-i", iface, "-w", str(out), "-U", "--immediate-mode", "-n"]
            argv += ["-Z", "root"]
            ready = "listening on"
        else:
            argv = ["dumpcap", *(a for i in ifaces for a in ("-i", i)), "-w", str(out)]
            ready = "Capturing on"
        argv += shlex.split(bpf)
        say(f"    {ROUTER}$ {shlex.join(argv)} &")
        p = subprocess.Popen(
            ["ip", "netns", "exec", ROUTER, TOOL[program], *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.procs.append((out.name, p))
        assert p.stderr is not None
        err = b""
        deadline = time.monotonic() + 10
        while ready.encode() not in err:
            if time.monotonic() > deadline or p.poll() is not None:
                raise LabError(f"{program} did not start: {err.decode(errors='replace')}")
            if select.select([p.stderr], [], [], 0.2)[0]:
                err += os.read(p.stderr.fileno(), 4096)
        time.sleep(SETTLE)
        yield
        time.sleep(SETTLE)
        p.send_signal(signal.SIGINT)
        try:
            rest = p.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired as e:
            raise LabError(f"{program} did not stop on SIGINT") from e
        text = (err + rest).decode(errors="replace")
        # Every packet the kernel handed over must be in the file: nothing dropped, nothing
        # left in a buffer at SIGINT.
        captured, received, dropped = capture_counts(program, text)
        if not captured or captured != received or dropped:
            raise LabError(f"{program} on {ifaces} lost packets: {text.strip()[-300:]}")
        summary = [ln for ln in text.splitlines() if "packets" in ln.lower()]
        say(f"      {program}: {'; '.join(summary) or 'stopped'}")


def capture_counts(program: str, stderr: str) -> tuple[int, int, int]:
    """(captured, received, dropped) from the statistics tcpdump/dumpcap print on exit."""

    def num(pattern: str) -> int:
        m = re.search(pattern, stderr)
        return int(m.group(1)) if m else -1

    if program == "tcpdump":
        return (
            num(r"(\d+) packets? captured"),
            num(r"(\d+) packets? received by filter"),
            num(r"(\d+) packets? dropped by kernel"),
        )
    per_iface = re.findall(r"Packets received/dropped on interface '[^']*': (\d+)/(\d+)", stderr)
    return (
        num(r"Packets captured: (\d+)"),
        sum(int(r) for r, _ in per_iface),
        sum(int(d) for _, d in per_iface),
    )


# --------------------------------------------------------------------------------------------
# Servers (started once, before the captures).
# --------------------------------------------------------------------------------------------
WEB_FILES = {
    "index.html": "<!doctype html>\n<html><head><title>Intranet</title></head>\n"
    "<body><h1>Hospital intranet (test network)</h1>\n"
    "<p>IT service status: all systems operational.</p>\n"
    '<p><a href="status.json">status</a> <a href="docs/manual.txt">manual</a></p>\n'
    "</body></html>\n",
    "status.json": '{"service": "intranet", "status": "ok", "maintenance": false}\n',
    # Several TCP segments long, to exercise reassembly.
    "docs/manual.txt": "".join(
        f"line {i:04d}: placeholder text of a generic device manual, no real content.\n"
        for i in range(1, 101)
    ),
}


def make_dns_hosts() -> str:
    lines = [f"# generated by make_captures.py: the lab's hosts in {DOMAIN}"]
    for s in SUBNETS:
        lines.append(f"{s.gateway}\t{fqdn('gw-' + s.name)}")
    for h in HOSTS:
        if not h.ip:  # DHCP clients
            continue
        lines.append(f"{h.ip}\t{fqdn(h.hostname)}")
        lines += [f"{h.ip}\t{fqdn(a)}" for a in h.aliases]
        if h.ipv6:
            lines.append(f"{h.ipv6}\t{fqdn(h.hostname)}")
            lines += [f"{h.ipv6}\t{fqdn(a)}" for a in h.aliases]
    return "\n".join(lines) + "\n"


def start_servers(lab: Lab) -> None:
    say("== starting servers")
    tmp = lab.tmp
    # HTTP: python's http.server on web:80.
    root = tmp / "www"
    for rel, text in WEB_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    http = lab.start(
        ns("web"),
        [sys.executable, "-m", "http.server", "80", "--bind", WEB.ip, "--directory", str(root)],
        "http.log",
    )
    # HTTPS: openssl s_server -www on web:443, self-signed certificate. SECLEVEL=0 lets it
    # also accept TLS 1.0/1.1 (OpenSSL 3 refuses them at the default security level 1+).
    lab.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            str(tmp / "web.key"),
            "-out",
            str(tmp / "web.crt"),
            "-subj",
            f"/O=Example Hospital Test Lab/CN={fqdn(WEB.hostname)}",
            "-addext",
            f"subjectAltName=DNS:{fqdn(WEB.hostname)},DNS:{fqdn('intranet')}",
        ]
    )
    tls = lab.start(
        ns("web"),
        [
            "openssl",
            "s_server",
            "-www",
            "-accept",
            f"{WEB.ip}:443",
            "-cert",
            str(tmp / "web.crt"),
            "-key",
            str(tmp / "web.key"),
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ],
        "tls.log",
    )
    # DNS: dnsmasq, authoritative-ish for hospital.example from a hosts file, no upstream.
    (tmp / "dns-hosts").write_text(make_dns_hosts())
    dns = lab.start(
        ns("dns"),
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--addn-hosts={tmp / 'dns-hosts'}",
            f"--listen-address={DNS_SERVER}",
            "--bind-interfaces",
            f"--local=/{DOMAIN}/",
            "--local=/10.in-addr.arpa/",
            "--bogus-priv",
            f"--domain={DOMAIN}",
            "--local-ttl=300",
            "--log-queries",
            "--log-facility=-",
            f"--pid-file={tmp / 'dnsmasq.pid'}",
            "--user=root",
        ],
        "dns.log",
    )
    # SSH: sshd with its own config and host key; the admin workstation's key is authorized.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    lab.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "ssh01 host key",
            "-f",
            str(tmp / "ssh_host_ed25519_key"),
        ]
    )
    lab.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "admin@admin-ws01",
            "-f",
            str(tmp / "id_ed25519"),
        ]
    )
    shutil.copyfile(tmp / "id_ed25519.pub", tmp / "authorized_keys")
    (tmp / "sshd_config").write_text(
        f"ListenAddress {SSH_SERVER}:22\n"
        f"HostKey {tmp / 'ssh_host_ed25519_key'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        "PidFile none\nStrictModes no\nUsePAM no\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUseDNS no\nPrintMotd no\nPrintLastLog no\n"
        "LogLevel VERBOSE\n"
    )
    sshd = lab.start(
        ns("ssh"), [TOOL["sshd"], "-D", "-e", "-f", str(tmp / "sshd_config")], "sshd.log"
    )
    lab.wait_listening("web", "tcp", 80, http, "http.log")
    lab.wait_listening("web", "tcp", 443, tls, "tls.log")
    lab.wait_listening("dns", "udp", 53, dns, "dns.log")
    lab.wait_listening("dns", "tcp", 53, dns, "dns.log")
    lab.wait_listening("ssh", "tcp", 22, sshd, "sshd.log")


# --------------------------------------------------------------------------------------------
# Client traffic, one function per capture.
# --------------------------------------------------------------------------------------------
def curl_status(lab: Lab, host: str, url: str, *opts: str) -> str:
    return lab.ns_run(
        host,
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", *opts, url],
    )


def expect(what: str, got: str, want: str) -> None:
    if got.strip() != want:
        raise LabError(f"{what}: expected {want!r}, got {got.strip()!r}")


def make_http(lab: Lab, out: Path) -> None:
    web = f"http://{WEB.ip}"
    intranet = f"{fqdn('intranet')}:80:{WEB.ip}"
    with lab.capture("tcpdump", ["br-it"], out):
        expect("GET /", curl_status(lab, "clin", f"{web}/"), "200")
        expect(
            "GET /status.json",
            curl_status(
                lab,
                "clin",
                f"{web}/status.json",
                "-A",
                "ClinicalViewer/2.1 (Windows NT 10.0; Win64; x64)",
            ),
            "200",
        )
        expect(
            "GET /docs/manual.txt",
            curl_status(
                lab,
                "ct",
                f"http://{fqdn('intranet')}/docs/manual.txt",
                "--resolve",
                intranet,
                "-A",
                "CT-Console/5.3 (example modality software)",
            ),
            "200",
        )
        expect("GET /missing.html", curl_status(lab, "ct", f"{web}/missing.html"), "404")
        # PHI canaries (STYLE S9) in a request line, as a careless web app would send them:
        # tests/test_phi.py proves that none of them reaches the register, logs or exports.
        canary = "/results?patient=CANARY%5EPHI&mrn=PHI-CANARY-0001&dob=19000101"
        expect("GET with PHI canaries", curl_status(lab, "clin", f"{web}{canary}"), "404")


def make_tls(lab: Lab, out: Path) -> None:
    name = fqdn(WEB.hostname)
    url = f"https://{name}/"
    resolve = f"{name}:443:{WEB.ip}"
    with lab.capture("tcpdump", ["br-it"], out):
        expect(
            "TLS 1.2",
            curl_status(
                lab, "clin", url, "-k", "--resolve", resolve, "--tlsv1.2", "--tls-max", "1.2"
            ),
            "200",
        )
        expect(
            "TLS 1.3",
            curl_status(lab, "admin", url, "-k", "--resolve", resolve, "--tlsv1.3"),
            "200",
        )
        # Deprecated versions, as old modality software would speak them.
        expect(
            "TLS 1.0",
            curl_status(
                lab,
                "ct",
                url,
                "-k",
                "--resolve",
                resolve,
                "--tlsv1.0",
                "--tls-max",
                "1.0",
                "--ciphers",
                "DEFAULT:@SECLEVEL=0",
            ),
            "200",
        )
        got = lab.ns_run(
            "pacs",
            [
                "openssl",
                "s_client",
                "-tls1_1",
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-servername",
                name,
                "-connect",
                f"{WEB.ip}:443",
                "-ign_eof",
                "-quiet",
            ],
            input=b"GET / HTTP/1.0\r\n\r\n",
        )
        expect("TLS 1.1 (s_client)", got.splitlines()[0] if got else "", "HTTP/1.0 200 ok")


def dig(lab: Lab, host: str, *args: str) -> str:
    out = lab.ns_run(host, ["dig", f"@{DNS_SERVER}", "+tries=1", "+time=3", *args])
    m = re.search(r"status: (\w+)", out)
    return m.group(1) if m else "no answer"


def make_dns(lab: Lab, out: Path) -> None:
    with lab.capture("tcpdump", ["br-it"], out):
        expect("A", dig(lab, "clin", fqdn("web01"), "A"), "NOERROR")
        expect("AAAA", dig(lab, "clin", fqdn("intranet"), "AAAA"), "NOERROR")
        expect("A", dig(lab, "ct", fqdn("pacs01"), "A"), "NOERROR")
        expect("PTR", dig(lab, "ct", "-x", HOST["pacs"].ip), "NOERROR")
        expect("PTR", dig(lab, "pacs", "-x", HOST["ct"].ip), "NOERROR")
        expect("NXDOMAIN", dig(lab, "admin", fqdn("no-such-host"), "A"), "NXDOMAIN")
        expect("A over TCP", dig(lab, "admin", "+tcp", fqdn("ssh01"), "A"), "NOERROR")


def make_ssh(lab: Lab, out: Path) -> None:
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(lab.tmp / "id_ed25519"),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        f"root@{SSH_SERVER}",
    ]
    with lab.capture("tcpdump", ["br-it"], out):
        lab.ns_run("admin", [*ssh, "true"])
        lab.ns_run("admin", [*ssh, "uname", "-s"])


def make_span(lab: Lab, out: Path) -> None:
    """One HTTP conversation clinical -> IT, captured on both router legs and merged."""
    legs = [out.with_suffix(".clin.pcap"), out.with_suffix(".it.pcap")]
    with (
        lab.capture("tcpdump", ["br-clin"], legs[0], "tcp port 80"),
        lab.capture("tcpdump", ["br-it"], legs[1], "tcp port 80"),
    ):
        expect("GET /", curl_status(lab, "clin", f"http://{WEB.ip}/"), "200")
    lab.run(["mergecap", "-F", "pcap", "-w", str(out), *map(str, legs)])
    check_span_duplicates(out)


def make_mixed(lab: Lab, out: Path) -> None:
    """DNS then HTTP from two subnets, one pcapng with two interfaces (dumpcap)."""
    with lab.capture("dumpcap", ["br-img", "br-clin"], out):
        # curl resolves through /etc/netns/<ns>/resolv.conf, i.e. the lab's DNS server.
        expect("GET by name", curl_status(lab, "ct", f"http://{fqdn('intranet')}/", "-4"), "200")
        expect(
            "GET by name",
            curl_status(lab, "clin", f"http://{fqdn('web01')}/status.json", "-4"),
            "200",
        )


# --------------------------------------------------------------------------------------------
# DICOM and HL7: datasets, messages, servers started on demand, and the captures.
# --------------------------------------------------------------------------------------------
# PHI canaries (STYLE S9): in every DICOM dataset and HL7 PID this script generates.
CANARY_NAME = "CANARY^PHI"
CANARY_ID = "PHI-CANARY-0001"
CANARY_BIRTH_DATE = "19000101"
CANARY_OBX = "CANARY-OBX-VALUE"

ORTHANC_AET = "ORTHANC"
ORTHANC_PORT = 4242
STORESCP_AET = "STORESCP"
STORESCP_PORT = 11113  # DCMTK storescp on the PACS host, a non-standard port
STORESCP_PLAIN_PORT = 11112  # DCMTK storescp on the PACS host, cleartext (dicom/tls-store)
STORESCP_TLS_PORT = 2762  # DCMTK storescp +tls on the PACS host: DICOM over TLS (PS3.15 B)
MOVE_DEST_AET = "CLINWS31"  # storescp on the clinical workstation, a C-MOVE destination
MOVE_DEST_PORT = 11112
CT_AET = "CT01"
HL7_PORT = 2575
HL7_ALT_PORT = 6661
# DICOM and HL7 ports for tshark's "decode as" (only 104 and 2575 are its defaults).
# STORESCP_PLAIN_PORT is MOVE_DEST_PORT (11112, on another host), so it is already in.
DICOM_PORTS = (ORTHANC_PORT, MOVE_DEST_PORT, STORESCP_PORT)
HL7_PORTS = (HL7_PORT, HL7_ALT_PORT)


@dataclass(frozen=True)
class DicomSpec:
    """One generated DICOM instance: device attributes of a real vendor's model."""

    file: str
    sop_class: str
    modality: str
    manufacturer: str
    model: str
    software: tuple[str, ...]
    serial: str
    station: str
    study: str  # study key; instances with the same key share the study UID
    study_date: str
    size: int = 64  # rows = columns; 16-bit monochrome pixels
    transfer_syntax: str = "1.2.840.10008.1.2.1"  # explicit VR little endian


CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
GE_CT = ("GE MEDICAL SYSTEMS", "Optima CT660", ("0.0.0.0", "sw_1.0"), "CT660-SN-0001", "CT01")
SIEMENS_MR = ("SIEMENS", "MAGNETOM Skyra", ("syngo MR E11",), "SKYRA-SN-0001", "MR01")
FUJI_CR = ("FUJIFILM", "FCR PROFECT CS", ("A08-10",), "FCR-SN-0001", "CR01")

DATASETS: tuple[DicomSpec, ...] = (
    DicomSpec("ct1.dcm", CT_IMAGE, "CT", *GE_CT, study="ct", study_date="20240102"),
    DicomSpec("ct2.dcm", CT_IMAGE, "CT", *GE_CT, study="ct", study_date="20240102"),
    DicomSpec("mr1.dcm", MR_IMAGE, "MR", *SIEMENS_MR, study="mr", study_date="20240103"),
    DicomSpec("cr1.dcm", CR_IMAGE, "CR", *FUJI_CR, study="cr", study_date="20240105"),
    DicomSpec(
        "mr1-implicit.dcm",
        MR_IMAGE,
        "MR",
        *SIEMENS_MR,
        study="mr-implicit",
        study_date="20240106",
        transfer_syntax=IMPLICIT_LE,
    ),
    # The one large instance (288 KiB of pixel data), for bulk-data skipping.
    DicomSpec("ct-bulk.dcm", CT_IMAGE, "CT", *GE_CT, study="bulk", study_date="20240104", size=384),
)


def write_datasets(directory: Path) -> None:
    """Write DATASETS as DICOM Part 10 files (pydicom), with fixed UIDs and the canaries."""
    from array import array

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, generate_uid

    directory.mkdir(parents=True, exist_ok=True)

    def uid(*key: str) -> UID:  # the same UIDs on every run
        return generate_uid(entropy_srcs=["medmon", *key])

    for spec in DATASETS:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(spec.sop_class)
        meta.MediaStorageSOPInstanceUID = uid(spec.file)
        meta.TransferSyntaxUID = UID(spec.transfer_syntax)
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = spec.sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = spec.study_date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = "ACC" + spec.study_date
        ds.Modality = spec.modality
        ds.Manufacturer = spec.manufacturer
        ds.InstitutionName = "Example Hospital"
        ds.StationName = spec.station
        ds.StudyDescription = f"{spec.modality} test study"
        ds.InstitutionalDepartmentName = "Radiology"
        ds.ManufacturerModelName = spec.model
        ds.ReferringPhysicianName = ""
        ds.PatientName = CANARY_NAME
        ds.PatientID = CANARY_ID
        ds.PatientBirthDate = CANARY_BIRTH_DATE
        ds.PatientSex = "F"
        ds.DeviceSerialNumber = spec.serial
        ds.SoftwareVersions = list(spec.software) if len(spec.software) > 1 else spec.software[0]
        ds.StudyInstanceUID = uid("study", spec.study)
        ds.SeriesInstanceUID = uid("series", spec.study)
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = int(spec.file[2]) if spec.file[2].isdigit() else 1
        ds.AdmissionID = CANARY_ID  # (0038,0010)
        ds.PerformedProcedureStepID = CANARY_ID  # (0040,0253)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = spec.size
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        n = spec.size
        pixels = array("H", ((x * 7 + y * 13) % 4096 for y in range(n) for x in range(n)))
        ds.PixelData = pixels.tobytes()
        ds.save_as(directory / spec.file, enforce_file_format=True)


def hl7_message(msh: Sequence[str], *segments: Sequence[str]) -> str:
    """An HL7 v2 message from its fields (MSH-3 onwards for MSH), segments ended by CR."""
    lines = ["|".join(["MSH", "^~\\&", *msh]), *("|".join(seg) for seg in segments)]
    return "\r".join(lines) + "\r"


def hl7_msh(sender: str, facility: str, when: str, kind: str, control_id: str, version: str):
    # MSH-3..MSH-12; MSH-9 with its message structure, as real senders fill it.
    return [sender, facility, "HL7IF", "EXAMPLE_HOSP", when, "", kind, control_id, "P", version]


PID = ["PID", "1", "", f"{CANARY_ID}^^^HOSP^MR", "", CANARY_NAME, "", CANARY_BIRTH_DATE, "F"]
PID += ["", "", "1 CANARY STREET^^CITY"]


def obx(set_id: str, equipment: str = "") -> list[str]:
    """OBX with OBX-5 the canary value; OBX-18 the equipment instance identifier."""
    fields = ["OBX", set_id, "ST", "8867-4^Heart rate^LN", "", CANARY_OBX, "/min", "", "", ""]
    fields += ["", "F", "", "", "20240102120100", "", "", "", equipment]
    return fields


def prt_device(device: str) -> list[str]:
    """PRT (v2.7+): participation EQUIP, PRT-10 the participation device."""
    return ["PRT", "1", "AD", "", "EQUIP^Equipment^HL70912", "", "", "", "", "", device]


HL7_MESSAGES: dict[str, str] = {
    "adt-a01-v25": hl7_message(
        hl7_msh("HIS", "EXAMPLE_HOSP", "20240102120000", "ADT^A01^ADT_A01", "MSG00001", "2.5"),
        ["EVN", "A01", "20240102120000"],
        PID,
        ["PV1", "1", "I", "ICU^01^01"],
    ),
    "oru-r01-v251": hl7_message(
        hl7_msh("MONITOR_GW", "ICU", "20240102120100", "ORU^R01^ORU_R01", "MSG00002", "2.5.1"),
        PID,
        ["OBR", "1", "", "OBS0001", "8867-4^Heart rate^LN"],
        obx("1", "MONITOR-0042^^^EXAMPLE"),
    ),
    "oru-r01-v27-prt": hl7_message(
        hl7_msh("MONITOR_GW", "ICU", "20240102120200", "ORU^R01^ORU_R01", "MSG00003", "2.7"),
        PID,
        ["OBR", "1", "", "OBS0002", "8867-4^Heart rate^LN"],
        obx("1"),
        prt_device("DEVICE-77"),
    ),
    "orm-o01-v23": hl7_message(
        hl7_msh("RIS", "EXAMPLE_HOSP", "20240102120300", "ORM^O01", "MSG00004", "2.3"),
        PID,
        ["ORC", "NW", "ORD0001"],
        ["OBR", "1", "ORD0001", "", "CTHEAD^CT head^LOCAL"],
    ),
    "adt-a08-v28": hl7_message(
        hl7_msh("HIS", "EXAMPLE_HOSP", "20240102120400", "ADT^A08^ADT_A01", "MSG00005", "2.8"),
        ["EVN", "", "20240102120400"],
        PID,
        ["PV1", "1", "I", "ICU^01^01"],
    ),
    "adt-a04-v25": hl7_message(
        hl7_msh("HIS", "EXAMPLE_HOSP", "20240102120500", "ADT^A04^ADT_A01", "MSG00006", "2.5"),
        ["EVN", "A04", "20240102120500"],
        PID,
        ["PV1", "1", "O", "CLINIC^01"],
    ),
    "oru-r01-v251-b": hl7_message(
        hl7_msh("MONITOR_GW", "ICU", "20240102120600", "ORU^R01^ORU_R01", "MSG00007", "2.5.1"),
        PID,
        ["OBR", "1", "", "OBS0003", "8867-4^Heart rate^LN"],
        obx("1", "MONITOR-0042^^^EXAMPLE"),
    ),
    "adt-a03-v25": hl7_message(
        hl7_msh("HIS", "EXAMPLE_HOSP", "20240102120700", "ADT^A03^ADT_A03", "MSG00008", "2.5"),
        ["EVN", "A03", "20240102120700"],
        PID,
        ["PV1", "1", "I", "ICU^01^01"],
    ),
}


def on_demand(lab: Lab, name: str, start: Callable[[Lab], None]) -> None:
    """Start a server the first time a capture needs it (it runs until teardown)."""
    if name not in lab.started:
        start(lab)
        lab.started.add(name)


def dicom_files(lab: Lab) -> Path:
    d = lab.tmp / "datasets"
    on_demand(lab, "datasets", lambda lab: write_datasets(d))
    return d


def start_orthanc(lab: Lab) -> None:
    """Orthanc (a real PACS) on pacs01:4242 with its own config and storage in the temp dir."""
    d = lab.tmp / "orthanc"
    (d / "db").mkdir(parents=True)
    config = {
        "Name": "PACS01",
        "StorageDirectory": str(d / "db"),
        "IndexDirectory": str(d / "db"),
        "StorageCompression": False,
        "Plugins": [],
        "HttpServerEnabled": False,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": True,
        "DicomAet": ORTHANC_AET,
        "DicomPort": ORTHANC_PORT,
        "DicomCheckCalledAet": True,  # a wrong called AE title is rejected (dicom/rejected)
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": {
            "ct01": [CT_AET, HOST["ct"].ip, 104],
            "clinws31": [MOVE_DEST_AET, HOST["clin"].ip, MOVE_DEST_PORT],
        },
        "SynchronousCMove": True,
        "SaveJobs": False,
        "ConcurrentJobs": 1,
    }
    (d / "orthanc.json").write_text(json.dumps(config, indent=2))
    p = lab.start(ns("pacs"), ["Orthanc", str(d / "orthanc.json")], "orthanc.log")
    lab.wait_listening("pacs", "tcp", ORTHANC_PORT, p, "orthanc.log")


def start_storescp_pacs(lab: Lab) -> None:
    """DCMTK storescp on pacs01 at a non-standard port (pynetdicom's peer)."""
    d = lab.tmp / "storescp-pacs"
    d.mkdir()
    argv = ["storescp", "-aet", STORESCP_AET, "-od", str(d), str(STORESCP_PORT)]
    p = lab.start(ns("pacs"), argv, "storescp-pacs.log")
    lab.wait_listening("pacs", "tcp", STORESCP_PORT, p, "storescp-pacs.log")


def start_storescp_pacs_plain(lab: Lab) -> None:
    """DCMTK storescp on pacs01:11112 without TLS (the cleartext peer in dicom/tls-store)."""
    d = lab.tmp / "storescp-plain"
    d.mkdir()
    argv = ["storescp", "-aet", STORESCP_AET, "-od", str(d), str(STORESCP_PLAIN_PORT)]
    p = lab.start(ns("pacs"), argv, "storescp-plain.log")
    lab.wait_listening("pacs", "tcp", STORESCP_PLAIN_PORT, p, "storescp-plain.log")


def make_cert(lab: Lab, name: str, host: Host) -> None:
    """Self-signed RSA-2048 key and certificate <name>.key / <name>.crt in the temp dir."""
    lab.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            str(lab.tmp / f"{name}.key"),
            "-out",
            str(lab.tmp / f"{name}.crt"),
            "-subj",
            f"/O=Example Hospital Test Lab/CN={fqdn(host.hostname)}",
            "-addext",
            f"subjectAltName=DNS:{fqdn(host.hostname)},IP:{host.ip}",
        ]
    )


def start_storescp_tls(lab: Lab) -> None:
    """DCMTK storescp +tls on pacs01:2762 (DICOM over TLS, PS3.15 Annex B): mutual TLS with
    self-signed certificates for pacs01 and ct01; the peer must present ct01's (-rc)."""
    make_cert(lab, "dicom-pacs", PACS)
    make_cert(lab, "dicom-ct", HOST["ct"])
    d = lab.tmp / "storescp-tls"
    d.mkdir()
    tmp = lab.tmp
    argv = ["storescp", "-aet", STORESCP_AET, "-od", str(d)]
    argv += ["+tls", str(tmp / "dicom-pacs.key"), str(tmp / "dicom-pacs.crt")]
    argv += ["+cf", str(tmp / "dicom-ct.crt"), "-rc", str(STORESCP_TLS_PORT)]
    p = lab.start(ns("pacs"), argv, "storescp-tls.log")
    lab.wait_listening("pacs", "tcp", STORESCP_TLS_PORT, p, "storescp-tls.log")


def start_storescp_clin(lab: Lab) -> None:
    """DCMTK storescp on clin-ws31: the C-MOVE destination CLINWS31."""
    d = lab.tmp / "storescp-clin"
    d.mkdir()
    argv = ["storescp", "-aet", MOVE_DEST_AET, "-od", str(d), str(MOVE_DEST_PORT)]
    p = lab.start(ns("clin"), argv, "storescp-clin.log")
    lab.wait_listening("clin", "tcp", MOVE_DEST_PORT, p, "storescp-clin.log")


def start_mllp(lab: Lab) -> None:
    """The HL7 listener: python-hl7's asyncio MLLP server on hl7-if01:2575 and :6661 (ACKs)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--helper", "mllp-server", HL7_SERVER]
    argv += [str(p) for p in HL7_PORTS]
    p = lab.start(ns("hl7"), argv, "mllp.log")
    for port in HL7_PORTS:
        lab.wait_listening("hl7", "tcp", port, p, "mllp.log")


def helper(lab: Lab, host: str, *args: str) -> str:
    """Run one of this script's --helper modes (pynetdicom, python-hl7) inside a namespace."""
    return lab.ns_run(host, [sys.executable, str(Path(__file__).resolve()), "--helper", *args])


def storescu(lab: Lab, files: Path, *names: str) -> None:
    argv = ["storescu", "-aet", CT_AET, "-aec", ORTHANC_AET, PACS.ip, str(ORTHANC_PORT)]
    lab.ns_run("ct", [*argv, *(str(files / n) for n in names)])


def orthanc_seeded(lab: Lab) -> None:
    """Orthanc holds the CT and MR studies (stored outside any capture if not yet there)."""
    files = dicom_files(lab)
    on_demand(lab, "orthanc", start_orthanc)
    on_demand(
        lab, "orthanc-seeded", lambda lab: storescu(lab, files, "ct1.dcm", "ct2.dcm", "mr1.dcm")
    )


def make_dicom_echo_store(lab: Lab, out: Path) -> None:
    files = dicom_files(lab)
    on_demand(lab, "orthanc", start_orthanc)
    with lab.capture("tcpdump", ["br-pacs"], out):
        lab.ns_run("ct", ["echoscu", "-aet", CT_AET, "-aec", ORTHANC_AET, PACS.ip, "4242"])
        storescu(lab, files, "ct1.dcm", "ct2.dcm", "mr1.dcm")
    lab.started.add("orthanc-seeded")


def make_dicom_find_move(lab: Lab, out: Path) -> None:
    orthanc_seeded(lab)
    on_demand(lab, "storescp-clin", start_storescp_clin)
    rsp = lab.tmp / "findscu"
    rsp.mkdir(exist_ok=True)
    study = ["-k", "QueryRetrieveLevel=STUDY"]
    ct_study = next(s for s in DATASETS if s.study == "ct")
    with lab.capture("tcpdump", ["br-pacs"], out):
        lab.ns_run(
            "clin",
            ["findscu", "-S", "-aet", MOVE_DEST_AET, "-aec", ORTHANC_AET, "-X", "-od", str(rsp)]
            + [*study, "-k", "StudyDate=20240102-20240103", "-k", "StudyInstanceUID"]
            + ["-k", "PatientName", "-k", "ModalitiesInStudy", PACS.ip, str(ORTHANC_PORT)],
        )
        study_uid = study_uid_of(lab, ct_study.file)
        lab.ns_run(
            "clin",
            ["movescu", "-S", "-aet", MOVE_DEST_AET, "-aec", ORTHANC_AET, "-aem", MOVE_DEST_AET]
            + [*study, "-k", f"StudyInstanceUID={study_uid}", PACS.ip, str(ORTHANC_PORT)],
        )
    found = len(list(rsp.glob("rsp*.dcm")))
    expect("C-FIND matches (CT and MR studies)", str(found), "2")
    moved = len(list((lab.tmp / "storescp-clin").iterdir()))
    expect("C-MOVE sub-operations received by CLINWS31", str(moved), "2")


def study_uid_of(lab: Lab, name: str) -> str:
    import pydicom

    return str(pydicom.dcmread(dicom_files(lab) / name).StudyInstanceUID)


def make_dicom_pynetdicom(lab: Lab, out: Path) -> None:
    files = dicom_files(lab)
    on_demand(lab, "storescp-pacs", start_storescp_pacs)
    with lab.capture("tcpdump", ["br-pacs"], out):
        got = helper(
            lab,
            "clin",
            "dicom-store",
            PACS.ip,
            str(STORESCP_PORT),
            STORESCP_AET,
            str(files / "cr1.dcm"),
            str(files / "mr1-implicit.dcm"),
        )
    expect("pynetdicom C-ECHO, 2 x C-STORE", got, "echo 0x0000 store 0x0000 store 0x0000")


def make_dicom_rejected(lab: Lab, out: Path) -> None:
    on_demand(lab, "orthanc", start_orthanc)
    with lab.capture("tcpdump", ["br-pacs"], out):
        # Orthanc checks the called AE title (DicomCheckCalledAet): A-ASSOCIATE-RJ.
        argv = ["echoscu", "-aet", CT_AET, "-aec", "WRONG_AET", PACS.ip, str(ORTHANC_PORT)]
        say(f"    {ns('ct')}$ {shlex.join(argv)}  (must be rejected)")
        res = subprocess.run(
            ["ip", "netns", "exec", ns("ct"), TOOL["echoscu"], *argv[1:]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if res.returncode == 0 or "Rejected" not in res.stdout + res.stderr:
            raise LabError(f"echoscu to WRONG_AET was not rejected: {res.stderr.strip()}")
        # pynetdicom associates, then aborts instead of releasing: A-ABORT.
        got = helper(lab, "clin", "dicom-abort", PACS.ip, str(ORTHANC_PORT), ORTHANC_AET)
        expect("pynetdicom A-ABORT", got, "aborted")


def make_dicom_bulk(lab: Lab, out: Path) -> None:
    files = dicom_files(lab)
    on_demand(lab, "orthanc", start_orthanc)
    with lab.capture("tcpdump", ["br-pacs"], out):
        storescu(lab, files, "ct-bulk.dcm")


def make_dicom_tls(lab: Lab, out: Path) -> None:
    """ct01 -> pacs01: one cleartext association to :11112, then one over TLS to :2762."""
    files = dicom_files(lab)
    on_demand(lab, "storescp-plain", start_storescp_pacs_plain)
    on_demand(lab, "storescp-tls", start_storescp_tls)
    tmp = lab.tmp
    scu = ["storescu", "-aet", CT_AET, "-aec", STORESCP_AET]
    tls = ["+tls", str(tmp / "dicom-ct.key"), str(tmp / "dicom-ct.crt")]
    tls += ["+cf", str(tmp / "dicom-pacs.crt")]
    with lab.capture("tcpdump", ["br-pacs"], out):
        lab.ns_run("ct", [*scu, PACS.ip, str(STORESCP_PLAIN_PORT), str(files / "ct2.dcm")])
        lab.ns_run("ct", [*scu, *tls, PACS.ip, str(STORESCP_TLS_PORT), str(files / "ct1.dcm")])
    for sub in ("storescp-plain", "storescp-tls"):
        got = len(list((tmp / sub).iterdir()))
        expect(f"C-STORE received by {sub}", str(got), "1")


def make_hl7_mllp(lab: Lab, out: Path) -> None:
    on_demand(lab, "mllp", start_mllp)
    port = str(HL7_PORT)
    with lab.capture("tcpdump", ["br-it"], out):
        got = helper(lab, "clin", "mllp-send", HL7_SERVER, port, "adt-a01-v25", "orm-o01-v23")
        expect("ACKs", got, "AA MSG00001 AA MSG00004")
        got = helper(lab, "icumon", "mllp-send", HL7_SERVER, port, "oru-r01-v251")
        expect("ACKs", got, "AA MSG00002")
        got = helper(lab, "icumon", "mllp-send", HL7_SERVER, port, "oru-r01-v27-prt")
        expect("ACKs", got, "AA MSG00003")
        got = helper(lab, "clin", "mllp-send", HL7_SERVER, port, "adt-a08-v28")
        expect("ACKs", got, "AA MSG00005")


def make_hl7_nonstandard(lab: Lab, out: Path) -> None:
    on_demand(lab, "mllp", start_mllp)
    port = str(HL7_ALT_PORT)
    with lab.capture("tcpdump", ["br-it"], out):
        got = helper(lab, "clin", "mllp-send", HL7_SERVER, port, "adt-a04-v25")
        expect("ACKs", got, "AA MSG00006")
        # Two MLLP frames in one write (one TCP segment), ACKed one by one.
        got = helper(lab, "icumon", "mllp-send", HL7_SERVER, port, "oru-r01-v251-b+adt-a03-v25")
        expect("ACKs", got, "AA MSG00007 AA MSG00008")


# --------------------------------------------------------------------------------------------
# Device fingerprinting: DHCP, SMB, SNMP, FTP/Telnet, legacy TLS, discovery, DICOM modalities.
# Every credential here is made up for the lab; none is used anywhere else.
# --------------------------------------------------------------------------------------------
DHCP_SERVER = HOST["dhcp"]
DHCP_RANGE = ("10.40.0.100", "10.40.0.149")
PUMP_VENDOR_CLASS = "ExampleMed InfusionPump 4.2"  # made up: an embedded device's option 60
NURSEWS_VENDOR_CLASS = "isc-dhclient 4.4.3 nurse-station"  # made up
FS = HOST["fs"]
SMB_SHARE = "scans"
SMB_USER, SMB_PASSWORD = "radtech", "lab-only-Smb-2024"  # made-up test credentials
SMB_UID = 64101  # the test user's uid/gid, only in the file server's /etc/netns/ passwd
UPS = HOST["ups"]
SNMP_COMMUNITY_V2 = "h0sp1tal-ro"  # a non-default read-only community
SNMP_V3_USER, SNMP_V3_AUTH, SNMP_V3_PRIV = "upsadmin", "lab-only-auth-123", "lab-only-priv-456"
SNMP_SYS_DESCR = "Example UPS network management card 7.1 (net-snmp 5.9.3, Linux)"
SNMP_OIDS = ("1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.5.0")  # sysDescr, ...
LEGACY = HOST["legacy"]
FTP_USER, FTP_PASSWORD = "scanop", "lab-only-Ftp-2024"  # made up; FTP and Telnet login
PACSWEB = HOST["pacsweb"]
PRINTER = HOST["printer"]
PRINTER_MODEL = "Example LaserPrinter 4200dn"  # made up
PRINTER_SERVER_HEADER = "Linux/6.1 UPnP/1.0 ExamplePrinter/4.2"  # made up


def etc_netns_file(host: str, name: str, text: str, mode: int = 0o644) -> None:
    """A file `ip netns exec` bind-mounts over /etc/<name> for programs in that namespace
    only (as it does with resolv.conf): test users without touching the host's /etc."""
    path = Path("/etc/netns") / ns(host) / name
    path.write_text(text)
    path.chmod(mode)


def add_test_user(host: str, user: str, uid: int, home: str, password: str | None) -> None:
    """The host's passwd/group/shadow plus one test user, for `host`'s namespace only."""
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    etc_netns_file(host, "passwd", passwd + f"{user}:x:{uid}:{uid}:lab test user:{home}:/bin/sh\n")
    etc_netns_file(host, "group", group + f"{user}:x:{uid}:\n")
    if password is not None:
        hashed = subprocess.run(
            [TOOL["openssl"], "passwd", "-6", "-salt", "medmonlab", password],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        shadow = Path("/etc/shadow").read_text()
        etc_netns_file(host, "shadow", shadow + f"{user}:{hashed}:19700:0:99999:7:::\n", 0o640)


# -- DHCP -------------------------------------------------------------------------------------
def start_dhcp_server(lab: Lab) -> None:
    """dnsmasq as the DHCP server (DNS off) of the clinical subnet, on dhcp-clin."""
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv"]
    argv += ["--no-hosts", "--port=0", "--interface=eth0", "--bind-interfaces"]
    argv += [f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.255.0,1h"]
    argv += [f"--dhcp-option=option:router,{SUBNET['clin'].gateway}"]
    argv += [f"--dhcp-option=option:dns-server,{DNS_SERVER}", f"--domain={DOMAIN}"]
    argv += ["--dhcp-authoritative", f"--dhcp-leasefile={lab.tmp / 'dhcp.leases'}"]
    # Address reservations (MAC,address), re-read on SIGHUP: empty until a case adds one.
    (lab.tmp / "dhcp-hosts").write_text("")
    argv += [f"--dhcp-hostsfile={lab.tmp / 'dhcp-hosts'}"]
    argv += ["--log-dhcp", "--log-facility=-", f"--pid-file={lab.tmp / 'dhcp.pid'}"]
    argv += ["--user=root"]
    p = lab.start(ns("dhcp"), argv, "dhcp.log")
    lab.wait_listening("dhcp", "udp", 67, p, "dhcp.log")


def leased_ip(lab: Lab, host: str) -> str:
    out = lab.run(["ip", "-n", ns(host), "-4", "-o", "addr", "show", "dev", "eth0"], quiet=True)
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    if not m:
        raise LabError(f"{host}: no address after DHCP")
    return m.group(1)


def make_dhcp(lab: Lab, out: Path) -> None:
    """Two real DHCP clients lease an address from dnsmasq, then talk from it."""
    on_demand(lab, "dhcp-server", start_dhcp_server)
    conf = lab.tmp / "dhclient.conf"
    conf.write_text(
        f'send host-name "{HOST["nursews"].hostname}";\n'
        f'send vendor-class-identifier "{NURSEWS_VENDOR_CLASS}";\n'
        "request subnet-mask, broadcast-address, time-offset, routers, domain-name,\n"
        "        domain-name-servers, domain-search, host-name, ntp-servers;\n"
    )
    dhclient = ["dhclient", "-cf", str(conf), "-lf", str(lab.tmp / "dhclient.leases")]
    dhclient += ["-pf", str(lab.tmp / "dhclient.pid"), "-sf", TOOL["dhclient-script"]]
    ssh = ["ssh", "-F", "/dev/null", "-i", str(lab.tmp / "id_ed25519"), "-o", "BatchMode=yes"]
    ssh += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    ssh += ["-o", "LogLevel=ERROR", f"root@{SSH_SERVER}", "true"]
    with lab.capture("tcpdump", ["br-clin"], out):
        # busybox udhcpc, as embedded devices run it: hostname and vendor class options.
        pump = HOST["pump"]
        lab.ns_run(
            "pump",
            ["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "3"]
            + ["-x", f"hostname:{pump.hostname}", "-V", PUMP_VENDOR_CLASS]
            + ["-s", "/etc/udhcpc/default.script"],
        )
        pump_ip = leased_ip(lab, "pump")
        expect("pump GET from its lease", curl_status(lab, "pump", f"http://{WEB.ip}/"), "200")
        # ISC dhclient with host-name and vendor-class-identifier in its config.
        lab.ns_run("nursews", [*dhclient, "-1", "-v", "eth0"])
        nurse_ip = leased_ip(lab, "nursews")
        lab.ns_run("nursews", ssh)  # an SSH session from the leased address
        lab.ns_run("nursews", [*dhclient, "-r", "-v", "eth0"])  # DHCPRELEASE, dhclient exits
    for name, ip in (("pump", pump_ip), ("nursews", nurse_ip)):
        if not (DHCP_RANGE[0] <= ip <= DHCP_RANGE[1] and len(ip) == len(DHCP_RANGE[0])):
            raise LabError(f"{name}: leased {ip}, outside {DHCP_RANGE}")
    say(f"      leases: pump {pump_ip}, nursews {nurse_ip}")


#: The address the renumbered pump asks for (DHCP option 50) after releasing its first lease.
RENUMBERED_IP = "10.40.0.141"


def make_dhcp_renumber(lab: Lab, out: Path) -> None:
    """The "infusion pump" (busybox udhcpc) leases an address, talks from it, releases it, then
    leases another one (asking for it with option 50) and talks from that: one device, two
    addresses, as when a device is moved or its lease expires."""
    on_demand(lab, "dhcp-server", start_dhcp_server)
    pump = HOST["pump"]
    udhcpc = ["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "3"]
    udhcpc += ["-x", f"hostname:{pump.hostname}", "-V", PUMP_VENDOR_CLASS]
    udhcpc += ["-s", "/etc/udhcpc/default.script"]
    with lab.capture("tcpdump", ["br-clin"], out):
        lab.ns_run("pump", udhcpc)
        first = leased_ip(lab, "pump")
        expect(
            "pump GET from its first lease", curl_status(lab, "pump", f"http://{WEB.ip}/"), "200"
        )
        # The administrator reserves another address for the pump (dnsmasq re-reads its hosts
        # file on SIGHUP); the pump releases its lease (-R: DHCPRELEASE on exit) and asks again.
        (lab.tmp / "dhcp-hosts").write_text(f"{pump.dhcp_mac},{RENUMBERED_IP}\n")
        os.kill(int((lab.tmp / "dhcp.pid").read_text().split()[0]), signal.SIGHUP)
        lab.ns_run("pump", [*udhcpc, "-R"])
        lab.run(["ip", "-n", ns("pump"), "addr", "flush", "dev", "eth0"], quiet=True)
        lab.ns_run("pump", udhcpc)
        second = leased_ip(lab, "pump")
        expect(
            "pump GET from its second lease", curl_status(lab, "pump", f"http://{WEB.ip}/"), "200"
        )
    if first == second or second != RENUMBERED_IP:
        raise LabError(f"pump: leases {first} then {second}; wanted a move to {RENUMBERED_IP}")
    say(f"      leases: pump {first}, then {second}")


# -- SMB --------------------------------------------------------------------------------------
def samba_dirs(base: Path) -> str:
    """smb.conf lines that keep every Samba file in `base` (nothing under /var)."""
    for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return (
        f"  private dir = {base / 'private'}\n"
        f"  lock directory = {base / 'lock'}\n"
        f"  state directory = {base / 'state'}\n"
        f"  cache directory = {base / 'cache'}\n"
        f"  pid directory = {base / 'pid'}\n"
        f"  ncalrpc dir = {base / 'ncalrpc'}\n"
        f"  log file = {base / 'log' / 'log.%m'}\n"
    )


def start_smbd(lab: Lab) -> None:
    """Samba smbd on fs01:445, own config; share `scans` for the test user; SMB1 allowed."""
    base = lab.tmp / "samba"
    share = base / "share"
    share.mkdir(parents=True)
    (share / "readme.txt").write_text("Scanned documents share (test network, no documents).\n")
    add_test_user("fs", SMB_USER, SMB_UID, "/nonexistent", None)
    conf = base / "smb.conf"
    conf.write_text(
        "[global]\n"
        "  netbios name = FS01\n  workgroup = HOSPITAL\n"
        "  server string = Hospital file server (test lab)\n"
        "  server role = standalone server\n  security = user\n  map to guest = never\n"
        f"  interfaces = {FS.ip}/24\n  bind interfaces only = yes\n  smb ports = 445\n"
        "  disable netbios = yes\n"
        "  server min protocol = NT1\n"  # legacy clients (SMB1) allowed, on purpose
        f"  passdb backend = tdbsam:{base / 'private' / 'passdb.tdb'}\n"
        + samba_dirs(base)
        + "  log level = 1\n  load printers = no\n  printing = bsd\n  printcap name = /dev/null\n"
        "  disable spoolss = yes\n  usershare max shares = 0\n\n"
        f"[{SMB_SHARE}]\n  path = {share}\n  read only = yes\n  valid users = {SMB_USER}\n"
    )
    lab.ns_run(
        "fs",
        ["smbpasswd", "-c", str(conf), "-s", "-a", SMB_USER],
        input=f"{SMB_PASSWORD}\n{SMB_PASSWORD}\n".encode(),
    )
    argv = ["smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", str(conf)]
    p = lab.start(ns("fs"), argv, "smbd.log")
    lab.wait_listening("fs", "tcp", 445, p, "smbd.log")


def smbclient(lab: Lab, host: str, *opts: str) -> str:
    base = lab.tmp / f"smbclient-{host}"
    conf = base / "smb.conf"
    if not conf.exists():
        conf.parent.mkdir(parents=True)
        conf.write_text("[global]\n  workgroup = HOSPITAL\n" + samba_dirs(base))
    got = base / "readme.txt"
    got.unlink(missing_ok=True)
    lab.ns_run(
        host,
        ["smbclient", "-s", str(conf), f"//{FS.ip}/{SMB_SHARE}", "-U", f"{SMB_USER}%{SMB_PASSWORD}"]
        + [*opts, "-c", f"ls; get readme.txt {got}"],
    )
    return got.read_text()


def make_smb(lab: Lab, out: Path) -> None:
    """smbclient lists and reads the share over SMB3 (admin-ws01), then over SMB1 (ct01)."""
    on_demand(lab, "smbd", start_smbd)
    want = "Scanned documents share (test network, no documents).\n"
    with lab.capture("tcpdump", ["br-it"], out):
        expect("SMB3 get", smbclient(lab, "admin", "-m", "SMB3"), want.strip())
        # A legacy modality that still speaks SMB1: NEGOTIATE with NT LM 0.12,
        # SESSION_SETUP_ANDX with NativeOS / NativeLanMan.
        got = smbclient(lab, "ct", "-m", "NT1", "--option=client min protocol=NT1")
        expect("SMB1 get", got, want.strip())


# -- SNMP -------------------------------------------------------------------------------------
def start_snmpd(lab: Lab) -> None:
    """net-snmp snmpd on ups-mgmt01:161/udp: v1/v2c communities and one v3 authPriv user."""
    d = lab.tmp / "snmpd"
    d.mkdir()
    conf = d / "snmpd.conf"
    conf.write_text(
        f"agentAddress udp:{UPS.ip}:161\n"
        f"sysDescr {SNMP_SYS_DESCR}\n"
        f"sysName {UPS.hostname}\n"
        "sysLocation Server room B1, rack 4 (test lab)\n"
        "sysContact it-servicedesk@hospital.example\n"
        "rocommunity public default\n"
        f"rocommunity {SNMP_COMMUNITY_V2} default\n"
        f"rouser {SNMP_V3_USER} priv\n"
        f'createUser {SNMP_V3_USER} SHA "{SNMP_V3_AUTH}" AES "{SNMP_V3_PRIV}"\n'
    )
    (d / "persist").mkdir()  # engine boots and localized keys; nothing under /var/lib/snmp
    argv = ["env", f"SNMP_PERSISTENT_DIR={d / 'persist'}", TOOL["snmpd"], "-f", "-Lo", "-C"]
    argv += ["-c", str(conf), "-p", str(d / "snmpd.pid")]
    p = lab.start(ns("ups"), argv, "snmpd.log")
    lab.wait_listening("ups", "udp", 161, p, "snmpd.log")


def snmpget(lab: Lab, host: str, *opts: str) -> str:
    persist = lab.tmp / "snmp-client"
    persist.mkdir(exist_ok=True)
    argv = ["env", f"SNMP_PERSISTENT_DIR={persist}", "MIBS=", TOOL["snmpget"], "-On", "-r", "0"]
    return lab.ns_run(host, [*argv, "-t", "3", *opts, UPS.ip, *SNMP_OIDS])


def make_snmp(lab: Lab, out: Path) -> None:
    on_demand(lab, "snmpd", start_snmpd)
    with lab.capture("tcpdump", ["br-it"], out):
        outs = [
            snmpget(lab, "admin", "-v1", "-c", "public"),
            snmpget(lab, "admin", "-v2c", "-c", SNMP_COMMUNITY_V2),
            snmpget(
                lab,
                "admin",
                "-v3",
                "-l",
                "authPriv",
                "-u",
                SNMP_V3_USER,
                "-a",
                "SHA",
                "-A",
                SNMP_V3_AUTH,
                "-x",
                "AES",
                "-X",
                SNMP_V3_PRIV,
            ),
        ]
    for got in outs:
        if SNMP_SYS_DESCR not in got or UPS.hostname not in got:
            raise LabError(f"snmpget: unexpected answer {got!r}")


# -- FTP and Telnet ---------------------------------------------------------------------------
def start_legacy_servers(lab: Lab) -> None:
    """vsftpd (standalone) and inetutils telnetd (under inetutils-inetd) on img-legacy40,
    both logging in the made-up local user through PAM."""
    home = lab.tmp / "legacy-home"
    home.mkdir()
    (home / "worklist-export.txt").write_text(
        "worklist export placeholder (test network, no patient data)\n"
    )
    shutil.chown(home, SMB_UID + 1, SMB_UID + 1)
    add_test_user("legacy", FTP_USER, SMB_UID + 1, str(home), FTP_PASSWORD)
    conf = lab.tmp / "vsftpd.conf"
    conf.write_text(
        f"listen=YES\nlisten_ipv6=NO\nlisten_address={LEGACY.ip}\nbackground=NO\n"
        "anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=NO\npam_service_name=vsftpd\n"
        "chroot_local_user=YES\nallow_writeable_chroot=YES\n"  # PWD is "/", not the temp dir
        "secure_chroot_dir=/var/run/vsftpd/empty\nseccomp_sandbox=NO\nuse_localtime=NO\n"
        f"xferlog_enable=YES\nvsftpd_log_file={lab.tmp / 'vsftpd-xfer.log'}\n"
        "pasv_enable=YES\npasv_min_port=30000\npasv_max_port=30009\n"
    )
    conf.chmod(0o600)
    ftp = lab.start(ns("legacy"), ["vsftpd", str(conf)], "vsftpd.log")
    inetd_conf = lab.tmp / "inetd.conf"
    inetd_conf.write_text(f"telnet stream tcp nowait root {TOOL['telnetd']} telnetd\n")
    # In its own UTS namespace, so telnetd's banner and login prompt name img-legacy40.
    inetd = f"echo {LEGACY.hostname} > /proc/sys/kernel/hostname && "
    inetd += f"exec {TOOL['inetutils-inetd']} -d {inetd_conf}"
    telnet = lab.start(ns("legacy"), ["unshare", "--uts", "sh", "-c", inetd], "inetd.log")
    lab.wait_listening("legacy", "tcp", 21, ftp, "vsftpd.log")
    lab.wait_listening("legacy", "tcp", 23, telnet, "inetd.log")


def make_cleartext(lab: Lab, out: Path) -> None:
    """From admin-ws01: FTP (curl: list, get) and a Telnet login (inetutils telnet)."""
    on_demand(lab, "legacy", start_legacy_servers)
    # Typed by hand, slowly: user, password, one command, exit.
    script = (
        f"sleep 2; printf '{FTP_USER}\\r\\n'; sleep 1; printf '{FTP_PASSWORD}\\r\\n'; "
        "sleep 3; printf 'uname -s\\r\\n'; sleep 1; printf 'exit\\r\\n'; sleep 1"
    )
    with lab.capture("tcpdump", ["br-img"], out):
        ftp = f"ftp://{LEGACY.ip}/"
        user = ["--user", f"{FTP_USER}:{FTP_PASSWORD}", "--max-time", "10", "-sS"]
        listing = lab.ns_run("admin", ["curl", *user, ftp])
        got = lab.ns_run("admin", ["curl", *user, ftp + "worklist-export.txt"])
        session = lab.ns_run(
            "admin",
            [
                "sh",
                "-c",
                f"({script}) | {TOOL['timeout']} 20 {TOOL['inetutils-telnet']} {LEGACY.ip}",
            ],
            timeout=40,
        )
    if "worklist-export.txt" not in listing or "placeholder" not in got:
        raise LabError(f"FTP: unexpected listing {listing!r} / file {got!r}")
    if "Linux" not in session:
        raise LabError(f"Telnet: no shell output: {session[-300:]!r}")


# -- TLS 1.0 / 1.1 / 1.2 with a visible certificate ----------------------------------------
def start_pacsweb(lab: Lab) -> None:
    """openssl s_server -www on pacs-web:443, TLS 1.0-1.3, self-signed certificate."""
    name = fqdn(PACSWEB.hostname)
    lab.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650"]
        + ["-keyout", str(lab.tmp / "pacsweb.key"), "-out", str(lab.tmp / "pacsweb.crt")]
        + ["-subj", f"/O=Test Hospital/CN={name}"]
        + ["-addext", f"subjectAltName=DNS:{name},IP:{PACSWEB.ip}"]
    )
    argv = ["openssl", "s_server", "-www", "-accept", f"{PACSWEB.ip}:443"]
    argv += ["-cert", str(lab.tmp / "pacsweb.crt"), "-key", str(lab.tmp / "pacsweb.key")]
    argv += ["-cipher", "DEFAULT:@SECLEVEL=0"]
    p = lab.start(ns("pacsweb"), argv, "pacsweb.log")
    lab.wait_listening("pacsweb", "tcp", 443, p, "pacsweb.log")


def make_tls_legacy(lab: Lab, out: Path) -> None:
    on_demand(lab, "pacsweb", start_pacsweb)
    name = fqdn(PACSWEB.hostname)

    def s_client(host: str, *opts: str) -> None:
        argv = ["openssl", "s_client", *opts, "-servername", name]
        argv += ["-connect", f"{PACSWEB.ip}:443", "-ign_eof", "-quiet"]
        got = lab.ns_run(host, argv, input=b"GET / HTTP/1.0\r\n\r\n")
        expect(f"s_client {opts[0]}", got.splitlines()[0] if got else "", "HTTP/1.0 200 ok")

    with lab.capture("tcpdump", ["br-pacs"], out):
        s_client("ct", "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0")
        s_client("clin", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
        s_client("admin", "-tls1_2")
        resolve = f"{name}:443:{PACSWEB.ip}"
        expect(
            "curl TLS 1.2",
            curl_status(
                lab,
                "clin",
                f"https://{name}/",
                "-k",
                "--resolve",
                resolve,
                "--tlsv1.2",
                "--tls-max",
                "1.2",
            ),
            "200",
        )


# -- Discovery: mDNS, NetBIOS, SSDP -----------------------------------------------------------
def start_nmbd(lab: Lab) -> None:
    """Samba nmbd on clin-ws31: registers CLIN-WS31 and the workgroup HOSPITAL by broadcast."""
    base = lab.tmp / "nmbd"
    conf = base / "smb.conf"
    dirs = samba_dirs(base)
    conf.write_text(
        "[global]\n  netbios name = CLIN-WS31\n  workgroup = HOSPITAL\n"
        "  server string = Clinical workstation (test lab)\n"
        f"  interfaces = {HOST['clin'].ip}/24\n  bind interfaces only = yes\n"
        "  local master = no\n  domain master = no\n  preferred master = no\n"
        + dirs
        + "  log level = 1\n"
    )
    argv = ["nmbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", str(conf)]
    p = lab.start(ns("clin"), argv, "nmbd.log")
    lab.wait_listening("clin", "udp", 137, p, "nmbd.log")


def start_ssdp(lab: Lab) -> None:
    """ssdpy SSDPServer on the printer: one NOTIFY ssdp:alive, then answers M-SEARCHes."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--helper", "ssdp-server", PRINTER.ip]
    p = lab.start(ns("printer"), argv, "ssdp.log")
    lab.wait_listening("printer", "udp", 1900, p, "ssdp.log")


def make_discovery(lab: Lab, out: Path) -> None:
    with lab.capture("tcpdump", ["br-clin"], out):
        # mDNS: python-zeroconf registers the printer's IPP service (announcements), a
        # workstation browses for it (query, answer), the printer says goodbye.
        announce = [sys.executable, str(Path(__file__).resolve()), "--helper", "mdns-announce"]
        printer = lab.start(ns("printer"), [*announce, PRINTER.ip], "mdns.log")
        time.sleep(4)
        got = helper(lab, "clin", "mdns-browse", HOST["clin"].ip)
        expect("mDNS browse", got, f"{PRINTER_MODEL} [{PRINTER.hostname}]._ipp._tcp.local.")
        printer.wait(timeout=30)
        # NetBIOS: nmbd's name registrations, then a name query from another host.
        on_demand(lab, "nmbd", start_nmbd)
        time.sleep(6)
        got = lab.ns_run("icumon", ["nmblookup", "-B", "10.40.0.255", "CLIN-WS31"])
        if HOST["clin"].ip not in got:
            raise LabError(f"nmblookup: {got!r}")
        # SSDP: the printer's NOTIFY, an M-SEARCH and its answer.
        on_demand(lab, "ssdp", start_ssdp)
        got = helper(lab, "clin", "ssdp-search", HOST["clin"].ip)
        expect("SSDP M-SEARCH answers", got, "1")


# -- DICOM modalities of eight vendors --------------------------------------------------------
@dataclass(frozen=True)
class Modality:
    """One modality host of dicom/modalities: a pynetdicom storage SCU set up as that vendor's
    device (implementation class UID under the vendor's DICOM UID root, a version name in its
    style, its AE title) sending one dataset with the real model's device attributes."""

    host: str  # HOSTS name (mod1 ... mod10)
    aet: str
    vendor: str  # canonical vendor name (truth file)
    device_class: str  # ct, mr, us, cr, dx, mg
    manufacturer: str  # (0008,0070) as the vendor writes it
    model: str  # (0008,1090)
    software: str  # (0018,1020)
    station: str  # (0008,1010)
    modality: str  # (0008,0060)
    sop_class: str
    impl_uid: str  # emulated: under the vendor's root, not a real product's UID
    impl_version: str
    serial: str


US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
MG_IMAGE = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray - For Presentation

# UID roots (checked against public DICOM data and code, see pcaps/README.md): GE
# 1.2.840.113619, Siemens 1.3.12.2.1107.5, Philips 1.3.46.670589, Toshiba/Canon
# 1.2.392.200036.9116, Fujifilm 1.2.392.200036.9125, Agfa 1.2.124.113532, Hologic
# 1.2.840.113681, Carestream 1.2.840.113564.
MODALITIES: tuple[Modality, ...] = (
    Modality(
        "mod1",
        "REVCT01",
        "GE Healthcare",
        "ct",
        "GE MEDICAL SYSTEMS",
        "Revolution CT",
        "revo_ct_22mw.45",
        "REVCT01",
        "CT",
        CT_IMAGE,
        "1.2.840.113619.6.408",
        "REVCT_22MW",
        "REVCT-SN-0101",
    ),
    Modality(
        "mod2",
        "MRSKYRA01",
        "Siemens Healthineers",
        "mr",
        "SIEMENS",
        "MAGNETOM Skyra",
        "syngo MR E11",
        "MRC40123",
        "MR",
        MR_IMAGE,
        "1.3.12.2.1107.5.2",
        "MR_VE11E",
        "SKYRA-SN-0102",
    ),
    Modality(
        "mod3",
        "EPIQ7G01",
        "Philips",
        "us",
        "Philips Medical Systems",
        "EPIQ 7G",
        "7.0.5.3",
        "EPIQ7-US01",
        "US",
        US_IMAGE,
        "1.3.46.670589.14.1000.700",
        "EPIQ_7.0.5",
        "EPIQ-SN-0103",
    ),
    Modality(
        "mod4",
        "AQONE01",
        "Canon Medical (Toshiba)",
        "ct",
        "TOSHIBA",
        "Aquilion ONE",
        "V6.00ER008",
        "AQONE01",
        "CT",
        CT_IMAGE,
        "1.2.392.200036.9116.2.6.1.48",
        "TM_CT_CMW_V3.00",
        "AQONE-SN-0104",
    ),
    Modality(
        "mod5",
        "FCRCAPS01",
        "Fujifilm",
        "cr",
        "FUJIFILM Corporation",
        "FCR Capsula XL II",
        "A07-20",
        "FCR-CAPS01",
        "CR",
        CR_IMAGE,
        "1.2.392.200036.9125.0.1.3",
        "FUJI_CR_A07",
        "CAPSXL-SN-0105",
    ),
    Modality(
        "mod6",
        "DXD600A",
        "Agfa HealthCare",
        "dx",
        "Agfa",
        "DX-D 600",
        "NX 3.0.9000",
        "DXD600-RAD2",
        "DX",
        DX_IMAGE,
        "1.2.124.113532.3500.8",
        "AGFA_NX_3.0",
        "DXD600-SN-0106",
    ),
    Modality(
        "mod7",
        "SELENIA01",
        "Hologic",
        "mg",
        "HOLOGIC, Inc.",
        "Selenia Dimensions",
        "1.10.2.1",
        "SDM-MAMMO1",
        "MG",
        MG_IMAGE,
        "1.2.840.113681.1.1",
        "HOLOGIC_AWS_1.10",
        "SDM-SN-0107",
    ),
    Modality(
        "mod8",
        "DRXEVO01",
        "Carestream Health",
        "dx",
        "Carestream Health",
        "DRX-Evolution",
        "5.7.412.2",
        "DRXEVO-RAD3",
        "DX",
        DX_IMAGE,
        "1.2.840.113564.3.1.64",
        "CSH_DRX_5.7",
        "DRXEVO-SN-0108",
    ),
    Modality(
        "mod9",
        "LOGIQE9A",
        "GE Healthcare",
        "us",
        "GE Healthcare",
        "LOGIQ E9",
        "R6.0.8",
        "LOGIQE9-US2",
        "US",
        US_IMAGE,
        "1.2.840.113619.6.248",
        "LOGIQE9_R6",
        "LOGIQ-SN-0109",
    ),
    Modality(
        "mod10",
        "VANTAGE01",
        "Canon Medical (Toshiba)",
        "mr",
        "TOSHIBA_MEC",
        "Vantage Titan",
        "V4.50*R007",
        "VANTAGE01",
        "MR",
        MR_IMAGE,
        "1.2.392.200036.9116.4.2.4",
        "TM_MR_V4.50",
        "TITAN-SN-0110",
    ),
)


def write_modality_dataset(m: Modality, path: Path) -> None:
    """A small instance (16x16 pixels) with the modality's device attributes and the
    PHI canaries, fixed UIDs under pydicom's root (as write_datasets)."""

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, generate_uid

    def uid(*key: str) -> UID:
        return generate_uid(entropy_srcs=["medmon", "modalities", m.host, *key])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(m.sop_class)
    meta.MediaStorageSOPInstanceUID = uid("instance")
    meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    meta.ImplementationClassUID = UID(m.impl_uid)
    meta.ImplementationVersionName = m.impl_version
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = m.sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240110"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.AccessionNumber = f"ACC20240110{m.host[3:]:0>2}"
    ds.Modality = m.modality
    ds.Manufacturer = m.manufacturer
    ds.InstitutionName = "Example Hospital"
    ds.StationName = m.station
    ds.StudyDescription = f"{m.modality} test study"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.ManufacturerModelName = m.model
    ds.ReferringPhysicianName = ""
    ds.PatientName = CANARY_NAME
    ds.PatientID = CANARY_ID
    ds.PatientBirthDate = CANARY_BIRTH_DATE
    ds.PatientSex = "F"
    ds.DeviceSerialNumber = m.serial
    ds.SoftwareVersions = m.software
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.AdmissionID = CANARY_ID  # (0038,0010)
    ds.PerformedProcedureStepID = CANARY_ID  # (0040,0253)
    if m.modality in ("DX", "MG"):
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    tiny_image(ds)
    ds.save_as(path, enforce_file_format=True)


def tiny_image(ds: Any) -> None:  # a pydicom Dataset (imported where used)
    """A 16 x 16 12-bit monochrome image: enough pixel data for a valid instance."""
    from array import array

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    pixels = array("H", ((x * 7 + y * 13) % 4096 for y in range(16) for x in range(16)))
    ds.PixelData = pixels.tobytes()


def modalities_truth() -> str:
    lines = [
        "# Ground truth for dicom/modalities.pcap; written by pcaps/make_captures.py (MODALITIES).",
        "# Every host is a pynetdicom storage SCU made to look like that vendor's device: its",
        "# implementation class UIDs emulate the vendor's DICOM UID root (they are not the UIDs",
        "# of the real products), the version names are in the vendor's style, and the dataset's",
        "# device attributes are the real model's. PHI canaries as in every generated dataset.",
        "hosts:",
    ]
    for m in MODALITIES:
        lines += [
            f"  {HOST[m.host].ip}:",
            f"    vendor: {m.vendor!r}".replace("'", '"'),
            f"    device_class: {m.device_class}",
            f'    model: "{m.model}"',
            f'    manufacturer: "{m.manufacturer}"',
            f"    modality: {m.modality}",
            f"    calling_ae: {m.aet}",
            f'    implementation_class_uid: "{m.impl_uid}"',
            f'    implementation_version_name: "{m.impl_version}"',
            f'    software_versions: "{m.software}"',
            f"    station_name: {m.station}",
            f"    device_serial_number: {m.serial}",
            "    # implementation UIDs emulate the vendor's root on a pynetdicom SCU",
        ]
    return "\n".join(lines) + "\n"


def make_dicom_modalities(lab: Lab, out: Path) -> None:
    """Ten modalities of eight vendors in the imaging subnet each store one instance to
    Orthanc, one association each, captured on the imaging bridge."""
    on_demand(lab, "orthanc", start_orthanc)
    d = lab.tmp / "modalities"
    d.mkdir(exist_ok=True)
    for m in MODALITIES:
        write_modality_dataset(m, d / f"{m.host}.dcm")
    with lab.capture("tcpdump", ["br-img"], out):
        for m in MODALITIES:
            got = helper(
                lab,
                m.host,
                "dicom-modality",
                PACS.ip,
                str(ORTHANC_PORT),
                ORTHANC_AET,
                m.aet,
                m.impl_uid,
                m.impl_version,
                str(d / f"{m.host}.dcm"),
            )
            expect(f"{m.aet} C-STORE", got, "store 0x0000")
    out.with_name("modalities.truth.yaml").write_text(modalities_truth())


# -- Hostile values from the wire (generic/hostile) --------------------------------------------
# For injection tests of medmon's exports: every value below comes from the network, so a CSV or
# XLSX export must not turn it into a formula (a cell starting with = + - @) and an HTML report
# must not turn it into markup or script. Each one is sent by the real program of its protocol.
HOSTILE_DEV = HOST["hostiledev"]
HOSTILE_AET = "@SUM(1+1)"  # calling AE title (at most 16 characters, no backslash)
HOSTILE_MANUFACTURER = '=HYPERLINK("http://x.invalid","c")'  # (0008,0070) LO, <= 64
HOSTILE_MODEL = "<img src=x onerror=alert(1)>"  # (0008,1090) LO
HOSTILE_STATION = "<script>alert(1)"  # (0008,1010) SH, <= 16
HOSTILE_SOFTWARE = "+1-2"  # (0018,1020) LO
HOSTILE_SERIAL = "HOSTILE-SN-0066"  # (0018,1000), harmless
# HL7 MSH-3 and MSH-4 as a receiver reads them; MSH-3 holds the field separator, which is sent
# escaped (\F\, HL7 v2.5 section 2.7.4): the classic DDE payload of CSV injection.
HOSTILE_HL7_APPLICATION = "=cmd|' /C calc'!A0"
HOSTILE_HL7_FACILITY = "<script>document.body.setAttribute('data-pwned','1')</script>"
HOSTILE_HL7 = "adt-a01-hostile"
HOSTILE_DHCP_HOSTNAME = HOSTILE_DEV.hostname  # option 12
HOSTILE_DHCP_VENDOR_CLASS = "<svg onload=alert(1)>"  # option 60


def hl7_escape(value: str) -> str:
    """A field value with HL7's delimiters escaped (HL7 v2.5 section 2.7.4), escape first."""
    for char, escaped in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\")):
        value = value.replace(char, escaped)
    return value.replace("~", "\\R\\")


HL7_MESSAGES[HOSTILE_HL7] = hl7_message(
    hl7_msh(
        hl7_escape(HOSTILE_HL7_APPLICATION),
        hl7_escape(HOSTILE_HL7_FACILITY),
        "20240102120800",
        "ADT^A01^ADT_A01",
        "MSG00009",
        "2.5",
    ),
    ["EVN", "A01", "20240102120800"],
    PID,
    ["PV1", "1", "I", "ICU^01^01"],
)


def write_hostile_dataset(path: Path) -> None:
    """A small CT instance with the hostile device attributes and the PHI canaries: a
    modality dataset (:func:`write_modality_dataset`) whose attributes are the payloads."""
    hostile = Modality(
        host="hostilemod", aet=HOSTILE_AET, vendor="", device_class="ct",
        manufacturer=HOSTILE_MANUFACTURER, model=HOSTILE_MODEL, software=HOSTILE_SOFTWARE,
        station=HOSTILE_STATION, modality="CT", sop_class=CT_IMAGE,
        impl_uid="1.2.826.0.1.3680043.8.498.66", impl_version="HOSTILE_1", serial=HOSTILE_SERIAL,
    )  # fmt: skip
    write_modality_dataset(hostile, path)


def make_hostile(lab: Lab, out: Path) -> None:
    """Hostile values in DHCP, HL7 and DICOM, each sent by its real client, seen on two
    bridges (clinical: DHCP and HL7; imaging: DICOM) merged into one pcap."""
    on_demand(lab, "dhcp-server", start_dhcp_server)
    on_demand(lab, "mllp", start_mllp)
    on_demand(lab, "storescp-pacs", start_storescp_pacs)
    dataset = lab.tmp / "hostile.dcm"
    write_hostile_dataset(dataset)
    legs = [out.with_suffix(".clin.pcap"), out.with_suffix(".img.pcap")]
    with (
        lab.capture("tcpdump", ["br-clin"], legs[0]),
        lab.capture("tcpdump", ["br-img"], legs[1]),
    ):
        # busybox udhcpc sends the host name (-x hostname:) and vendor class (-V) as given.
        lab.ns_run(
            "hostiledev",
            ["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "3"]
            + ["-x", f"hostname:{HOSTILE_DHCP_HOSTNAME}", "-V", HOSTILE_DHCP_VENDOR_CLASS]
            + ["-s", "/etc/udhcpc/default.script"],
        )
        dev_ip = leased_ip(lab, "hostiledev")
        # From the leased address, across zones (clinical -> servers): one ADT^A01.
        got = helper(lab, "hostiledev", "mllp-send", HL7_SERVER, str(HL7_PORT), HOSTILE_HL7)
        expect("ACK", got, "AA MSG00009")
        # Imaging -> PACS, cleartext DICOM across zones: C-ECHO and one C-STORE.
        got = helper(
            lab,
            "hostilemod",
            "dicom-store-as",
            PACS.ip,
            str(STORESCP_PORT),
            STORESCP_AET,
            HOSTILE_AET,
            str(dataset),
        )
        expect("pynetdicom C-ECHO, C-STORE", got, "echo 0x0000 store 0x0000")
    if not (DHCP_RANGE[0] <= dev_ip <= DHCP_RANGE[1] and len(dev_ip) == len(DHCP_RANGE[0])):
        raise LabError(f"hostiledev: leased {dev_ip}, outside {DHCP_RANGE}")
    lab.run(["mergecap", "-F", "pcap", "-w", str(out), *map(str, legs)])
    say(f"      lease: hostiledev {dev_ip}")


# -- helper modes: run by `make_captures.py --helper ...` inside a namespace ----------------
def helper_main(args: Sequence[str]) -> int:
    mode, *rest = args
    if mode == "mllp-server":
        return mllp_server(rest[0], [int(p) for p in rest[1:]])
    if mode == "mllp-send":
        return mllp_send(rest[0], int(rest[1]), rest[2:])
    if mode == "dicom-store":
        return dicom_store(rest[0], int(rest[1]), rest[2], rest[3:])
    if mode == "dicom-store-as":  # as dicom-store, with the calling AE title after the called
        return dicom_store(rest[0], int(rest[1]), rest[2], rest[4:], calling=rest[3])
    if mode == "dicom-abort":
        return dicom_abort(rest[0], int(rest[1]), rest[2])
    if mode == "dicom-modality":
        return dicom_modality(rest[0], int(rest[1]), *rest[2:7])
    if mode == "mdns-announce":
        return mdns_announce(rest[0])
    if mode == "mdns-browse":
        return mdns_browse(rest[0])
    if mode == "ssdp-server":
        return ssdp_server(rest[0])
    if mode == "ssdp-search":
        return ssdp_search(rest[0])
    sys.exit(f"unknown helper {mode}")


def mllp_server(host: str, ports: Sequence[int]) -> int:
    """python-hl7's asyncio MLLP server: answer each message with ACK (MSA|AA|<MSH-10>)."""
    import asyncio

    import hl7.mllp

    async def session(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while True:
                msg = await reader.readmessage()
                control_id = str(msg.segment("MSH")(10))
                print(f"received {msg.segment('MSH')(9)} {control_id}", flush=True)
                writer.writemessage(msg.create_ack("AA", message_id="ACK" + control_id))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def serve() -> None:
        servers = [await hl7.mllp.start_hl7_server(session, host, p) for p in ports]
        print(f"listening on {host} {ports}", flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(serve())
    return 0


def mllp_send(host: str, port: int, names: Sequence[str]) -> int:
    """python-hl7's MLLPClient: one connection, the named messages in order; NAME1+NAME2 are
    sent as two MLLP frames in one write. Prints MSA-1 and MSA-2 of every ACK."""
    import hl7
    from hl7.client import CR, EB, SB, MLLPClient

    acks: list[str] = []
    with MLLPClient(host, port) as client:
        for name in names:
            parts = name.split("+")
            frames = b"".join(SB + HL7_MESSAGES[p].encode() + EB + CR for p in parts)
            data = client.send(frames)
            while data.count(EB + CR) < len(parts):
                more = client.socket.recv(4096)
                if not more:
                    break
                data += more
            for block in data.split(EB + CR):
                if block.strip(SB):
                    msa = hl7.parse(block.strip(SB).decode()).segment("MSA")  # type: ignore[attr-defined]
                    acks += [str(msa(1)), str(msa(2))]
    print(" ".join(acks))
    return 0


def dicom_store(
    host: str, port: int, called: str, paths: Sequence[str], calling: str = MOVE_DEST_AET
) -> int:
    """pynetdicom SCU: C-ECHO, then C-STORE of each file in its own transfer syntax."""
    import pydicom
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        sys.exit("association not established")
    out = [f"echo 0x{assoc.send_c_echo().Status:04x}"]
    out += [f"store 0x{assoc.send_c_store(ds).Status:04x}" for ds in datasets]
    assoc.release()
    print(" ".join(out))
    return 0


def dicom_abort(host: str, port: int, called: str) -> int:
    """pynetdicom SCU: associate, C-ECHO, then A-ABORT instead of a release."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=MOVE_DEST_AET)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        sys.exit("association not established")
    assoc.send_c_echo()
    assoc.abort()
    print("aborted" if assoc.is_aborted else "not aborted")
    return 0


def dicom_modality(
    host: str, port: int, called: str, calling: str, impl_uid: str, impl_version: str, path: str
) -> int:
    """pynetdicom storage SCU configured as a vendor's modality: C-STORE of one file."""
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling)
    ae.implementation_class_uid = impl_uid
    ae.implementation_version_name = impl_version
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        sys.exit("association not established")
    status = assoc.send_c_store(ds).Status
    assoc.release()
    print(f"store 0x{status:04x}")
    return 0


def mdns_service(address: str):  # type: ignore[no-untyped-def]
    import socket

    from zeroconf import ServiceInfo

    printer = HOST["printer"]
    return ServiceInfo(
        "_ipp._tcp.local.",
        f"{PRINTER_MODEL} [{printer.hostname}]._ipp._tcp.local.",
        addresses=[socket.inet_aton(address)],
        port=631,
        properties={
            "txtvers": "1",
            "qtotal": "1",
            "rp": "ipp/print",
            "ty": PRINTER_MODEL,
            "product": f"({PRINTER_MODEL})",
            "note": "Radiology corridor",
            "pdl": "application/pdf,image/urf",
            "UUID": "7a9e1c52-0000-4000-8000-0000000c0060",
        },
        server=f"{printer.hostname}.local.",
    )


def mdns_announce(address: str) -> int:
    """python-zeroconf: register the printer's IPP service (probe, announcements), answer
    queries for a few seconds, then unregister (goodbye packets)."""
    from zeroconf import IPVersion, Zeroconf

    zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
    info = mdns_service(address)
    zc.register_service(info)
    print("registered", flush=True)
    time.sleep(8)
    zc.unregister_service(info)
    zc.close()
    print("unregistered", flush=True)
    return 0


def mdns_browse(address: str) -> int:
    """python-zeroconf: browse _ipp._tcp.local. for 3 s; print the service names found."""
    from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

    found: list[str] = []

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found.append(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

    zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
    ServiceBrowser(zc, "_ipp._tcp.local.", Listener())
    time.sleep(3)
    zc.close()
    print(" ".join(sorted(set(found))))
    return 0


SSDP_USN = "uuid:7a9e1c52-0000-4000-8000-0000000c0060"
SSDP_DEVICE = "urn:schemas-upnp-org:device:Printer:1"


def ssdp_server(address: str) -> int:
    """ssdpy: one multicast NOTIFY ssdp:alive (ssdpy's payload), then SSDPServer answers
    M-SEARCHes for the printer device type."""
    from ssdpy import SSDPClient, SSDPServer
    from ssdpy.protocol import create_notify_payload

    location = f"http://{address}:80/description.xml"
    extra = {"SERVER": PRINTER_SERVER_HEADER}
    server = SSDPServer(
        SSDP_USN,
        device_type=SSDP_DEVICE,
        address=address,
        location=location,
        max_age=1800,
        extra_fields=extra,
    )
    client = SSDPClient(address=address)
    client.send(
        create_notify_payload(
            "239.255.255.250:1900",
            SSDP_DEVICE,
            SSDP_USN,
            location=location,
            max_age=1800,
            extra_fields=extra,
        )
    )
    print("notified", flush=True)
    server.serve_forever()
    return 0


def ssdp_search(address: str) -> int:
    """ssdpy SSDPClient: M-SEARCH ssdp:all, print how many answers came within 3 s."""
    from ssdpy import SSDPClient

    client = SSDPClient(address=address, timeout=3)
    print(len(client.m_search(st="ssdp:all", mx=1)))
    return 0


@dataclass(frozen=True)
class Capture:
    name: str  # for --only
    path: str  # relative to --out
    make: Callable[[Lab, Path], None]
    purpose: str
    decode_as: tuple[str, ...] = ()  # tshark -d arguments, e.g. "tcp.port==4242,dicom"
    # Protocol facts for expected.json: (name, display filter, tshark fields); every matching
    # frame becomes one object {field: value} (empty fields left out).
    facts: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    extra: tuple[str, ...] = ()  # further files the capture writes beside it (published too)


DICOM_DECODE = tuple(f"tcp.port=={p},dicom" for p in DICOM_PORTS)
HL7_DECODE = tuple(f"tcp.port=={p},hl7" for p in HL7_PORTS)


CAPTURES: tuple[Capture, ...] = (
    Capture(
        "http",
        "generic/http.pcap",
        make_http,
        "curl -> python http.server: 5 GETs, custom User-Agents, 404s, multi-segment body, "
        "PHI canaries in a query string",
    ),
    Capture(
        "tls",
        "generic/tls.pcap",
        make_tls,
        "openssl s_server: TLS 1.2 and 1.3 (curl), deprecated TLS 1.0 (curl), "
        "TLS 1.1 (openssl s_client)",
    ),
    Capture(
        "dns",
        "generic/dns.pcap",
        make_dns,
        "dig -> dnsmasq: A, AAAA, PTR x2, NXDOMAIN, A over TCP, from 4 hosts",
    ),
    Capture(
        "ssh",
        "generic/ssh.pcap",
        make_ssh,
        "OpenSSH client -> sshd, key auth, 2 sessions (true, uname -s)",
    ),
    Capture(
        "span-duplicates",
        "generic/span-duplicates.pcap",
        make_span,
        "one HTTP conversation seen on two router legs (every packet twice, TTL 64/63)",
    ),
    Capture(
        "mixed",
        "generic/mixed.pcapng",
        make_mixed,
        "pcapng with 2 interfaces (dumpcap): DNS lookup then HTTP GET from 2 subnets",
    ),
    Capture(
        "dhcp-renumber",
        "generic/dhcp-renumber.pcap",
        make_dhcp_renumber,
        "busybox udhcpc leases an address, releases it and leases another (option 50); "
        "HTTP from both: one device, two addresses",
        facts=(
            (
                "dhcp",
                "dhcp",
                ("frame.number", "eth.src", "dhcp.option.dhcp", "dhcp.hw.mac_addr", "dhcp.ip.your"),
            ),
        ),
    ),
    Capture(
        "dhcp",
        "generic/dhcp.pcap",
        make_dhcp,
        "busybox udhcpc (hostname, vendor class) and ISC dhclient lease from dnsmasq; "
        "then HTTP and SSH from the leased addresses; DHCPRELEASE",
        facts=(
            (
                "dhcp",
                "dhcp",
                (
                    "frame.number",
                    "eth.src",
                    "ip.src",
                    "ip.dst",
                    "dhcp.option.dhcp",
                    "dhcp.hw.mac_addr",
                    "dhcp.ip.your",
                    "dhcp.option.hostname",
                    "dhcp.option.vendor_class_id",
                    "dhcp.option.request_list_item",
                    "dhcp.option.requested_ip_address",
                    "dhcp.option.dhcp_server_id",
                ),
            ),
        ),
    ),
    Capture(
        "smb",
        "generic/smb.pcap",
        make_smb,
        "smbclient -> Samba smbd: ls + get over SMB3 (admin-ws01), then over SMB1/NT1 "
        "(ct01): NEGOTIATE, SESSION_SETUP_ANDX with NativeOS/NativeLanMan, NTLMSSP",
        facts=(
            (
                "smb",
                "smb || smb2",
                (
                    "frame.number",
                    "ip.src",
                    "ip.dst",
                    "smb.cmd",
                    "smb2.cmd",
                    "smb.dialect",
                    "smb.dialect.index",
                    "smb2.dialect",
                    "smb.native_os",
                    "smb.native_lanman",
                    "ntlmssp.version.major",
                    "ntlmssp.version.minor",
                    "ntlmssp.version.build_number",
                    "ntlmssp.auth.username",
                ),
            ),
        ),
    ),
    Capture(
        "snmp",
        "generic/snmp.pcap",
        make_snmp,
        "snmpget -> net-snmp snmpd: sysDescr.0, sysObjectID.0, sysName.0 with v1 'public', "
        "v2c non-default community, v3 authPriv (SHA/AES)",
        facts=(
            (
                "snmp",
                "snmp",
                (
                    "frame.number",
                    "ip.src",
                    "ip.dst",
                    "snmp.version",
                    "snmp.msgVersion",
                    "snmp.community",
                    "snmp.msgUserName",
                    "snmp.name",
                    "snmp.value.octets",
                    "snmp.value.oid",
                ),
            ),
        ),
    ),
    Capture(
        "cleartext",
        "generic/cleartext.pcap",
        make_cleartext,
        "curl -> vsftpd (login, LIST, RETR) and inetutils telnet -> telnetd (login, "
        "uname -s, exit), made-up credentials in clear text",
        facts=(
            (
                "ftp",
                "ftp",
                (
                    "frame.number",
                    "ip.src",
                    "ip.dst",
                    "ftp.request.command",
                    "ftp.response.code",
                    "ftp.response.arg",
                ),
            ),
            ("telnet", "telnet", ("frame.number", "ip.src", "ip.dst", "tcp.srcport")),
        ),
    ),
    Capture(
        "tls-legacy",
        "generic/tls-legacy.pcap",
        make_tls_legacy,
        "openssl s_client TLS 1.0, 1.1, 1.2 and curl TLS 1.2 -> openssl s_server with a "
        "self-signed certificate (visible in the handshake)",
        facts=(
            (
                "tls",
                "tls.handshake.type == 1 || tls.handshake.type == 2 || tls.handshake.type == 11",
                (
                    "frame.number",
                    "ip.src",
                    "ip.dst",
                    "tls.record.version",
                    "tls.handshake.type",
                    "tls.handshake.version",
                    "tls.handshake.extensions_server_name",
                    "tls.handshake.ciphersuite",
                    "x509sat.uTF8String",
                ),
            ),
        ),
    ),
    Capture(
        "discovery",
        "generic/discovery.pcap",
        make_discovery,
        "python-zeroconf mDNS (_ipp._tcp announce, browse, goodbye), Samba nmbd NetBIOS "
        "registrations + nmblookup, ssdpy SSDP NOTIFY + M-SEARCH",
        facts=(
            (
                "mdns",
                "mdns",
                (
                    "frame.number",
                    "ip.src",
                    "dns.flags.response",
                    "dns.qry.name",
                    "dns.resp.name",
                    "dns.ptr.domain_name",
                    "dns.txt",
                ),
            ),
            (
                "nbns",
                "nbns",
                ("frame.number", "ip.src", "ip.dst", "nbns.flags.opcode", "nbns.name"),
            ),
            (
                "ssdp",
                "ssdp",
                ("frame.number", "ip.src", "ip.dst", "http.request.line", "http.request.method"),
            ),
        ),
    ),
    Capture(
        "hostile",
        "generic/hostile.pcap",
        make_hostile,
        "injection tests: hostile values (spreadsheet formulas, HTML/script) from real clients: "
        "udhcpc host name and vendor class; python-hl7 MSH-3/MSH-4; pynetdicom calling AE "
        "and Manufacturer/Model/StationName/SoftwareVersions (C-ECHO, C-STORE to storescp)",
        DICOM_DECODE + HL7_DECODE,
        facts=(
            (
                "dhcp",
                "dhcp",
                (
                    "frame.number",
                    "eth.src",
                    "dhcp.option.dhcp",
                    "dhcp.hw.mac_addr",
                    "dhcp.ip.your",
                    "dhcp.option.hostname",
                    "dhcp.option.vendor_class_id",
                ),
            ),
            (
                "hl7",
                "hl7",
                ("frame.number", "ip.src", "ip.dst", "hl7.message.type", "hl7.event.type"),
            ),
            (
                "dicom",
                "dicom.pdu.type == 1",
                (
                    "frame.number",
                    "ip.src",
                    "ip.dst",
                    "tcp.dstport",
                    "dicom.assoc.ae.calling",
                    "dicom.assoc.ae.called",
                ),
            ),
        ),
    ),
    Capture(
        "dicom-echo-store",
        "dicom/echo-store-dcmtk-orthanc.pcap",
        make_dicom_echo_store,
        "DCMTK echoscu, storescu (2 CT + 1 MR) CT01 -> Orthanc ORTHANC at pacs01:4242",
        DICOM_DECODE,
    ),
    Capture(
        "dicom-find-move",
        "dicom/find-move.pcap",
        make_dicom_find_move,
        "DCMTK findscu + movescu (study root) -> Orthanc; its C-STORE sub-operations to "
        "storescp CLINWS31",
        DICOM_DECODE,
    ),
    Capture(
        "dicom-pynetdicom-store",
        "dicom/pynetdicom-store.pcap",
        make_dicom_pynetdicom,
        "pynetdicom C-ECHO, C-STORE explicit + implicit VR -> DCMTK storescp at :11113",
        DICOM_DECODE,
    ),
    Capture(
        "dicom-rejected",
        "dicom/rejected.pcap",
        make_dicom_rejected,
        "echoscu -> Orthanc with a wrong called AE (A-ASSOCIATE-RJ); pynetdicom A-ABORT",
        DICOM_DECODE,
    ),
    Capture(
        "dicom-bulk-store",
        "dicom/bulk-store.pcap",
        make_dicom_bulk,
        "DCMTK storescu -> Orthanc: one CT with 288 KiB of pixel data (384x384x16 bit)",
        DICOM_DECODE,
    ),
    Capture(
        "dicom-tls-store",
        "dicom/tls-store.pcap",
        make_dicom_tls,
        "DCMTK storescu CT01 -> storescp at pacs01: cleartext :11112, then mutual TLS "
        "(+tls, DICOM over TLS) :2762",
        DICOM_DECODE,
    ),
    Capture(
        "hl7-mllp",
        "hl7/mllp-adt-oru-ack.pcap",
        make_hl7_mllp,
        "python-hl7 MLLPClient -> MLLP server :2575: ADT^A01 2.5, ORM^O01 2.3, ORU^R01 2.5.1 "
        "(OBX-18), ORU^R01 2.7 (PRT-10), ADT^A08 2.8; each ACKed",
        HL7_DECODE,
    ),
    Capture(
        "hl7-nonstandard-port",
        "hl7/nonstandard-port.pcap",
        make_hl7_nonstandard,
        "MLLP on :6661: ADT^A04, then ORU^R01 + ADT^A03 in one write; each ACKed",
        HL7_DECODE,
    ),
    Capture(
        "dicom-modalities",
        "dicom/modalities.pcap",
        make_dicom_modalities,
        "10 modalities of 8 vendors (pynetdicom SCUs with vendor implementation UIDs and "
        "device attributes) each C-STORE one instance to Orthanc; truth in "
        "modalities.truth.yaml",
        DICOM_DECODE,
        extra=("modalities.truth.yaml",),
    ),
)


# --------------------------------------------------------------------------------------------
# Checks and the tshark oracle (expected.json).
# --------------------------------------------------------------------------------------------
def tshark_fields(
    path: Path, display_filter: str, fields: Sequence[str], decode_as: Sequence[str] = ()
) -> list[list[str]]:
    argv = [
        TOOL["tshark"],
        "-r",
        str(path),
        "-n",
        *(a for d in decode_as for a in ("-d", d)),
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=/t",
    ]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def check_span_duplicates(path: Path) -> None:
    rows = tshark_fields(
        path,
        "tcp",
        [
            "ip.src",
            "ip.dst",
            "tcp.srcport",
            "tcp.dstport",
            "tcp.seq_raw",
            "tcp.ack_raw",
            "tcp.flags",
            "tcp.len",
            "ip.id",
            "ip.ttl",
            "eth.src",
        ],
    )
    copies: dict[tuple[str, ...], list[tuple[int, str]]] = defaultdict(list)
    for r in rows:
        copies[tuple(r[:9])].append((int(r[9]), r[10]))
    for key, seen in copies.items():
        ttls = sorted(t for t, _ in seen)
        if len(seen) != 2 or ttls[1] - ttls[0] != 1 or seen[0][1] == seen[1][1]:
            raise LabError(f"{path.name}: packet {key} seen as {seen}, want 2 copies")
    say(f"      {path.name}: {len(copies)} packets, each twice (TTL -1, other MACs)")


DICOM_PDU = {"1": "A-ASSOCIATE-RQ", "2": "A-ASSOCIATE-AC", "3": "A-ASSOCIATE-RJ"}
DICOM_PDU |= {"4": "P-DATA-TF", "5": "A-RELEASE-RQ", "6": "A-RELEASE-RP", "7": "A-ABORT"}


def dicom_oracle(path: Path, decode_as: Sequence[str]) -> dict[str, object]:
    """Per TCP stream (association): peers, AE titles, implementation UIDs/versions as
    tshark's DICOM dissector shows them, and the PDU types in order (repeats collapsed)."""
    fields = ["tcp.stream", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "dicom.pdu.type"]
    fields += ["dicom.assoc.ae.calling", "dicom.assoc.ae.called", "dicom.userinfo.uid"]
    fields += ["dicom.userinfo.version", "dicom.assoc.reject.result"]
    fields += ["dicom.assoc.reject.source", "dicom.assoc.reject.reason"]
    fields += ["dicom.assoc.abort.source", "dicom.pctx.abss.syntax", "dicom.pctx.xfer.syntax"]
    fields += ["_ws.col.Info"]  # last: it may hold commas

    def uids(value: str) -> list[str]:  # "CT Image Storage (1.2.840...),..." -> the UIDs
        return sorted(set(re.findall(r"\(([0-9.]+)\)", value)))

    streams: dict[int, dict[str, object]] = {}
    for row in tshark_fields(path, "dicom.pdu.type", fields, decode_as):
        r = dict(zip(fields, row, strict=False))
        s = streams.setdefault(int(r["tcp.stream"]), {"pdus": [], "dimse": []})
        pdus: list[str] = s["pdus"]  # type: ignore[assignment]
        dimse: list[str] = s["dimse"]  # type: ignore[assignment]
        dimse += re.findall(r"\b(C-[A-Z]+-R(?:Q|SP))\b(?!-)", r.get("_ws.col.Info", ""))
        types = [str(int(t, 0)) for t in r["dicom.pdu.type"].split(",")]  # "0x01" -> "1"
        for t in types:
            name = DICOM_PDU.get(t, t)
            if not pdus or pdus[-1] != name:
                pdus.append(name)
        if "1" in types:
            s["client_ip"], s["server_ip"] = r["ip.src"], r["ip.dst"]
            s["server_port"] = int(r["tcp.dstport"])
            s["calling_ae"] = r["dicom.assoc.ae.calling"].strip()
            s["called_ae"] = r["dicom.assoc.ae.called"].strip()
            s["rq_implementation_class_uid"] = r["dicom.userinfo.uid"]
            s["rq_implementation_version"] = r["dicom.userinfo.version"]
            s["rq_abstract_syntaxes"] = uids(r["dicom.pctx.abss.syntax"])
        if "2" in types:
            s["ac_implementation_class_uid"] = r["dicom.userinfo.uid"]
            s["ac_implementation_version"] = r["dicom.userinfo.version"]
            s["ac_transfer_syntaxes"] = uids(r["dicom.pctx.xfer.syntax"])
        if "3" in types:
            s["reject"] = {
                k: int(r[f"dicom.assoc.reject.{k}"]) for k in ("result", "source", "reason")
            }
        if "7" in types:
            s["abort_source"] = int(r["dicom.assoc.abort.source"])
    return {"associations": [streams[k] for k in sorted(streams)]}


def hl7_oracle(path: Path, decode_as: Sequence[str]) -> dict[str, object]:
    """Every HL7 message tshark decodes: peers, message type and event (MSH-9)."""
    fields = ["frame.number", "ip.src", "ip.dst", "tcp.dstport"]
    fields += ["hl7.message.type", "hl7.event.type"]
    messages = []
    for row in tshark_fields(path, "hl7", fields, decode_as):
        frame, src, dst, dport, mtypes, events = row + [""] * (len(fields) - len(row))
        for mtype, event in zip(mtypes.split(","), events.split(","), strict=False):
            messages.append(
                {
                    "frame": int(frame),
                    "src_ip": src,
                    "dst_ip": dst,
                    "dst_port": int(dport),
                    "message_type": mtype,
                    "event": event,
                }
            )
    return {"messages": messages}


def capinfos(path: Path, flag: str) -> str:
    out = subprocess.run(
        [TOOL["capinfos"], "-M", flag, str(path)], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().splitlines()[-1].split(":", 1)[1].strip()


def interface_count(path: Path) -> int:
    out = subprocess.run(
        [TOOL["capinfos"], "-I", str(path)], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"Number of interfaces in file: (\d+)", out)
    return int(m.group(1)) if m else 1


def count_conversations(path: Path, proto: str) -> int:
    # tshark 4.0's SNMP dissector sets up conversations of its own, so "-z conv,udp" splits an
    # SNMP request and its response into two conversations; counted without it, a UDP
    # conversation is the 5-tuple, as medmon's flows are.
    out = subprocess.run(
        [
            TOOL["tshark"],
            "-r",
            str(path),
            "-n",
            "--disable-protocol",
            "snmp",
            "-q",
            "-z",
            f"conv,{proto}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum("<->" in line for line in out.splitlines())


def oracle(path: Path) -> dict[str, object]:
    """What tshark says about one capture; tests compare medmon's results with it."""
    syns = tshark_fields(
        path, "tcp.flags.syn == 1 && tcp.flags.ack == 0", ["ip.src", "ip.dst", "tcp.dstport"]
    )
    pairs = sorted(
        {(c, s, int(p)) for c, s, p in syns},
        key=lambda t: (tuple(map(int, t[0].split("."))), tuple(map(int, t[1].split("."))), t[2]),
    )
    return {
        "frames": int(capinfos(path, "-c")),
        "file_type": capinfos(path, "-t"),
        "encapsulation": capinfos(path, "-E"),
        "interfaces": interface_count(path),
        "tcp_conversations": count_conversations(path, "tcp"),
        "udp_conversations": count_conversations(path, "udp"),
        "tcp_client_server": [
            {"client_ip": c, "server_ip": s, "server_port": p, "proto": "tcp"} for c, s, p in pairs
        ],
    }


def write_expected(out_dir: Path, versions: dict[str, str], made: Sequence[Capture]) -> list[Path]:
    """Write <dir>/expected.json for every directory that this run made a capture in, from
    all captures of CAPTURES in it (expected.json of the other directories stays as it is)."""
    dirs = {(out_dir / c.path).parent for c in made}
    tshark_version = subprocess.run(
        [TOOL["tshark"], "--version"], capture_output=True, text=True
    ).stdout.splitlines()[0]
    by_dir: dict[Path, dict[str, object]] = defaultdict(dict)
    for c in CAPTURES:
        path = out_dir / c.path
        if path.exists() and path.parent in dirs:
            facts = oracle(path)
            if c.path.startswith("dicom/"):
                facts["dicom"] = dicom_oracle(path, c.decode_as)
            elif c.path.startswith("hl7/"):
                facts["hl7"] = hl7_oracle(path, c.decode_as)
            for name, display_filter, fields in c.facts:
                facts[name] = [
                    {f: v for f, v in zip(fields, row, strict=False) if v}
                    for row in tshark_fields(path, display_filter, fields, c.decode_as)
                ]
            by_dir[path.parent][path.name] = facts
    written = []
    for d, facts in by_dir.items():
        generators = dict(versions)
        generators.update({k: protocol_versions()[k] for k in DIR_GENERATORS.get(d.name, ())})
        doc = {
            "_generated": "by pcaps/make_captures.py from tshark/capinfos; do not edit",
            "_oracle": tshark_version,
            "_generators": generators,
            "captures": dict(sorted(facts.items())),
        }
        if d.name in DIR_DECODE_NOTE:
            doc["_decode_as"] = DIR_DECODE_NOTE[d.name]
        target = d / "expected.json"
        target.write_text(json.dumps(doc, indent=2) + "\n")
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# Setup, cleanup, main.
# --------------------------------------------------------------------------------------------
# Generator versions beyond tool_versions() that a directory's expected.json lists: those of
# the programs its captures use.
DIR_GENERATORS: dict[str, tuple[str, ...]] = {
    "generic": (
        "samba",
        "net-snmp",
        "busybox",
        "isc-dhclient",
        "vsftpd",
        "inetutils",
        "python-zeroconf",
        "ssdpy",
        "dcmtk",  # generic/hostile: storescp, pynetdicom, pydicom, python-hl7
        "pynetdicom",
        "pydicom",
        "python-hl7",
    ),
    "dicom": ("dcmtk", "orthanc", "pynetdicom", "pydicom"),
    "hl7": ("python-hl7",),
}
DIR_DECODE_NOTE: dict[str, str] = {
    "dicom": "tshark " + " ".join(f"-d {d}" for d in DICOM_DECODE),
    "hl7": "tshark " + " ".join(f"-d {d}" for d in HL7_DECODE),
}


def protocol_versions() -> dict[str, str]:
    def first(argv: list[str], pattern: str) -> str:
        res = subprocess.run(argv, capture_output=True, text=True)
        m = re.search(pattern, res.stdout + res.stderr)
        return m.group(1) if m else "?"

    def pip(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return {
        "dcmtk": first([TOOL["storescp"], "--version"], r"storescp v(\S+)"),
        "orthanc": first([TOOL["Orthanc"], "--version"], r"Orthanc (\S+)"),
        "pynetdicom": pip("pynetdicom"),
        "pydicom": pip("pydicom"),
        "python-hl7": pip("hl7"),
        "samba": first([TOOL["smbd"], "--version"], r"Version (\S+)"),
        "net-snmp": first([TOOL["snmpget"], "--version"], r"NET-SNMP version: (\S+)"),
        "busybox": first([TOOL["busybox"]], r"BusyBox v(\S+)"),
        "isc-dhclient": first([TOOL["dhclient"], "--version"], r"isc-dhclient-(\S+)"),
        # vsftpd -v writes its version to file descriptor 0.
        "vsftpd": first(["sh", "-c", f"{TOOL['vsftpd']} -v 0>&1"], r"version (\S+)"),
        "inetutils": first([TOOL["telnetd"], "--version"], r"GNU inetutils\) (\S+)"),
        "python-zeroconf": pip("zeroconf"),
        "ssdpy": pip("ssdpy"),
    }


def find_tools() -> None:
    # The Debian programs first: pip's pynetdicom also installs a `storescp` (on PATH in a
    # virtualenv or pyenv) that is not DCMTK's.
    path = "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")
    for prog, package in TOOLS.items():
        found = shutil.which(prog, path=path)
        if not found:
            sys.exit(f"make_captures.py: '{prog}' not found; install the Debian package {package}")
        TOOL[prog] = found
    for module, package in PY_MODULES.items():
        if importlib.util.find_spec(module) is None:
            sys.exit(
                f"make_captures.py: Python module '{module}' not found for {sys.executable}; "
                f"pip install {package}"
            )


def tool_versions() -> dict[str, str]:
    def first(argv: list[str], pattern: str) -> str:
        res = subprocess.run(argv, capture_output=True, text=True)
        m = re.search(pattern, res.stdout + res.stderr)
        return m.group(1) if m else "?"

    return {
        "kernel": platform.release(),
        "tcpdump": first([TOOL["tcpdump"], "--version"], r"tcpdump version (\S+)"),
        "libpcap": first([TOOL["tcpdump"], "--version"], r"libpcap version (\S+)"),
        "dumpcap": first([TOOL["dumpcap"], "--version"], r"Dumpcap \(Wireshark\) (\S+)"),
        "curl": first([TOOL["curl"], "--version"], r"curl (\S+)"),
        "openssl": first([TOOL["openssl"], "version"], r"OpenSSL (\S+)"),
        "openssh": first([TOOL["ssh"], "-V"], r"(OpenSSH_[^,\s]+(?: [^,\s]+)?)"),
        "dnsmasq": first([TOOL["dnsmasq"], "--version"], r"Dnsmasq version (\S+)"),
        "dig": first([TOOL["dig"], "-v"], r"DiG (\S+)"),
        "python": platform.python_version(),
    }


def cleanup_leftovers() -> None:
    """Remove mm-* namespaces (and the processes in them) left by an earlier run."""
    listing = subprocess.run([TOOL["ip"], "netns", "list"], capture_output=True, text=True)
    for line in listing.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        pids = subprocess.run(
            [TOOL["ip"], "netns", "pids", name], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run([TOOL["ip"], "netns", "del", name], capture_output=True)
        say(f"    removed namespace {name}" + (f" (killed PIDs {' '.join(pids)})" if pids else ""))
    etc_netns = Path("/etc/netns")
    if etc_netns.is_dir():
        for d in etc_netns.glob(PREFIX + "*"):
            shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            etc_netns.rmdir()  # only if now empty


def teardown(lab: Lab | None) -> None:
    say("== cleaning up")
    if lab is not None:
        lab.stop_all()
    cleanup_leftovers()  # also ends what our servers forked (dnsmasq TCP, sshd sessions)


def publish(src: Path, dest: Path) -> None:
    if not dest.parent.exists():
        dest.parent.mkdir(parents=True)
        chown_to_invoker(dest.parent)
    tmp = dest.with_name("." + dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    chown_to_invoker(dest)


def chown_to_invoker(path: Path) -> None:
    """Under sudo, hand what we write to the user who ran sudo."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid:
        with contextlib.suppress(OSError):
            os.chown(path, int(uid), int(gid))


def on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="directory to write captures into (default: the script's pcaps/)",
    )
    ap.add_argument("--list", action="store_true", help="print the captures and exit")
    # Internal: the pynetdicom / python-hl7 programs run inside a namespace (see helper_main).
    ap.add_argument("--helper", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument(
        "--only",
        action="append",
        choices=[c.name for c in CAPTURES],
        help="make only this capture (repeatable); expected.json is rewritten",
    )
    args = ap.parse_args(argv)

    if args.helper:
        return helper_main(args.helper)
    if args.list:
        for c in CAPTURES:
            print(f"{c.name:22} {c.path:38} {c.purpose}")
        return 0
    if os.geteuid() != 0:
        sys.exit("make_captures.py: must run as root (sudo python3 pcaps/make_captures.py)")
    find_tools()
    chosen = [c for c in CAPTURES if not args.only or c.name in args.only]
    out_dir: Path = args.out.resolve()

    lock = open("/run/mm-make-captures.lock", "w")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit("make_captures.py: another run is in progress (/run/mm-make-captures.lock)")

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    versions = tool_versions()
    say("== tools: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    say(f"== removing leftovers of earlier runs ({PREFIX}*)")
    cleanup_leftovers()
    tmp = Path(tempfile.mkdtemp(prefix="mm-captures-"))
    tmp.chmod(0o755)
    lab: Lab | None = None
    try:
        lab = Lab(tmp)
        lab.build()
        start_servers(lab)
        for c in chosen:
            say(f"== {c.path}: {c.purpose}")
            raw = tmp / "captures" / c.path
            raw.parent.mkdir(parents=True, exist_ok=True)
            c.make(lab, raw)
            frames = int(capinfos(raw, "-c"))
            if frames == 0:
                raise LabError(f"{c.path}: no packets captured")
            publish(raw, out_dir / c.path)
            for name in c.extra:
                publish(raw.with_name(name), (out_dir / c.path).with_name(name))
            say(f"      {c.path}: {frames} frames, {raw.stat().st_size} bytes")
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except (LabError, subprocess.SubprocessError, OSError) as e:
        print(f"make_captures.py: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        teardown(lab)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    say("== writing expected.json (tshark oracle)")
    for path in write_expected(out_dir, versions, chosen):
        chown_to_invoker(path)
        say(f"    {path}")
    say(f"== done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
