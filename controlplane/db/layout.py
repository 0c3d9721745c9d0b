"""Where the payments data lives: schema and role names (configurable, so tests and several
installations can share one PostgreSQL cluster)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_NAME_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class DatabaseLayout:
    schema: str = "payments"
    owner_role: str = "dualstack_owner"  # NOLOGIN; owns the schema, runs migrations
    app_role: str = "dualstack_app"  # LOGIN, NOSUPERUSER, NOBYPASSRLS, owns nothing
    # LOGIN, owns nothing. Payments: reads no table, may only call notification_key(slug) (the
    # router's signature check of Midtrans notifications). State: reads locks and rollouts, writes
    # shadow results, never a lock.
    router_role: str = "dualstack_router"
    # LOGIN, owns nothing; the state database only: the decider's and the CLI's role, the one that
    # writes rollback locks, rollout events and decisions (the router there only reads locks).
    control_role: str = "dualstack_control"

    def __post_init__(self) -> None:
        for field_name in ("schema", "owner_role", "app_role", "router_role", "control_role"):
            value = getattr(self, field_name)
            if not _NAME_RE.fullmatch(value):
                raise ValueError(f"{field_name} '{value}' must be a lower-case SQL name ([a-z_][a-z0-9_]*)")

    def login_roles(self) -> dict[str, str]:
        """The login roles by their placeholder in a migration's SQL."""
        return {"{app}": self.app_role, "{router}": self.router_role, "{control}": self.control_role}

    def render(self, template: str) -> str:
        """Substitute {schema}, {owner}, {app}, {router} and {control}; names are validated above, so quoting
        is exact."""
        return (template.replace("{schema}", f'"{self.schema}"')
                .replace("{owner}", f'"{self.owner_role}"')
                .replace("{app}", f'"{self.app_role}"')
                .replace("{router}", f'"{self.router_role}"')
                .replace("{control}", f'"{self.control_role}"'))


DEFAULT_LAYOUT: Final = DatabaseLayout()
