"""The communication graph (monitor.graph, monitor.register.graph, medmon graph): built from a
register of real sample captures, exported in every format, read back and compared."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from click.testing import CliRunner

from monitor import api, api_graph
from monitor.cli import cli
from monitor.graph import FORMATS, build_graph, dot_quote, to_dot, write_graph
from monitor.register import open_register
from monitor.register.graph import graph_rows

from conftest import PCAPS, ROOT, chromium

CAPTURES = [
    PCAPS / "generic" / "http.pcap",
    PCAPS / "dicom" / "modalities.pcap",
    PCAPS / "hl7" / "mllp-adt-oru-ack.pcap",
]
HOSTILE = '"><script>x</script>{}\\ "a" [b]; -> }'
#: The modality whose host name the hostile tests replace (modalities.pcap: a GE CT).
CT_IP = "10.20.0.21"


@pytest.fixture(scope="module")
def register(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = str(tmp_path_factory.mktemp("graph") / "graph.duckdb")
    api.replay([str(p) for p in CAPTURES], db=db)
    return db


@pytest.fixture
def hostile_register(register: str, tmp_path: Path) -> str:
    db = tmp_path / "hostile.duckdb"
    shutil.copy(register, db)
    with open_register(db) as reg:
        reg.con.execute("UPDATE assets SET hostname = ? WHERE ip = ?", [HOSTILE, CT_IP])
    return str(db)


def _sql(db: str, sql: str) -> list[tuple[Any, ...]]:
    with open_register(db, read_only=True) as reg:
        return reg.query(sql)[1]


def _edge_set(g: nx.MultiDiGraph) -> set[tuple[str, str, str]]:
    return {(str(u), str(v), str(k)) for u, v, k in g.edges(keys=True)}


# ---------------------------------------------------------------- building


def test_graph_matches_the_register(register: str) -> None:
    g = api_graph.build(db=register)
    ((n_assets,),) = _sql(register, "SELECT count(*) FROM assets")
    groups, packets, nbytes, nflows = _sql(
        register,
        """
        SELECT (SELECT count(*) FROM (SELECT DISTINCT client_ip, server_ip, proto, app,
                                             server_port FROM flows)),
               sum(packets_to_server + packets_to_client), sum(bytes_to_server + bytes_to_client),
               count(*)
        FROM flows
        """,
    )[0]
    # Each device has one address in these captures: address groups are device groups.
    assert g.number_of_nodes() == n_assets == 18
    assert g.number_of_edges() == groups == 14
    edges = list(g.edges(keys=True, data=True))
    assert sum(d["packets"] for *_, d in edges) == packets
    assert sum(d["bytes"] for *_, d in edges) == nbytes
    assert sum(d["flows"] for *_, d in edges) == nflows == 19
    assert not any(d["external"] for _, d in g.nodes(data=True))
    # Ten modalities store to the PACS on 4242, over one association each.
    pacs = "ip:10.30.0.10"
    into_pacs = list(g.in_edges(pacs, keys=True, data=True))
    assert len(into_pacs) == 10
    assert {k for _, _, k, _ in into_pacs} == {"tcp/dicom/4242"}
    ct = g.nodes["mac:02:00:0a:14:00:15"]
    assert (ct["hostname"], ct["vendor"], ct["device_class"], ct["ip"]) == (
        "REVCT01", "GE Healthcare", "ct", CT_IP,
    )  # fmt: skip
    assert ct["addresses"] == [CT_IP] and "mac" in ct and "zone" not in ct
    e = g.edges["mac:02:00:0a:14:00:15", pacs, "tcp/dicom/4242"]
    ((first, last, pk, by),) = _sql(
        register,
        f"""SELECT min(first_seen), max(last_seen), sum(packets_to_server + packets_to_client),
                   sum(bytes_to_server + bytes_to_client)
            FROM flows WHERE client_ip = '{CT_IP}' AND server_ip = '10.30.0.10'""",
    )
    assert e["first_seen"] == first.isoformat() and e["last_seen"] == last.isoformat()
    assert (e["packets"], e["bytes"], e["flows"]) == (pk, by, 1)
    assert (e["app"], e["proto"], e["server_port"]) == ("dicom", "tcp", 4242)
    assert e["client_ips"] == [CT_IP] and e["server_ips"] == ["10.30.0.10"]
    assert e["violation"] is False and e["rule"] == ""
    # Two HTTP flows from 10.20.0.11 to the web server aggregate into one edge.
    web = g.edges["ip:10.20.0.11", "mac:02:00:0a:0a:00:50", "tcp/http/80"]
    assert web["flows"] == 2


def _copy_with_flows(register: str, tmp_path: Path, sql: str, params: list[Any]) -> str:
    db = tmp_path / "more.duckdb"
    shutil.copy(register, db)
    with open_register(db) as reg:
        reg.con.execute(sql, params)
    return str(db)


INSERT_FLOW = """
    INSERT INTO flows (run_id, flow_uid, first_seen, last_seen, proto, client_ip, client_port,
                       server_ip, server_port, app, packets_to_server, packets_to_client,
                       bytes_to_server, bytes_to_client)
    VALUES (1, ?, TIMESTAMPTZ '2026-01-01 00:00:00+00', TIMESTAMPTZ '2026-01-01 00:00:01+00',
            ?, ?, 50000, ?, ?, ?, 3, 2, 300, 200)
