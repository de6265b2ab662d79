"""The device inventory in the register: signals per asset, and the ``assets`` table.

After a run's records are written (inside the run's transaction), :func:`update_inventory`:

1. decides which device each address and MAC of the run is (:mod:`monitor.fingerprint.
   identity`: ARP and DHCP bindings, the MACs of flows, gateways recognised);
2. turns the run's observations, DICOM associations and datasets, HL7 messages and MAC
   prefixes into *signals* (kind, value) of those devices, and merges them into
   ``asset_signals``, which keeps them across runs (first/last seen, count);
3. fingerprints every device the run touched from *all* its signals, with the rules of
   ``fingerprints/`` (:mod:`monitor.fingerprint.engine`), and rewrites its ``assets`` row,
   keeping when it was first seen and every address it used.

A device known first by its address (``ip:ADDR``) and later by its own MAC (``mac:MAC``) is
merged into the MAC asset. Only internal devices are assets: private, link-local and unique
local addresses (RFC 1918, RFC 4193, RFC 3927), and devices known only by a MAC. External
addresses stay in ``flows``.
"""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import pyarrow as pa

from monitor.fingerprint.identity import (
    Binding,
    Identities,
    ipv4_octets,
    ipv6_internal,
    is_device_mac,
    resolve,
)
from monitor.register.ingest import RunWriter
from monitor.register.schema import Register

_TS = pa.timestamp("ns", tz="UTC")

#: Signals from which a host name is taken when no rule set one, in order of trust.
HOSTNAME_SIGNALS = (
    "dhcp.hostname",
    "dhcp.fqdn",
    "netbios.name",
    "ntlm.hostname",
    "mdns.name",
    "snmp.sys_name",
    "dicom.station_name",
)

#: DICOM Storage SOP classes (PS3.4 Annex B): a host that accepts them stores other devices'
#: images, so the datasets it sends on are not its own.
STORAGE_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1."


_PRIVATE_16 = frozenset(((192, 168), (169, 254)))


@lru_cache(maxsize=65536)
def is_internal(ip: str) -> bool:
    """A private, link-local or unique local address: a device of the site."""
    v4 = ipv4_octets(ip)
    if v4 is not None:  # the common ranges without ipaddress (RFC 1918, 3927, loopback)
        a, b = v4[0], v4[1]
        if a == 10 or a == 127 or (a == 172 and 16 <= b <= 31) or (a, b) in _PRIVATE_16:
            return True
    else:
        v6 = ipv6_internal(ip)
        if v6 is not None:
            return v6
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_private or addr.is_link_local


@dataclass
class Sighting:
    """What the run's flows say about one device."""

    ips: dict[str, int] = field(default_factory=dict)  #: address -> last seen (ns)
    mac: str | None = None
    vlan: int | None = None
    first_ns: int | None = None
    last_ns: int | None = None


@dataclass
class InventoryResult:
    """What :func:`update_inventory` did."""

    assets: int = 0  #: assets (re)computed
    merged: int = 0  #: address-only assets merged into a MAC asset
    signals: int = 0  #: signal rows written or updated


def _ns(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000_000)
    return int(value)


