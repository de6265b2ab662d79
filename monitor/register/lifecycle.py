"""The risk manager's side of the risk register: each exception's lifecycle and its history.

An exception is ``open`` when a run finds it. A person then decides (``medmon register
accept|mitigate|close|reopen``)::

    open ──accept──► accepted ──mitigate──► mitigated      any but closed ──close──► closed
      ▲                                                      accepted, mitigated, closed
      └────────────────────────reopen───────────────────────────────────┘

- *accepted*: the risk is known and tolerated, with an owner, compensating controls and a
  review date; past that date it is *overdue* (flagged in lists, the report and replay's
  summary) until it is reviewed again (accepted anew) or changes status.
- *mitigated*: controls were added that reduce it (it can keep a review date too).
- *closed*: it is gone (the device was replaced, the flow stopped). A run that shows it again
  after it was closed (a capture time later than the closing) reopens it; an older capture
  replayed later shows the past, and does not.

Every change, by a person or by a run, appends one entry per field to ``exception_history``:
who (``--actor`` or the OS user; ``medmon`` for a run), when, the field, old and new value,
and the comment. The history is append-only and tamper-evident: each entry carries the
SHA-256 of its content and of the entry before it (``prev_hash``), so an edited, removed or
reordered entry breaks the chain, which :func:`verify_history` (``medmon register verify``)
reports.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from monitor.register.schema import Register

STATUSES = ("open", "accepted", "mitigated", "closed")
#: verb -> (the statuses it applies to, the status it sets).
VERBS: dict[str, tuple[frozenset[str], str]] = {
    "accept": (frozenset({"open", "accepted", "mitigated"}), "accepted"),
    "mitigate": (frozenset({"open", "accepted", "mitigated"}), "mitigated"),
    "close": (frozenset({"open", "accepted", "mitigated"}), "closed"),
    "reopen": (frozenset({"accepted", "mitigated", "closed"}), "open"),
}
#: The actor of the changes a run makes.
MEDMON = "medmon"
#: SQL: an accepted or mitigated exception whose review date has passed.
OVERDUE_SQL = "(status IN ('accepted', 'mitigated') AND review_by < current_date)"
#: The separator of compensating controls kept in one column.
CONTROL_SEP = "; "


class LifecycleError(Exception):
    """A verb that cannot apply; ``str()`` is one line naming the exception and the fault."""


@dataclass(frozen=True)
class Change:
    """One history entry to append."""

    exception_id: str
    field: str
    old: Any
    new: Any
    comment: str | None = None
    actor: str = MEDMON
    run_id: int | None = None


def default_actor() -> str:
    """Who runs this: the user who ran sudo, else the OS user."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def entry_hash(
    seq: int, exception_id: str, at: datetime, actor: str | None, field: str | None,
    old: str | None, new: str | None, comment: str | None, run_id: int | None,
    prev_hash: str | None,
) -> str:  # fmt: skip
    """The SHA-256 of one history entry's content and of the entry before it."""
    content = [seq, exception_id, _text(at), actor, field, old, new, comment, run_id, prev_hash]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def append_history(reg: Register, changes: Iterable[Change], at: datetime | None = None) -> int:
    """Append ``changes`` to ``exception_history`` (in the caller's transaction), each chained
    to the one before; return how many were written."""
    changes = list(changes)
    if not changes:
        return 0
    at = at or datetime.now(UTC)
    con = reg.con
    last = con.execute(
        "SELECT seq, hash FROM exception_history WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
    ).fetchall()
    seq, prev = (int(last[0][0]), last[0][1]) if last else (0, None)
    rows = []
    for c in changes:
        seq += 1
        old, new = _text(c.old), _text(c.new)
        h = entry_hash(seq, c.exception_id, at, c.actor, c.field, old, new, c.comment,
                       c.run_id, prev)  # fmt: skip
        rows.append((c.exception_id, at, c.actor, c.field, old, new, c.comment, seq, c.run_id,
                     prev, h))  # fmt: skip
        prev = h
    con.executemany(
        'INSERT INTO exception_history (exception_id, "at", actor, field, old, new, comment, '
        "seq, run_id, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows)


def verify_history(reg: Register) -> tuple[int, list[str]]:
    """Check the history's chain: (entries checked, one line per problem found)."""
    rows = reg.con.execute(
        'SELECT seq, exception_id, "at", actor, field, old, new, comment, run_id, prev_hash, '
        'hash FROM exception_history ORDER BY seq NULLS FIRST, "at"'
    ).fetchall()
    problems: list[str] = []
    prev: str | None = None
    expected_seq = 1
    for seq, eid, at, actor, field, old, new, comment, run_id, prev_hash, h in rows:
        if seq is None:
            problems.append(f"history entry of {eid} at {_text(at)} has no sequence number")
            continue
        if seq != expected_seq:
            problems.append(f"history entry {seq}: expected entry {expected_seq} (removed?)")
        expected_seq = seq + 1
        if prev_hash != prev:
            problems.append(f"history entry {seq} ({eid}): does not follow the entry before it")
        if entry_hash(seq, eid, at, actor, field, old, new, comment, run_id, prev_hash) != h:
            problems.append(f"history entry {seq} ({eid}): content changed after it was written")
        prev = h
    return len(rows), problems


def resolve_id(reg: Register, ident: str) -> str:
    """An exception's full id from the id or a unique prefix of it or of its hash part."""
    ident = ident.strip()
    rows = reg.con.execute(
        "SELECT exception_id FROM exceptions WHERE exception_id = ? "
        "OR starts_with(exception_id, ?) OR starts_with(split_part(exception_id, ':', 2), ?) "
        "ORDER BY exception_id LIMIT 3",
        [ident, ident, ident],
    ).fetchall()
    exact = [r[0] for r in rows if r[0] == ident]
    if exact:
        return exact[0]
    if not rows or not ident:
        raise LifecycleError(f"{ident}: no such exception in the register")
    if len(rows) > 1:
        raise LifecycleError(f"{ident}: ambiguous, matches {rows[0][0]}, {rows[1][0]}, ...")
    return str(rows[0][0])


def _row(reg: Register, exception_id: str) -> dict[str, Any]:
    cur = reg.con.execute("SELECT * FROM exceptions WHERE exception_id = ?", [exception_id])
    names = [d[0] for d in cur.description or []]
    rows = cur.fetchall()
    return dict(zip(names, rows[0] if rows else (), strict=False))


def _controls(existing: str | None, added: Sequence[str]) -> str | None:
    have = [c for c in (existing or "").split(CONTROL_SEP) if c.strip()]
    for c in added:
        c = " ".join(c.split())
        if c and c not in have:
            have.append(c)
    return CONTROL_SEP.join(have) or None


def apply_verb(
    reg: Register,
    ident: str,
    verb: str,
    *,
    actor: str | None = None,
    owner: str | None = None,
    controls: Sequence[str] = (),
    review_by: date | None = None,
    comment: str | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """Apply a verb of :data:`VERBS` to one exception; append its history; return the row as
    it is now. Raises :class:`LifecycleError` for an unknown id, a verb that does not apply
    to the exception's status, or a missing value the verb needs."""
    if verb not in VERBS:
        raise LifecycleError(f"{verb}: unknown verb (one of {', '.join(VERBS)})")
    allowed, target = VERBS[verb]
    eid = resolve_id(reg, ident)
    row = _row(reg, eid)
    status = row["status"]
    if status not in allowed:
        hint = " (reopen it first)" if status == "closed" else ""
        raise LifecycleError(f"{eid}: cannot {verb} an exception that is {status}{hint}")
    today = today or datetime.now(UTC).date()
    new: dict[str, Any] = {"status": target}
    if verb == "accept":
        if not (owner or row.get("owner")):
            raise LifecycleError(f"{eid}: accept needs --owner (who answers for this risk)")
        if not controls and not row.get("compensating_controls"):
            raise LifecycleError(f"{eid}: accept needs --control (what keeps the risk down)")
        if review_by is None:
            raise LifecycleError(f"{eid}: accept needs --review-by DATE (when to look again)")
        if review_by <= today:
            raise LifecycleError(f"{eid}: --review-by {review_by} is not in the future")
    if verb == "mitigate" and not controls:
        raise LifecycleError(f"{eid}: mitigate needs --control (what was put in place)")
    if verb == "close" and not (comment and comment.strip()):
        raise LifecycleError(f"{eid}: close needs --comment (why it is gone)")
    if review_by is not None and review_by <= today and verb != "accept":
        raise LifecycleError(f"{eid}: --review-by {review_by} is not in the future")
    if owner is not None:
        new["owner"] = " ".join(owner.split()) or None
    if controls:
        new["compensating_controls"] = _controls(row.get("compensating_controls"), controls)
    if review_by is not None:
        new["review_by"] = review_by
    now = datetime.now(UTC)
    actor = actor or default_actor()
    # One entry per field that changes; a review date is always recorded (a renewed
    # acceptance with the same date is still a review).
    changes = [
        Change(eid, name, row.get(name), value, comment, actor)
        for name, value in new.items()
        if _text(row.get(name)) != _text(value) or name == "review_by"
    ]
    con = reg.con
    con.begin()
    try:
        sets = ", ".join(f'"{name}" = ?' for name in new)
        params = list(new.values())
        if status != target:
            sets += ", status_changed_at = ?"
            params.append(now)
        con.execute(f"UPDATE exceptions SET {sets} WHERE exception_id = ?", [*params, eid])
        if not changes:  # nothing changed (a repeated verb): still a decision on record
            changes = [Change(eid, "status", status, target, comment, actor)]
        append_history(reg, changes, now)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return _row(reg, eid)


def reopen_seen_again(reg: Register, run_id: int, table: str) -> int:
    """Reopen the closed exceptions that the findings in ``table`` (a registered relation with
    ``exception_id`` and ``last_seen``) show again after they were closed; return how many."""
    con = reg.con
    rows = con.execute(
        f"""
        SELECT e.exception_id, f.last_seen FROM exceptions e JOIN {table} f USING (exception_id)
        WHERE e.status = 'closed' AND e.status_changed_at IS NOT NULL
          AND f.last_seen > e.status_changed_at
        """
    ).fetchall()
    if not rows:
        return 0
    now = datetime.now(UTC)
    ids = [r[0] for r in rows]
    con.executemany(
        "UPDATE exceptions SET status = 'open', status_changed_at = ? WHERE exception_id = ?",
        [(now, eid) for eid in ids],
    )
    why = "seen again in run {} at {}, after it was closed"
    changes = [
        Change(eid, "status", "closed", "open", why.format(run_id, _text(seen)), MEDMON, run_id)
        for eid, seen in rows
    ]
    append_history(reg, changes, now)
    return len(rows)
