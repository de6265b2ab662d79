"""The communication graph: devices and the services between them, and its file formats.

:func:`build_graph` turns the plain rows that :mod:`monitor.register.graph` reads from the
register into a networkx ``MultiDiGraph``; :func:`write_graph` writes it as GraphML, GEXF,
node-link JSON, Graphviz DOT or SVG. This module knows nothing of DuckDB (STYLE S2).

Nodes are keyed by asset id (``mac:MAC`` or ``ip:ADDR``; an address of no asset is a node
``ip:ADDR`` with ``external: True``) and carry the asset's fields, without the unknown (None)
ones: GraphML and GEXF cannot hold None. Edges go client -> server, one per (proto, app,
server port), keyed ``proto/app/port`` (``-`` for an unknown app or port), with:

============== =================================================================
app, proto     detected application protocol ('' when none), tcp/udp/...
server_port    the server's port (absent when unknown)
packets, bytes both ways, summed over the flows
flows          how many flows
first_seen     capture time of the first packet (ISO 8601), last_seen of the last
client_ips     the addresses seen at each end (lists; comma-joined in GraphML/GEXF)
server_ips
client_zone    the ends' zones (absent when unknown)
server_zone
violation      a policy stage marks the edge (default False), and names the ``rule``
rule           ('' by default)
============== =================================================================

Everything that comes from the network (host names, AE titles...) is escaped for DOT here and
for XML by networkx.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import networkx as nx

#: The formats :func:`write_graph` writes (all of them text).
FORMATS = ("graphml", "gexf", "dot", "json", "svg", "html")

#: Decides a device's zone from its node row (a policy stage passes one).
ZoneOf = Callable[[Mapping[str, Any]], str | None]


class GraphError(Exception):
    """The graph cannot be written in the asked format. ``str()`` is one line."""


# ---------------------------------------------------------------- building


def _iso(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes without None values, timestamps as ISO strings, lists as lists."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, list | tuple):
            v = [_iso(x) for x in v if x is not None]
        out[k] = _iso(v)
    return out


def edge_key(proto: Any, app: Any, server_port: Any) -> str:
    """An edge's key among the edges between the same two devices: ``proto/app/port``."""
    return f"{proto or '-'}/{app or '-'}/{'-' if server_port is None else server_port}"


def build_graph(
    nodes: Iterable[Mapping[str, Any]],
    edges: Iterable[Mapping[str, Any]],
    zone_of: ZoneOf | None = None,
) -> nx.MultiDiGraph:
    """The communication graph from node rows (``asset_id`` and the asset's fields) and edge
    rows (:func:`monitor.register.graph.graph_edges`).

    ``zone_of(node_row)`` names a device's zone (the policy stage passes one); without it a
    device's zone is its register ``zone`` column. Each edge carries its ends' zones,
    ``violation=False`` and ``rule=''`` until a policy stage marks it (see the module
    docstring for the attributes)."""
    graph = nx.MultiDiGraph(name="medmon")
    for row in nodes:
        attrs = dict(row)
        node = attrs.pop("asset_id")
        if zone_of is not None:
            attrs["zone"] = zone_of(row)
        attrs.setdefault("external", False)
        attrs["label"] = attrs.get("hostname") or attrs.get("ip") or node
        graph.add_node(node, **_clean(attrs))
    for row in edges:
        client, server = row["client"], row["server"]
        for end in (client, server):
            if end not in graph:  # an end without a node row: an address of no asset
                attrs = {"ip": end[3:] if end.startswith("ip:") else None, "external": True}
                if zone_of is not None:
                    attrs["zone"] = zone_of({"asset_id": end, **attrs})
                attrs["label"] = attrs["ip"] or end
                graph.add_node(end, **_clean(attrs))
        attrs = {
            "app": row.get("app") or "",
            "proto": row.get("proto"),
            "server_port": row.get("server_port"),
            "packets": int(row.get("packets") or 0),
            "bytes": int(row.get("bytes") or 0),
            "flows": int(row.get("flows") or 0),
            "first_seen": row.get("first_seen"),
            "last_seen": row.get("last_seen"),
            "client_ips": list(row.get("client_ips") or []),
            "server_ips": list(row.get("server_ips") or []),
            "client_zone": graph.nodes[client].get("zone"),
            "server_zone": graph.nodes[server].get("zone"),
            "violation": bool(row.get("violation", False)),
            "rule": row.get("rule") or "",
        }
        key = edge_key(row.get("proto"), row.get("app"), row.get("server_port"))
        graph.add_edge(client, server, key=key, **_clean(attrs))
    return graph


# ---------------------------------------------------------------- formats


