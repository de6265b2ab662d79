"""medmon's Python API: what each CLI command calls [sqlite-utils db.py].

The CLI (``monitor.cli``) only parses arguments and formats output; everything it does is a
call to a function here, usable from Python as well::

    from monitor import api
    result = api.replay(["pcaps/"], db="medmon.duckdb")
    print(result.run_id, result.packets, result.flows)
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from monitor.decode import LINKTYPE_NAMES
from monitor.fingerprint.engine import Engine
from monitor.fingerprint.oui import OuiTable
from monitor.fingerprint.rules import RuleError, RuleSet, load_rules
from monitor.flows import FlowConfig
from monitor.parsers import REGISTRY, ParserSpec
from monitor.pipeline import Pipeline, ProgressFn, gc_paused, ns_to_datetime
from monitor.register import Register, RegisterBusy, RegisterError, open_register
from monitor.register.ingest import (
    RunWriter,
    recorded_captures,
    recorded_quick_ids,
)
from monitor.resources import data_dir, site_fingerprints
from monitor.source import FileStats, LazyMerge, expand_paths, file_digest

log = logging.getLogger("medmon")

DEFAULT_DB = "medmon.duckdb"


def default_db() -> str:
    """The register path: ``$MEDMON_DB`` or ``medmon.duckdb`` in the working directory."""
    return os.environ.get("MEDMON_DB") or DEFAULT_DB


class InputError(Exception):
    """Nothing could be read from the inputs. ``str()`` holds one line per problem."""


@dataclass
class ReplayResult:
    """What a replay did."""

    run_id: int | None = None  #: the run recorded, None when nothing new was read
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    duplicates: int = 0
    skipped_frames: int = 0
    seconds: float = 0.0
    files: list[FileStats] = field(default_factory=list)  #: captures read in this run
    already_recorded: list[tuple[str, int]] = field(default_factory=list)  #: (path, run id)
    errors: list[str] = field(default_factory=list)  #: inputs that could not be read at all
    warnings: list[str] = field(default_factory=list)  #: damage found while reading
    anomalies: dict[str, int] = field(default_factory=dict)
    assets: int = 0  #: devices whose asset row this run (re)computed
    findings: list[Any] = field(default_factory=list)  #: the run's policy findings (--policy)

    @property
    def packets_per_second(self) -> float:
        """Throughput of the whole run."""
        return self.packets / self.seconds if self.seconds > 0 else 0.0


# The cyclic garbage collector stays paused for the whole run: loading the rules, counting
# the packets, ending the flows and writing the run's state would otherwise trigger
# collections over everything the run holds (see gc_paused).
@gc_paused()
def replay(
    paths: Sequence[str],
    *,
    db: str | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    config: FlowConfig | None = None,
    stdin: Any = None,
    ports: dict[str, tuple[int, ...]] | None = None,
    site_rules: str | None = None,
    policy: str | None = None,
    risk: str | None = None,
) -> ReplayResult:
    """Analyse capture files or directories (``-`` for standard input) into the register.

    One run, one transaction. Captures already recorded (same SHA-256) are skipped unless
    ``force``. ``ports`` adds server ports to parsers by name (``{"dicom": (4242,)}``): their
    traffic is parsed without waiting for the content probe (which finds it on any port
    too). Raises :class:`InputError` when no input could be read at all or a port names no
    parser, and :class:`~monitor.register.RegisterError` when the register cannot be used.
    ``site_rules`` is a folder of site fingerprint rules (default: :func:`monitor.resources.
    site_fingerprints`); invalid rules raise :class:`InputError` before anything is read.
    ``policy``: a segmentation policy file whose findings go to the risk register, scored by
    the risk method ``risk`` (a file; default: the shipped ``policies/risk.yaml``).
    """
    result = ReplayResult()
    registry = parser_registry(ports or {})
    rules = fingerprint_rules(site_rules)
    segmentation = load_policy_file(policy) if policy else None
    method = load_risk_method(risk, rules) if policy or risk else None
    files, errors = expand_paths(paths)
    result.errors.extend(errors)
    dbpath = db or default_db()

    # A capture's identity is the SHA-256 of its bytes. Hashing a large file costs a second
    # read, so files are first told apart by a quick id (size, first and last 64 KiB): only a
    # file whose quick id the register already holds is hashed before replaying, to confirm.
    # The others are hashed on a background thread while they replay (hashlib releases the
    # GIL), and pipes and stdin as they are read.
    quick: dict[str, str] = {}
    for path in files:
        if path == "-" or not os.path.isfile(path):
            continue
        try:
            quick[path] = quick_id(path)
        except OSError as e:
            result.errors.append(f"{path}: {(e.strerror or str(e)).lower()}")
            quick[path] = ""  # unreadable: reported once, not opened again
    with open_register(dbpath) as reg:
        candidates = {} if force else recorded_quick_ids(reg, sorted(set(quick.values())))
        selected: list[str] = []
        seen: dict[str, list[str]] = {}  # quick id -> paths already taken in this run
        to_hash: list[str] = []
        for path in files:
            if path in quick:
                qid = quick[path]
                if not qid:
                    continue
                if qid in candidates or qid in seen:
                    digest = file_digest(path)
                    if digest in candidates.get(qid, {}):
                        result.already_recorded.append((path, candidates[qid][digest]))
                        continue
                    if any(file_digest(other) == digest for other in seen.get(qid, [])):
                        continue  # the same capture twice on one command line
                seen.setdefault(qid, []).append(path)
                to_hash.append(path)
            elif path != "-" and not os.path.exists(path):
                continue
            selected.append(path)
        merge = LazyMerge(selected, stdin=stdin)
        result.errors.extend(merge.errors)
        if not len(merge) and not merge.readers:
            if result.errors:
                raise InputError("\n".join(result.errors))
            return result
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medmon-hash") as pool:
            hashed = pool.submit(lambda: {p: file_digest(p) for p in to_hash})
            _run(
                reg, merge, result, paths, force, progress, config, hashed, quick, registry,
                rules, segmentation, method,
            )  # fmt: skip
    return result


_RULES_CACHE: dict[tuple[Any, ...], RuleSet] = {}


def fingerprint_rules(site: str | None = None) -> RuleSet:
    """The shipped fingerprint rules plus the site's (validated; cached while the files are
    unchanged). Raises :class:`InputError` with one line per error."""
    dirs = [data_dir("fingerprints")]
    site_dir = site_fingerprints(site)
    if site_dir is not None:
        if not site_dir.is_dir():
            raise InputError(f"{site_dir}: site fingerprint folder does not exist")
        dirs.append(site_dir)
    stamp = tuple((str(p), p.stat().st_mtime_ns) for d in dirs for p in sorted(d.rglob("*.y*ml")))
    cached = _RULES_CACHE.get(stamp)
    if cached is not None:
        return cached
    try:
        rules = load_rules(dirs)
    except RuleError as e:
        raise InputError(str(e)) from None
    _RULES_CACHE.clear()
    _RULES_CACHE[stamp] = rules
    return rules


@lru_cache(maxsize=1)
def oui_table() -> OuiTable:
    """The MAC prefix table shipped in ``fingerprints/oui/``."""
    return OuiTable.load(data_dir("fingerprints") / "oui" / "manuf.tsv.gz")


def parser_registry(ports: dict[str, tuple[int, ...]]) -> tuple[ParserSpec, ...]:
    """The parser registry with extra server ports added by parser name.

    Raises :class:`InputError` for a name no parser has."""
    known = {spec.name for spec in REGISTRY}
    unknown = sorted(set(ports) - known)
    if unknown:
        raise InputError(
            f"--port: no parser named {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return tuple(
        replace(spec, tcp_ports=tuple(dict.fromkeys(spec.tcp_ports + ports.get(spec.name, ()))))
        for spec in REGISTRY
    )


def quick_id(path: str) -> str:
    """A cheap identity for a capture file: SHA-256 of its size and its first and last
    64 KiB. Equal files have equal quick ids; files with equal quick ids are compared by
    their full SHA-256."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(b"%d|" % size)
    with open(path, "rb") as fh:
        h.update(fh.read(65536))
        if size > 65536:
            fh.seek(max(65536, size - 65536))
            h.update(fh.read(65536))
    return h.hexdigest()


