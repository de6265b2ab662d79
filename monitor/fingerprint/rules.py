"""Fingerprint rule files: load, validate and lint them (STYLE S6) [GRASSMARLIN, p0f, Suricata].

A rule directory holds::

    <dir>/vocabulary.yaml            closed vocabulary: vendors, device classes, OS families
    <dir>/<family>/<name>.yaml       rule files (any depth; .yaml or .yml)
    <dir>/lifecycle/*.yaml           end-of-support data (see :mod:`monitor.fingerprint.lifecycle`)

The first directory given to :func:`load_rules` / :func:`lint` holds the shipped rules; every
later one is a *site* directory (loaded after the shipped rules, never overwritten on upgrade),
whose rule ids must start with ``site.``. ``fingerprints/README.md`` documents the format and
``fingerprints/schema.json`` is its JSON Schema; the key sets below are the same (a test
checks that).

Every problem is one line, ``path:LINE: rule ID: message`` (or ``path:LINE: message`` when it
is not about one rule), so an editor can jump to it. Regexes are compiled once, here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from monitor.yamlfile import LineLoader as _LineLoader
from monitor.yamlfile import Map as _Map
from monitor.yamlfile import Seq as _Seq
from monitor.yamlfile import line_of as _line

#: Asset fields a rule may ``set``, in evidence order.
FIELDS: tuple[str, ...] = (
    "vendor",
    "model",
    "device_class",
    "os",
    "os_family",
    "software_version",
    "hostname",
)
#: Keys of a rule file.
FILE_KEYS: frozenset[str] = frozenset({"meta", "rules"})
#: Keys of a rule file's ``meta``, and the required ones.
META_KEYS: frozenset[str] = frozenset({"title", "maintainer", "description", "references"})
META_REQUIRED: frozenset[str] = frozenset({"title"})
#: Keys of one rule, and the required ones (one of ``match`` / ``any`` is required too).
RULE_KEYS: frozenset[str] = frozenset(
    {
        "id",
        "rev",
        "description",
        "references",
        "match",
        "any",
        "not",
        "set",
        "confidence",
        "generic",
        "examples",
        "counter_examples",
    }
)
RULE_REQUIRED: frozenset[str] = frozenset(
    {"id", "rev", "description", "references", "set", "confidence", "examples"}
)
#: Keys of vocabulary.yaml, and of one device class in it.
VOCABULARY_KEYS: frozenset[str] = frozenset({"vendors", "device_classes", "os_families"})
DEVICE_CLASS_KEYS: frozenset[str] = frozenset({"label", "regulated", "category"})
#: Keys of a lifecycle file, of one entry in it, and the required ones.
LIFECYCLE_FILE_KEYS: frozenset[str] = frozenset({"meta", "entries"})
LIFECYCLE_KEYS: frozenset[str] = frozenset(
    {"id", "match", "end_of_support", "extended_end", "product", "references", "description"}
)
LIFECYCLE_REQUIRED: frozenset[str] = frozenset(
    {"id", "match", "end_of_support", "product", "references"}
)
#: Fields a lifecycle entry may match on.
LIFECYCLE_FIELDS: tuple[str, ...] = (
    "os",
    "os_family",
    "vendor",
    "model",
    "software_version",
    "device_class",
)
#: The prefix of every rule id in a site directory (and of none elsewhere).
SITE_PREFIX = "site."
VOCABULARY_FILE = "vocabulary.yaml"
LIFECYCLE_DIR = "lifecycle"

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
KIND_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
#: ``{name}`` in a ``set`` value: a named regex group or a signal kind.
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")


class RuleError(ValueError):
    """Rule files do not lint clean; ``str()`` is one ``path:LINE: ...`` line per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors: list[str] = list(errors)


