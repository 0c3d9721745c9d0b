"""v2's database access, always as the application role, always through row-level security.

`tenant_tx()` is the only way to touch tenant rows: it opens a transaction and sets
`app.tenant_id` for that transaction alone (set_config(..., true)), so a pooled connection can
never carry one tenant's context into the next request.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

_NEGATIVE_CACHE_SIZE: Final = 4096

# Set by the dry-run middleware (proxy/v2/dryrun.py) for the length of one mirrored request.
dry_run: contextvars.ContextVar[Any] = contextvars.ContextVar("dualstack_v2_dry_run", default=None)


class Secret:
    """A value that must not reach logs, reprs or error messages; `reveal()` when it is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: uuid.UUID
    slug: str
    name: str
    status: str
    plan: str
    max_orders_per_month: int | None
    server_key: Secret
    environment: str
    admin_token_sha256: str | None
    email_from: str | None
    email_reply_to: str | None
    unknown_order_retry_until: datetime | None = None


def make_pool(database_url: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    return AsyncConnectionPool(
        database_url, min_size=min_size, max_size=max_size, open=False, timeout=5.0,
        connection_class=AsyncConnection[DictRow],
        kwargs={"autocommit": True, "row_factory": dict_row, "options": f"-c search_path={schema}"},
    )


class PaymentsDB:
    def __init__(self, pool: Pool, *, tenant_ttl_s: float = 5.0) -> None:
        self.pool = pool
        self._ttl_s = tenant_ttl_s
        self._tenants: OrderedDict[str, tuple[float, TenantRecord | None]] = OrderedDict()

    @asynccontextmanager
    async def tenant_tx(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncConnection[DictRow]]:
        dry = dry_run.get()
        if dry is not None:  # inside a dry run: a savepoint of its one, always rolled back, transaction
            async with dry.conn.transaction():
                await dry.conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
                yield dry.conn
            return
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            yield conn

    async def tenant_by_slug(self, slug: str) -> TenantRecord | None:
        """The tenant named `slug`, cached for a few seconds (a suspension shows within the TTL)."""
        now = time.monotonic()
        cached = self._tenants.get(slug)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT id, slug, name, status, plan, max_orders_per_month, midtrans_server_key, "
                "midtrans_environment, admin_token_sha256, email_from, email_reply_to, unknown_order_retry_until "
                "FROM tenants WHERE slug = %s", (slug,))
            row = await cursor.fetchone()
        record = None if row is None else TenantRecord(
            id=row["id"], slug=row["slug"], name=row["name"], status=row["status"], plan=row["plan"],
            max_orders_per_month=row["max_orders_per_month"], server_key=Secret(row["midtrans_server_key"]),
            environment=row["midtrans_environment"], admin_token_sha256=row["admin_token_sha256"],
            email_from=row["email_from"], email_reply_to=row["email_reply_to"],
            unknown_order_retry_until=row["unknown_order_retry_until"])
        self._tenants[slug] = (now + self._ttl_s, record)
        self._tenants.move_to_end(slug)
        while len(self._tenants) > _NEGATIVE_CACHE_SIZE:
            self._tenants.popitem(last=False)
        return record

    async def active_tenant_ids(self) -> list[uuid.UUID]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT id FROM tenants WHERE status <> 'cancelled'")
            return [row["id"] for row in await cursor.fetchall()]

    async def ping(self, timeout_s: float = 1.0) -> bool:
        try:
            async with self.pool.connection(timeout=timeout_s) as conn:
                await conn.execute("SELECT 1")
        except Exception:
            return False
        return True