def _run(
    reg: Any,
    merge: LazyMerge,
    result: ReplayResult,
    paths: Sequence[str],
    force: bool,
    progress: ProgressFn | None,
    config: FlowConfig | None,
    hashed: Future[dict[str, str]],
    quick: dict[str, str],
    registry: tuple[ParserSpec, ...],
    rules: RuleSet,
    segmentation: Any = None,
    method: Any = None,
) -> None:
    started = time.perf_counter()
    with RunWriter(reg) as writer:
        run_id = writer.begin(source=" ".join(paths), command="replay")
        pipeline = Pipeline(writer, registry, rules, oui_table(), config, segmentation, method)
        try:
            pipeline.process(merge.batches(), progress)
            pipeline.end_flows()
        finally:
            for r in merge.readers:
                r.close()
        stats = pipeline.stats
        result.errors.extend(e for e in merge.errors if e not in result.errors)
        for r in merge.readers:
            result.files.append(r.stats)
            result.warnings.extend(r.stats.warnings)
        for linktype in pipeline.unsupported_types:  # one warning per link type, naming files
            where = ", ".join(s.path for s in result.files if linktype in s.linktypes)
            log.warning(
                "%s: link type %d (%s) is not supported; its frames are counted and skipped",
                where or "input",
                linktype,
                LINKTYPE_NAMES.get(linktype, "unknown"),
            )
        if stats.packets == 0 and (result.errors or result.warnings):
            # Nothing could be read: record nothing, so that a fixed file replays later.
            writer.rollback()
            raise InputError("\n".join(result.errors + result.warnings))
        digests = hashed.result()
        for s in result.files:
            if s.path in digests:
                s.sha256 = digests[s.path]
        # Stdin and pipes are identified only now that they are read (and a file first
        # recorded from stdin has no quick id): when everything read is already recorded,
        # the run is dropped.
        if not force:
            known = recorded_captures(reg, [s.sha256 for s in result.files])
            if len(known) == len({s.sha256 for s in result.files}):
                writer.rollback()
                for s in result.files:
                    result.already_recorded.append((s.path, known[s.sha256]))
                result.files.clear()
                return
        for s in result.files:
            writer.add(
                "captures",
                (
                    run_id,
                    s.path,
                    s.sha256,
                    quick.get(s.path),
                    s.size,
                    s.format,
                    s.packets,
                    s.bytes,
                    s.first_ts_ns,
                    s.last_ts_ns,
                    sorted(s.linktypes),
                    list(s.warnings),
                ),
            )
        firsts = [s.first_ts_ns for s in result.files if s.first_ts_ns is not None]
        lasts = [s.last_ts_ns for s in result.files if s.last_ts_ns is not None]
        inventory = pipeline.write_state(
            first_ts=ns_to_datetime(min(firsts)) if firsts else None,
            last_ts=ns_to_datetime(max(lasts)) if lasts else None,
        )
        writer.commit()
    result.run_id = run_id
    result.packets = stats.packets
    result.bytes = stats.bytes
    result.flows = stats.flows
    result.duplicates = stats.duplicates
    result.skipped_frames = sum(stats.unsupported.values())
    result.anomalies = pipeline.anomaly_counts()
    result.assets = inventory.assets
    result.findings = list(pipeline.findings)
    result.seconds = time.perf_counter() - started