# --------------------------------------------------------------------------------------------
# Compiled rules


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``kind: regex`` pair of a match map."""

    kind: str
    pattern: str
    regex: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class Match:
    """What made a rule fire: captured named groups, the value of each matched kind."""

    groups: dict[str, str]
    kinds: dict[str, str]
    #: ``(kind, value)`` pairs that matched, ``match`` keys first, then the any-branch.
    signals: tuple[tuple[str, str], ...]
    #: Keys in ``match`` plus keys of the any-branch that matched.
    specificity: int


def _match_all(
    conditions: Sequence[Condition], values: Mapping[str, Sequence[str]]
) -> list[tuple[Condition, str, re.Match[str]]] | None:
    """Every condition matches one of its kind's values (the first value that does)."""
    found: list[tuple[Condition, str, re.Match[str]]] = []
    for cond in conditions:
        vals = values.get(cond.kind)
        if not vals:
            return None
        for value in vals:
            m = cond.regex.search(value)
            if m is not None:
                found.append((cond, value, m))
                break
        else:
            return None
    return found


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule. ``sets`` holds the ``set`` map: field -> template (``{name}``
    placeholders); ``any_`` and ``not_`` the ``any`` and ``not`` keys."""

    id: str
    rev: int
    description: str
    references: tuple[str, ...]
    match: tuple[Condition, ...]
    any_: tuple[tuple[Condition, ...], ...]
    not_: tuple[Condition, ...]
    sets: tuple[tuple[str, str], ...]
    confidence: float
    generic: bool
    examples: tuple[dict[str, tuple[str, ...]], ...]
    counter_examples: tuple[dict[str, tuple[str, ...]], ...]
    path: Path
    line: int
    #: Loaded from a site directory.
    site: bool = False
    #: Signal kinds the device must have for the rule to be tried (its ``match`` keys).
    required_kinds: frozenset[str] = field(default_factory=frozenset)

    def evaluate(self, values: Mapping[str, Sequence[str]]) -> Match | None:
        """Does the rule fire on these signal values (kind -> values)? How, if so.

        ``match``: every key matches one of its kind's values (``re.search``). ``any``: at least
        one branch matches (the branch with most keys wins, then the first). ``not``: the rule
        fails if every key of it matches.
        """
        found = _match_all(self.match, values)
        if found is None:
            return None
        if self.any_:
            best: list[tuple[Condition, str, re.Match[str]]] | None = None
            for branch in self.any_:
                got = _match_all(branch, values)
                if got is not None and (best is None or len(got) > len(best)):
                    best = got
            if best is None:
                return None
            found = found + best
        if self.not_ and _match_all(self.not_, values) is not None:
            return None
        groups: dict[str, str] = {}
        kinds: dict[str, str] = {}
        signals: list[tuple[str, str]] = []
        for cond, value, m in found:
            for name, captured in m.groupdict().items():
                if captured is not None and name not in groups:
                    groups[name] = captured
            kinds.setdefault(cond.kind, value)
            if (cond.kind, value) not in signals:
                signals.append((cond.kind, value))
        return Match(groups, kinds, tuple(signals), len(found))

    def fill(self, m: Match) -> tuple[dict[str, str], list[tuple[str, str]]]:
        """The values this rule sets for a match, and ``(field, why)`` for each it could not."""
        values: dict[str, str] = {}
        unset: list[tuple[str, str]] = []
        for name, template in self.sets:
            missing: list[str] = []

            def sub(pm: re.Match[str], missing: list[str] = missing) -> str:
                key = pm.group(1)
                got = m.groups.get(key)
                if got is None:
                    got = m.kinds.get(key)
                if got is None:
                    missing.append(key)
                    return ""
                return got

            value = PLACEHOLDER_RE.sub(sub, template).strip()
            if missing:
                unset.append((name, f"placeholder {{{missing[0]}}} not filled"))
            elif not value:
                unset.append((name, "placeholders filled to an empty value"))
            else:
                values[name] = value
        return values, unset

    def placeholders(self) -> set[str]:
        """Every ``{name}`` in the rule's ``set`` values."""
        return {n for _, t in self.sets for n in PLACEHOLDER_RE.findall(t)}


@dataclass(frozen=True, slots=True)
class DeviceClass:
    """An entry of the closed device-class vocabulary."""

    id: str
    label: str
    regulated: bool
    category: str


@dataclass
class Vocabulary:
    """The merged closed vocabulary of every rule directory."""

    vendors: set[str] = field(default_factory=set)
    device_classes: dict[str, DeviceClass] = field(default_factory=dict)
    os_families: set[str] = field(default_factory=set)

    def allows(self, field_name: str, value: str) -> bool:
        """Is ``value`` allowed for a vocabulary-controlled field (others: always)?"""
        if field_name == "vendor":
            return value in self.vendors
        if field_name == "device_class":
            return value in self.device_classes
        if field_name == "os_family":
            return value in self.os_families
        return True