def run_bindings(reg: Register, run_id: int) -> tuple[list[Binding], dict[str, Sighting]]:
    """The run's address-MAC bindings (flows, ARP, DHCP leases) and per-address sightings.

    The flows' ends are aggregated in SQL to distinct (address, MAC) pairs first: a run has
    far fewer of those than flows."""
    con = reg.con
    bindings: list[Binding] = []
    seen: dict[str, Sighting] = {}
    rows = con.execute(
        """
        WITH ends AS (
            SELECT client_ip AS ip, client_mac AS mac, vlan, first_seen, last_seen
            FROM flows WHERE run_id = $run
            UNION ALL
            SELECT server_ip, server_mac, vlan, first_seen, last_seen
            FROM flows WHERE run_id = $run
        )
        SELECT ip, mac, epoch_ns(min(first_seen)), epoch_ns(max(last_seen)),
               arg_max(vlan, last_seen)
        FROM ends GROUP BY ip, mac
        """,
        {"run": run_id},
    ).fetchall()
    for ip, mac, first, last, vlan in rows:
        if mac and not is_device_mac(mac):
            continue  # broadcast or multicast: not a device (a directed broadcast address)
        if mac:
            bindings.append(Binding(ip, mac, "flow", last))
        s = seen.get(ip)
        if s is None:
            s = seen[ip] = Sighting(first_ns=first, last_ns=last, vlan=vlan)
            s.ips[ip] = last
        else:
            if first < (s.first_ns or first):
                s.first_ns = first
            if last >= (s.last_ns or 0):
                s.last_ns = s.ips[ip] = last
                if vlan is not None:
                    s.vlan = vlan
    for ip, mac, kind, last in con.execute(
        """
        SELECT ip, mac, kind, epoch_ns(coalesce(last_ts, ts)) FROM observations
        WHERE run_id = ? AND kind IN ('arp.ip', 'dhcp.lease') AND ip IS NOT NULL
        """,
        [run_id],
    ).fetchall():
        if mac:
            bindings.append(Binding(ip, mac, "arp" if kind == "arp.ip" else "dhcp", last or 0))
    return bindings, seen


#: (ip, mac, kind, value, first_ns, last_ns, count, source)
SignalRow = tuple[str | None, str | None, str, str, int | None, int | None, int, str]


def record_signals(reg: Register, run_id: int) -> list[SignalRow]:
    """What the run's DICOM and HL7 records say of the devices that sent them, as signals.
    (The run's observations are signals as they are; they never leave SQL.)"""
    con = reg.con
    out: list[SignalRow] = []

    # DICOM associations: both ends' implementation, AE title and role; the SOP classes.
    storage_scps: set[str] = set()
    for row in con.execute(
        """
        SELECT client_ip, server_ip, calling_ae, called_ae, implementation_class_uid,
               implementation_version_name, acceptor_implementation_class_uid,
               acceptor_implementation_version_name, result, abstract_syntaxes,
               epoch_ns(ts), epoch_ns(coalesce(ts_end, ts))
        FROM dicom_associations WHERE run_id = ?
        """,
        [run_id],
    ).fetchall():
        (cip, sip, calling, called, impl, impl_ver, acc_impl, acc_ver, result, syntaxes,
         first, last) = row  # fmt: skip
        client = [
            ("dicom.implementation_class_uid", impl),
            ("dicom.implementation_version_name", impl_ver),
            ("dicom.ae_title", calling),
            ("dicom.role", "scu"),
        ]
        server = [
            ("dicom.implementation_class_uid", acc_impl),
            ("dicom.implementation_version_name", acc_ver),
            ("dicom.role", "scp"),
        ]
        if result == "accepted":
            server.append(("dicom.ae_title", called))
            for uid in syntaxes or ():
                server.append(("dicom.sop_class", uid))
                if uid.startswith(STORAGE_SOP_PREFIX):
                    storage_scps.add(sip)
        for uid in syntaxes or ():
            client.append(("dicom.sop_class", uid))
        for ip, facts in ((cip, client), (sip, server)):
            for kind, value in facts:
                if value:
                    out.append((ip, None, kind, str(value).strip(), first, last, 1, "dicom"))

    # DICOM datasets: the device attributes describe the device that made the image. A host
    # that stores images (a storage SCP) or sends images of several devices forwards them.
    devices: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in con.execute(
        """
        SELECT ip, modality, manufacturer, model, software_versions, station_name,
               device_serial_number, epoch_ns(ts), sop_class_uid
        FROM dicom_devices WHERE run_id = ? AND ip IS NOT NULL
        """,
        [run_id],
    ).fetchall():
        devices[row[0]].append(row[1:])
    for ip, rows in devices.items():
        identities = {(r[1], r[2], r[4], r[5]) for r in rows}
        times = [r[6] for r in rows if r[6] is not None]
        first, last = (min(times), max(times)) if times else (None, None)
        if ip in storage_scps or len(identities) > 1:
            out.append(
                (ip, None, "dicom.forwards_datasets", "true", first, last, len(rows), "dicom")
            )
            continue
        for modality, manufacturer, model, versions, station, _serial, ts, sop in rows:
            facts = [
                ("dicom.stored_sop_class", sop),  # what it sent, not what it proposed
                ("dicom.modality", modality),
                ("dicom.manufacturer", manufacturer),
                ("dicom.model", model),
                ("dicom.station_name", station),
            ]
            facts.extend(("dicom.software_versions", v) for v in versions or ())
            for kind, value in facts:
                if value and str(value).strip():
                    out.append((ip, None, kind, str(value).strip(), ts, ts, 1, "dicom"))

    # HL7: the sender's applications and what it sends; the receiver's application.
    for row in con.execute(
        """
        SELECT CASE WHEN direction = 'to_client' THEN server_ip ELSE client_ip END AS sender,
               CASE WHEN direction = 'to_client' THEN client_ip ELSE server_ip END AS recipient,
               sending_application, sending_facility, receiving_application,
               CASE WHEN trigger_event IS NOT NULL AND trigger_event <> ''
                    THEN message_type || '^' || trigger_event ELSE message_type END,
               version, device_ids, epoch_ns(min(ts)), epoch_ns(max(ts)), count(*)
        FROM hl7_messages WHERE run_id = ?
        GROUP BY ALL
        """,
        [run_id],
    ).fetchall():
        sender, recipient, app, facility, receiver, mtype, version, ids, first, last, n = row
        facts = [
            ("hl7.sending_application", app),
            ("hl7.sending_facility", facility),
            ("hl7.message_type", mtype),
            ("hl7.version", version),
        ]
        facts.extend(("hl7.device_id", d) for d in ids or ())
        for kind, value in facts:
            if value:
                out.append((sender, None, kind, str(value), first, last, n, "hl7"))
        if receiver:
            out.append(
                (recipient, None, "hl7.receiving_application", receiver, first, last, n, "hl7")
            )
    return out


