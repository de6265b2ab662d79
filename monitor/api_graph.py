"""The Python API of ``medmon graph``: the communication graph from the register, written as a
file [sqlite-utils db.py]. Kept beside :mod:`monitor.api`, which it extends::

    from monitor import api_graph
    graph = api_graph.build(db="medmon.duckdb")
    api_graph.graph(db="medmon.duckdb", fmt="graphml", output="site.graphml")
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from monitor.api import InputError, default_db
from monitor.fingerprint.identity import is_device_ip
from monitor.graph import FORMATS, GraphError, ZoneOf, build_graph, write_graph
from monitor.register import open_register
from monitor.register.graph import graph_rows


def build(
    *, db: str | None = None, zone_of: ZoneOf | None = None, policy: str | None = None
) -> nx.MultiDiGraph:
    """The communication graph of the register at ``db`` (:func:`monitor.graph.build_graph`).

    With ``policy`` (a policy file), each device gets its zone and each edge the policy's
    decision: ``violation`` when a deny rule or default decides it, and ``rule``, the rule
    (or default) that decided. Raises :class:`~monitor.api.InputError` for an invalid policy
    and :class:`~monitor.register.RegisterError` when the register cannot be read."""
    with open_register(db or default_db(), read_only=True) as reg:
        nodes, edges = graph_rows(reg)
    # Broadcast, multicast and unspecified addresses are no devices: their "edges" (DHCP
    # discovery, mDNS, SSDP) are not conversations between two devices.
    edges = [e for e in edges if _a_device(e["client"]) and _a_device(e["server"])]
    linked = {e["client"] for e in edges} | {e["server"] for e in edges}
    nodes = [n for n in nodes if not n.get("external") or n["asset_id"] in linked]
    if policy is not None:
        from monitor.policy import PolicyError, decide, load_policy
        from monitor.policy import zone_of as policy_zone

        try:
            pol = load_policy(policy)
        except PolicyError as e:
            raise InputError(str(e)) from None
        by_id = {row["asset_id"]: row for row in nodes}

        def policy_zone_of(row: Mapping[str, Any]) -> str | None:
            ip = row.get("ip") or str(row.get("asset_id", "")).removeprefix("ip:")
            return policy_zone(pol, ip, row.get("vlan"), row) if ip else None

        zone_of = policy_zone_of

        for edge in edges:
            flow = {
                "proto": edge["proto"],
                "client_ip": (edge.get("client_ips") or [None])[0],
                "server_ip": (edge.get("server_ips") or [None])[0],
                "server_port": edge["server_port"],
                "app": edge.get("app") or None,
            }
            decision = decide(pol, flow, by_id.get(edge["client"]), by_id.get(edge["server"]))
            edge["violation"] = decision.action == "deny"
            edge["rule"] = decision.rule_id
    return build_graph(nodes, edges, zone_of)


def graph(
    *, db: str | None = None, fmt: str = "graphml", output: str = "-",
    zone_of: ZoneOf | None = None, policy: str | None = None,
) -> nx.MultiDiGraph:  # fmt: skip
    """``medmon graph``: write the register's communication graph as ``fmt`` (one of
    :data:`monitor.graph.FORMATS`) to the file ``output`` (``-``: standard output), and return
    it. Raises :class:`~monitor.api.InputError` for an unknown format, a missing Graphviz
    (svg) or an unwritable output, and :class:`~monitor.register.RegisterError`."""
    if fmt not in FORMATS:
        raise InputError(f"{fmt}: unknown graph format (one of {', '.join(FORMATS)})")
    g = build(db=db, zone_of=zone_of, policy=policy)
    try:
        if output == "-":
            write_graph(g, sys.stdout.buffer, fmt)
            sys.stdout.buffer.flush()
        else:
            out = Path(output)
            if out.is_dir():
                raise InputError(f"{output}: is a directory, not a file")
            if not out.parent.is_dir():
                raise InputError(f"{output}: directory {out.parent} does not exist")
            write_graph(g, out, fmt)
    except GraphError as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"{output}: {(e.strerror or str(e)).lower()}") from None
    return g


def _a_device(node_id: str) -> bool:
    return not node_id.startswith("ip:") or is_device_ip(node_id[3:])


__all__ = ["build", "graph"]