@dataclass(frozen=True, slots=True)
class LifecycleEntry:
    """End-of-support data for an OS or device software, matched on asset fields."""

    id: str
    match: tuple[tuple[str, str, re.Pattern[str]], ...]
    end_of_support: date
    extended_end: date | None
    product: str
    references: tuple[str, ...]
    path: Path
    line: int
    site: bool = False


@dataclass
class RuleSet:
    """Everything loaded from the rule directories, in load order."""

    rules: tuple[Rule, ...]
    vocabulary: Vocabulary
    lifecycle: tuple[LifecycleEntry, ...]
    dirs: tuple[Path, ...] = ()

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, if any."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None


# --------------------------------------------------------------------------------------------
# YAML with line numbers


# The loader lives in :mod:`monitor.yamlfile` (policies use it too).

#: What :meth:`_Linter.read` returns for a file it could not read or parse.
_UNREADABLE = object()


def _scalar(value: Any) -> str | None:
    """A YAML scalar as the string a signal would carry (bool -> 'true'), else None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    return None


# --------------------------------------------------------------------------------------------
# Loading and linting


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a directory, sorted: every .yaml/.yml except vocabulary and lifecycle."""
    out = []
    for path in _yaml_files(directory):
        rel = path.relative_to(directory)
        if path.name == VOCABULARY_FILE or rel.parts[0] == LIFECYCLE_DIR:
            continue
        out.append(path)
    return out


def lifecycle_files(directory: Path) -> list[Path]:
    """The lifecycle files of a directory (``lifecycle/**/*.yaml``), sorted."""
    return _yaml_files(directory / LIFECYCLE_DIR)


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