def _arrow(rows: list[tuple[Any, ...]], names: list[str], types: list[pa.DataType]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.Table.from_arrays(
        [pa.array(list(c), type=t) for c, t in zip(cols, types, strict=True)], names=names
    )


def _merge_assets(reg: Register, ident: Identities) -> int:
    """Fold address-only assets into the MAC assets that this run found for their addresses."""
    con = reg.con
    moves = [(f"ip:{ip}", asset) for ip, asset in ident.by_ip.items() if asset.startswith("mac:")]
    if not moves:
        return 0
    con.register("_medmon_moves", _arrow(moves, ["old", "new"], [pa.string(), pa.string()]))
    try:
        n = con.execute(
            "SELECT count(*) FROM assets a JOIN _medmon_moves m ON a.asset_id = m.old"
        ).fetchall()
        merged = int(n[0][0])
        if merged:
            con.execute(
                """
                UPDATE asset_signals SET asset_id = m.new FROM _medmon_moves m
                WHERE asset_signals.asset_id = m.old
                """
            )
            # The MAC asset inherits when the address was first seen, and its addresses.
            con.execute(
                """
                CREATE OR REPLACE TEMP TABLE _medmon_inherit AS
                SELECT m.new AS asset_id, min(a.first_seen) AS first_seen,
                       min(a.first_run) AS first_run, flatten(list(a.addresses)) AS addresses
                FROM assets a JOIN _medmon_moves m ON a.asset_id = m.old GROUP BY m.new
                """
            )
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _medmon_merged AS SELECT DISTINCT m.new "
                "FROM assets a JOIN _medmon_moves m ON a.asset_id = m.old"
            )
            con.execute("DELETE FROM assets WHERE asset_id IN (SELECT old FROM _medmon_moves)")
    finally:
        con.unregister("_medmon_moves")
    return merged


#: ``(asset_id, ip, mac, signals) -> asset fields``; ``signals`` are ``(kind, value,
#: first_seen, last_seen, source)`` tuples; the fields dict has the keys of :data:`FIELDS`.
Fingerprinter = Callable[[str, str | None, str | None, list[tuple[Any, ...]]], dict[str, Any]]

