"""Whole-string matching everywhere: Python's `$` also matches before a final newline, and `.match(`
only anchors the start, so `"beta\n"` or `"shared_relay!"` would pass a check written with either."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

# Redaction errs towards hiding: these two keep `$` (and `.match`) so a value with a trailing newline is
# redacted too; nothing is accepted or routed by them (see the comment above them).
ALLOWED = frozenset({"controlplane/shadow/redact.py: _PHONE", "controlplane/shadow/redact.py: _TOKEN"})
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _is_compile(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "compile"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "re")


def _compiled_names(tree: ast.AST) -> dict[int, str]:
    """id(re.compile call) -> the name it is assigned to."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_compile(node.value):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            names[id(node.value)] = ast.unparse(target)
    return names


def prefix_or_dollar_patterns(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = _compiled_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr == "match":
            yield ast.unparse(node.func.value)
        elif (_is_compile(node) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _UNESCAPED_DOLLAR.search(node.args[0].value)):
            yield names.get(id(node), ast.unparse(node))


def test_patterns_match_whole_strings() -> None:
    """`fullmatch`, never a `$`-anchored pattern nor a bare `.match(`, in both planes."""
    found = set()
    for root in ("proxy", "controlplane"):
        for path in sorted((REPO / root).rglob("*.py")):
            found.update(f"{path.relative_to(REPO)}: {name}" for name in prefix_or_dollar_patterns(path))
    assert sorted(found - ALLOWED) == []
    assert found >= ALLOWED, "an allowed exception is gone: drop it from ALLOWED"
