"""YAML with line numbers, for the hand-written files medmon lints (fingerprint rules,
policies): every mapping and sequence remembers its own line and each entry's line, so a
problem is reported as one ``path:LINE: message`` line an editor can jump to [GRASSMARLIN XSD].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class Map(dict[Any, Any]):
    """A mapping that remembers its own line and each key's line (1-based)."""

    line: int = 0
    lines: dict[Any, int]
    duplicates: list[tuple[Any, int]]


class Seq(list[Any]):
    """A sequence that remembers its own line and each item's line (1-based)."""

    line: int = 0
    lines: list[int]


#: libyaml's parser when PyYAML was built with it (about 5x faster on the shipped rules, which
#: every replay loads); its nodes carry the same marks as the pure-Python one.
_BaseSafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineLoader(_BaseSafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers."""


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Map:
    loader.flatten_mapping(node)
    out = Map()
    out.line = node.start_mark.line + 1
    out.lines = {}
    out.duplicates = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        value = loader.construct_object(value_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            if key in out:
                out.duplicates.append((key, line))
        except TypeError:  # unhashable key (a list as a key): the loader reports it below
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark
            ) from None
        out[key] = value
        out.lines[key] = line
    return out


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> Seq:
    out = Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def line_of(obj: Any, key: Any = None, default: int = 1) -> int:
    """Line of ``obj[key]`` (or of ``obj``) when known."""
    if isinstance(obj, Map):
        if key is not None and key in obj.lines:
            return obj.lines[key]
        return obj.line or default
    if isinstance(obj, Seq):
        if isinstance(key, int) and 0 <= key < len(obj.lines):
            return obj.lines[key]
        return obj.line or default
    return default


def empty_map(line: int = 1) -> Map:
    """An empty :class:`Map` (what an empty file reads as)."""
    out = Map()
    out.line, out.lines, out.duplicates = line, {}, []
    return out


def read(path: Path) -> tuple[Any, list[tuple[int, str]]]:
    """A YAML file with line numbers, and ``(line, message)`` for each problem found reading it.

    An empty file is an empty mapping. When the file cannot be read or parsed the data is
    None; duplicate keys are reported (the last one wins) and the data returned.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [(1, f"cannot read: {exc}")]
    try:
        data = yaml.load(text, Loader=LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [(line, f"YAML syntax error: {problem}")]
    except yaml.YAMLError as exc:
        return None, [(1, f"YAML syntax error: {exc}")]
    if data is None:
        data = empty_map()
    errors: list[tuple[int, str]] = []
    _duplicate_keys(data, errors)
    return data, errors


def _duplicate_keys(data: Any, errors: list[tuple[int, str]]) -> None:
    if isinstance(data, Map):
        for key, line in data.duplicates:
            errors.append((line, f"duplicate key {key!r}"))
        for value in data.values():
            _duplicate_keys(value, errors)
    elif isinstance(data, Seq):
        for value in data:
            _duplicate_keys(value, errors)