class _Linter:
    """Reads every file once, collects one-line errors, builds the compiled rule set."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.vocabulary = Vocabulary()
        self._vocab_lines: dict[str, str] = {}
        self.rules: list[Rule] = []
        self._rule_ids: dict[str, str] = {}
        self.lifecycle: list[LifecycleEntry] = []
        self._lifecycle_ids: dict[str, str] = {}

    def error(self, path: Path, line: int, message: str, rule: str | None = None) -> None:
        where = f"{path}:{line}: "
        self.errors.append(where + (f"rule {rule}: " if rule is not None else "") + message)

    def read(self, path: Path) -> Any:
        """The file's YAML (with line numbers; an empty file is an empty mapping), or
        :data:`_UNREADABLE` after reporting why it cannot be read."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.error(path, 1, f"cannot read: {exc}")
            return _UNREADABLE
        try:
            data = yaml.load(text, Loader=_LineLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = exc.problem or exc.context or "invalid YAML"
            self.error(path, line, f"YAML syntax error: {problem}")
            return _UNREADABLE
        except yaml.YAMLError as exc:
            self.error(path, 1, f"YAML syntax error: {exc}")
            return _UNREADABLE
        if data is None:
            data = _Map()
            data.line, data.lines, data.duplicates = 1, {}, []
        self._duplicate_keys(path, data)
        return data

    def _duplicate_keys(self, path: Path, data: Any) -> None:
        if isinstance(data, _Map):
            for key, line in data.duplicates:
                self.error(path, line, f"duplicate key {key!r}")
            for value in data.values():
                self._duplicate_keys(path, value)
        elif isinstance(data, _Seq):
            for value in data:
                self._duplicate_keys(path, value)

    def keys(
        self,
        path: Path,
        obj: _Map,
        allowed: frozenset[str],
        required: frozenset[str],
        what: str,
        rule: str | None = None,
    ) -> bool:
        """Report unknown and missing keys; True when none is missing."""
        ok = True
        for key in obj:
            if key not in allowed:
                self.error(path, _line(obj, key), f"unknown key {key!r} in {what}", rule)
        for key in sorted(required - set(obj)):
            self.error(path, _line(obj), f"missing required key {key!r} in {what}", rule)
            ok = False
        return ok

    # -- vocabulary ---------------------------------------------------------------------------

    def vocabulary_file(self, path: Path) -> None:
        data = self.read(path)
        if data is _UNREADABLE:
            return
        if not isinstance(data, _Map):
            self.error(path, _line(data), "a vocabulary file is a mapping")
            return
        self.keys(path, data, VOCABULARY_KEYS, frozenset(), "vocabulary")
        for key in ("vendors", "os_families"):
            items = data.get(key, [])
            if not isinstance(items, list):
                self.error(path, _line(data, key), f"'{key}' must be a list of names")
                continue
            for i, item in enumerate(items):
                if not isinstance(item, str) or not item.strip():
                    self.error(path, _line(items, i), f"'{key}' entries must be non-empty text")
                elif key == "vendors":
                    self.vocabulary.vendors.add(item)
                else:
                    self.vocabulary.os_families.add(item)
        classes = data.get("device_classes", {})
        if not isinstance(classes, dict):
            self.error(path, _line(data, "device_classes"), "'device_classes' must be a mapping")
            return
        for cid, spec in classes.items():
            line = _line(classes, cid)
            if not isinstance(cid, str) or not ID_RE.match(cid):
                self.error(path, line, f"device class id {cid!r} must match {ID_RE.pattern}")
                continue
            if not isinstance(spec, _Map):
                self.error(path, line, f"device class {cid!r} must be a mapping")
                continue
            what = f"device class {cid!r}"
            if not self.keys(path, spec, DEVICE_CLASS_KEYS, DEVICE_CLASS_KEYS, what):
                continue
            label, regulated, category = spec["label"], spec["regulated"], spec["category"]
            if not isinstance(label, str) or not isinstance(category, str):
                self.error(path, line, f"{what}: 'label' and 'category' must be text")
                continue
            if not isinstance(regulated, bool):
                self.error(path, _line(spec, "regulated"), f"{what}: 'regulated' must be a bool")
                continue
            if cid in self.vocabulary.device_classes:
                self.error(path, line, f"{what} already defined at {self._vocab_lines[cid]}")
                continue
            self.vocabulary.device_classes[cid] = DeviceClass(cid, label, regulated, category)
            self._vocab_lines[cid] = f"{path}:{line}"

    # -- rules --------------------------------------------------------------------------------

    def _file(self, path: Path, keys: frozenset[str], items: str, what: str) -> Any:
        """Read a rule or lifecycle file and check its ``meta``; return its ``items`` list (or
        None when there is nothing more to check)."""
        data = self.read(path)
        if data is _UNREADABLE:
            return None
        if not isinstance(data, _Map):
            self.error(path, _line(data), f"a {what} file is a mapping with 'meta' and '{items}'")
            return None
        self.keys(path, data, keys, keys, "the file")
        meta = data.get("meta")
        if meta is not None:
            if isinstance(meta, _Map):
                self.keys(path, meta, META_KEYS, META_REQUIRED, "meta")
                if "title" in meta and not _text(meta["title"]):
                    self.error(path, _line(meta, "title"), "meta 'title' must be non-empty text")
            else:
                self.error(path, _line(data, "meta"), "'meta' must be a mapping")
        listed = data.get(items)
        if listed is None:
            return None
        if not isinstance(listed, _Seq):
            self.error(path, _line(data, items), f"'{items}' must be a list")
            return None
        return listed

    def rule_file(self, path: Path, site: bool) -> None:
        rules = self._file(path, FILE_KEYS, "rules", "rule")
        if rules is None:
            return
        for index, raw in enumerate(rules):
            line = _line(rules, index)
            if not isinstance(raw, _Map):
                self.error(path, line, f"rule #{index + 1} must be a mapping")
                continue
            rule = self.rule(path, raw, index, site)
            if rule is not None:
                self.rules.append(rule)

    def rule(self, path: Path, raw: _Map, index: int, site: bool) -> Rule | None:
        """Validate one rule; the compiled rule when it is sound enough to run its examples."""
        rid_raw = raw.get("id")
        rid = rid_raw if isinstance(rid_raw, str) and rid_raw else f"#{index + 1}"
        line = _line(raw)
        errors_before = len(self.errors)

        def err(message: str, key: Any = None, obj: Any = raw) -> None:
            self.error(path, _line(obj, key, line), message, rid)

        self.keys(path, raw, RULE_KEYS, RULE_REQUIRED, "rule", rid)
        if "match" not in raw and "any" not in raw:
            err("needs 'match' or 'any' (or both)")
        # id
        if "id" in raw:
            if not isinstance(rid_raw, str) or not ID_RE.match(rid_raw):
                err(f"id must match {ID_RE.pattern}", "id")
            elif rid_raw in self._rule_ids:
                err(f"duplicate id, first defined at {self._rule_ids[rid_raw]}", "id")
            else:
                self._rule_ids[rid_raw] = f"{path}:{line}"
                if site and not rid_raw.startswith(SITE_PREFIX):
                    err(f"site rule ids must start with '{SITE_PREFIX}'", "id")
                elif not site and rid_raw.startswith(SITE_PREFIX):
                    err(f"'{SITE_PREFIX}' ids are reserved for the site rule directory", "id")
        # scalars
        rev = raw.get("rev", 1)
        if isinstance(rev, bool) or not isinstance(rev, int) or rev < 1:
            err(f"'rev' must be an integer >= 1, got {rev!r}", "rev")
        description = raw.get("description", "")
        if "description" in raw and not _text(description):
            err("'description' must be non-empty text", "description")
        references = raw.get("references", [])
        if "references" in raw and (
            not isinstance(references, list)
            or not references
            or not all(_text(r) for r in references)
        ):
            err("'references' must be a non-empty list of text", "references")
        confidence = raw.get("confidence", 1.0)
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, (int, float))
            or not 0 < confidence <= 1
        ):
            err(f"'confidence' must be a number with 0 < c <= 1, got {confidence!r}", "confidence")
        generic = raw.get("generic", False)
        if not isinstance(generic, bool):
            err(f"'generic' must be true or false, got {generic!r}", "generic")
        # match / any / not
        match = self.conditions(path, raw, "match", rid) if "match" in raw else ()
        any_: list[tuple[Condition, ...]] = []
        if "any" in raw:
            branches = raw["any"]
            if not isinstance(branches, _Seq) or not branches:
                err("'any' must be a non-empty list of match maps", "any")
            else:
                for i in range(len(branches)):
                    got = self.conditions(path, branches, i, rid, f"any[{i}]")
                    if got is not None:
                        any_.append(got)
        not_ = self.conditions(path, raw, "not", rid) if "not" in raw else ()
        # set
        sets = self.set_values(path, raw, rid, site)
        # examples
        examples = self.signal_maps(path, raw, "examples", rid, required=True)
        counters = self.signal_maps(path, raw, "counter_examples", rid, required=False)
        if len(self.errors) != errors_before or match is None or not_ is None:
            return None
        rule = Rule(
            id=rid,
            rev=int(rev),
            description=str(description),
            references=tuple(str(r) for r in references),
            match=match,
            any_=tuple(any_),
            not_=not_,
            sets=tuple(sets),
            confidence=float(confidence),
            generic=bool(generic),
            examples=tuple(e for e, _ in examples),
            counter_examples=tuple(c for c, _ in counters),
            path=path,
            line=line,
            site=site,
            required_kinds=frozenset(c.kind for c in match),
        )
        # placeholders must refer to something in match/any
        known = {c.kind for c in match} | {c.kind for b in rule.any_ for c in b}
        known |= {g for c in match for g in c.regex.groupindex}
        known |= {g for b in rule.any_ for c in b for g in c.regex.groupindex}
        set_map = raw["set"]
        for name, template in rule.sets:
            for ph in PLACEHOLDER_RE.findall(template):
                if ph not in known:
                    err(
                        f"set.{name}: placeholder {{{ph}}} refers to nothing in match/any "
                        "(neither a named group nor a matched signal kind)",
                        name,
                        set_map,
                    )
        # behaviour checks
        for i, (example, eline) in enumerate(examples, 1):
            if rule.evaluate(example) is None:
                why = _why_not(rule, example)
                self.error(path, eline, f"example {i} does not make the rule fire ({why})", rid)
        for i, (counter, cline) in enumerate(counters, 1):
            if rule.evaluate(counter) is not None:
                self.error(path, cline, f"counter_example {i} makes the rule fire", rid)
        if len(self.errors) != errors_before:
            return None
        return rule

    def conditions(
        self, path: Path, parent: Any, key: Any, rid: str, what: str | None = None
    ) -> tuple[Condition, ...] | None:
        """A match map (``kind: regex``) compiled; None after reporting an error."""
        what = what or str(key)
        obj = parent[key]
        line = _line(parent, key)
        if not isinstance(obj, _Map) or not obj:
            self.error(path, line, f"'{what}' must be a non-empty map of kind: regex", rid)
            return None
        out = []
        ok = True
        for kind, pattern in obj.items():
            kline = _line(obj, kind, line)
            if not isinstance(kind, str) or not KIND_RE.match(kind):
                self.error(
                    path, kline, f"{what}: signal kind {kind!r} is not dotted proto.attribute", rid
                )
                ok = False
                continue
            text = _scalar(pattern)
            if text is None:
                self.error(path, kline, f"{what}.{kind}: the regex must be text", rid)
                ok = False
                continue
            try:
                regex = re.compile(text)
            except re.error as exc:
                self.error(path, kline, f"{what}.{kind}: bad regex {text!r}: {exc}", rid)
                ok = False
                continue
            out.append(Condition(kind, text, regex))
        return tuple(out) if ok else None

    def set_values(self, path: Path, raw: _Map, rid: str, site: bool) -> list[tuple[str, str]]:
        if "set" not in raw:
            return []
        obj = raw["set"]
        if not isinstance(obj, _Map) or not obj:
            self.error(path, _line(raw, "set"), "'set' must name at least one field", rid)
            return []
        out = []
        for name, value in obj.items():
            line = _line(obj, name)
            if name not in FIELDS:
                self.error(
                    path, line, f"set: unknown field {name!r} (one of {', '.join(FIELDS)})", rid
                )
                continue
            text = _scalar(value)
            if text is None or not text.strip():
                self.error(path, line, f"set.{name} must be non-empty text", rid)
                continue
            if not PLACEHOLDER_RE.search(text) and not self.vocabulary.allows(name, text):
                label = name.replace("_", " ")
                self.error(path, line, f"unknown {label} {text!r} (not in vocabulary.yaml)", rid)
                continue
            out.append((name, text))
        return out

    def signal_maps(
        self, path: Path, raw: _Map, key: str, rid: str, required: bool
    ) -> list[tuple[dict[str, tuple[str, ...]], int]]:
        """``examples`` / ``counter_examples``: lists of ``kind: value | [values]`` maps."""
        if key not in raw:
            return []
        items = raw[key]
        if not isinstance(items, _Seq) or (required and not items):
            need = "a non-empty list" if required else "a list"
            self.error(path, _line(raw, key), f"'{key}' must be {need} of signal maps", rid)
            return []
        out = []
        for i, item in enumerate(items):
            line = _line(items, i)
            if not isinstance(item, _Map) or not item:
                self.error(path, line, f"{key}[{i}] must be a non-empty map of kind: value", rid)
                continue
            signals: dict[str, tuple[str, ...]] = {}
            for kind, value in item.items():
                vals = value if isinstance(value, list) else [value]
                texts = [_scalar(v) for v in vals]
                if not isinstance(kind, str) or not vals or any(t is None for t in texts):
                    self.error(
                        path, line, f"{key}[{i}].{kind}: values must be text or a list of it", rid
                    )
                    break
                signals[kind] = tuple(t for t in texts if t is not None)
            else:
                out.append((signals, line))
        return out

    # -- lifecycle ----------------------------------------------------------------------------

    def lifecycle_file(self, path: Path, site: bool) -> None:
        entries = self._file(path, LIFECYCLE_FILE_KEYS, "entries", "lifecycle")
        if entries is None:
            return
        for index, raw in enumerate(entries):
            if not isinstance(raw, _Map):
                self.error(path, _line(entries, index), f"entry #{index + 1} must be a mapping")
                continue
            entry = self.lifecycle_entry(path, raw, index, site)
            if entry is not None:
                self.lifecycle.append(entry)

    def lifecycle_entry(
        self, path: Path, raw: _Map, index: int, site: bool
    ) -> LifecycleEntry | None:
        eid_raw = raw.get("id")
        eid = eid_raw if isinstance(eid_raw, str) and eid_raw else f"#{index + 1}"
        line = _line(raw)
        before = len(self.errors)

        def err(message: str, key: Any = None, obj: Any = raw) -> None:
            self.error(path, _line(obj, key, line), f"lifecycle {eid}: {message}")

        for key in raw:
            if key not in LIFECYCLE_KEYS:
                err(f"unknown key {key!r}", key)
        for key in sorted(LIFECYCLE_REQUIRED - set(raw)):
            err(f"missing required key {key!r}")
        if "id" in raw:
            if not isinstance(eid_raw, str) or not ID_RE.match(eid_raw):
                err(f"id must match {ID_RE.pattern}", "id")
            elif eid_raw in self._lifecycle_ids:
                err(f"duplicate id, first defined at {self._lifecycle_ids[eid_raw]}", "id")
            else:
                self._lifecycle_ids[eid_raw] = f"{path}:{line}"
        match: list[tuple[str, str, re.Pattern[str]]] = []
        if "match" in raw:
            obj = raw["match"]
            if not isinstance(obj, _Map) or not obj:
                err("'match' must be a non-empty map of field: regex", "match")
            else:
                for name, pattern in obj.items():
                    if name not in LIFECYCLE_FIELDS:
                        err(
                            f"match: unknown field {name!r} (one of {', '.join(LIFECYCLE_FIELDS)})",
                            name,
                            obj,
                        )
                        continue
                    text = _scalar(pattern)
                    try:
                        if text is None:
                            raise re.error("not text")
                        match.append((name, text, re.compile(text)))
                    except re.error as exc:
                        err(f"match.{name}: bad regex {pattern!r}: {exc}", name, obj)
        dates: dict[str, date | None] = {"end_of_support": None, "extended_end": None}
        for key in dates:
            if key in raw:
                value = raw[key]
                if isinstance(value, datetime):
                    value = value.date()
                if isinstance(value, str):
                    with contextlib.suppress(ValueError):
                        value = date.fromisoformat(value)
                if isinstance(value, date):
                    dates[key] = value
                else:
                    err(f"'{key}' must be a date YYYY-MM-DD, got {value!r}", key)
        product = raw.get("product")
        if "product" in raw and not _text(product):
            err("'product' must be non-empty text", "product")
        references = raw.get("references", [])
        if "references" in raw and (
            not isinstance(references, list)
            or not references
            or not all(_text(r) for r in references)
        ):
            err("'references' must be a non-empty list of text", "references")
        end = dates["end_of_support"]
        if len(self.errors) != before or end is None:
            return None
        return LifecycleEntry(
            id=eid,
            match=tuple(match),
            end_of_support=end,
            extended_end=dates["extended_end"],
            product=str(product),
            references=tuple(str(r) for r in references),
            path=path,
            line=line,
            site=site,
        )


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _why_not(rule: Rule, signals: Mapping[str, Sequence[str]]) -> str:
    """Which part of a rule an example fails (for the lint message)."""
    for cond in rule.match:
        if _match_all((cond,), signals) is None:
            return f"match.{cond.kind} does not match"
    if rule.any_ and not any(_match_all(b, signals) is not None for b in rule.any_):
        return "no 'any' branch matches"
    if rule.not_:
        return "'not' matches"
    return "no match"