def _flat(graph: nx.MultiDiGraph, *, edge_labels: bool = False) -> nx.MultiDiGraph:
    """A copy that GraphML and GEXF can hold: lists become comma-joined strings. With
    ``edge_labels`` (GEXF, whose readers drop the multigraph key of a graph without parallel
    edges), each edge's key is also its ``label``."""
    flat = nx.MultiDiGraph(name=graph.graph.get("name", "medmon"))

    def scalars(attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: ",".join(str(x) for x in v) if isinstance(v, list | tuple) else v
            for k, v in attrs.items()
            if v is not None
        }

    for node, attrs in graph.nodes(data=True):
        flat.add_node(node, **scalars(attrs))
    for u, v, k, attrs in graph.edges(keys=True, data=True):
        extra = {"label": k} if edge_labels else {}
        flat.add_edge(u, v, key=k, **scalars(attrs), **extra)
    return flat


def to_json(graph: nx.MultiDiGraph) -> str:
    """Node-link JSON (``networkx.node_link_data``, ``edges`` key), nodes and edges sorted."""
    data = nx.node_link_data(graph, edges="edges")
    data["nodes"].sort(key=lambda n: str(n["id"]))
    data["edges"].sort(key=lambda e: (str(e["source"]), str(e["target"]), str(e["key"])))
    return json.dumps(data, indent=2, sort_keys=True, default=_iso, ensure_ascii=False) + "\n"


# ---- DOT

#: Node shape and fill colour by device class; other classes take DEFAULT_STYLE.
CLASS_STYLES: dict[str, tuple[str, str]] = {
    "pacs": ("cylinder", "#9ecae1"),
    "vna": ("cylinder", "#9ecae1"),
    "storage": ("cylinder", "#d9d9d9"),
    "ehr": ("component", "#a1d99b"),
    "ris": ("component", "#a1d99b"),
    "lis": ("component", "#a1d99b"),
    "interface-engine": ("component", "#a1d99b"),
    "server": ("box3d", "#d9d9d9"),
    "virtual-machine": ("box3d", "#d9d9d9"),
    "workstation": ("box", "#f0f0f0"),
    "dicom-workstation": ("box", "#c6dbef"),
    "network-device": ("diamond", "#fdd0a2"),
    "wireless-ap": ("diamond", "#fdd0a2"),
    "printer": ("note", "#f0f0f0"),
    "imaging-printer": ("note", "#c6dbef"),
    "patient-monitor": ("octagon", "#fcbba1"),
    "central-station": ("octagon", "#fcbba1"),
    "infusion-pump": ("octagon", "#fcbba1"),
    "ventilator": ("octagon", "#fcbba1"),
}
#: Imaging modalities (the DICOM modality codes the vocabulary uses as classes).
MODALITY_STYLE = ("box", "#6baed6")
MODALITIES = frozenset(
    ("ct", "mr", "us", "xr", "cr", "dx", "mg", "nm", "pt", "xa", "rf", "endoscopy", "ophthalmic",
     "dental", "bmd", "radiotherapy", "modality-other")
)  # fmt: skip
#: Other medical devices, other devices, and addresses of no asset.
MEDICAL_STYLE = ("octagon", "#fcbba1")
DEFAULT_STYLE = ("ellipse", "#ffffff")
EXTERNAL_STYLE = ("ellipse", "#fff5eb")


def node_style(attrs: Mapping[str, Any]) -> tuple[str, str]:
    """``(shape, fillcolor)`` of a node in DOT, from its device class."""
    if attrs.get("external"):
        return EXTERNAL_STYLE
    cls = attrs.get("device_class") or ""
    if cls in CLASS_STYLES:
        return CLASS_STYLES[cls]
    if cls in MODALITIES:
        return MODALITY_STYLE
    if cls.startswith("medical") or cls in ("ecg", "anesthesia", "lab-analyzer"):
        return MEDICAL_STYLE
    return DEFAULT_STYLE


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def dot_quote(value: Any) -> str:
    """``value`` as a double-quoted DOT string that Graphviz shows literally: backslashes
    (which start Graphviz's own escapes such as ``\\N``) and quotes are escaped, a newline
    becomes a ``\\n`` line break and other control characters are dropped."""
    text = _CONTROL.sub("", str(value).replace("\r\n", "\n"))
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _node_label(node: str, attrs: Mapping[str, Any]) -> str:
    lines = [str(attrs.get("label") or node)]
    if attrs.get("ip") and attrs.get("ip") != lines[0]:
        lines.append(str(attrs["ip"]))
    what = " ".join(str(attrs[k]) for k in ("vendor", "model", "device_class") if attrs.get(k))
    if what:
        lines.append(what)
    return "\n".join(lines)


