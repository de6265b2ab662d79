"""The register read as a communication graph: devices and the services between them.

Plain rows for :func:`monitor.graph.build_graph` (which knows nothing of DuckDB, STYLE S2):

- :func:`graph_nodes`: every asset, one dict each;
- :func:`graph_edges`: the flows aggregated by (client asset, server asset, proto, app,
  server port), one dict each.

A flow's address is mapped to a device through ``assets.addresses`` (every address the device
used) in SQL (``unnest``), so that 50,000 flows aggregate in a few milliseconds. An address
two devices used over time (DHCP renumbering) goes to the device that holds it now
(``assets.ip``), else to the one seen last. An address that is no device's (external hosts,
which stay in ``flows`` only) becomes a node ``ip:ADDR`` of its own, marked ``external``.
"""

from __future__ import annotations

from typing import Any

from monitor.register.schema import Register

#: The asset columns each node carries.
NODE_COLUMNS = (
    "asset_id", "ip", "addresses", "mac", "hostname", "vendor", "model", "device_class", "os",
    "os_family", "patchable", "zone",
)  # fmt: skip

#: Each address of a device, to the one device it belongs to (see the module docstring).
_ADDRESS_OWNER = """
    SELECT addr, asset_id FROM (
        SELECT u.addr, u.asset_id,
               row_number() OVER (
                   PARTITION BY u.addr
                   ORDER BY (u.ip IS NOT DISTINCT FROM u.addr) DESC, u.last_seen DESC NULLS LAST,
                            u.asset_id
               ) AS rank
        FROM (
            SELECT asset_id, ip, last_seen,
                   unnest(list_distinct(list_append(coalesce(addresses, []), ip))) AS addr
            FROM assets
        ) u
        WHERE u.addr IS NOT NULL
    ) WHERE rank = 1
"""

_EDGES = f"""
    WITH owner AS ({_ADDRESS_OWNER})
    SELECT coalesce(c.asset_id, 'ip:' || f.client_ip) AS client,
           coalesce(s.asset_id, 'ip:' || f.server_ip) AS server,
           f.proto, f.app, f.server_port,
           sum(f.packets_to_server + f.packets_to_client)::BIGINT AS packets,
           sum(f.bytes_to_server + f.bytes_to_client)::BIGINT AS bytes,
           count(*)::BIGINT AS flows,
           min(f.first_seen) AS first_seen, max(f.last_seen) AS last_seen,
           list(DISTINCT f.client_ip ORDER BY f.client_ip) AS client_ips,
           list(DISTINCT f.server_ip ORDER BY f.server_ip) AS server_ips,
           c.asset_id IS NULL AS client_external,
           s.asset_id IS NULL AS server_external
    FROM flows f
    LEFT JOIN owner c ON c.addr = f.client_ip
    LEFT JOIN owner s ON s.addr = f.server_ip
    GROUP BY ALL
    ORDER BY client, server, f.proto, f.app NULLS FIRST, f.server_port NULLS FIRST
"""


def _dicts(names: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in rows]


def graph_nodes(reg: Register) -> list[dict[str, Any]]:
    """Every asset of the register as a dict of :data:`NODE_COLUMNS`, by ``asset_id``."""
    names, rows = reg.query(f"SELECT {', '.join(NODE_COLUMNS)} FROM assets ORDER BY asset_id")
    return _dicts(names, rows)


def graph_edges(reg: Register) -> list[dict[str, Any]]:
    """The services between devices: one dict per (client, server, proto, app, server_port),
    with keys ``client``, ``server`` (asset ids, or ``ip:ADDR`` for an address of no asset),
    ``proto``, ``app``, ``server_port``, ``packets`` and ``bytes`` (both ways), ``flows``,
    ``first_seen``, ``last_seen``, ``client_ips`` and ``server_ips`` (the addresses seen),
    ``client_external`` and ``server_external`` (the end is no asset)."""
    names, rows = reg.query(_EDGES)
    return _dicts(names, rows)


def external_nodes(edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The node rows of the edges' ends that are no asset: ``asset_id`` ``ip:ADDR``, ``ip``
    and ``external: True``, by id."""
    found: dict[str, dict[str, Any]] = {}
    for e in edges:
        for end in ("client", "server"):
            if e[f"{end}_external"]:
                node = e[end]
                found.setdefault(node, {"asset_id": node, "ip": node[3:], "external": True})
    return [found[k] for k in sorted(found)]


def graph_rows(reg: Register) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(nodes, edges)`` for :func:`monitor.graph.build_graph`: the assets, then the
    external addresses, and the aggregated services."""
    edges = graph_edges(reg)
    return graph_nodes(reg) + external_nodes(edges), edges