def _walk(dirs: Sequence[Path], shipped: int) -> Iterator[tuple[Path, bool]]:
    for i, directory in enumerate(dirs):
        yield Path(directory), i >= shipped


def _lint(dirs: Iterable[Path], shipped: int = 1) -> tuple[_Linter, tuple[Path, ...]]:
    roots = tuple(Path(d) for d in dirs)
    linter = _Linter()
    for directory, _site in _walk(roots, shipped):
        vocab = directory / VOCABULARY_FILE
        if vocab.is_file():
            linter.vocabulary_file(vocab)
    for directory, site in _walk(roots, shipped):
        for path in rule_files(directory):
            linter.rule_file(path, site)
    for directory, site in _walk(roots, shipped):
        for path in lifecycle_files(directory):
            linter.lifecycle_file(path, site)
    return linter, roots


def lint(dirs: Sequence[Path], *, shipped: int = 1) -> list[str]:
    """Every problem in the rule directories, one ``path:LINE: rule ID: message`` line each.

    ``dirs[:shipped]`` hold shipped rules, the rest are site directories (``site.`` ids).
    Checks YAML syntax, the schema, unique ids, the site prefix, regexes, the vocabulary,
    ``set`` placeholders, and that every example fires and no counter-example does.
    """
    linter, _ = _lint(dirs, shipped)
    return linter.errors


def load_rules(dirs: Sequence[Path], *, shipped: int = 1) -> RuleSet:
    """Load, validate and compile the rules, vocabulary and lifecycle data of ``dirs``.

    Raises :class:`RuleError` (one line per problem) when :func:`lint` finds anything.
    """
    linter, roots = _lint(dirs, shipped)
    if linter.errors:
        raise RuleError(linter.errors)
    return RuleSet(
        rules=tuple(linter.rules),
        vocabulary=linter.vocabulary,
        lifecycle=tuple(linter.lifecycle),
        dirs=roots,
    )


def shipped_dir() -> Path:
    """The shipped ``fingerprints/`` directory: package data when installed, else the checkout.

    Looks for ``monitor/data/fingerprints`` first, then ``fingerprints/`` beside ``monitor/``.
    """
    package = Path(__file__).resolve().parents[1]
    installed = package / "data" / "fingerprints"
    if installed.is_dir():
        return installed
    return package.parent / "fingerprints"