def _edge_label(attrs: Mapping[str, Any]) -> str:
    app = attrs.get("app") or attrs.get("proto") or "?"
    port = attrs.get("server_port")
    label = f"{app}/{port}" if port is not None else str(app)
    if attrs.get("violation") and attrs.get("rule"):
        label += f"\n{attrs['rule']}"
    return label


def to_dot(graph: nx.MultiDiGraph) -> str:
    """Graphviz DOT: zones as ``cluster_<zone>`` subgraphs, device classes as node shapes and
    colours (:data:`CLASS_STYLES`), violation edges red; every label quoted and escaped."""
    out = [
        f"digraph {dot_quote(graph.graph.get('name', 'medmon'))} {{",
        "  graph [rankdir=LR, fontname=Helvetica];",
        '  node [style=filled, fontname=Helvetica, fontsize=10, color="#636363"];',
        '  edge [fontname=Helvetica, fontsize=9, color="#636363"];',
    ]
    by_zone: dict[str, list[str]] = {}
    for node, attrs in sorted(graph.nodes(data=True), key=lambda n: str(n[0])):
        shape, fill = node_style(attrs)
        line = (
            f"{dot_quote(node)} [label={dot_quote(_node_label(node, attrs))}, "
            f'shape={shape}, fillcolor="{fill}"];'
        )
        by_zone.setdefault(str(attrs.get("zone") or ""), []).append(line)
    for zone in sorted(by_zone):
        if not zone:
            out.extend(f"  {line}" for line in by_zone[zone])
            continue
        out.append(f"  subgraph {dot_quote('cluster_' + zone)} {{")
        out.append(f'    label={dot_quote(zone)}; style=rounded; color="#969696";')
        out.extend(f"    {line}" for line in by_zone[zone])
        out.append("  }")
    edges = sorted(graph.edges(keys=True, data=True), key=lambda e: (str(e[0]), str(e[1]), e[2]))
    for u, v, _key, attrs in edges:
        style = f"label={dot_quote(_edge_label(attrs))}"
        if attrs.get("violation"):
            style += ', color="#d62728", fontcolor="#d62728", penwidth=2'
        out.append(f"  {dot_quote(u)} -> {dot_quote(v)} [{style}];")
    out.append("}")
    return "\n".join(out) + "\n"


