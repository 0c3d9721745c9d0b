"""v2's database access, always as the application role, always through row-level security.

`tenant_tx()` is the way to touch tenant rows: it opens a transaction and sets `app.tenant_id`
for that transaction alone (set_config(..., true)), so a pooled connection can never carry one
tenant's context into the next request. The hot paths take one round trip instead of tenant_tx's
four or more (BEGIN, set_config, each statement, COMMIT): the status read (`order_status()`, most
of v2's traffic, a prepared statement sent through libpq directly: status_read.py) and the two
transactions of a payment creation (`create_order()` before the Snap call, `store_payment_link()`
after it) each call a SECURITY INVOKER function (migrations 0009 and 0010) that binds the tenant
for its own one-statement transaction, so row-level security still decides what it reads and
writes. The pool lends its most recently returned idle connection first (lifo_pool.py), so these
calls keep landing on the same warm PostgreSQL backends.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import PoolTimeout

from proxy.serving.secret import Secret
from proxy.v2.lifo_pool import LifoConnectionPool
from proxy.v2.status_read import COLUMNS_SQL, StatusReadConnection, read_order_status

log = logging.getLogger(__name__)


class PooledConnection(StatusReadConnection):
    """One of v2's pooled connections, keeping one cursor for its one-statement calls (the two of a
    creation): a cursor made per call (its adapters map and transformer) is a measurable share of
    their CPU. The pool lends a connection to one request at a time, so its cursor is never shared
    by two. The status read goes through libpq directly (status_read.py)."""

    _statements: AsyncCursor[DictRow] | None = None

    def statement_cursor(self) -> AsyncCursor[DictRow]:
        if self._statements is None or self._statements.closed:
            self._statements = self.cursor()
        return self._statements


Pool = LifoConnectionPool[PooledConnection]

_NEGATIVE_CACHE_SIZE: Final = 4096
_DRY_STATUS_READ: Final = f"SELECT {COLUMNS_SQL} FROM order_status(%s, %s, %s)"  # the status read, psycopg's way

# What an unreachable or exhausted payments database raises: answered 503 (retry), never a 500.
DATABASE_DOWN: Final = (psycopg.OperationalError, PoolTimeout)

# Set by the dry-run middleware (proxy/v2/dryrun.py) for the length of one mirrored request.
dry_run: contextvars.ContextVar[Any] = contextvars.ContextVar("dualstack_v2_dry_run", default=None)


@dataclass(frozen=True, slots=True)
class AdminLogin:
    """The admin page's credential of a tenant (`dualstack tenant set --admin-user`): who may sign in,
    the scrypt hash of the password, and the key that signs the tenant's session tokens."""

    user: str
    password_scrypt: Secret
    session_key: Secret  # hex


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
    finish_url: str | None = None  # a template; None: the service's
    cors_origins: tuple[str, ...] = ()  # as stored (checked by `dualstack tenant`); the own hosts are not here
    admin_login: AdminLogin | None = None  # None: nobody can sign in to the admin page


class RoleBypassesIsolation(psycopg.OperationalError):
    """v2's database role would see every tenant's rows: the pool refuses its connections."""


_BYPASSES_RLS: Final = ("SELECT current_user AS role, rolsuper OR rolbypassrls AS bypasses FROM pg_roles "
                        "WHERE rolname = current_user")


async def refuse_a_role_that_bypasses_rls(conn: PooledConnection) -> None:
    """Tenant isolation is enforced by the database role: a superuser or BYPASSRLS role would make
    every tenant's rows visible to every request, so no connection of such a role is ever lent."""
    row = await (await conn.execute(_BYPASSES_RLS)).fetchone()
    if row is not None and row["bypasses"]:
        log.error("v2's database role %s bypasses row-level security (superuser or BYPASSRLS): v2 refuses its "
                  "connections and answers 503. Give DUALSTACK_DATABASE_URL the application role "
                  "`dualstack db migrate` created", row["role"])
        raise RoleBypassesIsolation(f"role {row['role']} bypasses row-level security")


