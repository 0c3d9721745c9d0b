"""Strict YAML loading that remembers where every value came from.

PyYAML silently keeps the last of two duplicate keys; here a duplicate is an issue. The document is
composed into nodes and walked by hand, so each value's path maps to the line it was written on and
validation can say `file:line: path: message` for every problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controlplane.config.issues import ConfigError, ConfigIssue, PathKey, format_path


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """Plain values (dicts, lists, scalars) plus the line of every path in them."""

    data: Any
    lines: dict[tuple[PathKey, ...], int]
    source: str
    # Problems found while loading that do not stop validation (duplicate keys: the first is kept)
    issues: tuple[ConfigIssue, ...] = ()

    def line_of(self, path: tuple[PathKey, ...]) -> int:
        """The line of `path`, or of its closest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def issue(self, path: tuple[PathKey, ...], message: str) -> ConfigIssue:
        return ConfigIssue(self.source, self.line_of(path), format_path(path), message)


class _ScalarConstructor(yaml.SafeLoader):
    """Only used to turn scalar nodes into Python values with YAML 1.1 safe typing."""


def _walk(
    node: yaml.Node,
    path: tuple[PathKey, ...],
    lines: dict[tuple[PathKey, ...], int],
    issues: list[ConfigIssue],
    source: str,
    constructor: yaml.SafeLoader,
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(
                    ConfigIssue(source, key_node.start_mark.line + 1, format_path(path),
                                "keys must be plain scalars")
                )
                continue
            # Keys are names: taken as written, so `on:` or `no:` (booleans in YAML 1.1) stay names.
            key = str(key_node.value)
            key_line = key_node.start_mark.line + 1
            if key in first_line:
                issues.append(
                    ConfigIssue(source, key_line, format_path((*path, key)),
                                f"duplicate key (first defined on line {first_line[key]})")
                )
                continue
            first_line[key] = key_line
            result[key] = _walk(value_node, (*path, key), lines, issues, source, constructor)
            lines[(*path, key)] = key_line
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _walk(item, (*path, index), lines, issues, source, constructor)
            for index, item in enumerate(node.value)
        ]
    return constructor.construct_object(node, deep=True)


def parse_document(text: str, source: str) -> LoadedDocument:
    """Parse YAML text; raise ConfigError with every syntax or duplicate-key problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError((ConfigIssue(source, line, "", f"invalid YAML: {message}"),)) from None
    except yaml.YAMLError as exc:
        raise ConfigError((ConfigIssue(source, 1, "", f"invalid YAML: {exc}"),)) from None
    if node is None:
        raise ConfigError((ConfigIssue(source, 1, "", "the file is empty"),))
    issues: list[ConfigIssue] = []
    lines: dict[tuple[PathKey, ...], int] = {}
    constructor = _ScalarConstructor("")
    try:
        data = _walk(node, (), lines, issues, source, constructor)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError((ConfigIssue(source, line, "", f"invalid YAML: {exc.problem}"),)) from None
    finally:
        constructor.dispose()
    return LoadedDocument(data, lines, source, tuple(issues))


def read_document(path: str | Path) -> tuple[LoadedDocument, bytes]:
    """Read and parse a file; the raw bytes come back too, for digests."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError((ConfigIssue(source, 0, "", "file not found"),)) from None
    except OSError as exc:
        raise ConfigError((ConfigIssue(source, 0, "", f"cannot read: {exc.strerror}"),)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            (ConfigIssue(source, 1, "", f"not UTF-8 text (byte {exc.start})"),)
        ) from None
    return parse_document(text, source), raw
