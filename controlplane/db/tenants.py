"""Tenant administration (`dualstack tenant ...`), run with the admin URL as the owner role.

Server keys are secrets: they are never printed whole, logged, or put in an error message. They
live in tenant_secrets (row-level security: the application role reads one tenant's, bound to it),
never in the tenants table the application role reads whole. Each tenant gets an admin token for
`GET /admin/stats`; only its SHA-256 is stored (beside the key), and the token is shown once, when
it is made. The admin page's sign-in (`set_admin_login`) is stored there too: its password as an
scrypt hash, never in plain, with the key that signs the page's session tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from controlplane.admin_password import PasswordError, check_new_login, hash_password
from controlplane.config.model import SLUG_RE
from controlplane.config.origin import OriginError, check_origins
from controlplane.config.url_template import FINISH_PLACEHOLDERS, TemplateError, UrlTemplate
from controlplane.db.layout import DEFAULT_LAYOUT, DatabaseLayout

PLAN_LIMITS: Final[dict[str, int | None]] = {"starter": 100, "pro": 1000, "enterprise": None}
ENVIRONMENTS: Final = ("sandbox", "production")
STATUSES: Final = ("active", "suspended", "cancelled")
LANGUAGES: Final = ("id", "en")
SMTP_SECURITY: Final = ("starttls", "tls", "none")
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
    email_language: str = "id"
    # The SMTP relay; its credential is only named here (its secrets live in v2's environment file).
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str = "starttls"
    smtp_credential: str | None = None
    # Where Snap sends the buyer after paying; None: v2's own template (the tenant's thank-you page).
    finish_url: str | None = None
    # Origins whose pages may call the API from a browser, besides the tenant's own hosts (always allowed).
    cors_origins: tuple[str, ...] = ()


def cors_origins(origins: Any) -> list[str]:
    """The origins as stored (normalized, each once), or TenantError saying which one is wrong."""
    try:
        return list(check_origins(origins))
    except OriginError as exc:
        raise TenantError(str(exc)) from None


def check_finish_url(template: str | None) -> None:
    """A finish URL v2 can always fill in (every placeholder known), or TenantError saying why."""
    if template is None:
        return
    try:
        UrlTemplate.parse(template, FINISH_PLACEHOLDERS, what="finish URL")
    except TemplateError as exc:
        raise TenantError(str(exc)) from None


def check_email_fields(fields: dict[str, Any]) -> None:
    if fields.get("email_language") not in (None, *LANGUAGES):
        raise TenantError(f"email language must be one of {', '.join(LANGUAGES)}")
    if fields.get("smtp_security") not in (None, *SMTP_SECURITY):
        raise TenantError(f"SMTP security must be one of {', '.join(SMTP_SECURITY)}")
    port = fields.get("smtp_port")
    if port is not None and not 0 < port < 65536:
        raise TenantError(f"SMTP port {port} is not a port number")
    credential = fields.get("smtp_credential")
    if credential is not None and not SLUG_RE.fullmatch(credential):
        raise TenantError(f"'{credential}' is not a valid credential name (lower-case letters, digits and '-'); "
                          "v2 reads DUALSTACK_SMTP_USERNAME_<NAME> and DUALSTACK_SMTP_PASSWORD_<NAME>")


def email_problem(row: dict[str, Any]) -> str | None:
    """Why v2 cannot email this tenant's customers, as far as the database tells (None: it can).
    v2 also checks that the named credential is in its environment, and logs what it finds."""
    if not row.get("smtp_host"):
        return "no SMTP relay"
    if not row.get("email_from"):
        return "no sender address"
    return None


class TenantAdmin:
    def __init__(self, admin_url: str, layout: DatabaseLayout = DEFAULT_LAYOUT) -> None:
        self.admin_url = admin_url
        self.layout = layout

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        conn = psycopg.connect(self.admin_url, row_factory=dict_row)
        try:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.layout.owner_role)))
        except BaseException:
            conn.close()  # no owner role yet: the schema was never migrated here
            raise
        return conn

    def add(self, tenant: NewTenant) -> str:
        """Create a tenant; returns its admin token (shown once, stored hashed)."""
        if not SLUG_RE.fullmatch(tenant.slug):
            raise TenantError(f"'{tenant.slug}' is not a valid slug (lower-case letters, digits and '-')")
        if tenant.plan not in PLAN_LIMITS:
            raise TenantError(f"plan must be one of {', '.join(PLAN_LIMITS)}, not '{tenant.plan}'")
        check_key_environment(tenant.midtrans_server_key, tenant.midtrans_environment)
        check_email_fields(dataclasses.asdict(tenant))
        check_finish_url(tenant.finish_url)
        origins = cors_origins(tenant.cors_origins)
        limit = tenant.max_orders_per_month if tenant.max_orders_per_month is not None \
            else PLAN_LIMITS[tenant.plan]
        token = secrets.token_urlsafe(24)
        with self._connect() as conn:
            try:
                row = conn.execute(self.layout.render(
                    "INSERT INTO {schema}.tenants (slug, name, plan, max_orders_per_month, "
                    "midtrans_client_key, midtrans_environment, midtrans_merchant_id, email_from, email_reply_to, "
                    "email_language, smtp_host, smtp_port, smtp_security, smtp_credential, finish_url, cors_origins) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"),
                    (tenant.slug, tenant.name, tenant.plan, limit, tenant.midtrans_client_key,
                     tenant.midtrans_environment, tenant.midtrans_merchant_id, tenant.email_from,
                     tenant.email_reply_to, tenant.email_language, tenant.smtp_host, tenant.smtp_port,
                     tenant.smtp_security, tenant.smtp_credential, tenant.finish_url, origins)).fetchone()
            except psycopg.errors.UniqueViolation:
                message = f"tenant '{tenant.slug}' already exists; use `dualstack tenant set`"
                raise TenantError(message) from None
            assert row is not None
            conn.execute(self.layout.render(
                "INSERT INTO {schema}.tenant_secrets (tenant_id, midtrans_server_key, admin_token_sha256) "
                "VALUES (%s, %s, %s)"), (row["id"], tenant.midtrans_server_key, hash_token(token)))
        return token

    def list(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(self.layout.render(
                "SELECT slug, name, status, plan, max_orders_per_month, midtrans_environment, "
                "s.midtrans_server_key, midtrans_merchant_id, email_from, email_language, smtp_host, smtp_port, "
                "smtp_security, smtp_credential, finish_url, cors_origins, created_at "
                "FROM {schema}.tenants t LEFT JOIN {schema}.tenant_secrets s ON s.tenant_id = t.id "
                "ORDER BY slug")).fetchall()
        for row in rows:
            row["midtrans_server_key"] = mask_secret(row["midtrans_server_key"])
        return rows

    def set(self, slug: str, **changes: Any) -> None:
        """Change fields of a tenant; key and environment are checked together."""
        allowed = {"name", "status", "plan", "max_orders_per_month", "midtrans_server_key",
                   "midtrans_client_key", "midtrans_environment", "midtrans_merchant_id", "email_from",
                   "email_reply_to", "email_language", "smtp_host", "smtp_port", "smtp_security", "smtp_credential",
                   "finish_url", "cors_origins"}
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - allowed
        if unknown:
            raise TenantError(f"cannot set {', '.join(sorted(unknown))}")
        if not changes:
            raise TenantError("nothing to change: pass at least one option")
        check_email_fields(changes)
        check_finish_url(changes.get("finish_url"))
        if "cors_origins" in changes:
            changes["cors_origins"] = cors_origins(changes["cors_origins"])
        if "status" in changes and changes["status"] not in STATUSES:
            raise TenantError(f"status must be one of {', '.join(STATUSES)}")
        if "plan" in changes:
            if changes["plan"] not in PLAN_LIMITS:
                raise TenantError(f"plan must be one of {', '.join(PLAN_LIMITS)}")
            changes.setdefault("max_orders_per_month", PLAN_LIMITS[changes["plan"]])
        with self._connect() as conn, conn.transaction():
            current = conn.execute(self.layout.render(
                "SELECT t.id, s.midtrans_server_key, midtrans_environment FROM {schema}.tenants t "
                "LEFT JOIN {schema}.tenant_secrets s ON s.tenant_id = t.id WHERE slug = %s FOR UPDATE OF t"),
                (slug,)).fetchone()
            if current is None:
                raise TenantError(f"no tenant '{slug}'; `dualstack tenant list` shows them")
            if "midtrans_server_key" in changes or "midtrans_environment" in changes:
                check_key_environment(changes.get("midtrans_server_key", current["midtrans_server_key"] or ""),
                                      changes.get("midtrans_environment", current["midtrans_environment"]))
            key = changes.pop("midtrans_server_key", None)
            if key is not None:
                conn.execute(self.layout.render(
                    "INSERT INTO {schema}.tenant_secrets AS s (tenant_id, midtrans_server_key) VALUES (%s, %s) "
                    "ON CONFLICT (tenant_id) DO UPDATE SET midtrans_server_key = EXCLUDED.midtrans_server_key, "
                    "updated_at = now()"), (current["id"], key))
            if changes:
                assignments = sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changes)
                conn.execute(sql.SQL("UPDATE {}.tenants SET {}, updated_at = now() WHERE slug = {}").format(
                    sql.Identifier(self.layout.schema), assignments, sql.Placeholder("slug")),
                    {**changes, "slug": slug})

    def readiness(self, slug: str) -> str | None:
        """Why this tenant cannot take traffic on v2 (None: it can): present, active, key fits environment."""
        with self._connect() as conn:
            row = conn.execute(self.layout.render(
                "SELECT status, s.midtrans_server_key, midtrans_environment FROM {schema}.tenants t "
                "LEFT JOIN {schema}.tenant_secrets s ON s.tenant_id = t.id WHERE slug = %s"),
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

    def set_admin_login(self, slug: str, user: str, password: str) -> None:
        """Who may sign in to the tenant's admin page (v1's, on v2): the password stored as an scrypt hash,
        with a fresh session key, so every session signed with the old one ends."""
        try:
            check_new_login(user, password)
        except PasswordError as exc:
            raise TenantError(str(exc)) from None
        with self._connect() as conn:
            result = conn.execute(self.layout.render(
                "UPDATE {schema}.tenant_secrets s SET admin_user = %s, admin_password_scrypt = %s, "
                "admin_session_key = %s, updated_at = now() FROM {schema}.tenants t "
                "WHERE t.id = s.tenant_id AND t.slug = %s"),
                (user, hash_password(password), secrets.token_hex(32), slug))
            if result.rowcount == 0:
                raise TenantError(f"no tenant '{slug}'; `dualstack tenant list` shows them")

    def rotate_admin_token(self, slug: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._connect() as conn:
            result = conn.execute(self.layout.render(
                "UPDATE {schema}.tenant_secrets s SET admin_token_sha256 = %s, updated_at = now() "
                "FROM {schema}.tenants t WHERE t.id = s.tenant_id AND t.slug = %s"), (hash_token(token), slug))
            if result.rowcount == 0:
                raise TenantError(f"no tenant '{slug}'")
        return token
