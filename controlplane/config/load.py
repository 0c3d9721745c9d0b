"""Strict, bounded YAML loading that remembers where every value came from.

PyYAML silently keeps the last of two duplicate keys; here a duplicate is an issue. Values are built
by hand from the parser's events, so each value's path maps to the line it was written on and
validation can say `file:line: path: message` for every problem.

A routing file is data an operator writes, so what YAML offers beyond that is refused before it can
cost anything: aliases (`*name`, which make "billion laughs" expansion and self-referencing values
possible), nesting deeper than MAX_DEPTH, and numbers longer than MAX_NUMBER_CHARS. Whatever else
goes wrong while loading is a ConfigError too, never another exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from controlplane.config.issues import ConfigError, ConfigIssue, PathKey, format_path
from controlplane.config.read import MAX_FILE_BYTES, read_regular

# The deepest value of a routing file (tenants.<slug>.shadow.ignore[0]) is five levels down.
MAX_DEPTH: Final = 16
# Values of any kind, keys included: 10,000 tenants with hosts and shadow settings are about 110,000.
MAX_NODES: Final = 200_000
# Timeouts, ports and counts: 32 characters hold every sensible one, and stop int("1" * 5000).
MAX_NUMBER_CHARS: Final = 32
_NUMBER_TAGS: Final = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")

# libyaml (C) parses ten times faster than PyYAML's own scanner and parser. Values are built straight
# from the parser's events, in Python, where the bounds below are checked: no node tree is composed
# and then walked (bench/config_load.py, 10,000 tenants in 966 KiB: 0.92 s of CPU that way, 0.40 s
# this way). Both parsers keep their nesting on the heap, not the stack.
_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)
_EVENTS: Final[tuple[type, ...]] = (
    (_CParser,) if _CParser is not None else (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)
)
_STR_TAG: Final = "tag:yaml.org,2002:str"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_YAML_TAG_PREFIX: Final = "tag:yaml.org,2002:"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MAP_TAG: Final = "tag:yaml.org,2002:map"


class _EventParser(*_EVENTS):  # type: ignore[misc]
    """The YAML event stream of one text."""

    def __init__(self, text: str) -> None:
        if _CParser is not None:
            _CParser.__init__(self, text)
        else:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


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


@dataclass(slots=True)
class _Builder:
    """Builds one document's values from its events: refuses aliases, nesting deeper than MAX_DEPTH
    and more than MAX_NODES values (as it meets them, before anything is built from them), records
    the line of every value, and collects duplicate keys and unreadable values."""

    source: str
    events: Any  # an _EventParser
    constructor: yaml.SafeLoader
    resolver: yaml.resolver.Resolver
    lines: dict[tuple[PathKey, ...], int]
    issues: list[ConfigIssue]  # kept going: validation runs
    unusable: list[ConfigIssue]  # values that could not be read: validation does not run
    nodes: int = 0
    depth: int = 0
    anchors: dict[str, Any] = field(default_factory=dict)  # anchor -> the mark where it was defined

    def document(self) -> tuple[bool, Any]:
        """(whether the stream holds a document, its value); ComposerError for a second document."""
        self.events.get_event()  # StreamStart
        if isinstance(self.events.peek_event(), StreamEndEvent):
            return False, None
        first = self.events.get_event()  # DocumentStart
        data = self.value(self.events.get_event(), ())
        self.events.get_event()  # DocumentEnd
        if not isinstance(self.events.peek_event(), StreamEndEvent):
            event = self.events.get_event()
            raise ComposerError("expected a single document in the stream", first.start_mark,
                                "but found another document", event.start_mark)
        return True, data

    def _enter(self, event: Any) -> None:
        """Every node's first event: the bounds, checked before the node is built."""
        mark: Any = event.start_mark  # libyaml's marks or PyYAML's: both have .line
        if isinstance(event, AliasEvent):
            raise ComposerError(None, None, f"aliases (*{event.anchor}) are not allowed: write the value out", mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} values", mark)
        if event.anchor is not None:
            if event.anchor in self.anchors:
                raise ComposerError(f"found duplicate anchor {event.anchor!r}; first occurrence",
                                    self.anchors[event.anchor], "second occurrence", mark)
            self.anchors[event.anchor] = mark
        if isinstance(event, CollectionStartEvent) and self.depth + 1 > MAX_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)

    def value(self, event: Any, path: tuple[PathKey, ...]) -> Any:
        self._enter(event)
        self.lines[path] = event.start_mark.line + 1
        if isinstance(event, ScalarEvent):
            return self._scalar(event, path)
        plain = _SEQ_TAG if isinstance(event, SequenceStartEvent) else _MAP_TAG
        if event.tag not in (None, "!", plain):
            # Read as plain data, a tagged mapping or list would hide what its writer meant by the tag
            # (reported; the plain data is still validated, so every problem shows in one pass).
            self.issues.append(ConfigIssue(self.source, event.start_mark.line + 1, format_path(path),
                                             f"the tag {_as_written(event.tag)} is not allowed: write plain YAML"))
        self.depth += 1
        try:
            if isinstance(event, SequenceStartEvent):
                items: list[Any] = []
                while not isinstance(item := self.events.get_event(), SequenceEndEvent):
                    items.append(self.value(item, (*path, len(items))))
                return items
            return self._mapping(path)
        finally:
            self.depth -= 1

    def _skip(self, event: Any) -> None:
        """A node left out (under a duplicate or unusable key): its bounds are still checked."""
        self._enter(event)
        if isinstance(event, CollectionStartEvent):
            self.depth += 1
            while not isinstance(inner := self.events.get_event(), CollectionEndEvent):
                self._skip(inner)
            self.depth -= 1

    def _mapping(self, path: tuple[PathKey, ...]) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        while not isinstance(key_event := self.events.get_event(), MappingEndEvent):
            key_line = key_event.start_mark.line + 1
            if not isinstance(key_event, ScalarEvent):
                self._skip(key_event)
                self.issues.append(ConfigIssue(self.source, key_line, format_path(path), "keys must be plain scalars"))
                self._skip(self.events.get_event())
                continue
            self._enter(key_event)
            # Keys are names: taken as written, so `on:` or `no:` (booleans in YAML 1.1) stay names.
            key = str(key_event.value)
            if key_event.tag not in (None, "!", _STR_TAG):  # a key meant as something else than its name
                self.issues.append(ConfigIssue(self.source, key_line, format_path((*path, key)),
                                                 f"the tag {_as_written(key_event.tag)} is not allowed on a key: "
                                                 "write plain YAML"))
            if key in first_line:
                self.issues.append(ConfigIssue(self.source, key_line, format_path((*path, key)),
                                               f"duplicate key (first defined on line {first_line[key]})"))
                self._skip(self.events.get_event())
                continue
            first_line[key] = key_line
            result[key] = self.value(self.events.get_event(), (*path, key))
            self.lines[(*path, key)] = key_line
        return result

    def _scalar(self, event: Any, path: tuple[PathKey, ...]) -> Any:
        line = event.start_mark.line + 1
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        value = event.value
        if tag == _STR_TAG:
            return value  # what the constructor would return, without its cost
        if tag in _NUMBER_TAGS and len(value) > MAX_NUMBER_CHARS:
            self.unusable.append(ConfigIssue(self.source, line, format_path(path),
                                             f"number of {len(value)} characters is too long "
                                             f"(at most {MAX_NUMBER_CHARS})"))
            return None
        if tag == _INT_TAG and value.isascii() and value.isdigit() and (value == "0" or value[0] != "0"):
            return int(value)  # plain decimal (YAML 1.1 reads a leading 0 as octal: the constructor's)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            problem = f"invalid YAML: {exc.problem or 'cannot be read'}"
        except (ValueError, OverflowError) as exc:  # a timestamp such as 2024-13-45
            problem = f"'{event.value}' cannot be read as {tag.rsplit(':', 1)[-1]}: {exc}"
        self.unusable.append(ConfigIssue(self.source, line, format_path(path), problem))
        return None


