"""The risk manager's register: the exception lifecycle across replays, the append-only,
hash-chained history, overdue reviews, scoring and rescoring, on real sample captures."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from monitor import api, api_register
from monitor.cli import cli

from conftest import db_rows

ROOT = Path(__file__).resolve().parents[1]
POLICY = str(ROOT / "policies" / "default.yaml")
MODALITIES = ROOT / "pcaps" / "dicom" / "modalities.pcap"
SMB = ROOT / "pcaps" / "generic" / "smb.pcap"
LATER = date.today() + timedelta(days=180)


def _exception(db: str, eid: str) -> dict:
    names, rows = api_register.list_exceptions(db=db)
    return next(dict(zip(names, r, strict=True)) for r in rows if r[0] == eid)


def _history(db: str, eid: str) -> list[tuple]:
    return db_rows(
        db,
        "SELECT actor, field, old, new, comment, run_id FROM exception_history "
        "WHERE exception_id = ? ORDER BY seq",
        [eid],
    )


def _shifted(src: Path, dest: Path, days: int) -> Path:
    """A copy of a capture with every timestamp ``days`` later (editcap, from Wireshark)."""
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap is not installed (apt-get install wireshark-common)")
    subprocess.run([editcap, "-t", str(days * 86400), str(src), str(dest)], check=True)
    return dest


def _invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_the_lifecycle_across_two_replays(tmp_path: Path) -> None:
    """A run never undoes a person's decision; a closed exception that a later capture shows
    again reopens (with a history entry), and an older capture replayed later does not."""
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(MODALITIES)], db=db, policy=POLICY)
    ids = [r[0] for r in db_rows(db, "SELECT exception_id FROM exceptions ORDER BY exception_id")]
    assert len(ids) >= 4
    accepted, closed, mitigated, untouched = ids[:4]
    # Each new exception's history starts with the run that found it.
    assert _history(db, untouched) == [("medmon", "status", None, "open", "found by run 1", 1)]

    code, out, err = _invoke(
        "register", "accept", accepted, "--db", db, "--owner", "Biomed (J. Doe)",
        "--control", "VLAN 20 ACL", "--control", "vendor remote access disabled",
        "--review-by", LATER.isoformat(), "--comment", "replacement budgeted", "--actor", "rm1",
    )  # fmt: skip
    assert code == 0, err
    assert f"{accepted}: accepted, review by {LATER}" in out
    code, _out, err = _invoke("register", "close", closed[:-3], "--db", db,
                              "--comment", "modality replaced", "--actor", "rm1")  # fmt: skip
    assert code == 0, err  # a unique prefix names it
    code, _out, err = _invoke("register", "mitigate", mitigated, "--db", db,
                              "--control", "TLS proxy in front of the PACS")  # fmt: skip
    assert code == 0, err
    before = _exception(db, accepted)
    assert before["owner"] == "Biomed (J. Doe)" and before["review_by"] == LATER
    assert before["compensating_controls"] == "VLAN 20 ACL; vendor remote access disabled"
    assert [h[1:4] for h in _history(db, accepted)[1:]] == [
        ("status", "open", "accepted"), ("owner", None, "Biomed (J. Doe)"),
        ("compensating_controls", None, "VLAN 20 ACL; vendor remote access disabled"),
        ("review_by", None, LATER.isoformat()),
    ]  # fmt: skip
    assert {h[0] for h in _history(db, accepted)[1:]} == {"rm1"}

    # Run 2: the same traffic a month later.
    later = _shifted(MODALITIES, tmp_path / "modalities-later.pcap", 30)
    api.replay([str(later)], db=db, policy=POLICY)
    after = _exception(db, accepted)
    for key in ("status", "owner", "compensating_controls", "review_by"):
        assert after[key] == before[key], key
    assert after["occurrences"] == 2 * before["occurrences"]
    assert after["last_seen"] - before["last_seen"] == timedelta(days=30)
    assert after["first_seen"] == before["first_seen"] and after["last_run"] == 2
    assert _exception(db, mitigated)["status"] == "mitigated"
    reopened = _exception(db, closed)
    assert reopened["status"] == "open"
    actor, field, old, new, comment, run_id = _history(db, closed)[-1]
    assert (actor, field, old, new, run_id) == ("medmon", "status", "closed", "open", 2)
    assert "seen again in run 2" in comment
    # Run 2 found nothing new: no other history entry.
    assert db_rows(db, "SELECT count(*) FROM exception_history WHERE run_id = 2") == [(1,)]

    # Closed again; then the first (older) capture replayed: it shows the past, not a return.
    api_register.change(db=db, ident=closed, verb="close", comment="really replaced", actor="rm1")
    api.replay([str(MODALITIES)], db=db, policy=POLICY, force=True)
    assert _exception(db, closed)["status"] == "closed"
    assert _exception(db, accepted)["status"] == "accepted"
    code, _out, _err = _invoke("register", "verify", "--db", db)
    assert code == 0


def test_verbs_refuse_what_does_not_apply_with_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(SMB)], db=db, policy=POLICY)
    eid = db_rows(db, "SELECT exception_id FROM exceptions ORDER BY exception_id LIMIT 1")[0][0]
    kind = db_rows(db, "SELECT kind FROM exceptions GROUP BY kind HAVING count(*) > 1")[0][0]
    cases = [
        (["accept", eid, "--owner", "x", "--control", "y", "--review-by", "2001-01-01"],
         "is not in the future"),
        (["accept", eid, "--control", "y", "--review-by", LATER.isoformat()], "needs --owner"),
        (["accept", eid, "--owner", "x", "--review-by", LATER.isoformat()], "needs --control"),
        (["reopen", eid], "cannot reopen an exception that is open"),
        (["close", "nosuch:123", "--comment", "x"], "nosuch:123: no such exception"),
        (["close", kind + ":", "--comment", "x"], "ambiguous"),
    ]  # fmt: skip
    history = db_rows(db, "SELECT count(*) FROM exception_history")
    for args, message in cases:
        code, _out, err = _invoke("register", *args, "--db", db)
        assert code == 2, args
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    assert db_rows(db, "SELECT count(*) FROM exception_history") == history  # nothing written
    code, _out, err = _invoke("register", "accept", eid, "--db", db, "--owner", "x",
                              "--control", "y", "--review-by", "next week")  # fmt: skip
    assert code == 2 and "is not a date" in err
    code, _out, err = _invoke("register", "close", eid, "--db", db)
    assert code == 2 and "--comment" in err
    code, _out, err = _invoke("register", "list", "--db", str(tmp_path / "none.duckdb"))
    assert code == 2 and "no register here yet" in err


def test_the_history_is_append_only_and_tamper_evident(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(SMB)], db=db, policy=POLICY)
    eid = db_rows(db, "SELECT exception_id FROM exceptions ORDER BY exception_id LIMIT 1")[0][0]
    first = db_rows(db, "SELECT * FROM exception_history ORDER BY seq")
    api_register.change(db=db, ident=eid, verb="accept", owner="IT", controls=["ACL"],
                        review_by=LATER, actor="rm1")  # fmt: skip
    api_register.change(db=db, ident=eid, verb="reopen", comment="vendor EOL", actor="rm2")
    api_register.change(db=db, ident=eid, verb="close", comment="decommissioned", actor="rm2")
    after = db_rows(db, "SELECT * FROM exception_history ORDER BY seq")
    assert after[: len(first)] == first  # earlier entries untouched: only appended
    assert [r[-4] for r in after] == list(range(1, len(after) + 1))  # seq 1, 2, ...
    assert api_register.verify(db=db) == (len(after), [])
    code, out, _err = _invoke("register", "verify", "--db", db)
    assert code == 0 and f"{len(after)} entries, chain intact" in out

    con = duckdb.connect(db)
    con.execute("UPDATE exception_history SET actor = 'someone else' WHERE seq = 2")
    con.close()
    _entries, problems = api_register.verify(db=db)
    assert problems == [f"history entry 2 ({after[1][0]}): content changed after it was written"]
    code, _out, err = _invoke("register", "verify", "--db", db)
    assert code == 1 and "content changed" in err

    con = duckdb.connect(db)
    con.execute("UPDATE exception_history SET actor = ? WHERE seq = 2", [after[1][2]])
    con.execute("DELETE FROM exception_history WHERE seq = 3")
    con.close()
    _entries, problems = api_register.verify(db=db)
    assert any("expected entry 3 (removed?)" in p for p in problems)
    assert any("history entry 4" in p and "does not follow" in p for p in problems)


def test_an_overdue_review_is_flagged(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(SMB)], db=db, policy=POLICY)
    eid = db_rows(db, "SELECT exception_id FROM exceptions ORDER BY exception_id LIMIT 1")[0][0]
    api_register.change(db=db, ident=eid, verb="accept", owner="IT", controls=["ACL"],
                        review_by=LATER)  # fmt: skip
    _names, rows = api_register.list_exceptions(db=db, overdue=True)
    assert rows == []
    # Time passes: the review date is now behind us.
    con = duckdb.connect(db)
    con.execute("UPDATE exceptions SET review_by = current_date - 1 WHERE exception_id = ?", [eid])
    con.close()
    code, out, err = _invoke("register", "list", "--db", db, "--overdue", "--format", "json")
    assert code == 0, err
    assert [(e["exception_id"], e["overdue"]) for e in json.loads(out)] == [(eid, True)]
    # The next replay with a policy says so.
    later = _shifted(SMB, tmp_path / "smb-later.pcap", 1)
    code, _out, err = _invoke("replay", str(later), "--db", db, "--policy", POLICY, "-q")
    assert code == 0
    assert "1 accepted or mitigated exceptions are past their review date" in err
    # Accepting again (a review) clears it.
    api_register.change(db=db, ident=eid, verb="accept", review_by=LATER)
    assert api_register.list_exceptions(db=db, overdue=True)[1] == []


def test_list_filters(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(MODALITIES), str(SMB)], db=db, policy=POLICY)
    names, rows = api_register.list_exceptions(db=db)
    items = [dict(zip(names, r, strict=True)) for r in rows]
    assert [e["risk"] for e in items] == sorted((e["risk"] for e in items), reverse=True)
    kinds = {e["kind"] for e in items}
    assert {"ephi.cleartext", "smb.v1"} <= kinds

    def listed(*args: str) -> list[dict]:
        code, out, err = _invoke("register", "list", "--db", db, "--format", "json", *args)
        assert code == 0, err
        return json.loads(out)

    assert {e["kind"] for e in listed("--kind", "smb")} == {"smb.v1"}
    assert {e["severity"] for e in listed("--severity", "high")} == {"high"}
    imaging = listed("--zone", "imaging")
    assert imaging and all("imaging" in e["zones"] for e in imaging)
    assert len(imaging) < len(items)
    assert listed("--status", "closed") == []
    assert len(listed("--status", "open")) == len(items)


def test_show_gives_the_evidence_and_history(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(MODALITIES)], db=db, policy=POLICY)
    eid, subject = db_rows(
        db, "SELECT exception_id, subject FROM exceptions WHERE kind = 'ephi.cleartext' "
        "ORDER BY exception_id LIMIT 1")[0]  # fmt: skip
    code, out, err = _invoke("register", "show", eid, "--db", db, "--format", "json")
    assert code == 0, err
    detail = json.loads(out)
    assert detail["exception"]["subject"] == subject
    assert detail["exception"]["risk_factors"]["factors"]["ephi_cleartext"] is True
    flows = detail["evidence"]["flows"]
    client, rest = subject.split(" -> ")
    n = db_rows(db, "SELECT count(*) FROM flows WHERE client_ip = ? AND server_ip = ?",
              [client, rest.split()[0]])[0][0]  # fmt: skip
    assert sum(f["flows"] for f in flows) == n and flows[0]["app"] == "dicom"
    sha = db_rows(db, "SELECT sha256 FROM captures")[0][0]
    assert [c["sha256"] for c in detail["evidence"]["captures"]] == [sha]
    assert detail["evidence"]["rule"] == "cleartext_ephi_across_zones"
    assert detail["history"][0]["comment"] == "found by run 1"
    code, out, _err = _invoke("register", "show", eid, "--db", db)
    assert code == 0 and sha in out and "found by run 1" in out and "likelihood" in out


def test_rescore_with_a_site_method(tmp_path: Path) -> None:
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(SMB)], db=db, policy=POLICY)
    before = dict(db_rows(db, "SELECT exception_id, risk FROM exceptions"))
    assert all(r is not None for r in before.values())
    site = tmp_path / "site-risk.yaml"
    text = (ROOT / "policies" / "risk.yaml").read_text()
    site.write_text(text.replace("    high: 3\n", "    high: 1\n", 1))
    code, out, err = _invoke("register", "rescore", "--db", db, "--risk", str(site),
                             "--dry-run")  # fmt: skip
    assert code == 0, err
    assert dict(db_rows(db, "SELECT exception_id, risk FROM exceptions")) == before
    changed = [line.split(":")[0] + ":" + line.split(":")[1] for line in out.splitlines()]
    assert changed  # SMB1 is a high-severity finding
    code, _out, err = _invoke("register", "rescore", "--db", db, "--risk", str(site),
                              "--actor", "rm1")  # fmt: skip
    assert code == 0, err
    after = dict(db_rows(db, "SELECT exception_id, risk FROM exceptions"))
    assert set(changed) == {e for e in before if after[e] != before[e]}
    rows = db_rows(db, "SELECT actor, field, comment FROM exception_history WHERE field = 'risk'")
    assert len(rows) == len(changed) and {r[0] for r in rows} == {"rm1"}
    assert api_register.verify(db=db)[1] == []
    # A replay with the site method scores new findings with it too.
    db2 = str(tmp_path / "other.duckdb")
    code, _out, err = _invoke("replay", str(SMB), "--db", db2, "--policy", POLICY,
                              "--risk", str(site), "-q")  # fmt: skip
    assert code == 0, err
    assert dict(db_rows(db2, "SELECT exception_id, risk FROM exceptions")) == after


def test_an_invalid_risk_method_is_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "risk.yaml"
    bad.write_text(
        "version: 1\nlikelihood:\n  severity: {low: 1, medium: 2, high: 9, critical: 4}\n"
        "  factors: {internet: 2, moon_phase: 1}\nimpact:\n  classes: {toaster: 3}\n"
        "levels: {low: 4, high: 3}\n"
    )
    db = str(tmp_path / "medmon.duckdb")
    code, _out, err = _invoke("replay", str(SMB), "--db", db, "--policy", POLICY,
                              "--risk", str(bad))  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert all(line.startswith(f"medmon: error: {bad}:") for line in lines), err
    joined = "\n".join(lines)
    assert f"{bad}:3: likelihood.severity: high must be a whole number 1..5, got 9" in joined
    assert "unknown name 'moon_phase'" in joined and f"{bad}:4:" in joined
    assert "unknown device class 'toaster'" in joined
    assert "levels: high's bound 3 must exceed the one before" in joined
    assert not Path(db).exists() or db_rows(db, "SELECT count(*) FROM runs") == [(0,)]


def test_a_register_without_findings(tmp_path: Path) -> None:
    """Every verb of the risk manager works on a register no policy was run on."""
    db = str(tmp_path / "medmon.duckdb")
    api.replay([str(ROOT / "pcaps" / "generic" / "dns.pcap")], db=db)
    assert api_register.rescore(db=db) == []
    assert api_register.verify(db=db) == (0, [])
    assert api_register.list_exceptions(db=db)[1] == []
    for args in (["register", "export", "--format", "xlsx", "-o", str(tmp_path / "r.xlsx")],
                 ["report", "-o", str(tmp_path / "r.html")]):  # fmt: skip
        code, _out, err = _invoke(*args, "--db", db)
        assert code == 0, err
    assert "No exception names this reference." in (tmp_path / "r.html").read_text()
