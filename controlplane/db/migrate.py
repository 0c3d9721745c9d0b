"""Versioned SQL migrations, applied in order, recorded, and safe to re-run.

`migrate()` creates the owner role and the login roles the migrations grant to ({app}, {router},
{control}) if missing (and re-asserts that the login roles can bypass nothing), creates the schema,
then applies every migration file not yet recorded, each in its own transaction, as the owner
role. An advisory lock keeps two concurrent runs from racing; a recorded migration whose file has
since changed is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

import psycopg
from psycopg import sql

from controlplane.db.layout import DEFAULT_LAYOUT, DatabaseLayout

_LOCK_KEY = 0x64_75_61_6C_73_74  # "dualst": one advisory lock for all migration runs


class MigrationError(Exception):
    """A migration cannot be applied; the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    roles_created: list[str] = field(default_factory=list)


def bundled_migrations(package: str = "controlplane.db") -> list[Migration]:
    """The `migrations/` folder of `package`: controlplane.db (payments) or controlplane.state."""
    folder = resources.files(package) / "migrations"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            out.append(Migration(version, rest.removesuffix(".sql"), entry.read_text()))
    return out


def _role_exists(conn: psycopg.Connection[tuple[object, ...]], role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def ensure_roles(conn: psycopg.Connection[tuple[object, ...]], layout: DatabaseLayout,
                 migrations: Sequence[Migration], passwords: Mapping[str, str | None], report: MigrationReport) -> None:
    """The owner, and each login role a migration names (`passwords`: role name -> password, or None to keep it)."""
    owner = sql.Identifier(layout.owner_role)
    if not _role_exists(conn, layout.owner_role):
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(owner))
        report.roles_created.append(layout.owner_role)
    for placeholder, name in layout.login_roles().items():
        if not any(placeholder in m.sql for m in migrations):
            continue
        role = sql.Identifier(name)
        if not _role_exists(conn, name):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            report.roles_created.append(name)
        # Re-asserted on every run: the servers' roles must never bypass row-level security.
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE").format(role))
        password = passwords.get(name)
        if password is not None:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(password)))
    # The migrating user must be able to SET ROLE to the owner (a superuser always can).
    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(owner))


def migrate(admin_url: str, layout: DatabaseLayout = DEFAULT_LAYOUT,
            app_password: str | None = None,
            migrations: list[Migration] | None = None, *,
            router_password: str | None = None, control_password: str | None = None) -> MigrationReport:
    report = MigrationReport()
    wanted = bundled_migrations() if migrations is None else migrations
    with psycopg.connect(admin_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            ensure_roles(conn, layout, wanted, {layout.app_role: app_password, layout.router_role: router_password,
                                                layout.control_role: control_password}, report)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                sql.Identifier(layout.schema), sql.Identifier(layout.owner_role)))
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(layout.owner_role)))
            conn.execute(layout.render(
                "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"))
        for migration in wanted:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(layout.owner_role)))
                row = conn.execute(layout.render("SELECT checksum FROM {schema}.schema_migrations "
                                                 "WHERE version = %s"), (migration.version,)).fetchone()
                if row is not None:
                    if row[0] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version}_{migration.name}.sql was changed after it was "
                            "applied; add a new migration instead of editing an applied one")
                    report.already_applied.append(migration.version)
                    continue
                try:
                    conn.execute(layout.render(migration.sql).encode())
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.version}_{migration.name}.sql failed: {exc}") from exc
                conn.execute(layout.render("INSERT INTO {schema}.schema_migrations (version, name, checksum) "
                                           "VALUES (%s, %s, %s)"),
                             (migration.version, migration.name, migration.checksum))
                report.applied.append(migration.version)
    return report