def to_svg(graph: nx.MultiDiGraph) -> str:
    """SVG drawn by Graphviz ``dot`` from :func:`to_dot`; :class:`GraphError` without it."""
    dot = shutil.which("dot")
    if dot is None:
        raise GraphError(
            "svg needs Graphviz's 'dot' program: install graphviz (apt-get install graphviz)"
        )
    done = subprocess.run(
        [dot, "-Tsvg"], input=to_dot(graph).encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        msg = done.stderr.decode(errors="replace").strip().splitlines()
        raise GraphError(f"graphviz dot failed: {msg[0] if msg else done.returncode}")
    return done.stdout.decode()


# ---- HTML: one offline file, the SVG with pan, zoom and click

#: The viewer's script: pan (drag), zoom (wheel, + and -), click a device or an edge for its
#: details. Text from the network only ever goes through textContent, never innerHTML.
_VIEWER_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("medmon-graph").textContent);
  var svg = document.querySelector("#canvas svg");
  var panel = document.getElementById("details");
  var nodes = {}, edges = {};
  data.nodes.forEach(function (n) { nodes[n.id] = n; });
  data.edges.forEach(function (e) {
    (edges[e.source + "->" + e.target] = edges[e.source + "->" + e.target] || []).push(e);
  });
  function show(title, rows) {
    panel.textContent = "";
    var h = document.createElement("h2"); h.textContent = title; panel.appendChild(h);
    var table = document.createElement("table");
    rows.forEach(function (r) {
      Object.keys(r).sort().forEach(function (k) {
        var tr = document.createElement("tr");
        var th = document.createElement("th"); th.textContent = k;
        var td = document.createElement("td");
        var v = r[k]; td.textContent = Array.isArray(v) ? v.join(", ") : String(v);
        tr.appendChild(th); tr.appendChild(td); table.appendChild(tr);
      });
      var sep = document.createElement("tr"); sep.className = "sep"; table.appendChild(sep);
    });
    panel.appendChild(table);
  }
  svg.querySelectorAll("g.node").forEach(function (g) {
    var id = g.querySelector("title").textContent;
    g.setAttribute("data-medmon-node", id);
    g.addEventListener("click", function (ev) {
      ev.stopPropagation(); show(id, nodes[id] ? [nodes[id]] : []);
    });
  });
  var violations = 0;
  svg.querySelectorAll("g.edge").forEach(function (g) {
    var id = g.querySelector("title").textContent.replace("&#45;&gt;", "->");
    var list = edges[id] || [];
    g.setAttribute("data-medmon-edge", id);
    if (list.some(function (e) { return e.violation; })) {
      g.classList.add("violation"); violations += 1;
    }
    g.addEventListener("click", function (ev) { ev.stopPropagation(); show(id, list); });
  });
  document.getElementById("summary").textContent =
    data.nodes.length + " devices, " + data.edges.length + " services, " +
    violations + " connections with a policy violation";
  // Pan and zoom by moving the SVG's viewBox.
  var vb = svg.viewBox.baseVal, drag = null;
  function zoom(f, cx, cy) {
    var nw = vb.width * f, nh = vb.height * f;
    vb.x = cx - (cx - vb.x) * f; vb.y = cy - (cy - vb.y) * f; vb.width = nw; vb.height = nh;
  }
  function point(ev) {
    var r = svg.getBoundingClientRect();
    return [vb.x + (ev.clientX - r.left) / r.width * vb.width,
            vb.y + (ev.clientY - r.top) / r.height * vb.height];
  }
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault(); var p = point(ev); zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, p[0], p[1]);
  }, {passive: false});
  svg.addEventListener("mousedown", function (ev) { drag = [ev.clientX, ev.clientY]; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    var r = svg.getBoundingClientRect();
    vb.x -= (ev.clientX - drag[0]) / r.width * vb.width;
    vb.y -= (ev.clientY - drag[1]) / r.height * vb.height;
    drag = [ev.clientX, ev.clientY];
  });
  document.getElementById("zoom-in").addEventListener("click", function () {
    zoom(1 / 1.3, vb.x + vb.width / 2, vb.y + vb.height / 2); });
  document.getElementById("zoom-out").addEventListener("click", function () {
    zoom(1.3, vb.x + vb.width / 2, vb.y + vb.height / 2); });
  document.body.setAttribute("data-medmon-ready", "1");
})();
"""

_VIEWER_CSS = """
body { margin: 0; font: 13px system-ui, sans-serif; display: flex; height: 100vh; }
#main { flex: 1; display: flex; flex-direction: column; min-width: 0; }
header { padding: 6px 10px; border-bottom: 1px solid #ccc; }
#canvas { flex: 1; overflow: hidden; }
#canvas svg { width: 100%; height: 100%; cursor: grab; }
#details { width: 340px; overflow: auto; border-left: 1px solid #ccc; padding: 8px; }
#details th { text-align: left; vertical-align: top; padding-right: 6px; color: #555; }
#details tr.sep { height: 8px; }
g.node, g.edge { cursor: pointer; }
g.edge.violation path { stroke-width: 3px; }
@media print { #details, button { display: none; } body { display: block; } }
"""


def to_html(graph: nx.MultiDiGraph, title: str = "medmon communication graph") -> str:
    """One self-contained HTML file (no network access: the SVG, the data and the viewer are
    inline) that a person can pan, zoom and click for each device's and service's details.
    Needs Graphviz like :func:`to_svg`."""
    svg = to_svg(graph)
    svg = svg[svg.find("<svg") :]  # without the XML declaration and DOCTYPE
    # JSON inside <script>: "<" escaped, so no value can close the element.
    data = to_json(graph).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<style>{_VIEWER_CSS}</style></head><body>"
        '<div id="main"><header><strong>' + html.escape(title) + "</strong> "
        '<span id="summary"></span> <button id="zoom-in">+</button>'
        '<button id="zoom-out">&minus;</button> drag to pan, wheel to zoom, click for '
        "details; red: a policy violation</header>"
        f'<div id="canvas">{svg}</div></div>'
        '<aside id="details">Click a device or a connection.</aside>'
        f'<script type="application/json" id="medmon-graph">{data}</script>'
        f"<script>{_VIEWER_JS}</script></body></html>\n"
    )


def write_graph(graph: nx.MultiDiGraph, path: str | Path | IO[bytes], fmt: str) -> None:
    """Write ``graph`` as ``fmt`` (one of :data:`FORMATS`) to a file path or a binary file
    object. Raises :class:`GraphError` for an unknown format or a missing Graphviz."""
    if fmt == "graphml":
        nx.write_graphml(_flat(graph), path)
        return
    if fmt == "gexf":
        nx.write_gexf(_flat(graph, edge_labels=True), path)
        return
    if fmt == "json":
        text = to_json(graph)
    elif fmt == "dot":
        text = to_dot(graph)
    elif fmt == "svg":
        text = to_svg(graph)
    elif fmt == "html":
        text = to_html(graph)
    else:
        raise GraphError(f"{fmt}: unknown graph format (one of {', '.join(FORMATS)})")
    data = text.encode()
    if isinstance(path, str | Path):
        Path(path).write_bytes(data)
    else:
        path.write(data)