def _as_written(tag: str) -> str:
    """A tag as a YAML file spells it: `!!set` for tag:yaml.org,2002:set."""
    return "!!" + tag.removeprefix(_YAML_TAG_PREFIX) if tag.startswith(_YAML_TAG_PREFIX) else tag


@contextmanager
def unexpected_as_issue(source: str, doing: str) -> Iterator[None]:
    """Any exception but ConfigError becomes one: a reload rejects the file instead of dying."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"cannot {doing}: {type(exc).__name__}" + (f": {detail}" if detail else "")
        raise ConfigError((ConfigIssue(source, 0, "", message),)) from exc


def parse_document(text: str, source: str) -> LoadedDocument:
    """Parse YAML text; raise ConfigError with every syntax, duplicate-key or unreadable-value problem."""
    with unexpected_as_issue(source, "parse the file"):
        if len(text) > MAX_FILE_BYTES:
            raise ConfigError((ConfigIssue(source, 0, "", f"too large: {len(text)} characters "
                                                          f"(at most {MAX_FILE_BYTES})"),))
        events = _EventParser(text)
        constructor = _ScalarConstructor("")
        builder = _Builder(source, events, constructor, yaml.resolver.Resolver(), {}, [], [])
        try:
            found, data = builder.document()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            # libyaml puts the end of a file without a final newline on the line after it.
            line = min(mark.line + 1, text.count("\n") + 1) if mark is not None else 1
            message = " ".join(part for part in (exc.context, exc.problem) if part)
            raise ConfigError((ConfigIssue(source, line, "", f"invalid YAML: {message}"),)) from None
        except yaml.YAMLError as exc:
            raise ConfigError((ConfigIssue(source, 1, "", f"invalid YAML: {exc}"),)) from None
        finally:
            events.dispose()
            constructor.dispose()
        if not found:
            raise ConfigError((ConfigIssue(source, 1, "", "the file is empty"),))
        if builder.unusable:
            raise ConfigError(tuple(sorted((*builder.unusable, *builder.issues), key=lambda i: i.line)))
        return LoadedDocument(data, builder.lines, source, tuple(builder.issues))


def decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError((ConfigIssue(source, 1, "", f"not UTF-8 text (byte {exc.start})"),)) from None


def read_document(path: str | Path) -> tuple[LoadedDocument, bytes]:
    """Read (a regular file, bounded) and parse; the raw bytes come back too, for digests."""
    source = str(path)
    raw = read_regular(path).raw
    return parse_document(decode(raw, source), source), raw