"""


def test_external_addresses_become_external_nodes(register: str, tmp_path: Path) -> None:
    db = tmp_path / "ext.duckdb"
    shutil.copy(register, db)
    with open_register(db) as reg:
        reg.con.executemany(
            INSERT_FLOW,
            [
                ["x1", "tcp", CT_IP, "203.0.113.9", 443, "tls"],
                ["x2", "tcp", CT_IP, "203.0.113.9", 443, "tls"],
                ["x3", "udp", "198.51.100.7", "10.30.0.10", 53, None],
            ],
        )
    g = api_graph.build(db=str(db))
    ext = g.nodes["ip:203.0.113.9"]
    assert ext == {"ip": "203.0.113.9", "external": True, "label": "203.0.113.9"}
    assert g.nodes["ip:198.51.100.7"]["external"] is True
    e = g.edges["mac:02:00:0a:14:00:15", "ip:203.0.113.9", "tcp/tls/443"]
    assert (e["flows"], e["packets"], e["bytes"]) == (2, 10, 1000)
    assert g.edges["ip:198.51.100.7", "ip:10.30.0.10", "udp/-/53"]["app"] == ""
    assert g.number_of_nodes() == 20 and g.number_of_edges() == 16


def test_an_address_maps_to_the_device_through_all_its_addresses(
    register: str, tmp_path: Path
) -> None:
    """A device renumbered by DHCP keeps its old address in ``addresses``: flows from either
    address are its own."""
    db = tmp_path / "renum.duckdb"
    shutil.copy(register, db)
    with open_register(db) as reg:
        reg.con.execute("UPDATE assets SET addresses = ['10.20.0.99', ip] WHERE ip = ?", [CT_IP])
        reg.con.execute(INSERT_FLOW, ["r1", "tcp", "10.20.0.99", "10.30.0.10", 4242, "dicom"])
    g = api_graph.build(db=str(db))
    e = g.edges["mac:02:00:0a:14:00:15", "ip:10.30.0.10", "tcp/dicom/4242"]
    assert e["flows"] == 2 and e["client_ips"] == ["10.20.0.21", "10.20.0.99"]
    assert "ip:10.20.0.99" not in g


def test_zone_of_sets_node_and_edge_zones(register: str) -> None:
    with open_register(register, read_only=True) as reg:
        nodes, edges = graph_rows(reg)

    def zone_of(row: Any) -> str | None:
        ip = row.get("ip") or ""
        return {"10.20": "imaging", "10.30": "pacs"}.get(ip[:5])

    g = build_graph(nodes, edges, zone_of)
    assert g.nodes["ip:10.30.0.10"]["zone"] == "pacs"
    e = g.edges["mac:02:00:0a:14:00:15", "ip:10.30.0.10", "tcp/dicom/4242"]
    assert (e["client_zone"], e["server_zone"]) == ("imaging", "pacs")
    hl7 = g.edges["ip:10.40.0.31", "mac:02:00:0a:0a:00:19", "tcp/hl7/2575"]
    assert "client_zone" not in hl7 and "server_zone" not in hl7
    dot = to_dot(g)
    assert dot.count("subgraph ") == 2
    cluster = re.search(r'subgraph "cluster_pacs" \{\n(.*?)\n  \}', dot, re.S)
    assert cluster is not None and '"ip:10.30.0.10"' in cluster.group(1)


def test_fifty_thousand_flows_aggregate_well_under_a_second(register: str, tmp_path: Path) -> None:
    db = tmp_path / "big.duckdb"
    shutil.copy(register, db)
    with open_register(db) as reg:
        # 4,000 devices, each with two addresses, and 50,000 flows between them.
        reg.con.execute(
            """
            INSERT INTO assets (asset_id, ip, addresses)
            SELECT 'ip:10.50.' || (i // 250) || '.' || (i % 250),
                   '10.50.' || (i // 250) || '.' || (i % 250),
                   ['10.60.' || (i // 250) || '.' || (i % 250),
                    '10.50.' || (i // 250) || '.' || (i % 250)]
            FROM range(4000) t(i)
            """
        )
        reg.con.execute(
            """
            INSERT INTO flows (run_id, flow_uid, first_seen, last_seen, proto, client_ip,
                               client_port, server_ip, server_port, app, packets_to_server,
                               packets_to_client, bytes_to_server, bytes_to_client)
            SELECT 1, 'big' || i, TIMESTAMPTZ '2026-01-01 00:00:00+00',
                   TIMESTAMPTZ '2026-01-01 00:00:01+00', 'tcp',
                   (CASE WHEN i % 2 = 0 THEN '10.50.' ELSE '10.60.' END)
                       || ((i % 4000) // 250) || '.' || (i % 250),
                   40000 + i % 20000,
                   '10.50.' || ((i * 7 % 4000) // 250) || '.' || (i * 7 % 250),
                   [104, 443, 2575, 80][i % 4 + 1], NULL, 1, 1, 60, 60
            FROM range(50000) t(i)
            """
        )
        started = time.perf_counter()
        nodes, edges = graph_rows(reg)
        seconds = time.perf_counter() - started
    assert len(nodes) == 4018
    assert sum(e["flows"] for e in edges) == 50000 + 19
    # Every address, old (10.60) or current (10.50), is a device's: no external node.
    assert not any(e["client_external"] or e["server_external"] for e in edges)
    assert seconds < 0.5, f"{seconds:.2f} s of SQL for 50,000 flows"
    g = build_graph(nodes, edges)
    assert g.number_of_nodes() == 4018


# ---------------------------------------------------------------- exports


@pytest.fixture(scope="module")
def built(register: str) -> nx.MultiDiGraph:
    return api_graph.build(db=register)


def _compare_read_back(built: nx.MultiDiGraph, back: nx.MultiDiGraph) -> None:
    assert set(map(str, back.nodes)) == set(built.nodes)
    assert _edge_set(back) == _edge_set(built)
    for u, v, k, d in built.edges(keys=True, data=True):
        r = back.edges[u, v, k]
        for name in ("app", "proto", "server_port", "packets", "bytes", "flows", "first_seen",
                     "last_seen", "violation", "rule"):  # fmt: skip
            assert r[name] == d[name], (u, v, k, name)
        assert r["client_ips"] == ",".join(d["client_ips"])
    for n, d in built.nodes(data=True):
        r = back.nodes[n]
        for name in ("ip", "hostname", "vendor", "model", "device_class", "external"):
            assert r.get(name) == d.get(name), (n, name)
        assert r["addresses"] == ",".join(d["addresses"])


def test_graphml_round_trip(built: nx.MultiDiGraph, tmp_path: Path) -> None:
    path = tmp_path / "g.graphml"
    write_graph(built, path, "graphml")
    back = nx.read_graphml(path, force_multigraph=True)
    assert back.is_directed() and back.is_multigraph()
    _compare_read_back(built, back)


def test_gexf_round_trip(built: nx.MultiDiGraph, tmp_path: Path) -> None:
    path = tmp_path / "g.gexf"
    write_graph(built, path, "gexf")
    back = nx.read_gexf(path)
    assert back.is_directed()
    # The edge key is its GEXF label (networkx reads a graph without parallel edges as a
    # DiGraph, without the keys).
    keyed = nx.MultiDiGraph()
    keyed.add_nodes_from(back.nodes(data=True))
    for u, v, d in back.edges(data=True):
        keyed.add_edge(u, v, key=d["label"], **d)
    _compare_read_back(built, keyed)


def test_json_round_trip(built: nx.MultiDiGraph, tmp_path: Path, register: str) -> None:
    path = tmp_path / "g.json"
    write_graph(built, path, "json")
    data = json.loads(path.read_text())
    assert [n["id"] for n in data["nodes"]] == sorted(built.nodes)
    assert data["edges"] == sorted(
        data["edges"], key=lambda e: (e["source"], e["target"], e["key"])
    )
    back = nx.node_link_graph(data, edges="edges")
    assert back.is_directed() and back.is_multigraph()
    assert nx.utils.graphs_equal(back, built)
    ((first,),) = _sql(register, "SELECT min(first_seen) FROM flows")
    assert min(e["first_seen"] for e in data["edges"]) == first.isoformat()


_DOT_NODE = re.compile(r'^\s*("(?:[^"\\]|\\.)*") \[label=', re.M)
_DOT_EDGE = re.compile(r'^\s*("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*") \[', re.M)


def test_dot_has_every_node_and_edge(built: nx.MultiDiGraph) -> None:
    dot = to_dot(built)
    assert len(_DOT_NODE.findall(dot)) == built.number_of_nodes()
    edges = _DOT_EDGE.findall(dot)
    assert len(edges) == built.number_of_edges()
    assert ('"mac:02:00:0a:14:00:15"', '"ip:10.30.0.10"') in edges
    # Device classes as shapes: modalities boxes, the PACS a cylinder.
    assert re.search(r'"ip:10.30.0.10" \[label="[^"]*", shape=cylinder', dot)
    assert re.search(r'"mac:02:00:0a:14:00:15" \[label="[^"]*", shape=box,', dot)


def test_dot_is_read_by_graphviz(built: nx.MultiDiGraph) -> None:
    dot_program = shutil.which("dot")
    if dot_program is None:
        pytest.skip("Graphviz is not installed (apt-get install graphviz)")
    out = subprocess.run(
        [dot_program, "-Tjson"], input=to_dot(built), capture_output=True, text=True, check=True
    )
    drawn = json.loads(out.stdout)
    names = {o["name"] for o in drawn["objects"] if "nodes" not in o}
    assert names == set(built.nodes)
    assert len(drawn["edges"]) == built.number_of_edges()


def test_violation_edges_are_red() -> None:
    g = build_graph(
        [{"asset_id": "ip:10.0.0.1", "ip": "10.0.0.1"}, {"asset_id": "ip:10.0.0.2"}],
        [
            {"client": "ip:10.0.0.1", "server": "ip:10.0.0.2", "proto": "tcp", "app": "dicom",
             "server_port": 104, "violation": True, "rule": "imaging-no-internet"},
            {"client": "ip:10.0.0.1", "server": "ip:10.0.0.2", "proto": "tcp", "app": "tls",
             "server_port": 443},
        ],
    )  # fmt: skip
    dot = to_dot(g)
    red = [line for line in dot.splitlines() if "#d62728" in line]
    assert len(red) == 1 and 'label="dicom/104\\nimaging-no-internet"' in red[0]
    assert g.edges["ip:10.0.0.1", "ip:10.0.0.2", "tcp/tls/443"]["violation"] is False


def test_dot_quote_escapes_what_graphviz_interprets() -> None:
    assert dot_quote('a"b') == '"a\\"b"'
    assert dot_quote("a\\Nb") == '"a\\\\Nb"'
    assert dot_quote("trailing\\") == '"trailing\\\\"'
    assert dot_quote("two\nlines\x00\x07") == '"two\\nlines"'


def test_hostile_hostname_is_escaped_in_dot(hostile_register: str) -> None:
    dot = to_dot(api_graph.build(db=hostile_register))
    line = next(x for x in dot.splitlines() if x.lstrip().startswith('"mac:02:00:0a:14:00:15"'))
    escaped = HOSTILE.replace("\\", "\\\\").replace('"', '\\"')
    assert f'[label="{escaped}\\n{CT_IP}\\n' in line
    # Still one node statement per node, one edge per edge: nothing broke out of its quotes.
    g = api_graph.build(db=hostile_register)
    assert len(_DOT_NODE.findall(dot)) == g.number_of_nodes()
    assert len(_DOT_EDGE.findall(dot)) == g.number_of_edges()
    dot_program = shutil.which("dot")
    if dot_program is not None:
        out = subprocess.run(
            [dot_program, "-Tjson"], input=dot, capture_output=True, text=True, check=True
        )
        drawn = json.loads(out.stdout)
        labels = {o["name"]: o["label"] for o in drawn["objects"] if "label" in o}
        assert labels["mac:02:00:0a:14:00:15"].startswith(HOSTILE.replace("\\", "\\\\"))


def test_hostile_hostname_survives_graphml_and_gexf(hostile_register: str, tmp_path: Path) -> None:
    g = api_graph.build(db=hostile_register)
    write_graph(g, tmp_path / "h.graphml", "graphml")
    write_graph(g, tmp_path / "h.gexf", "gexf")
    assert "<script>" not in (tmp_path / "h.graphml").read_text()
    back = nx.read_graphml(tmp_path / "h.graphml", force_multigraph=True)
    assert back.nodes["mac:02:00:0a:14:00:15"]["hostname"] == HOSTILE
    gexf = nx.read_gexf(tmp_path / "h.gexf")
    assert gexf.nodes["mac:02:00:0a:14:00:15"]["hostname"] == HOSTILE
    assert gexf.nodes["mac:02:00:0a:14:00:15"]["label"] == HOSTILE


def test_svg_drawn_by_graphviz(hostile_register: str, tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed (apt-get install graphviz)")
    path = tmp_path / "g.svg"
    g = api_graph.graph(db=hostile_register, fmt="svg", output=str(path))
    svg = path.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert svg.count('class="node"') == g.number_of_nodes()
    assert svg.count('class="edge"') == g.number_of_edges()
    assert "<script>" not in svg and "&lt;script&gt;x&lt;/script&gt;" in svg


def test_svg_without_graphviz_is_one_line(
    register: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    result = CliRunner().invoke(
        cli, ["graph", "--db", register, "--format", "svg", "-o", str(tmp_path / "g.svg")]
    )
    assert result.exit_code == 2
    assert result.output == (
        "medmon: error: svg needs Graphviz's 'dot' program: install graphviz "
        "(apt-get install graphviz)\n"
    )
    assert not (tmp_path / "g.svg").exists()


# ---------------------------------------------------------------- CLI


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "svg"])
def test_cli_writes_each_format(register: str, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"g.{fmt}"
    result = CliRunner().invoke(cli, ["graph", "--db", register, "--format", fmt, "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == ""
    to_stdout = CliRunner().invoke(cli, ["graph", "--db", register, "--format", fmt, "-o", "-"])
    assert to_stdout.exit_code == 0
    if fmt == "gexf":  # carries the day it was written
        strip = re.compile(r'lastmodifieddate="[^"]*"')
        assert strip.sub("", to_stdout.output) == strip.sub("", path.read_text())
    else:
        assert to_stdout.output == path.read_text()


def test_cli_bad_output_is_one_line(register: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["graph", "--db", register, "-o", str(tmp_path / "missing" / "g.graphml")]
    )
    assert result.exit_code == 2
    assert result.output == (
        f"medmon: error: {tmp_path / 'missing' / 'g.graphml'}: directory "
        f"{tmp_path / 'missing'} does not exist\n"
    )


def test_a_policy_gives_zones_and_marks_the_denied_edges(register: str) -> None:
    """``medmon graph --policy``: every edge carries the rule (or default) that decides it, a
    deny is a violation, and every device is in the zone the policy gives its address."""
    from monitor.policy import decide, load_policy, zone_of
    from monitor.resources import data_dir

    policy_file = data_dir("policies") / "default.yaml"
    g = api_graph.build(db=register, policy=str(policy_file))
    policy = load_policy(policy_file)
    assert g.number_of_edges() > 0
    for _c, _s, attrs in g.edges(data=True):
        assert attrs["rule"]
        flow = {
            "proto": attrs["proto"], "client_ip": attrs["client_ips"][0],
            "server_ip": attrs["server_ips"][0], "server_port": attrs["server_port"],
            "app": attrs.get("app") or None,
        }  # fmt: skip
        decision = decide(policy, flow, g.nodes[_c], g.nodes[_s])
        assert attrs["violation"] == (decision.action == "deny")
        assert attrs["rule"] == decision.rule_id
    assert {a["violation"] for _c, _s, a in g.edges(data=True)} == {True, False}
    for node, attrs in g.nodes(data=True):
        if attrs.get("ip"):
            assert attrs["zone"] == zone_of(policy, attrs["ip"], attrs.get("vlan"), attrs), node
    # Broadcast and unspecified addresses are no devices.
    assert not [n for n in g.nodes if n in ("ip:0.0.0.0", "ip:255.255.255.255")]
    code = CliRunner().invoke(cli, ["graph", "--db", register, "--format", "dot", "-o", "-",
                                    "--policy", str(policy_file)])  # fmt: skip
    assert code.exit_code == 0 and 'color="#d62728"' in code.stdout


#: Would mark the page if a browser ran it: it must stay text.
HOSTILE_HTML = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"></script>"


def test_the_html_view_renders_offline_in_a_browser_and_runs_no_injected_script(
    register: str, tmp_path: Path
) -> None:
    """``medmon graph --format html``: one file, no network; opened in headless Chromium it
    builds its view (a node per device, the violation edges marked), and a host name from the
    network is text, never markup or script."""
    if shutil.which("dot") is None:
        pytest.skip("graphviz is not installed")
    browser = chromium()
    db = tmp_path / "hostile.duckdb"
    shutil.copy(register, db)
    with open_register(db) as reg:
        reg.con.execute("UPDATE assets SET hostname = ? WHERE ip = ?", [HOSTILE_HTML, CT_IP])
    page = tmp_path / "graph.html"
    policy = str(ROOT / "policies" / "default.yaml")
    result = CliRunner().invoke(
        cli, ["graph", "--db", str(db), "--format", "html", "-o", str(page), "--policy", policy]
    )
    assert result.exit_code == 0, result.stderr
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "")  # nothing to fetch
    assert "https://" not in text
    g = api_graph.build(db=str(db), policy=policy)
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()]
    dom = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
    assert 'data-medmon-ready="1"' in dom
    assert dom.count("data-medmon-node=") == g.number_of_nodes()
    violations = sum(1 for _c, _s, a in g.edges(data=True) if a["violation"])
    assert violations and 'class="edge violation"' in dom
    assert 'data-pwned="1"' not in dom  # the host name's markup never ran ...
    assert "<img" not in dom and "&lt;img src=x" in dom  # ... it is text in the drawing
    shot = tmp_path / "graph.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1400,900", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
