"""Dry runs of mirrored requests: v2's real code path, nothing kept, nothing sent.

A request carrying the shadow marker from a trusted peer (the router) runs inside one database
transaction that is always rolled back: every tenant transaction of the handler becomes a
savepoint in it. The payment gateway is replaced by one that calls nothing, and no email is
queued for sending. A marker from anyone else is refused: no client can ask for a dry run, and
none can be fooled into thinking a real request was one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from psycopg import AsyncConnection

from proxy.serving.wire import SHADOW_HEADER
from proxy.v2 import keys
from proxy.v2.db import dry_run
from proxy.v2.gateway import PaymentGateway, SnapRequest, SnapResult
from proxy.v2.responses import json_error


@dataclass(frozen=True, slots=True)
class DryRun:
    conn: AsyncConnection[Any]


current = dry_run  # the one context variable, owned by the database layer that honours it


class DryRunGateway:
    """Answers like Snap, deterministically, without calling anything."""

    async def create(self, request: SnapRequest, *, server_key: str, environment: str) -> SnapResult:
        token = "dryrun-" + hashlib.sha256(request.order_id.encode()).hexdigest()[:24]
        return SnapResult(token, f"https://dry-run.invalid/snap/v4/redirection/{token}")


DRY_RUN_GATEWAY = DryRunGateway()


def gateway_for(request: web.Request) -> PaymentGateway:
    return DRY_RUN_GATEWAY if current.get() is not None else request.app[keys.V2_GATEWAY]


def is_dry_run() -> bool:
    return current.get() is not None


@web.middleware
async def dry_runs(request: web.Request, handler: Handler) -> web.StreamResponse:
    if SHADOW_HEADER not in request.headers:
        return await handler(request)
    if not request.app[keys.V2_SETTINGS].rule.peer_is_trusted(request.remote):
        return json_error(400, "untrusted_shadow_marker",
                          f"{SHADOW_HEADER} is only accepted from the router; this request was not processed")
    db = request.app[keys.V2_DB]
    async with db.pool.connection() as conn, conn.transaction(force_rollback=True):
        token = current.set(DryRun(conn))
        try:
            response = await handler(request)
        finally:
            current.reset(token)
    response.headers[SHADOW_HEADER] = "dry-run"
    return response
