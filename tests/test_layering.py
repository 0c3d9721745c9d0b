"""The two planes stay two rooms: the control plane never imports the data plane or aiohttp.web."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

FORBIDDEN_FOR_CONTROLPLANE = ("proxy", "aiohttp.web", "aiohttp")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_controlplane_never_imports_the_data_plane() -> None:
    offenders = []
    for path in sorted((REPO / "controlplane").rglob("*.py")):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_FOR_CONTROLPLANE):
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


# What the data plane may use of the control plane: the immutable config model, and the shadow
# comparison, redaction and sample definitions, which are pure (no I/O, no state): the router
# applies them to live traffic, the control plane's reports to stored samples. Nothing else.
SHARED_WITH_PROXY = ("controlplane.config", "controlplane.shadow.compare", "controlplane.shadow.redact",
                     "controlplane.shadow.samples")


def test_proxy_imports_only_the_shared_part_of_the_control_plane() -> None:
    offenders = []
    for path in sorted((REPO / "proxy").rglob("*.py")):
        for name in imports_of(path):
            if name.startswith("controlplane") and not name.startswith(SHARED_WITH_PROXY):
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


def test_the_shared_shadow_modules_are_pure() -> None:
    for module in ("compare", "redact", "samples"):
        imported = imports_of(REPO / "controlplane" / "shadow" / f"{module}.py")
        assert not any(n.split(".")[0] in ("aiohttp", "psycopg", "asyncio", "socket", "proxy") for n in imported)


def test_pure_modules_do_not_import_aiohttp() -> None:
    for module in ("routing.py", "tenant.py"):
        assert not any(n.startswith("aiohttp") for n in imports_of(REPO / "proxy" / module)), module