#: What a fingerprinter returns for each asset.
FIELDS = (
    "hostname", "vendor", "model", "device_class", "os", "os_family", "software_version",
    "patchable", "patchable_reason", "confidence", "evidence",
)  # fmt: skip


def update_inventory(
    writer: RunWriter,
    run_id: int,
    *,
    fingerprint: Fingerprinter,
    oui_lookup: Callable[[str], str | None] | None = None,
    kinds: Collection[str] | None = None,
    now: datetime | None = None,
) -> InventoryResult:
    """Update ``asset_signals`` and ``assets`` from run ``run_id`` (see the module docstring),
    inside the run's transaction (``writer`` is the run's :class:`RunWriter`).

    ``kinds``: the signal kinds ``fingerprint`` looks at (all when None); the others are kept
    in ``asset_signals`` but not read back for fingerprinting."""
    reg = writer.reg
    con = reg.con
    now = now or datetime.now(UTC)
    result = InventoryResult()
    bindings, sightings = run_bindings(reg, run_id)
    extra = record_signals(reg, run_id)
    ident = resolve(bindings)

    # The devices the run saw: each address (and MAC-only device) to its asset; only
    # internal addresses are devices of the site.
    hosts: dict[str, Sighting] = {}
    for ip, s in sightings.items():
        asset = ident.asset_for(ip, None)
        if asset is None or not is_internal(ip):
            continue
        h = hosts.get(asset)
        if h is None:
            h = hosts[asset] = Sighting(first_ns=s.first_ns, last_ns=s.last_ns, vlan=s.vlan)
        else:
            h.first_ns = _ns_min(h.first_ns, s.first_ns)
            if (s.last_ns or 0) >= (h.last_ns or 0):
                h.last_ns, h.vlan = s.last_ns, s.vlan if s.vlan is not None else h.vlan
        h.ips.update(s.ips)
        h.mac = ident.mac_of.get(asset)
    # Addresses and MACs that only observations or records name (a DHCP client before its
    # lease, a lease's address): their assets, and when they were seen.
    # (A requested address is only asked for: it is not one the device used.)
    named = con.execute(
        """
        SELECT ip, mac, epoch_ns(min(ts)), epoch_ns(max(coalesce(last_ts, ts))),
               bool_or(kind <> 'dhcp.requested_ip')
        FROM observations WHERE run_id = ? GROUP BY ip, mac
        """,
        [run_id],
    ).fetchall()
    named.extend((r[0], r[1], r[4], r[5], True) for r in extra)
    ip_asset: dict[str, str] = {}
    mac_asset: dict[str, str] = {}
    for ip, mac, first, last, used in named:
        asset = ident.asset_for(ip, mac)
        if asset is None or (ip and not is_internal(ip)):
            continue
        if ip:
            ip_asset[ip] = asset
        elif mac:
            mac_asset[mac] = asset
        h = hosts.get(asset)
        if h is None:
            h = hosts[asset] = Sighting(first_ns=first, last_ns=last, mac=ident.mac_of.get(asset))
        else:
            h.first_ns = _ns_min(h.first_ns, first)
            if (last or 0) > (h.last_ns or 0):
                h.last_ns = last
        if ip and ip not in h.ips and used:
            h.ips[ip] = last or 0
    for ip in sightings:
        asset = ident.asset_for(ip, None)
        if asset is not None and asset in hosts:
            ip_asset[ip] = asset
    if not hosts:
        return result
    result.merged = _merge_assets(reg, ident)

    # This run's signals per asset, aggregated in SQL: observations and record signals joined
    # to the address (or, for MAC-only facts, the MAC) they are about.
    names = ["asset_id", "kind", "value", "source", "first_seen", "last_seen", "count",
             "first_run", "last_run", "last_run_count"]  # fmt: skip
    touched = sorted(hosts)
    oui_rows: list[tuple[Any, ...]] = []
    if oui_lookup is not None:
        for h in hosts.values():
            vendor = oui_lookup(h.mac) if h.mac else None
            if vendor:
                oui_rows.append(
                    (None, h.mac, "oui.vendor", vendor, h.first_ns, h.last_ns, 1, "oui")
                )
    extra_names = ["ip", "mac", "kind", "value", "first_ns", "last_ns", "count", "source"]
    extra_types = [pa.string()] * 4 + [pa.int64()] * 3 + [pa.string()]
    con.register("_medmon_touched", _arrow([(a,) for a in touched], ["asset_id"], [pa.string()]))
    con.register("_medmon_extra", _arrow(list(extra) + oui_rows, extra_names, extra_types))
    con.register(
        "_medmon_ip_asset",
        _arrow(sorted(ip_asset.items()), ["ip", "asset_id"], [pa.string(), pa.string()]),
    )
    con.register(
        "_medmon_mac_asset",
        _arrow(
            sorted({**mac_asset, **{h.mac: a for a, h in hosts.items() if h.mac}}.items()),
            ["mac", "asset_id"],
            [pa.string(), pa.string()],
        ),
    )
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _medmon_signals AS
            WITH s AS (
                SELECT ip, mac, kind, value, ts AS first_seen,
                       coalesce(last_ts, ts) AS last_seen, coalesce(count, 1) AS count,
                       'observations' AS source
                FROM observations WHERE run_id = {int(run_id)} AND value IS NOT NULL
                UNION ALL
                SELECT ip, mac, kind, value, make_timestamp_ns(first_ns)::TIMESTAMPTZ,
                       make_timestamp_ns(last_ns)::TIMESTAMPTZ, count, source
                FROM _medmon_extra
            )
            SELECT coalesce(ia.asset_id, ma.asset_id) AS asset_id, s.kind,
                   left(s.value, 1024) AS value, min(s.source) AS source,
                   min(s.first_seen) AS first_seen, max(s.last_seen) AS last_seen,
                   sum(s.count)::BIGINT AS count, {int(run_id)}::BIGINT AS first_run,
                   {int(run_id)}::BIGINT AS last_run, sum(s.count)::BIGINT AS last_run_count
            FROM s
            LEFT JOIN _medmon_ip_asset ia ON s.ip = ia.ip
            LEFT JOIN _medmon_mac_asset ma ON s.ip IS NULL AND s.mac = ma.mac
            WHERE coalesce(ia.asset_id, ma.asset_id) IS NOT NULL
            GROUP BY ALL
            """
        )
        result.signals = int(con.execute("SELECT count(*) FROM _medmon_signals").fetchall()[0][0])
        # Facts already known add to their counts; new facts are appended. A merged asset's
        # signals may now appear twice (the address's and the MAC's): those are folded.
        con.execute(
            """
            UPDATE asset_signals t SET
                first_seen = least(t.first_seen, s.first_seen),
                last_seen = greatest(t.last_seen, s.last_seen),
                count = CASE WHEN t.last_run = s.last_run
                             THEN t.count - coalesce(t.last_run_count, 0) + s.count
                             ELSE t.count + s.count END,
                last_run = s.last_run, last_run_count = s.count
            FROM _medmon_signals s
            WHERE t.asset_id = s.asset_id AND t.kind = s.kind AND t.value = s.value
            """
        )
        con.execute(
            f"""
            INSERT INTO asset_signals ({", ".join(names)})
            SELECT s.* FROM _medmon_signals s ANTI JOIN asset_signals t
                ON t.asset_id = s.asset_id AND t.kind = s.kind AND t.value = s.value
            """
        )
        if result.merged:
            _fold_duplicate_signals(reg, names, run_id)
        by_asset: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        # Times are not needed to fingerprint (explain reads them itself).
        only = ""
        if kinds is not None:
            con.register("_medmon_kinds", _arrow([(k,) for k in kinds], ["kind"], [pa.string()]))
            only = "AND kind IN (SELECT kind FROM _medmon_kinds)"
        for asset, kind, value, source in con.execute(
            f"""
            SELECT asset_id, kind, value, source FROM asset_signals
            WHERE asset_id IN (SELECT asset_id FROM _medmon_touched) {only}
            ORDER BY asset_id, kind, last_seen DESC, value
            """
        ).fetchall():
            by_asset[asset].append((kind, value, None, None, source))
        old = {
            r[0]: r[1:]
            for r in con.execute(
                """
                SELECT a.asset_id, a.first_seen, a.first_run, a.addresses, a.ip
                FROM assets a WHERE a.asset_id IN (SELECT asset_id FROM _medmon_touched)
                """
            ).fetchall()
        }
        inherit: dict[str, tuple[Any, ...]] = {}
        if result.merged:
            inherit = {
                r[0]: r[1:]
                for r in con.execute(
                    "SELECT asset_id, first_seen, first_run, addresses FROM _medmon_inherit"
                ).fetchall()
            }
        asset_rows = []
        for asset in touched:
            h = hosts[asset]
            cur_ip = max(h.ips.items(), key=lambda kv: (kv[1], kv[0]))[0] if h.ips else None
            f = fingerprint(asset, cur_ip, h.mac, by_asset.get(asset, []))
            before = [x for x in (old.get(asset), inherit.get(asset)) if x]
            first_seen = _ns_min(h.first_ns, *(_ns(x[0]) for x in before))
            first_run = min([run_id] + [x[1] for x in before if x[1]])
            addresses: list[str] = []
            for x in (inherit.get(asset), old.get(asset)):
                if x and x[2]:
                    addresses.extend(x2 for x2 in x[2] if x2 not in addresses)
            for addr in sorted(h.ips, key=lambda k: h.ips[k]):
                if addr not in addresses:
                    addresses.append(addr)
            asset_rows.append(
                (
                    cur_ip,
                    h.mac,
                    h.vlan,
                    None,  # zone: the policy engine's
                    f["hostname"],
                    f["vendor"],
                    f["model"],
                    f["device_class"],
                    f["os"],
                    f["software_version"],
                    f["patchable"],
                    f["patchable_reason"],
                    f["confidence"],
                    f["evidence"],
                    first_seen,
                    h.last_ns,
                    asset,
                    f["os_family"],
                    addresses,
                    first_run,
                    run_id,
                    now,
                )
            )
        con.execute("DELETE FROM assets WHERE asset_id IN (SELECT asset_id FROM _medmon_touched)")
        writer.add_many("assets", asset_rows)
        writer.flush()
        result.assets = len(asset_rows)
    finally:
        for view in ("_medmon_touched", "_medmon_extra", "_medmon_ip_asset", "_medmon_mac_asset",
                     "_medmon_kinds"):  # fmt: skip
            con.unregister(view)
        con.execute("DROP TABLE IF EXISTS _medmon_signals")
    return result


def _fold_duplicate_signals(reg: Register, names: list[str], run_id: int) -> None:
    """Fold rows of one (asset, kind, value) into one, for the assets just merged."""
    con = reg.con
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _medmon_agg AS
        SELECT asset_id, kind, value, min(source) AS source, min(first_seen) AS first_seen,
               max(last_seen) AS last_seen, sum(count)::BIGINT AS count,
               min(first_run) AS first_run, max(last_run) AS last_run,
               sum(CASE WHEN last_run = {int(run_id)} THEN last_run_count ELSE 0 END)::BIGINT
                   AS last_run_count
        FROM asset_signals WHERE asset_id IN (SELECT new FROM _medmon_merged)
        GROUP BY asset_id, kind, value
        """
    )
    con.execute("DELETE FROM asset_signals WHERE asset_id IN (SELECT new FROM _medmon_merged)")
    con.execute(f"INSERT INTO asset_signals ({', '.join(names)}) SELECT * FROM _medmon_agg")


def is_device_ip_external(ip: str) -> bool:
    """An address outside the site (not internal): its facts are not an asset's."""
    return not is_internal(ip)


def _ns_min(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def today(now: datetime | None = None) -> date:
    """The date patchability is judged at (UTC)."""
    return (now or datetime.now(UTC)).date()


def evidence_json(data: dict[str, Any]) -> str:
    """Compact JSON for the ``evidence`` column."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