def make_pool(database_url: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    return LifoConnectionPool(
        database_url, min_size=min_size, max_size=max_size, open=False, timeout=5.0,
        connection_class=PooledConnection, configure=refuse_a_role_that_bypasses_rls,
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

    async def order_status(self, tenant_id: uuid.UUID, order_id: str, recent_s: float) -> dict[str, Any] | None:
        """The order as the status read needs it (order_id, payment_status, gross_amount,
        customer_name, email, has_snap, recent: created under `recent_s` ago), or None when this
        tenant has no such order."""
        if dry_run.get() is not None:  # the dry run's connection is inside its transaction: psycopg's way
            return await self._one_statement(_DRY_STATUS_READ, (tenant_id, order_id, recent_s))
        conn = await self.pool.getconn()
        try:
            return await read_order_status(conn, tenant_id, order_id, recent_s)
        finally:
            await self.pool.putconn(conn)

    async def create_order(self, tenant_id: uuid.UUID, order_id: str, *, amount: int, email: str, phone: str,
                           name: str, payment_method: str | None, monthly_limit: int | None) -> dict[str, Any]:
        """The first transaction of a payment creation (migration 0010's create_order): `outcome`
        'created' (quota unit taken, customer upserted, order inserted, all committed), 'exists'
        (the stored_* columns describe the tenant's order of that id; nothing written) or
        'monthly_limit_reached' (nothing written). A concurrent insert of the same order id raises
        psycopg.errors.UniqueViolation with nothing written: asked again, it is 'exists'."""
        row = await self._one_statement(
            "SELECT * FROM create_order(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (tenant_id, order_id, amount, email, email.lower(), phone, name, payment_method, monthly_limit))
        assert row is not None  # the function returns one row on every path
        return row

    async def store_payment_link(self, tenant_id: uuid.UUID, order_id: str, *, snap_token: str,
                                 redirect_url: str, email_template: str) -> tuple[str, str, bool]:
        """The second transaction of a payment creation (migration 0010's store_payment_link): the
        link stored on the order unless one is already (a concurrent repeat's, answered instead),
        and the order email queued with it. Returns (token, redirect URL, whether an email row to
        send was written: the caller wakes the outbox)."""
        row = await self._one_statement("SELECT * FROM store_payment_link(%s, %s, %s, %s, %s)",
                                        (tenant_id, order_id, snap_token, redirect_url, email_template))
        assert row is not None
        return row["snap_token_answered"], row["redirect_url_answered"], row["email_queued"]

    async def _one_statement(self, query: str, params: tuple[Any, ...]) -> DictRow | None:
        """One statement on an autocommit connection: its own transaction, one round trip, prepared
        by psycopg after a few calls on each pooled connection."""
        dry = dry_run.get()
        if dry is not None:  # inside a dry run: its savepoint, as for every other statement of it
            async with dry.conn.transaction():
                row: DictRow | None = await (await dry.conn.execute(query, params)).fetchone()
                return row
        # getconn/putconn rather than pool.connection(), which also enters the connection's own
        # context: a commit with nothing to commit in autocommit mode, behind the connection's lock.
        # putconn still rolls back, or discards, a connection returned in any state but idle.
        conn = await self.pool.getconn()
        try:
            cursor = conn.statement_cursor()
            await cursor.execute(query, params)
            return await cursor.fetchone()
        finally:
            await self.pool.putconn(conn)

    async def tenant_by_slug(self, slug: str) -> TenantRecord | None:
        """The tenant named `slug`, cached for a few seconds (a suspension shows within the TTL)."""
        now = time.monotonic()
        cached = self._tenants.get(slug)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self._read_tenant(slug)
        self._tenants[slug] = (now + self._ttl_s, record)
        self._tenants.move_to_end(slug)
        while len(self._tenants) > _NEGATIVE_CACHE_SIZE:
            self._tenants.popitem(last=False)
        return record

    async def _read_tenant(self, slug: str) -> TenantRecord | None:
        """The tenant row, and its secrets read bound to it: row-level security shows the application
        role one tenant's secrets, never a listing. Both statements go in one pipeline (one round
        trip): up to its Sync they are one implicit transaction, so the transaction-local tenant
        setting reaches the second statement and no further."""
        async with self.pool.connection() as conn:
            async with conn.pipeline():
                await conn.execute(
                    "SELECT set_config('app.tenant_id', coalesce((SELECT id::text FROM tenants WHERE slug = %s), ''), "
                    "true)", (slug,))
                cursor = await conn.execute(
                    "SELECT t.id, slug, name, status, plan, max_orders_per_month, s.midtrans_server_key, "
                    "midtrans_environment, s.admin_token_sha256, email_from, email_reply_to, "
                    "unknown_order_retry_until, finish_url, cors_origins, s.admin_user, s.admin_password_scrypt, "
                    "s.admin_session_key "
                    "FROM tenants t LEFT JOIN tenant_secrets s ON s.tenant_id = t.id "
                    "WHERE slug = %s", (slug,))
            row = await cursor.fetchone()
        if row is None:
            return None
        if row["midtrans_server_key"] is None:
            # No key is no tenant: a missing key must never verify anything (fail closed).
            log.error("tenant %s: no Midtrans server key readable for it; treated as unknown "
                      "(`dualstack tenant set %s --midtrans-server-key ...`)", slug, slug)
            return None
        return TenantRecord(
            id=row["id"], slug=row["slug"], name=row["name"], status=row["status"], plan=row["plan"],
            max_orders_per_month=row["max_orders_per_month"], server_key=Secret(row["midtrans_server_key"]),
            environment=row["midtrans_environment"], admin_token_sha256=row["admin_token_sha256"],
            email_from=row["email_from"], email_reply_to=row["email_reply_to"],
            unknown_order_retry_until=row["unknown_order_retry_until"], finish_url=row["finish_url"],
            cors_origins=tuple(row["cors_origins"]), admin_login=_admin_login(row))

    async def ping(self, timeout_s: float = 1.0) -> bool:
        try:
            async with self.pool.connection(timeout=timeout_s) as conn:
                await conn.execute("SELECT 1")
        except Exception:
            return False
        return True


def _admin_login(row: DictRow) -> AdminLogin | None:
    if row["admin_user"] is None:  # the table's CHECK keeps the three together
        return None
    return AdminLogin(row["admin_user"], Secret(row["admin_password_scrypt"]), Secret(row["admin_session_key"]))
