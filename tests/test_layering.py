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


# What the data plane may use of the control plane: the immutable config model and the tenant rule,
# the state database's queries, and the shadow comparison, redaction and sample definitions, which are
# pure (no I/O, no state): the router applies them to live traffic, the control plane's reports to
# stored samples. And the payment rules both planes apply, pure too: the one status-precedence rule
# (order_status), the one order id (order_id), the reading of Midtrans' Get Status answer
# (midtrans_answer), the admin page's password hash, which the CLI makes and v2 checks
# (admin_password), and the command-line conventions every program shares (arguments: argparse
# only). Nothing else.
SHARED_WITH_PROXY = ("controlplane.config", "controlplane.state", "controlplane.shadow.compare",
                     "controlplane.shadow.redact", "controlplane.shadow.samples", "controlplane.order_status",
                     "controlplane.midtrans_answer", "controlplane.admin_password", "controlplane.arguments",
                     "controlplane.order_id")


def _offenders(folder: str, allowed: tuple[str, ...] = (), forbidden: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for name in imports_of(path):
            if name.startswith("controlplane") and allowed and not name.startswith(allowed):
                out.append(f"{path.relative_to(REPO)}: {name}")
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(REPO)}: {name}")
    return out


def test_proxy_imports_only_the_shared_part_of_the_control_plane() -> None:
    assert _offenders("proxy", allowed=SHARED_WITH_PROXY) == []


def test_router_and_v2_never_import_each_other() -> None:
    assert _offenders("proxy/router", forbidden=("proxy.v2",)) == []
    assert _offenders("proxy/v2", forbidden=("proxy.router",)) == []


def test_what_both_servers_share_imports_neither() -> None:
    for shared in ("proxy/serving", "proxy/http1"):
        assert _offenders(shared, forbidden=("proxy.router", "proxy.v2")) == [], shared
    assert _offenders("proxy/http1", forbidden=("aiohttp",)) == []  # the client core is plain asyncio


def test_the_shared_shadow_modules_are_pure() -> None:
    for module in ("compare", "redact", "samples"):
        imported = imports_of(REPO / "controlplane" / "shadow" / f"{module}.py")
        assert not any(n.split(".")[0] in ("aiohttp", "psycopg", "asyncio", "socket", "proxy") for n in imported)


def test_the_shared_payment_rules_are_pure() -> None:
    for module in ("order_status", "order_id", "midtrans_answer", "admin_password"):
        imported = imports_of(REPO / "controlplane" / f"{module}.py")
        assert not any(n.split(".")[0] in ("aiohttp", "psycopg", "asyncio", "socket", "urllib", "proxy")
                       for n in imported), module
        assert {n for n in imported if n.startswith("controlplane")} <= {
            "controlplane.order_status", "controlplane.order_status.OrderStatus",
            "controlplane.order_status.order_status_for"}, module


def test_the_shared_command_line_conventions_are_pure() -> None:
    roots = {name.split(".")[0] for name in imports_of(REPO / "controlplane" / "arguments.py")}
    assert roots <= {"__future__", "argparse", "difflib", "sys", "collections", "typing"}, roots


def test_pure_modules_do_not_import_aiohttp() -> None:
    for module in ("proxy/router/routing.py", "controlplane/config/tenant.py"):
        assert not any(n.startswith("aiohttp") for n in imports_of(REPO / module)), module
