"""The ``medmon`` command line (click). It parses arguments, calls :mod:`monitor.api` and
formats the result; nothing else [sqlite-utils cli.py].

Exit codes: 0 done, 1 findings over a threshold when asked (``--fail-on``), 2 bad input or
usage, 70 an internal error (a bug), 130 interrupted. Bad input is one line on stderr naming
the file and the fault; a traceback only with ``--debug``. Errors, warnings and notices go
through the ``medmon`` logger, so ``--log-format json`` turns all of them into JSON lines.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import click

from monitor import __version__, api
from monitor.register import RegisterError
from monitor.register.export import neutralize
from monitor.source import CaptureError

log = logging.getLogger("medmon")


# ---------------------------------------------------------------- logging


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for forwarding to a SIEM."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": datetime.fromtimestamp(record.created).astimezone().isoformat(),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            },
            ensure_ascii=False,
        )


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        return f"medmon: {level}: {record.getMessage()}"


def _setup_logging(log_format: str, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger("medmon")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


# ---------------------------------------------------------------- shared options


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--db FILE``, the same on every command."""
    return click.option(
        "--db",
        "db",
        metavar="FILE",
        envvar="MEDMON_DB",
        default=api.DEFAULT_DB,
        show_default=True,
        help="The register (DuckDB file). Also MEDMON_DB.",
    )(fn)


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--format table|json|csv``, the same on every listing command."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json", "csv"]),
        default="table",
        show_default=True,
        help="table for people; json (an array of objects keyed by column) or csv for tools.",
    )(fn)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def emit_rows(
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str,
    table_columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Write rows to stdout as a rich table, a JSON array of objects, or CSV."""
    out = sys.stdout
    if fmt == "json":
        objs = [{n: _jsonable(v) for n, v in zip(names, row, strict=True)} for row in rows]
        out.write(json.dumps(objs, indent=2, ensure_ascii=False) + "\n")
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names)
        for row in rows:
            w.writerow(["" if v is None else _csv_cell(v) for v in row])
        out.write(buf.getvalue())
        return
    from rich.console import Console
    from rich.table import Table

    cols = list(table_columns or names)
    idx = [list(names).index(c) for c in cols]
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in cols:
        table.add_column(c, overflow="fold", no_wrap=True)
    for row in rows:
        table.add_row(
            *("" if row[i] is None else _fmt_cell(row[i], cols[k]) for k, i in enumerate(idx))
        )
    # A pipe gets every column at full width; a terminal gets its own width.
    width = None if out.isatty() else 400
    Console(file=out, soft_wrap=False, width=width).print(table)
    if not rows:
        click.echo("(no rows)", err=True)


def _csv_cell(value: Any) -> Any:
    """A CSV cell: lists and objects as JSON (not Python's repr), the rest as in JSON output;
    text a spreadsheet would run as a formula (= + - @ ...) made text with a leading quote
    (values come from the network: :func:`monitor.register.export.neutralize`)."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=_jsonable, ensure_ascii=False)
    return neutralize(_jsonable(value))


def _fmt_cell(value: Any, column: str) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, int) and not isinstance(value, bool):
        counted = column.startswith(("packets", "bytes", "payload")) or column == "flows"
        return f"{value:,}" if counted else str(value)
    return str(value)


# ---------------------------------------------------------------- the group


class _Group(click.Group):
    """Turns known errors into one line on stderr and exit code 2 (--debug: the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RegisterError, CaptureError, api.InputError) as e:
            if (ctx.obj or {}).get("debug"):
                raise
            for line in str(e).splitlines():
                log.error("%s", line)
            ctx.exit(2)
        except KeyboardInterrupt:
            log.warning("interrupted; nothing from this run was recorded")
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            if (ctx.obj or {}).get("debug"):
                raise
            log.error("internal error: %s: %s (--debug shows the traceback)", type(e).__name__, e)
            ctx.exit(70)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="medmon")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line, for a SIEM.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, log_format: str, debug: bool) -> None:
    """medmon: a passive network monitor for hospital networks.

    It reads captures (or, later, a SPAN port), finds the conversations, DICOM and HL7 traffic
    and devices in them, and keeps what it learns in a DuckDB register.

    Example:

        medmon replay pcaps/ && medmon flows
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _setup_logging(log_format, debug)


def rules_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--rules DIR``: the site's own fingerprint rules, loaded after the shipped ones."""
    return click.option(
        "--rules",
        metavar="DIR",
        default=None,
        help="Site fingerprint rules folder "
        "[$MEDMON_SITE_FINGERPRINTS, else /etc/medmon/fingerprints].",
    )(fn)


def risk_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--risk FILE``: the risk method that scores findings (``policies/risk.yaml``)."""
    return click.option(
        "--risk",
        "risk_file",
        metavar="FILE",
        envvar="MEDMON_RISK",
        default=None,
        help="Risk scoring method (YAML) [$MEDMON_RISK, else the shipped policies/risk.yaml].",
    )(fn)


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@db_option
@click.option("--force", is_flag=True, help="Replay captures already recorded (same SHA-256).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option(
    "--max-flows",
    type=click.IntRange(min=1000),
    default=None,
    help="Live flows held before the least recently seen are flushed [250000].",
)
@click.option(
    "--port",
    "ports",
    metavar="PARSER=PORT",
    multiple=True,
    callback=lambda _ctx, _param, value: _parse_ports(value),
    help="Also parse this server port as this protocol, e.g. dicom=4242 or hl7=6661 "
    "(repeatable). Content probes find DICOM and HL7 on any port anyway.",
)
@rules_option
@click.option(
    "--policy", "policy_file", metavar="FILE", default=None,
    help="Check the run against this segmentation policy: findings go to the risk register.",
)  # fmt: skip
@click.option(
    "--fail-on", type=click.Choice(["low", "medium", "high", "critical"]), default=None,
    help="With --policy: exit 1 when the run found something this severe or worse.",
)  # fmt: skip
@risk_option
def replay(
    paths: tuple[str, ...],
    db: str,
    force: bool,
    quiet: bool,
    max_flows: int | None,
    ports: dict[str, tuple[int, ...]],
    rules: str | None,
    policy_file: str | None,
    fail_on: str | None,
    risk_file: str | None,
) -> None:
    """Analyse captures into the register.

    PATH is a pcap or pcapng file (also gzip-compressed), a directory (searched recursively;
    its captures are merged in time order), or - for standard input. A capture already in the
    register (same content) is skipped unless --force. One run is one transaction: an
    interrupted replay records nothing.

    Example:

        medmon replay pcaps/ --db site.duckdb
    """
    from monitor.flows import FlowConfig

    show = not quiet and sys.stderr.isatty()
    config = FlowConfig(max_flows=max_flows) if max_flows else None
    progress_ctx = _Progress() if show else None
    try:
        if progress_ctx is not None:
            with progress_ctx:
                result = api.replay(
                    paths,
                    db=db,
                    force=force,
                    progress=progress_ctx.update,
                    config=config,
                    ports=ports,
                    site_rules=rules,
                    policy=policy_file,
                    risk=risk_file,
                )
        else:
            result = api.replay(
                paths, db=db, force=force, config=config, ports=ports, site_rules=rules,
                policy=policy_file, risk=risk_file,
            )  # fmt: skip
    except api.InputError as e:
        _fail(e)
    for line in result.errors:
        log.error("%s", line)
    for line in result.warnings:
        log.warning("%s", line)
    for path, run_id in result.already_recorded:
        if not quiet:
            log.info("%s: already recorded in run %d; skipped (--force replays it)", path, run_id)
    if result.run_id is not None and not quiet:
        mb = result.bytes / 1e6
        msg = (
            f"run {result.run_id}: {result.packets:,} packets ({mb:,.1f} MB) from "
            f"{len(result.files)} capture(s), {result.flows:,} flows, {result.assets:,} devices, "
            f"{result.duplicates:,} duplicates, in {result.seconds:.2f} s "
            f"({result.packets_per_second:,.0f} packets/s) -> {db}"
        )
        if policy_file:
            msg += f"; {len(result.findings):,} findings"
        _summary(msg)
    if policy_file and result.run_id is not None:
        _warn_overdue(db)
    if fail_on is not None:
        if not policy_file:
            raise click.UsageError("--fail-on needs --policy")
        _fail_on(result.findings, fail_on)


def _fail_on(findings: list[Any], threshold: str) -> None:
    """Exit 1 when a finding is ``threshold`` or worse (for automation), naming how many."""
    from monitor.policy.findings import severity_at_least

    bad = [f for f in findings if severity_at_least(f.severity, threshold)]
    if bad:
        kinds = ", ".join(sorted({f.kind for f in bad}))
        log.warning("%d findings of severity %s or worse (%s)", len(bad), threshold, kinds)
        raise click.exceptions.Exit(1)


def _warn_overdue(db: str) -> None:
    """Warn about accepted or mitigated exceptions whose review date has passed."""
    from monitor import api_register

    _names, rows = api_register.list_exceptions(db=db, overdue=True)
    if rows:
        log.warning(
            "%d accepted or mitigated exceptions are past their review date "
            "(medmon register list --overdue)",
            len(rows),
        )


def _summary(msg: str) -> None:
    """A command's closing summary: on a terminal, else in the debug log."""
    if sys.stderr.isatty():
        click.echo(msg, err=True)
    else:
        log.debug(msg)


def _fail(error: Exception) -> NoReturn:
    """Bad input: its lines as errors, exit code 2."""
    for line in str(error).splitlines():
        log.error("%s", line)
    raise click.exceptions.Exit(2) from None


def _parse_ports(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """``("dicom=4242", "hl7=6661")`` -> ``{"dicom": (4242,), "hl7": (6661,)}``."""
    out: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, sep, port = value.partition("=")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise click.BadParameter(f"{value!r}: expected PARSER=PORT, e.g. dicom=4242")
        out[name.strip().lower()] = (*out.get(name.strip().lower(), ()), int(port))
    return out


class _Progress:
    """A rich progress display on stderr: packets, packets/s, bytes, flows."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("reading", total=None)
        self._start = 0.0
        #: Shown after the counters (a live capture: its drops and flushes).
        self.note = ""

    def __enter__(self) -> _Progress:
        import time

        self._start = time.perf_counter()
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def show(self, packets: int, nbytes: int, flows: int) -> None:
        """Show these counters (a live capture at each flush: the table's lag behind)."""
        import time

        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._progress.update(
            self._task,
            description=(
                f"{packets:,} packets  {packets / elapsed:,.0f} pkt/s  {nbytes / 1e6:,.1f} MB  "
                f"{flows:,} flows" + (f"  {self.note}" if self.note else "")
            ),
        )

    def update(self, stats: Any, live_flows: int) -> None:
        self.show(stats.packets, stats.bytes, stats.flows + live_flows)


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--run N``, ``--ip ADDRESS`` and ``--limit N``, the same on every listing."""
    fn = click.option(
        "--limit", type=click.IntRange(min=1), default=None, help="At most this many rows."
    )(fn)
    fn = click.option(
        "--ip", metavar="ADDRESS", default=None, help="Only rows involving this address."
    )(fn)
    return click.option("--run", "run_id", type=int, default=None, help="Only this run.")(fn)


@cli.command()
@db_option
@output_options
@filter_options
def flows(db: str, fmt: str, run_id: int | None, ip: str | None, limit: int | None) -> None:
    """The conversations seen: client, server, application, packets and bytes each way.

    Example:

        medmon flows --ip 10.20.0.11 --format json
    """
    names, rows = api.flows(db=db, run_id=run_id, ip=ip, limit=limit)
    emit_rows(names, rows, fmt, api.FLOW_TABLE_COLUMNS, title="flows")


@cli.command()
@db_option
@output_options
@filter_options
@click.option("--devices", is_flag=True, help="The device attributes read from datasets instead.")
def dicom(
    db: str, fmt: str, run_id: int | None, ip: str | None, limit: int | None, devices: bool
) -> None:
    """The DICOM associations seen: AE titles, software, services, result, DIMSE commands.

    With --devices, the device attributes read from the datasets (modality, manufacturer,
    model, software versions, serial number, station); patient and study attributes are
    never read.

    Example:

        medmon dicom --ip 10.30.0.10 --format json
    """
    if devices:
        names, rows = api.dicom_devices(db=db, run_id=run_id, ip=ip, limit=limit)
        device_cols = (
            "ts",
            "ip",
            "modality",
            "manufacturer",
            "model",
            "software_versions",
            "device_serial_number",
            "station_name",
        )
        emit_rows(names, rows, fmt, device_cols, title="dicom devices")
        return
    names, rows = api.dicom(db=db, run_id=run_id, ip=ip, limit=limit)
    cols = (
        "ts",
        "client_ip",
        "server_ip",
        "server_port",
        "calling_ae",
        "called_ae",
        "implementation_version_name",
        "acceptor_implementation_version_name",
        "result",
        "commands",
    )
    emit_rows(names, rows, fmt, cols, title="dicom associations")


@cli.command()
@db_option
@output_options
@filter_options
def hl7(db: str, fmt: str, run_id: int | None, ip: str | None, limit: int | None) -> None:
    """The HL7 v2 messages seen: who sent which message type to whom, and the ACKs.

    Only header fields (MSH, MSA) and device identifiers (PRT, OBX-18) are kept; segment names
    are listed, never their contents, so no patient data is stored.

    Example:

        medmon hl7 --ip 10.10.0.25 --format csv
    """
    names, rows = api.hl7(db=db, run_id=run_id, ip=ip, limit=limit)
    cols = (
        "ts",
        "client_ip",
        "server_ip",
        "server_port",
        "direction",
        "sending_application",
        "receiving_application",
        "message_type",
        "trigger_event",
        "version",
        "control_id",
        "ack_code",
    )
    emit_rows(names, rows, fmt, cols, title="hl7 messages")


@cli.command()
@db_option
@output_options
@click.option("--ip", metavar="ADDRESS", default=None, help="Only the device with this address.")
@click.option(
    "--class", "device_class", metavar="CLASS", default=None, help="Only this device class."
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many rows.")
def assets(db: str, fmt: str, ip: str | None, device_class: str | None, limit: int | None) -> None:
    """The device inventory: what each device is, its OS and software, whether it can be
    patched, and the evidence (in json/csv: which rule and which observation set each field).

    Example:

        medmon assets --class ct --format json
    """
    names, rows = api.assets(db=db, ip=ip, device_class=device_class, limit=limit)
    emit_rows(names, rows, fmt, api.ASSET_TABLE_COLUMNS, title="assets")


@cli.command()
@db_option
@click.option(
    "--format", "fmt", type=click.Choice(["graphml", "gexf", "dot", "json", "svg", "html"]),
    default="graphml", show_default=True,
    help="graphml or gexf (Gephi, yEd, networkx), dot (Graphviz), json (networkx "
    "node-link), svg (drawn by Graphviz dot: needs the graphviz package), html (one offline "
    "file to pan, zoom and click; needs graphviz too).",
)  # fmt: skip
@click.option(
    "-o", "--output", metavar="FILE", required=True, help="Where to write it; - for stdout."
)
@click.option(
    "--policy", "policy_file", metavar="FILE", default=None,
    help="Zones from this segmentation policy, and its decision on every edge (violations).",
)  # fmt: skip
def graph(db: str, fmt: str, output: str, policy_file: str | None) -> None:
    """The communication graph: devices, and the services between them, as a file.

    A node per device (asset id, address, host name, vendor, model, class, OS) and per
    address of no device (external: true); an edge client -> server per application protocol
    and server port, with packets, bytes, flows, first and last seen and the zones of both
    ends. In dot and svg, zones are clusters, device classes shapes and colours, and policy
    violations red (--policy: a deny rule or default decides the edge).

    Example:

        medmon graph --format graphml -o site.graphml --policy policies/default.yaml

        medmon graph --format dot -o - | dot -Tpdf -o site.pdf

        medmon graph --format html -o site.html --policy policies/default.yaml
    """
    from monitor import api_graph

    try:
        api_graph.graph(db=db, fmt=fmt, output=output, policy=policy_file)
    except api.InputError as e:
        _fail(e)


@cli.group()
def fingerprint() -> None:
    """Device fingerprint rules: explain a device, lint rule files.

    The rules are YAML files (fingerprints/README.md says how to write one); a site's own
    rules go in a folder of their own (--rules, $MEDMON_SITE_FINGERPRINTS or
    /etc/medmon/fingerprints) that upgrades never touch.

    Example:

        medmon fingerprint explain 10.20.0.21 && medmon fingerprint lint
    """


@fingerprint.command()
@click.argument("who", metavar="IP|MAC")
@db_option
@rules_option
def explain(who: str, db: str, rules: str | None) -> None:
    """Why a device is what the inventory says: its observations, the rules that fired, why
    each field has its value, and its observations as a ready match: block for a site rule.

    Example:

        medmon fingerprint explain 10.20.0.21
    """
    try:
        click.echo(api.explain(who, db=db, site_rules=rules))
    except api.InputError as e:
        _fail(e)


@fingerprint.command()
@click.argument("dirs", nargs=-1, metavar="[DIR]...")
def lint(dirs: tuple[str, ...]) -> None:
    """Check fingerprint rule files: one line per error, with file:line. Exit 2 on errors.

    With no DIR, the shipped rules and the site folder; a DIR is checked together with the
    shipped rules it extends (site rule ids start with 'site.').

    Example:

        medmon fingerprint lint /etc/medmon/fingerprints
    """
    errors = api.lint_fingerprints(dirs)
    for line in errors:
        click.echo(line)
    if errors:
        raise click.exceptions.Exit(2)


@cli.command()
@click.option("-i", "--interface", "iface", metavar="IFACE", help="The capture interface.")
@db_option
@click.option("--bpf", metavar="EXPR", default=None, help="Kernel capture filter (BPF).")
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
    help="Stop after this many seconds (default: until SIGINT or SIGTERM).",
)  # fmt: skip
@click.option(
    "--flush-every", type=click.FloatRange(min=0.1), default=api.DEFAULT_FLUSH_SECONDS,
    show_default=True, metavar="S", help="Write (commit) the run's state this often.",
)  # fmt: skip
@click.option(
    "--keep-pcap", metavar="DIR", default=None,
    help="Keep the last --keep-minutes minutes of frames as rolling pcap files here.",
)  # fmt: skip
@click.option("--keep-minutes", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--buffer-mib", type=click.IntRange(min=1), default=64, show_default=True,
    help="Kernel capture buffer: what absorbs a burst while medmon catches up.",
)  # fmt: skip
@click.option(
    "--immediate", is_flag=True,
    help="Have each packet handed over as it arrives (tcpdump --immediate-mode), instead of "
    "the kernel's blocks (up to 1 s late; less CPU, higher rates).",
)  # fmt: skip
@click.option(
    "--check", "check", metavar="IFACE", default=None,
    help="Only check IFACE: does it exist, is it up, is it receiving, may medmon capture.",
)  # fmt: skip
@rules_option
@click.option(
    "--policy", "policy_file", metavar="FILE", default=None,
    help="Check against this segmentation policy at each flush (SIGHUP reloads it).",
)  # fmt: skip
@risk_option
@click.option("--quiet", "-q", is_flag=True, help="No live status and no summary.")
def sniff(
    iface: str | None,
    db: str,
    bpf: str | None,
    duration: float | None,
    flush_every: float,
    keep_pcap: str | None,
    keep_minutes: int,
    buffer_mib: int,
    immediate: bool,
    check: str | None,
    rules: str | None,
    policy_file: str | None,
    risk_file: str | None,
    quiet: bool,
) -> None:
    """Capture live from a mirror (SPAN) port into the register. Receive only: medmon never
    transmits. The interface is put in promiscuous mode and tcpdump captures into a pipe.

    The run's state is committed every --flush-every seconds, so the register stays current
    and a crash loses at most one interval. SIGINT or SIGTERM: write everything and exit 0.
    SIGHUP: read the fingerprint rules again. Packets the kernel or the interface dropped
    are recorded in the run (runs.dropped_kernel, runs.dropped_interface).

    Example:

        medmon sniff -i eth1 --db /var/lib/medmon/eth1.duckdb --bpf 'not port 22'
    """
    import signal
    import threading

    if check is not None:
        from monitor.live import check_interface

        results = check_interface(check)
        for _ok, line in results:
            click.echo(line)
        raise click.exceptions.Exit(0 if all(ok for ok, _ in results) else 2)
    if not iface:
        raise click.UsageError("give the interface with -i IFACE (or --check IFACE)")
    stop, reload = threading.Event(), threading.Event()
    previous = {
        sig: signal.signal(sig, handler)
        for sig, handler in (
            (signal.SIGINT, lambda *_: stop.set()),
            (signal.SIGTERM, lambda *_: stop.set()),
            (signal.SIGHUP, lambda *_: reload.set()),
        )
    }
    show = not quiet and sys.stderr.isatty()

    progress_ctx = _Progress() if show else None

    def flushed(r: api.SniffResult) -> None:
        if progress_ctx is not None:
            progress_ctx.note = (
                f"{r.received:,} received  {r.dropped:,} dropped  {r.assets:,} devices  "
                f"flush {r.flushes}"
            )
            progress_ctx.show(r.packets, r.bytes, r.flows)
        log.debug(
            "flush %d: %d packets, %d flows, %d devices, %d dropped",
            r.flushes, r.packets, r.flows, r.assets, r.dropped,
        )  # fmt: skip

    try:
        kwargs: dict[str, Any] = {
            "db": db, "bpf": bpf, "duration": duration, "flush_every": flush_every,
            "site_rules": rules, "keep_pcap": keep_pcap, "keep_minutes": keep_minutes,
            "buffer_mib": buffer_mib, "immediate": immediate, "policy": policy_file,
            "risk": risk_file,
            "on_flush": flushed, "stop": stop, "reload": reload,
        }  # fmt: skip
        if progress_ctx is not None:
            with progress_ctx:
                result = api.sniff(iface, progress=progress_ctx.update, **kwargs)
        else:
            result = api.sniff(iface, **kwargs)
    except api.InputError as e:
        _fail(e)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if result.dropped:
        log.warning(
            "%s: %d packets dropped (kernel %d, interface %d): medmon did not keep up, or the "
            "interface lost them", iface, result.dropped, result.dropped_kernel,
            result.dropped_interface,
        )  # fmt: skip
    if not quiet:
        msg = (
            f"run {result.run_id}: {result.packets:,} packets from {iface} "
            f"({result.received:,} received, {result.dropped:,} dropped), {result.flows:,} "
            f"flows, {result.assets:,} devices, {result.flushes} flushes, in "
            f"{result.seconds:.1f} s -> {db}"
        )
        _summary(msg)


# ---------------------------------------------------------------- policy


def policy_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--policy FILE``, the same on every command that evaluates a policy."""
    return click.option(
        "--policy",
        "policy_file",
        metavar="FILE",
        default=None,
        help="Segmentation policy (YAML) [the shipped policies/default.yaml].",
    )(fn)


@cli.group()
def policy() -> None:
    """Segmentation policies: lint a policy file, explain how it decides a flow.

    A policy names the hospital's zones (by CIDR, VLAN, device class or asset), groups of
    zones, services (by detected application, then port) and ordered allow/deny rules;
    policies/README.md documents the format and policies/default.yaml is a commented start.

    Example:

        medmon policy lint policies/default.yaml
    """


@policy.command("lint")
@click.argument("file", metavar="FILE")
def policy_lint(file: str) -> None:
    """Check a policy file: one line per error, with file:line. Exit 2 on errors, 0 and no
    output when it is clean.

    Reports YAML errors, unknown or missing keys, unknown zones, groups, services and device
    classes, bad severities and CIDRs, deny rules without why or hipaa_ref, duplicate rule
    ids, CIDRs of two zones that overlap, and rules an earlier rule makes unreachable.

    Example:

        medmon policy lint policies/examples/radiology-department.yaml
    """
    from monitor.policy import api as policy_api

    errors = policy_api.lint_policy_file(file)
    for line in errors:
        click.echo(line)
    if errors:
        raise click.exceptions.Exit(2)


@policy.command("check")
@db_option
@policy_option
@click.option(
    "--explain",
    "flow",
    nargs=3,
    type=(str, str, click.IntRange(0, 65535)),
    metavar="CLIENT SERVER PORT",
    default=None,
    help="Explain how the policy decides this flow: zones, service, each rule tried.",
)
@click.option(
    "--proto",
    type=click.Choice(["tcp", "udp"]),
    default="tcp",
    show_default=True,
    help="The flow's protocol (with --explain).",
)
@click.option("--run", "run_id", type=int, default=None, help="Check this run [the last one].")
@output_options
def policy_check(
    db: str,
    policy_file: str | None,
    flow: tuple[str, str, int] | None,
    proto: str,
    run_id: int | None,
    fmt: str,
) -> None:
    """Check a run of the register against a policy: its violations and the built-in checks'
    findings, listed (nothing is written: `medmon replay --policy` records them). With
    --explain, which rule decides one flow and why; the flow's application and VLAN and both
    devices (device class, MAC) come from the register when it has seen them.

    Example:

        medmon policy check --policy policies/default.yaml --explain 10.20.0.11 10.30.0.10 4242
    """
    from monitor.policy import api as policy_api

    try:
        if flow is not None:
            client, server, port = flow
            click.echo(policy_api.explain_flow(db, policy_file, client, server, port, proto))
            return
        found = policy_api.check_run(db, policy_file, run_id)
    except policy_api.PolicyError as e:
        _fail(e)
    names = ["exception_id", "kind", "severity", "subject", "rule", "hipaa_ref", "title",
             "occurrences", "first_seen", "last_seen"]  # fmt: skip
    rows = [
        (f.exception_id, f.kind, f.severity, f.subject, f.rule, f.hipaa_ref, f.title,
         f.occurrences, f.first_seen, f.last_seen)
        for f in sorted(found, key=lambda f: (f.kind, f.subject, f.rule))
    ]  # fmt: skip
    cols = ("kind", "severity", "subject", "rule", "hipaa_ref", "occurrences")
    emit_rows(names, rows, fmt, cols, title="findings")


@policy.command("suggest")
@db_option
@click.option("--run", "run_id", type=int, default=None, help="Only this run [all runs].")
@click.option("-o", "--output", metavar="FILE", default="-", help="Where to write it [stdout].")
def policy_suggest(db: str, run_id: int | None, output: str) -> None:
    """A least-privilege policy from what the register saw, as a commented YAML file to edit
    and adopt: a zone per subnet (named after the device class it holds), a service per
    application, an allow rule per conversation seen, everything else denied.

    Example:

        medmon policy suggest -o site-policy.yaml && medmon policy lint site-policy.yaml
    """
    from monitor.policy import api as policy_api

    text = policy_api.suggest_policy(db, run_id)
    if output == "-":
        click.echo(text, nl=False)
    else:
        try:
            Path(output).write_text(text)
        except OSError as e:
            _fail(OSError(f"{output}: {(e.strerror or str(e)).lower()}"))


@cli.command()
@db_option
@output_options
def runs(db: str, fmt: str) -> None:
    """The runs recorded: sources, times, packets, duplicates, flows.

    Example:

        medmon runs --format csv
    """
    names, rows = api.runs(db=db)
    cols = ("run_id", "started_at", "command", "source", "packets", "duplicates", "flows")
    emit_rows(names, rows, fmt, cols, title="runs")


@cli.command()
@click.option(
    "--packets",
    type=click.IntRange(min=1000),
    default=1_000_000,
    show_default=True,
    help="Packets in the generated mix.",
)
@click.option(
    "--keep",
    metavar="FILE",
    default=None,
    help="Write the generated capture here (reused when it already holds the mix).",
)
@click.option("--no-tshark", is_flag=True, help="Do not measure tshark for comparison.")
@click.option(
    "--scaling", is_flag=True, help="Also replay a 4x larger mix: is peak memory bounded?"
)
@click.option(
    "--mix",
    type=click.Choice(["generic", "dicom-bulk", "both"]),
    default="both",
    show_default=True,
    help="generic: the hospital mix (--packets); dicom-bulk: CT images stored on a PACS "
    "(min(--packets, 300000) packets); both: each, and the ratio of their MB/s.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for tools.",
)
@click.option(
    "--live",
    is_flag=True,
    help="Only the live benchmark (root): the highest tcpreplay rate at which `medmon sniff` "
    "drops nothing of the generic mix (--packets), over a veth pair in namespaces of its own.",
)
@click.option(
    "--live-budget",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="--live: no new rate is tried once it would end after this many seconds.",
)
@click.pass_context
def bench(
    ctx: click.Context,
    packets: int,
    keep: str | None,
    no_tshark: bool,
    scaling: bool,
    mix: str,
    fmt: str,
    live: bool,
    live_budget: float,
) -> None:
    """Measure this machine's throughput on generated hospital traffic.

    Generates a realistic mix (about 4,000 hosts, 50,000 flows, 10% IPv6, 5% VLAN-tagged,
    payloads from bare ACKs to 1460 bytes, some DICOM and HL7), then times `medmon replay` end
    to end in a subprocess (packets/s, MB/s, peak memory) and, when installed, tshark's field
    extraction on the same file. Generated captures are cached in ~/.cache/medmon. By default
    (--mix both) a capture of DICOM bulk too: CT scanners storing 512x512 16-bit images on a
    PACS, C-STORE after C-STORE; the report compares the two in MB/s.

    --live (root, with ip, tcpdump and tcpreplay) measures live capture instead: `medmon sniff`
    on one end of a veth pair between two network namespaces it makes (and deletes), the
    generic mix replayed into the other end with tcpreplay at 25,000 packets/s, doubling while
    nothing is dropped, then bisecting to about 10%; it reports the highest rate without a drop.

    Example:

        medmon bench --mix generic --packets 1000000 --scaling

        sudo medmon bench --live --live-budget 600

    SIGTERM stops it as Ctrl-C does: what it started (namespaces, medmon sniff, tcpreplay,
    temporary files) is removed first.
    """
    with _sigterm_interrupts():
        from monitor.bench import BenchError, format_report, run_bench

        if live:
            from click.core import ParameterSource

            from monitor.bench import format_live_report, live_bench

            if scaling:
                raise click.UsageError("--scaling does not go with --live")
            explicit = ctx.get_parameter_source("mix") != ParameterSource.DEFAULT
            if explicit and mix != "generic":
                raise click.UsageError("--live measures the generic mix only")

            def rung(r: Any) -> None:
                asked = "top speed" if r.rate_asked is None else f"{r.rate_asked:,} pps"
                verdict = "zero drops" if r.zero_drop else f"{r.dropped:,} dropped"
                log.info("%s: %s pps sent, %s", asked, f"{r.rate_achieved:,.0f}", verdict)

            try:
                result = live_bench(packets=packets, keep=keep, budget_s=live_budget, progress=rung)
            except BenchError as e:
                _fail(e)
            _echo_report(result, fmt, format_live_report)
            return
        try:
            report = run_bench(
                packets=packets, keep=keep, tshark=not no_tshark, scaling=scaling, mix=mix
            )
        except BenchError as e:
            _fail(e)
        _echo_report(report, fmt, format_report)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside the block (so that its cleanup runs, as on
    Ctrl-C); the previous handler is restored after it."""
    import signal

    def interrupted(_signo: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _echo_report(report: Any, fmt: str, as_text: Callable[[Any], str]) -> None:
    """A benchmark report as JSON (``--format json``) or as its text table."""
    click.echo(json.dumps(report.to_dict(), indent=2) if fmt == "json" else as_text(report))


# ---------------------------------------------------------------- entry point


# The risk manager's commands live in their own module (click only, like this one).
from monitor.cli_register import register, report  # noqa: E402

cli.add_command(register)
cli.add_command(report)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI (the ``medmon`` console script and ``python -m monitor``).

    As the process's entry point (``argv`` None) it ends the process itself once the command
    has returned, its register is closed and its output flushed: ``os._exit`` skips the
    interpreter's teardown, which after a large replay frees and collects the run's millions of
    objects one by one for nothing (about 0.2 s on the benchmark mix). With ``argv`` (tests,
    embedding) it returns or raises SystemExit as click does."""
    if argv is not None:
        cli.main(args=list(argv), prog_name="medmon")
        return
    try:
        cli.main(prog_name="medmon")
        code: Any = 0
    except SystemExit as e:
        code = e.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe (medmon ... | head) leaves nothing to say.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
