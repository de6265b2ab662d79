"""``medmon policy lint`` and ``medmon policy check --explain`` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor import api
from monitor.cli import cli
from monitor.policy import shipped_policy

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_lint_clean_file_prints_nothing() -> None:
    assert run("policy", "lint", str(ROOT / "policies" / "default.yaml")) == (0, "", "")


def test_lint_prints_one_line_per_error_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\n"
        "zones:\n"
        "  a: {cidrs: [10.0.0.0/24]}\n"
        "  b: {cidrs: [10.0.0.7/32]}\n"
        "rules:\n"
        "  - {id: r1, deny: a -> c, severity: urgent}\n"
        "default: {same_zone: allow, cross_zone: allow}\n"
    )
    code, out, err = run("policy", "lint", str(path))
    assert (code, err) == (2, "")
    assert out.splitlines() == [
        f"{path}:4: zone 'b': 10.0.0.7/32 overlaps 10.0.0.0/24 of zone 'a' (line 3); "
        "first match wins, so zone 'a' takes these addresses",
        f"{path}:6: rule r1: unknown zone or group 'c'",
        f"{path}:6: rule r1: severity 'urgent' is not one of low, medium, high, critical",
        f"{path}:6: rule r1: a deny rule needs 'why'",
        f"{path}:6: rule r1: a deny rule needs 'hipaa_ref'",
    ]


def test_lint_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, _err = run("policy", "lint", str(missing))
    assert code == 2
    assert out == f"{missing}:1: cannot read: [Errno 2] No such file or directory: '{missing}'\n"


def test_check_without_a_register_is_one_line(db: str) -> None:
    code, out, err = run("policy", "check", "--db", db)
    assert (code, out) == (2, "")
    assert err == f"medmon: error: {db}: no register here yet (run 'medmon replay CAPTURE' first)\n"


@pytest.fixture(scope="module")
def http_register(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = str(tmp_path_factory.mktemp("register") / "medmon.duckdb")
    api.replay([str(ROOT / "pcaps" / "generic" / "http.pcap")], db=db)
    return db


def _rules_tried(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rules in "))
    return [line.split(" (line")[0].strip() for line in lines[start + 1 :] if line[:2] == "  "]


def test_check_explain_a_denied_flow(http_register: str) -> None:
    policy = str(shipped_policy())
    code, out, err = run("policy", "check", "--db", http_register, "--policy", policy,
                         "--explain", "10.20.0.11", "10.10.0.80", "80")  # fmt: skip
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:5] == [
        "flow 10.20.0.11 -> 10.10.0.80 tcp/80, application http",
        "client 10.20.0.11: zone imaging (cidr 10.20.0.0/24)",
        "server 10.10.0.80: zone servers (cidr 10.10.0.0/24)",
        "service: http (by application http)",
        f"rules in {shipped_policy()}, in order (first match decides):",
    ]
    assert lines[5] == (
        "  medical-no-internet (line 65): deny medical -> internet: "
        "no, server zone servers is not internet"
    )
    assert lines[-4:] == [
        "  no rule matched: default cross_zone is deny",
        "decision: deny by default.cross_zone, severity medium",
        "why: no rule allows this traffic between zones",
        "hipaa_ref: 164.312(a)(1)",
    ]
    assert len(_rules_tried(out)) == 20  # every rule, then the default


def test_check_explain_an_allowed_flow_uses_the_default_policy(http_register: str) -> None:
    code, out, _err = run("policy", "check", "--db", http_register,
                          "--explain", "10.40.0.31", "10.10.0.80", "80")  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[-3:] == [
        "  clinical-to-servers (line 114): allow clinical -> servers service hl7, https, http, "
        "dns, ntp, syslog: MATCH",
        "decision: allow by clinical-to-servers",
        "why: ADT and orders, monitor results (ORU) to the interface engine, intranet, DNS, time",
    ]


def test_check_explain_a_flow_not_in_the_register(http_register: str) -> None:
    code, out, _err = run("policy", "check", "--db", http_register, "--proto", "udp",
                          "--explain", "10.40.0.31", "10.10.0.53", "53")  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "flow 10.40.0.31 -> 10.10.0.53 udp/53, application unknown"
    assert "service: dns (by port udp/53)" in lines
    assert lines[-1] == (
        f"note: no such flow in {http_register}; decided by port alone, with no application"
    )


def test_check_with_a_bad_policy(http_register: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 2\nzones: {}\nrules: []\ndefault: {same_zone: allow, cross_zone: allow}\n"
    )
    code, out, err = run("policy", "check", "--db", http_register, "--policy", str(bad),
                         "--explain", "10.40.0.31", "10.10.0.80", "80")  # fmt: skip
    assert (code, out) == (2, "")
    assert err == f"medmon: error: {bad}:1: version must be 1, got 2\n"
