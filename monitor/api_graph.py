"""The Python API of ``medmon graph``: the communication graph from the register, written as a
file [sqlite-utils db.py]. Kept beside :mod:`monitor.api`, which it extends::

    from monitor import api_graph
    graph = api_graph.build(db="medmon.duckdb")
    api_graph.graph(db="medmon.duckdb", fmt="graphml", output="site.graphml")
"""

from __future__ import annotations

import sys
from pathlib import Path

import networkx as nx

from monitor.api import InputError, default_db
from monitor.graph import FORMATS, GraphError, ZoneOf, build_graph, write_graph
from monitor.register import open_register
from monitor.register.graph import graph_rows


def build(*, db: str | None = None, zone_of: ZoneOf | None = None) -> nx.MultiDiGraph:
    """The communication graph of the register at ``db`` (:func:`monitor.graph.build_graph`).
    Raises :class:`~monitor.register.RegisterError` when the register cannot be read."""
    with open_register(db or default_db(), read_only=True) as reg:
        nodes, edges = graph_rows(reg)
    return build_graph(nodes, edges, zone_of)


def graph(
    *, db: str | None = None, fmt: str = "graphml", output: str = "-",
    zone_of: ZoneOf | None = None,
) -> nx.MultiDiGraph:  # fmt: skip
    """``medmon graph``: write the register's communication graph as ``fmt`` (one of
    :data:`monitor.graph.FORMATS`) to the file ``output`` (``-``: standard output), and return
    it. Raises :class:`~monitor.api.InputError` for an unknown format, a missing Graphviz
    (svg) or an unwritable output, and :class:`~monitor.register.RegisterError`."""
    if fmt not in FORMATS:
        raise InputError(f"{fmt}: unknown graph format (one of {', '.join(FORMATS)})")
    g = build(db=db, zone_of=zone_of)
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


__all__ = ["build", "graph"]
