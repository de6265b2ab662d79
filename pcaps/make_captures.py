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
                                mm-ssh 10.10.0.22
      br-img   10.20.0.1/24  -- mm-ct 10.20.0.11          (imaging modalities)
      br-pacs  10.30.0.1/24  -- mm-pacs 10.30.0.10
      br-clin  10.40.0.1/24  -- mm-clin 10.40.0.31        (clinical workstations)

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
    Host("ct", "img", "10.20.0.11", "ct01", "CT modality"),
    Host("pacs", "pacs", "10.30.0.10", "pacs01", "PACS archive"),
    Host("clin", "clin", "10.40.0.31", "clin-ws31", "clinical workstation"),
)

HOST = {h.name: h for h in HOSTS}
SUBNET = {s.name: s for s in SUBNETS}
DNS_SERVER = HOST["dns"].ip
WEB = HOST["web"]
SSH_SERVER = HOST["ssh"].ip

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
            self.run(
                [
                    "ip",
                    "-n",
                    ROUTER,
                    "link",
                    "add",
                    port,
                    "address",
                    mac(h.ip, 1),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "address",
                    mac(h.ip),
                    "netns",
                    name,
                ]
            )
            self.run(["ip", "-n", ROUTER, "link", "set", port, "master", f"br-{s.name}", "up"])
            self.run(["ip", "-n", name, "addr", "add", f"{h.ip}/{prefixlen(s)}", "dev", "eth0"])
            self.run(["ip", "-n", name, "link", "set", "eth0", "up"])
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


@dataclass(frozen=True)
class Capture:
    name: str  # for --only
    path: str  # relative to --out
    make: Callable[[Lab, Path], None]
    purpose: str


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
)


# --------------------------------------------------------------------------------------------
# Checks and the tshark oracle (expected.json).
# --------------------------------------------------------------------------------------------
def tshark_fields(path: Path, display_filter: str, fields: Sequence[str]) -> list[list[str]]:
    argv = [
        TOOL["tshark"],
        "-r",
        str(path),
        "-n",
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
    out = subprocess.run(
        [TOOL["tshark"], "-r", str(path), "-n", "-q", "-z", f"conv,{proto}"],
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


def write_expected(out_dir: Path, versions: dict[str, str]) -> list[Path]:
    """Write <dir>/expected.json for every directory holding captures from CAPTURES."""
    tshark_version = subprocess.run(
        [TOOL["tshark"], "--version"], capture_output=True, text=True
    ).stdout.splitlines()[0]
    by_dir: dict[Path, dict[str, object]] = defaultdict(dict)
    for c in CAPTURES:
        path = out_dir / c.path
        if path.exists():
            by_dir[path.parent][path.name] = oracle(path)
    written = []
    for d, facts in by_dir.items():
        doc = {
            "_generated": "by pcaps/make_captures.py from tshark/capinfos; do not edit",
            "_oracle": tshark_version,
            "_generators": versions,
            "captures": dict(sorted(facts.items())),
        }
        target = d / "expected.json"
        target.write_text(json.dumps(doc, indent=2) + "\n")
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# Setup, cleanup, main.
# --------------------------------------------------------------------------------------------
def find_tools() -> None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
    for prog, package in TOOLS.items():
        found = shutil.which(prog, path=path)
        if not found:
            sys.exit(f"make_captures.py: '{prog}' not found; install the Debian package {package}")
        TOOL[prog] = found


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
    ap.add_argument(
        "--only",
        action="append",
        choices=[c.name for c in CAPTURES],
        help="make only this capture (repeatable); expected.json is rewritten",
    )
    args = ap.parse_args(argv)

    if args.list:
        for c in CAPTURES:
            print(f"{c.name:16} {c.path:32} {c.purpose}")
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
    for path in write_expected(out_dir, versions):
        chown_to_invoker(path)
        say(f"    {path}")
    say(f"== done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
