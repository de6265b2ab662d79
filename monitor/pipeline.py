"""One run's pipeline, the same for a replay and a live capture: frames -> flows -> streams ->
parsers and observations -> register, then the inventory.

:class:`Pipeline` owns the flow table, the stream manager and the observation collector of a
run and writes into the run's :class:`~monitor.register.ingest.RunWriter`. A replay feeds it
every frame and writes its state once; a live capture (``medmon sniff``) writes its state at
intervals, each a committed transaction, so the register is current and a crash loses at most
one interval. Writing the state again for the same run replaces what the previous write put
there (observations, anomaly counts, totals) and updates the inventory without counting the
run twice.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from monitor import anomalies as anomaly_catalogue
from monitor.fingerprint.assets import fingerprinter, signal_kinds
from monitor.fingerprint.engine import Engine
from monitor.fingerprint.oui import OuiTable
from monitor.fingerprint.rules import RuleSet
from monitor.flows import Flow, FlowConfig, FlowTable, TableStats
from monitor.observations import ObservationCollector
from monitor.parsers import DATAGRAM_REGISTRY, ParserSpec
from monitor.policy.check import zone_of
from monitor.policy.findings import Finding, run_findings
from monitor.policy.model import Policy
from monitor.policy.scoring import DeviceClassInfo, RiskMethod, load_method, score_findings
from monitor.register.exceptions import finding_inputs, record_findings, set_zones
from monitor.register.ingest import RunWriter, label_dicom_tls
from monitor.register.inventory import InventoryResult, update_inventory
from monitor.streams import StreamManager

log = logging.getLogger("medmon")

#: How often (packets) the young cyclic garbage is collected while the collector is paused.
GC_EVERY_PACKETS = 1 << 20

ProgressFn = Callable[[TableStats, int], None]


def ns_to_datetime(ns: int | None) -> datetime | None:
    """A capture time in ns since the epoch as an aware UTC datetime (µs precision)."""
    if ns is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (and restored as it was). While a run holds
    millions of live objects (flows, observations, pending rows), each of its automatic
    full collections walks all of them, for almost no garbage: nothing here makes cycles.

    On the way out, what was allocated meanwhile is moved to the oldest generation as it is
    (``gc.freeze()`` then ``gc.unfreeze()``: two list splices; not when the caller keeps
    objects frozen). Left in the youngest, the next automatic collection, however small,
    would walk every object still alive from the run (0.15 s after a replay of a million
    packets)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


class Pipeline:
    """The stages of one run; see the module docstring."""

    def __init__(
        self,
        writer: RunWriter,
        registry: tuple[ParserSpec, ...],
        rules: RuleSet,
        oui: OuiTable | None,
        config: FlowConfig | None = None,
        policy: Policy | None = None,
        risk: RiskMethod | None = None,
    ) -> None:
        self.writer = writer
        #: The segmentation policy: its findings go to the risk register at each write.
        self.policy = policy
        #: The risk method that scores the findings (the shipped one when None).
        self.risk = risk
        #: The findings of the last write (all of the run so far).
        self.findings: list[Finding] = []
        self.run_id = writer.run_id
        self.rules = rules
        self.oui = oui
        self.unsupported_types: list[int] = []
        self.stream_anomalies: dict[str, int] = {}
        run_id = self.run_id
        add = writer.add

        def flow_sink(f: Flow) -> None:
            add("flows", f.row(run_id))

        config = config or FlowConfig()
        # Parsers' server ports also tell a mid-stream flow's server from its client.
        config = replace(
            config,
            service_ports=config.service_ports
            | frozenset(p for spec in registry for p in spec.tcp_ports),
        )
        self.collector = ObservationCollector(DATAGRAM_REGISTRY, anomaly=self._stream_anomaly)
        self.streams = StreamManager(
            registry,
            emit=writer.add_record,
            anomaly=self._stream_anomaly,
            observer=self.collector.flow_observer,
        )
        self.table = FlowTable(
            flow_sink,
            streams=self.streams,
            config=config,
            on_unsupported=self.unsupported_types.append,
            observer=self.collector,
        )

    def _stream_anomaly(self, name: str, flow_uid: str | None, detail: str | None) -> None:
        self.stream_anomalies[name] = self.stream_anomalies.get(name, 0) + 1

    @property
    def stats(self) -> TableStats:
        """What the flow table counted so far."""
        return self.table.stats

    def process(self, frames: Iterable[Any], progress: ProgressFn | None = None) -> None:
        """Count ``frames`` into the run (returns when the iterable ends).

        The cyclic garbage collector would walk the live flows' objects again and again
        (10-15% of a replay); almost nothing here makes cycles, so it is paused and collects
        the young generations every :data:`GC_EVERY_PACKETS` packets instead."""
        next_gc = self.table.stats.packets + GC_EVERY_PACKETS

        def tick(stats: TableStats, live_flows: int) -> None:
            nonlocal next_gc
            if stats.packets >= next_gc:
                next_gc = stats.packets + GC_EVERY_PACKETS
                gc.collect(1)
            if progress is not None:
                progress(stats, live_flows)

        with gc_paused():
            self.table.process(frames, progress=tick)

    def expire(self, now_ns: int) -> None:
        """End the flows whose timeouts have passed at ``now_ns`` (wall clock, live runs)."""
        self.table.sweep(now_ns)

    def end_flows(self) -> None:
        """End every live flow (end of input): each reaches the register."""
        self.table.flush()

    def anomaly_counts(self) -> dict[str, int]:
        """Every anomaly of the run so far with its count (decoder, flows and streams)."""
        counts = dict(self.table.stats.anomalies)
        for name, n in self.stream_anomalies.items():
            counts[name] = counts.get(name, 0) + n
        return counts

    def class_info(self) -> dict[str, DeviceClassInfo]:
        """The rules' device classes as risk scoring sees them (category, regulated)."""
        return {name: DeviceClassInfo(dc.category, dc.regulated)
                for name, dc in self.rules.vocabulary.device_classes.items()}  # fmt: skip

    def _check_policy(self) -> None:
        """The run's findings into ``exceptions``, and every device's zone into ``assets``."""
        policy = self.policy
        assert policy is not None
        reg = self.writer.reg
        classes = self.rules.vocabulary.device_classes

        def regulated(device_class: str | None) -> bool:
            dc = classes.get(device_class or "")
            return bool(dc is not None and dc.regulated)

        inputs = finding_inputs(reg, self.run_id)
        self.findings = run_findings(policy, regulated=regulated, run_id=self.run_id, **inputs)
        if self.risk is None:
            self.risk = load_method(classes=self.class_info())
        score_findings(self.findings, self.risk, self.class_info())
        record_findings(reg, self.run_id, self.findings)
        zones = {
            a["asset_id"]: zone_of(policy, a["ip"], a.get("vlan"), a)
            for a in inputs["assets"].values()
            if a.get("ip")
        }
        set_zones(reg, zones)

    def write_state(self, **totals: Any) -> InventoryResult:
        """Write the run's state so far into its (open) transaction: pending rows, its
        observations and anomaly counts (replacing an earlier write's), DICOM-over-TLS labels,
        the inventory, and the run's totals (``totals``: more ``runs`` columns, or values that
        replace the flow table's, which it updates only every 65,536 packets)."""
        writer = self.writer
        con = writer.reg.con
        run_id = self.run_id
        writer.flush()
        con.execute("DELETE FROM observations WHERE run_id = ?", [run_id])
        writer.add_many("observations", self.collector.rows(run_id))
        writer.flush()
        label_dicom_tls(writer.reg, run_id)
        inventory = update_inventory(
            writer,
            run_id,
            fingerprint=fingerprinter(Engine(self.rules), date.today()),
            oui_lookup=self.oui.lookup if self.oui is not None else None,
            kinds=signal_kinds(self.rules),
        )
        if self.policy is not None:
            self._check_policy()
        stats = self.table.stats
        con.execute("DELETE FROM anomalies WHERE run_id = ?", [run_id])
        for name, n in sorted(self.anomaly_counts().items()):
            first = stats.anomaly_first.get(name, (None, None))
            if name not in anomaly_catalogue.CATALOGUE:
                log.debug("uncatalogued anomaly %s", name)
            writer.add("anomalies", (run_id, name, n, first[0], first[1]))
        writer.flush()
        run_totals: dict[str, Any] = {
            "packets": stats.packets,
            "bytes": stats.bytes,
            "duplicates": stats.duplicates,
            "skipped": sum(stats.unsupported.values()),
            "flows": stats.flows,
        }
        run_totals.update(totals)
        writer.finish_run(**run_totals)
        return inventory
