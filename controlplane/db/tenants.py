"""Tenant administration (`dualstack tenant ...`), run with the admin URL as the owner role.

Server keys are secrets: they are never printed whole, logged, or put in an error message.
Each tenant gets an admin token for `GET /admin/stats`; only its SHA-256 is stored, and the token
is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from controlplane.config.model import SLUG_RE
from controlplane.db.layout import DEFAULT_LAYOUT, DatabaseLayout

PLAN_LIMITS: Final[dict[str, int | None]] = {"starter": 100, "pro": 1000, "enterprise": None}
ENVIRONMENTS: Final = ("sandbox", "production")
STATUSES: Final = ("active", "suspended", "cancelled")
_SANDBOX_PREFIX: Final = "SB-Mid-server-"
_PRODUCTION_PREFIX: Final = "Mid-server-"


class TenantError(Exception):
    """A tenant command cannot be carried out; the message says why and what to do."""


def mask_secret(value: str | None) -> str:
    """`SB-Mid-server-abcdef1234` -> `SB-Mid-server-…1234`: enough to tell keys apart, no more."""
    if not value:
        return "-"
    prefix = _SANDBOX_PREFIX if value.startswith(_SANDBOX_PREFIX) else (
        _PRODUCTION_PREFIX if value.startswith(_PRODUCTION_PREFIX) else "")
    tail = value[len(prefix):]
    return f"{prefix}…{tail[-4:]}" if len(tail) > 8 else f"{prefix}…"


def check_key_environment(server_key: str, environment: str) -> None:
    if environment not in ENVIRONMENTS:
        raise TenantError(f"environment must be sandbox or production, not '{environment}'")
    if environment == "sandbox" and not server_key.startswith(_SANDBOX_PREFIX):
        raise TenantError(f"a sandbox tenant needs a sandbox server key (starting {_SANDBOX_PREFIX}); "
                          f"the key given ({mask_secret(server_key)}) looks like a production key")
    if environment == "production" and not server_key.startswith(_PRODUCTION_PREFIX):
        raise TenantError(f"a production tenant needs a production server key (starting "
                          f"{_PRODUCTION_PREFIX}); the key given ({mask_secret(server_key)}) "
                          "looks like a sandbox key")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewTenant:
    slug: str
    name: str
    plan: str
    midtrans_server_key: str
    midtrans_environment: str
    midtrans_client_key: str | None = None
    midtrans_merchant_id: str | None = None
    email_from: str | None = None
    email_reply_to: str | None = None
    max_orders_per_month: int | None = None  # None: the plan's limit


class TenantAdmin:
    def __init__(self, admin_url: str, layout: DatabaseLayout = DEFAULT_LAYOUT) -> None:
        self.admin_url = admin_url
        self.layout = layout

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        conn = psycopg.connect(self.admin_url, row_factory=dict_row)
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.layout.owner_role)))
        return conn

    def add(self, tenant: NewTenant) -> str:
        """Create a tenant; returns its admin token (shown once, stored hashed)."""
        if not SLUG_RE.match(tenant.slug):
            raise TenantError(f"'{tenant.slug}' is not a valid slug (lower-case letters, digits and '-')")
        if tenant.plan not in PLAN_LIMITS:
            raise TenantError(f"plan must be one of {', '.join(PLAN_LIMITS)}, not '{tenant.plan}'")
        check_key_environment(tenant.midtrans_server_key, tenant.midtrans_environment)
        limit = tenant.max_orders_per_month if tenant.max_orders_per_month is not None \
            else PLAN_LIMITS[tenant.plan]
        token = secrets.token_urlsafe(24)
        with self._connect() as conn:
            try:
                conn.execute(self.layout.render(
                    "INSERT INTO {schema}.tenants (slug, name, plan, max_orders_per_month, "
                    "midtrans_server_key, midtrans_client_key, midtrans_environment, midtrans_merchant_id, "
                    "email_from, email_reply_to, admin_token_sha256) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"),
                    (tenant.slug, tenant.name, tenant.plan, limit, tenant.midtrans_server_key,
                     tenant.midtrans_client_key, tenant.midtrans_environment, tenant.midtrans_merchant_id,
                     tenant.email_from, tenant.email_reply_to, hash_token(token)))
            except psycopg.errors.UniqueViolation:
                message = f"tenant '{tenant.slug}' already exists; use `dualstack tenant set`"
                raise TenantError(message) from None
        return token

    def list(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(self.layout.render(
                "SELECT slug, name, status, plan, max_orders_per_month, midtrans_environment, "
                "midtrans_server_key, midtrans_merchant_id, email_from, created_at "
                "FROM {schema}.tenants ORDER BY slug")).fetchall()
        for row in rows:
            row["midtrans_server_key"] = mask_secret(row["midtrans_server_key"])
        return rows

    def set(self, slug: str, **changes: Any) -> None:
        """Change fields of a tenant; key and environment are checked together."""
        allowed = {"name", "status", "plan", "max_orders_per_month", "midtrans_server_key",
                   "midtrans_client_key", "midtrans_environment", "midtrans_merchant_id", "email_from",
                   "email_reply_to"}
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - allowed
        if unknown:
            raise TenantError(f"cannot set {', '.join(sorted(unknown))}")
        if not changes:
            raise TenantError("nothing to change: pass at least one option")
        if "status" in changes and changes["status"] not in STATUSES:
            raise TenantError(f"status must be one of {', '.join(STATUSES)}")
        if "plan" in changes:
            if changes["plan"] not in PLAN_LIMITS:
                raise TenantError(f"plan must be one of {', '.join(PLAN_LIMITS)}")
            changes.setdefault("max_orders_per_month", PLAN_LIMITS[changes["plan"]])
        with self._connect() as conn, conn.transaction():
            current = conn.execute(self.layout.render(
                "SELECT midtrans_server_key, midtrans_environment FROM {schema}.tenants "
                "WHERE slug = %s FOR UPDATE"), (slug,)).fetchone()
            if current is None:
                raise TenantError(f"no tenant '{slug}'; `dualstack tenant list` shows them")
            if "midtrans_server_key" in changes or "midtrans_environment" in changes:
                check_key_environment(changes.get("midtrans_server_key", current["midtrans_server_key"]),
                                      changes.get("midtrans_environment", current["midtrans_environment"]))
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changes)
            conn.execute(sql.SQL("UPDATE {}.tenants SET {}, updated_at = now() WHERE slug = {}").format(
                sql.Identifier(self.layout.schema), assignments, sql.Placeholder("slug")),
                {**changes, "slug": slug})

    def readiness(self, slug: str) -> str | None:
        """Why this tenant cannot take traffic on v2 (None: it can): present, active, key fits environment."""
        with self._connect() as conn:
            row = conn.execute(self.layout.render(
                "SELECT status, midtrans_server_key, midtrans_environment FROM {schema}.tenants WHERE slug = %s"),
                (slug,)).fetchone()
        if row is None:
            return f"no tenant '{slug}' in v2 (`dualstack tenant add {slug} ...`)"
        if row["status"] != "active":
            return f"tenant '{slug}' is {row['status']} in v2 (`dualstack tenant resume {slug}`)"
        try:
            check_key_environment(row["midtrans_server_key"] or "", row["midtrans_environment"])
        except TenantError as exc:
            return str(exc)
        return None

    def open_grace_window(self, slug: str, minutes: float) -> None:
        """For `minutes`, notifications for orders v2 does not know yet are answered so Midtrans retries."""
        with self._connect() as conn:
            result = conn.execute(self.layout.render(
                "UPDATE {schema}.tenants SET unknown_order_retry_until = now() + make_interval(secs => %s), "
                "updated_at = now() WHERE slug = %s"), (minutes * 60, slug))
            if result.rowcount == 0:
                raise TenantError(f"no tenant '{slug}'")

    def rotate_admin_token(self, slug: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._connect() as conn:
            result = conn.execute(self.layout.render(
                "UPDATE {schema}.tenants SET admin_token_sha256 = %s, updated_at = now() WHERE slug = %s"),
                (hash_token(token), slug))
            if result.rowcount == 0:
                raise TenantError(f"no tenant '{slug}'")
        return token