#: Columns ``medmon flows`` shows in a table (all columns go to json/csv).
FLOW_TABLE_COLUMNS = (
    "first_seen",
    "proto",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "vlan",
    "app",
    "state",
    "packets_to_server",
    "packets_to_client",
    "bytes_to_server",
    "bytes_to_client",
)


def flows(
    *,
    db: str | None = None,
    run_id: int | None = None,
    ip: str | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The recorded flows (of one run, involving one address, or all), oldest first."""
    return _select(
        "flows",
        ("client_ip", "server_ip"),
        db=db,
        run_id=run_id,
        ip=ip,
        limit=limit,
        order="first_seen, flow_uid",
    )


def _select(
    table: str,
    address_columns: tuple[str, ...],
    *,
    db: str | None,
    run_id: int | None,
    ip: str | None,
    limit: int | None,
    order: str,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Rows of one register table, optionally of one run and involving one address."""
    with open_register(db or default_db(), read_only=True) as reg:
        sql = f"SELECT * FROM {table}"
        where: list[str] = []
        params: list[Any] = []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if ip is not None:
            where.append("(" + " OR ".join(f"{c} = ?" for c in address_columns) + ")")
            params.extend([ip] * len(address_columns))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return reg.query(sql, params)


def dicom(
    *, db: str | None = None, run_id: int | None = None, ip: str | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:  # fmt: skip
    """The DICOM associations recorded (of one run, involving one address), oldest first."""
    return _select(
        "dicom_associations", ("client_ip", "server_ip"), db=db, run_id=run_id, ip=ip,
        limit=limit, order="ts, flow_uid",
    )  # fmt: skip


def dicom_devices(
    *, db: str | None = None, run_id: int | None = None, ip: str | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:  # fmt: skip
    """The device attributes read from DICOM datasets, oldest first."""
    return _select(
        "dicom_devices", ("ip",), db=db, run_id=run_id, ip=ip, limit=limit,
        order="ts, flow_uid",
    )  # fmt: skip


def hl7(
    *, db: str | None = None, run_id: int | None = None, ip: str | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:  # fmt: skip
    """The HL7 v2 messages recorded (header fields only), oldest first."""
    return _select(
        "hl7_messages", ("client_ip", "server_ip"), db=db, run_id=run_id, ip=ip, limit=limit,
        order="ts, flow_uid",
    )  # fmt: skip


def runs(*, db: str | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The recorded runs, newest last."""
    with open_register(db or default_db(), read_only=True) as reg:
        return reg.query("SELECT * FROM runs ORDER BY run_id")


__all__ = [
    "DEFAULT_DB",
    "InputError",
    "RegisterError",
    "ReplayResult",
    "default_db",
    "dicom",
    "dicom_devices",
    "flows",
    "hl7",
    "replay",
    "runs",
]


def assets(
    *,
    db: str | None = None,
    ip: str | None = None,
    device_class: str | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The device inventory: one row per device, by address."""
    with open_register(db or default_db(), read_only=True) as reg:
        where: list[str] = []
        params: list[Any] = []
        if ip is not None:
            where.append("(ip = ? OR list_contains(addresses, ?))")
            params.extend([ip, ip])
        if device_class is not None:
            where.append("device_class = ?")
            params.append(device_class)
        sql = "SELECT * FROM assets"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ip NULLS LAST, asset_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return reg.query(sql, params)


#: Columns ``medmon assets`` shows in a table (all columns go to json/csv).
ASSET_TABLE_COLUMNS = (
    "ip",
    "mac",
    "hostname",
    "vendor",
    "model",
    "device_class",
    "os",
    "software_version",
    "patchable",
    "confidence",
    "last_seen",
)


class NotFound(InputError):
    """The address or MAC names no device of the register."""


def explain(
    who: str, *, db: str | None = None, site_rules: str | None = None, as_of: date | None = None
) -> str:
    """``medmon fingerprint explain``: why the device at address or MAC ``who`` is what the
    inventory says, from its signals and the current rules (text)."""
    from monitor.fingerprint.assets import device
    from monitor.fingerprint.explain import render

    rules = fingerprint_rules(site_rules)
    key = who.strip().lower()
    with open_register(db or default_db(), read_only=True) as reg:
        _names, found = reg.query(
            """
            SELECT asset_id, ip, mac FROM assets
            WHERE ip = ? OR lower(mac) = ? OR list_contains(addresses, ?) OR asset_id = ?
            ORDER BY last_seen DESC LIMIT 1
            """,
            [who, key, who, who],
        )
        if not found:
            raise NotFound(f"{who}: no device with this address or MAC in {reg.path}")
        asset_id, ip, mac = found[0]
        _names, signals = reg.query(
            """
            SELECT kind, value, first_seen, last_seen, source FROM asset_signals
            WHERE asset_id = ? ORDER BY kind, last_seen DESC, value
            """,
            [asset_id],
        )
    dev = device(asset_id, ip, mac, [tuple(s) for s in signals])
    fp = Engine(rules).fingerprint(dev, as_of or date.today())
    return render(dev, fp, rules)


def lint_fingerprints(paths: Sequence[str] = ()) -> list[str]:
    """``medmon fingerprint lint``: one ``file:line: ...`` line per problem in the rule folders
    ``paths`` (default: the shipped rules and the site folder). Site folders are checked
    together with the shipped rules they extend."""
    from monitor.fingerprint.rules import lint

    shipped = data_dir("fingerprints")
    dirs = [shipped]
    for p in paths:
        d = Path(p)
        if not d.exists():
            return [f"{p}: no such file or directory"]
        if d.resolve() != shipped.resolve():
            dirs.append(d)
    if not paths:
        site = site_fingerprints()
        if site is not None:
            dirs.append(site)
    return lint(dirs)


@dataclass
class SniffResult:
    """What a live capture did."""

    run_id: int = 0
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    assets: int = 0
    findings: int = 0  #: policy findings of the run so far (--policy)
    received: int = 0  #: packets the capture received
    dropped_kernel: int = 0  #: packets the kernel dropped: medmon did not keep up
    dropped_interface: int = 0  #: packets the interface or its driver dropped
    flushes: int = 0  #: times the run's state was committed
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  #: flushes that had to wait, reloads

    @property
    def dropped(self) -> int:
        """Packets lost before medmon saw them."""
        return self.dropped_kernel + self.dropped_interface


#: A live run writes its state every this many seconds by default (``--flush-every``).
DEFAULT_FLUSH_SECONDS = 60.0
#: ... or sooner, when this many rows wait to be written (bounds memory at high rates), looked
#: at every PENDING_CHECK_MASK + 1 frames.
FLUSH_PENDING_ROWS = 200_000
PENDING_CHECK_MASK = 4095
#: The first and the last write of a live run wait this long (seconds) for another process
#: (a reader such as ``medmon assets``) to let go of the register.
REGISTER_WAIT = 30.0


def open_when_free(dbpath: str, wait: float) -> Register:
    """:func:`~monitor.register.open_register`, trying again for up to ``wait`` seconds while
    another process holds the file (:class:`~monitor.register.RegisterBusy`); any other
    :class:`~monitor.register.RegisterError` is raised at once."""
    until = time.monotonic() + wait
    while True:
        try:
            return open_register(dbpath)
        except RegisterBusy:
            if time.monotonic() >= until:
                raise
            time.sleep(0.25)


def sniff(
    iface: str,
    *,
    db: str | None = None,
    bpf: str | None = None,
    duration: float | None = None,
    flush_every: float = DEFAULT_FLUSH_SECONDS,
    site_rules: str | None = None,
    config: FlowConfig | None = None,
    keep_pcap: str | None = None,
    keep_minutes: int = 10,
    buffer_mib: int = 64,
    progress: ProgressFn | None = None,
    on_flush: Callable[[SniffResult], None] | None = None,
    stop: threading.Event | None = None,
    reload: threading.Event | None = None,
    policy: str | None = None,
    risk: str | None = None,
    immediate: bool = False,
) -> SniffResult:
    """Capture from interface ``iface`` (a switch's mirror port) into the register until
    ``duration`` seconds have passed or ``stop`` is set (safe from a signal handler: the
    capture then ends, the frames already captured are read, every flow is written).

    The pipeline is the replay's (:class:`monitor.pipeline.Pipeline`); the frames come from
    :class:`monitor.live.LiveCapture` (tcpdump writing into a pipe: receive only). The run's
    state is written and committed every ``flush_every`` seconds (by a thread, also when no
    packet arrives), so the register is current and a crash loses at most one interval; the
    register is opened only for those writes, so that ``medmon assets`` and the other readers
    can open it in between (a write that finds a reader holding it is done at the next flush;
    the first and the last wait for the reader, up to :data:`REGISTER_WAIT` seconds). ``reload``
    set: the fingerprint rules are read again at the next flush (an invalid file keeps the
    rules in use, with a warning). With ``keep_pcap``, the last
    ``keep_minutes`` minutes of frames are kept as evidence in rolling pcap files there.
    ``immediate``: tcpdump's ``--immediate-mode`` (each packet handed over as it arrives, for
    more CPU) instead of the kernel's block ring (see :mod:`monitor.live`).
    Raises :class:`InputError` (bad rules, interface or filter) and
    :class:`~monitor.register.RegisterError`.
    """
    from monitor.live import LiveCapture, LiveCaptureError, PcapRing

    started = time.perf_counter()
    result = SniffResult()
    rules = fingerprint_rules(site_rules)
    segmentation = load_policy_file(policy) if policy else None
    method = load_risk_method(risk, rules) if policy or risk else None
    registry = parser_registry({})
    dbpath = db or default_db()
    stop = stop or threading.Event()
    reload = reload or threading.Event()
    source = f"live:{iface}" + (f" filter {bpf!r}" if bpf else "")
    # The run exists from the start (a reader such as `medmon assets` may hold the file for a
    # moment: a service that starts then waits for it rather than failing).
    with open_when_free(dbpath, REGISTER_WAIT) as reg:
        writer = RunWriter(reg, batch_rows=1 << 62)
        result.run_id = writer.begin(source=source, command="sniff")
        writer.commit()
    writer.attach(None)
    pipeline = Pipeline(writer, registry, rules, oui_table(), config, segmentation, method)
    live = LiveCapture(iface, bpf=bpf, buffer_mib=buffer_mib, immediate=immediate)
    ring: PcapRing | None = None  # opened at the first frame, with its link type
    try:
        live.start()
    except LiveCaptureError as e:
        _forget_run(dbpath, result.run_id)
        raise InputError(str(e)) from None

    def write(final: bool) -> None:
        nonlocal rules
        if reload.is_set():
            reload.clear()
            try:
                rules = pipeline.rules = fingerprint_rules(site_rules)
                if policy:
                    pipeline.policy = load_policy_file(policy)
                    pipeline.risk = load_risk_method(risk, rules)
                log.info("fingerprint rules%s reloaded", " and policy" if policy else "")
            except InputError as e:
                result.warnings.append(f"rules not reloaded: {e}")
                log.warning("fingerprint rules not reloaded (the rules in use stay): %s", e)
        if not final:
            live.request_stats()
            # Capture times are the wall clock here: flows idle since are over, even when
            # nothing else arrives to move the capture clock.
            pipeline.expire(max(time.time_ns(), span[1] or 0))
        cs = live.stats()
        stats = pipeline.stats
        try:
            # A reader may hold the register for a moment: the last write waits for it; the
            # others try again at the next flush (below).
            with open_when_free(dbpath, REGISTER_WAIT if final else 0.0) as wreg:
                writer.attach(wreg)
                writer.begin_transaction()
                inventory = pipeline.write_state(
                    received=cs.received,
                    dropped=cs.dropped_kernel + cs.dropped_interface,
                    dropped_kernel=cs.dropped_kernel,
                    dropped_interface=cs.dropped_interface,
                    flushes=result.flushes + 1,
                    packets=counted[0],
                    bytes=counted[1],
                    first_ts=ns_to_datetime(span[0]),
                    last_ts=ns_to_datetime(span[1]),
                )
                writer.commit()
                writer.attach(None)
        except RegisterError as e:
            writer.attach(None)
            if final:
                raise
            # A reader holds the register: keep everything in memory and try at the next one.
            result.warnings.append(str(e))
            log.warning("%s; the capture goes on and writes at the next flush", e)
            return
        result.flushes += 1
        result.assets = inventory.assets
        result.findings = len(pipeline.findings)
        result.packets, result.bytes, result.flows = counted[0], counted[1], stats.flows
        result.received = cs.received
        result.dropped_kernel, result.dropped_interface = cs.dropped_kernel, cs.dropped_interface
        if on_flush is not None:
            on_flush(result)

    span: list[int | None] = [None, None]  # capture times of the first and the last frame
    counted = [0, 0]  # frames and bytes read (the flow table's totals lag behind)
    # The pipeline's state belongs to whoever holds `busy`: the packet loop, except during
    # each read of the capture pipe (a chunk of up to 120 KiB; a read waits there while the
    # network is quiet); the flusher thread takes it then, so that a quiet network is flushed
    # (and its idle flows ended) on time too. Released per read rather than per frame: a lock
    # round trip per packet is a cost the packet loop does not need.
    busy = threading.Lock()
    flusher_error: list[BaseException] = []

    def frames() -> Iterator[Any]:
        nonlocal ring
        n = 0
        # Frames, or blocks of a read's frames (the C record loop): a block is counted whole
        # here, and the flow table takes it as it is.
        for item in live.frames(unlocked=busy, blocks=True):
            if item.__class__ is tuple:
                k, first, last, wirelen = 1, item[0], item[0], item[3]
                each: Any = (item,)
            else:
                k, first, last, wirelen = len(item), item.first_ts, item.last_ts, item.wirelen
                each = item
            if span[0] is None:
                span[0] = first
            span[1] = last
            counted[1] += wirelen
            if keep_pcap is not None:
                for ts, linktype, data, wl in each:
                    if ring is None:
                        ring = PcapRing(Path(keep_pcap), keep_minutes, linktype=linktype)
                    ring.write(ts, data, wl)
            counted[0] = n = n + k
            yield item
            every = PENDING_CHECK_MASK + 1
            if (n - k) // every != n // every and writer.pending_rows >= FLUSH_PENDING_ROWS:
                write(final=False)

    def flusher() -> None:
        while not stop.wait(flush_every):
            with busy:
                if stop.is_set():
                    return
                try:
                    write(final=False)
                except BaseException as e:  # reported by the packet loop's thread
                    flusher_error.append(e)
                    stop.set()
                    return

    # Stopping ends tcpdump (by its PID) once its last packets are handed over; its pipe then
    # ends and so does the loop below. A thread does it, so that a signal handler only has to
    # set the event.
    def stopper() -> None:
        stop.wait()
        live.finish()

    threading.Thread(target=stopper, name="medmon-stop", daemon=True).start()
    flush_thread = threading.Thread(target=flusher, name="medmon-flush", daemon=True)
    timer: threading.Timer | None = None
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    busy.acquire()
    flush_thread.start()
    try:
        pipeline.process(frames(), progress)
        # The pipe ended: asked to (stop), or tcpdump ended by itself (the interface vanished).
        failure = None
        if not stop.is_set():
            live.stop()  # tcpdump closed its pipe by itself: wait for it, then ask why
            failure = live.failure
    finally:
        busy.release()
        stop.set()  # ends the stopper and the flusher
        if timer is not None:
            timer.cancel()
        flush_thread.join()
        live.stop()
        if ring is not None:
            ring.close()
    with gc_paused():  # as in replay: no full collections over the run's objects
        pipeline.end_flows()
        write(final=True)  # also after a failed flush: what can be written is
    live.close()
    if flusher_error:
        raise flusher_error[0]
    result.seconds = time.perf_counter() - started
    if failure is not None:
        # Everything is written; the caller (a service manager) should know and restart.
        raise CaptureFailed(failure, result)
    return result


class CaptureFailed(InputError):
    """The capture ended by itself (tcpdump exited: the interface disappeared...). What was
    captured is recorded; ``result`` says what."""

    def __init__(self, message: str, result: SniffResult) -> None:
        super().__init__(message)
        self.result = result


def _forget_run(dbpath: str, run_id: int) -> None:
    """Remove a live run that never captured (its interface could not be opened)."""
    with open_when_free(dbpath, REGISTER_WAIT) as reg:
        reg.con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])


def load_policy_file(path: str) -> Any:
    """A segmentation policy file, loaded and linted; :class:`InputError` (one line per
    problem, ``file:LINE: ...``) when it is invalid."""
    from monitor.policy import PolicyError, load_policy

    if not os.path.isfile(path):
        raise InputError(f"{path}: no such policy file")
    try:
        return load_policy(path)
    except PolicyError as e:
        raise InputError(str(e)) from None


def load_risk_method(path: str | None, rules: Any = None) -> Any:
    """The risk method that scores findings (``path``, else the shipped one), checked against
    the device classes of ``rules`` (default: the shipped vocabulary); :class:`InputError`
    (one ``file:LINE: ...`` line per problem) when it is invalid."""
    from monitor.policy.scoring import DeviceClassInfo, ScoringError, load_method

    classes = None
    if rules is not None:
        classes = {name: DeviceClassInfo(dc.category, dc.regulated)
                   for name, dc in rules.vocabulary.device_classes.items()}  # fmt: skip
    try:
        return load_method(path, classes)
    except ScoringError as e:
        raise InputError(str(e)) from None


def exceptions(
    *, db: str | None = None, run_id: int | None = None, limit: int | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The risk register's findings, worst and most recent first (of one run: last seen in
    it)."""
    with open_register(db or default_db(), read_only=True) as reg:
        sql = "SELECT * FROM exceptions"
        params: list[Any] = []
        if run_id is not None:
            sql += " WHERE last_run = ?"
            params.append(run_id)
        sql += """ ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1
                   WHEN 'medium' THEN 2 ELSE 3 END, last_seen DESC, exception_id"""
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return reg.query(sql, params)
