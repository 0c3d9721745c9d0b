"""Where a tenant's emails go: its SMTP relay (the tenant row) and credential (v2's environment).

The tenant row names the relay (smtp_host, smtp_port, smtp_security: starttls | tls | none) and,
when the relay wants AUTH, a credential NAME (smtp_credential). The username and password are
read from v2's environment, which systemd fills from its EnvironmentFile (/etc/dualstack/v2.env,
mode 0600): DUALSTACK_SMTP_USERNAME_<NAME> and DUALSTACK_SMTP_PASSWORD_<NAME>, NAME upper-cased
with '-' as '_'. Tenants on one shared relay account name the same credential; a tenant with its
own relay names its own. Nothing here is logged but the host, port, mode and variable names.

A tenant whose emails cannot go out (no relay, no sender address, a credential missing from the
environment) carries the reason in `problem`: the outbox keeps its emails pending, logs the
reason once and exports it as a gauge; nothing is skipped silently.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from proxy.serving.secret import Secret
from proxy.v2.db import PaymentsDB

DEFAULT_PORTS: Final = {"starttls": 587, "tls": 465, "none": 25}
LANGUAGES: Final = ("id", "en")


def credential_variables(name: str) -> tuple[str, str]:
    """The environment variables holding credential `name`'s username and password."""
    suffix = re.sub(r"[^A-Z0-9]", "_", name.upper())
    return f"DUALSTACK_SMTP_USERNAME_{suffix}", f"DUALSTACK_SMTP_PASSWORD_{suffix}"


@dataclass(frozen=True, slots=True)
class Credential:
    name: str
    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class Relay:
    host: str
    port: int
    security: str  # starttls (upgrade on a plain port, required) | tls (implicit, 465) | none
    credential: Credential | None

    def __str__(self) -> str:
        auth = f", AUTH with credential {self.credential.name}" if self.credential else ", no AUTH"
        return f"{self.host}:{self.port} ({self.security}{auth})"


@dataclass(frozen=True, slots=True)
class MailTenant:
    """A tenant as the outbox sees it: who sends, in which language, through which relay."""

    id: uuid.UUID
    slug: str
    name: str
    language: str
    email_from: str | None
    email_reply_to: str | None
    relay: Relay | None
    problem: str | None  # why its emails cannot go out now (None: they can)


def mail_tenant(row: Mapping[str, Any], environ: Mapping[str, str]) -> MailTenant:
    slug = str(row["slug"])
    relay, problem = _relay(slug, row, environ)
    if problem is None and not row["email_from"]:
        problem = f"no sender address (`dualstack tenant set {slug} --email-from ADDRESS`)"
    return MailTenant(id=row["id"], slug=slug, name=str(row["name"]), language=str(row["email_language"]),
                      email_from=row["email_from"], email_reply_to=row["email_reply_to"],
                      relay=relay if problem is None else None, problem=problem)


def _relay(slug: str, row: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[Relay | None, str | None]:
    host = row["smtp_host"]
    if not host:
        return None, f"no SMTP relay (`dualstack tenant set {slug} --smtp-host HOST ...`)"
    security = str(row["smtp_security"])
    port = int(row["smtp_port"] or DEFAULT_PORTS[security])
    name = row["smtp_credential"]
    if name is None:
        return Relay(host, port, security, None), None
    if security == "none":
        return None, (f"relay {host}:{port} has no TLS, and credential {name} is never sent in clear "
                      f"(`--smtp-security starttls` or `tls`)")
    user_var, password_var = credential_variables(name)
    username, password = environ.get(user_var), environ.get(password_var)
    if not username or not password:
        return None, f"credential {name}: {user_var} and {password_var} must be set in v2's environment file"
    return Relay(host, port, security, Credential(name, username, Secret(password))), None


async def mail_tenants(db: PaymentsDB, environ: Mapping[str, str]) -> list[MailTenant]:
    """Every tenant whose emails are still due (all but cancelled ones: suspended ones still settle)."""
    async with db.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT id, slug, name, email_language, email_from, email_reply_to, smtp_host, smtp_port, "
            "smtp_security, smtp_credential FROM tenants WHERE status <> 'cancelled' ORDER BY slug")
        rows = await cursor.fetchall()
    return [mail_tenant(row, environ) for row in rows]
