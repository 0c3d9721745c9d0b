"""Where the payments data lives: schema and role names (configurable, so tests and several
installations can share one PostgreSQL cluster)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_NAME_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class DatabaseLayout:
    schema: str = "payments"
    owner_role: str = "dualstack_owner"  # NOLOGIN; owns the schema, runs migrations
    app_role: str = "dualstack_app"  # LOGIN, NOSUPERUSER, NOBYPASSRLS, owns nothing

    def __post_init__(self) -> None:
        for field_name in ("schema", "owner_role", "app_role"):
            value = getattr(self, field_name)
            if not _NAME_RE.match(value):
                raise ValueError(f"{field_name} '{value}' must be a lower-case SQL name ([a-z_][a-z0-9_]*)")

    def render(self, template: str) -> str:
        """Substitute {schema}, {owner} and {app}; names are validated above, so quoting is exact."""
        return (template.replace("{schema}", f'"{self.schema}"')
                .replace("{owner}", f'"{self.owner_role}"')
                .replace("{app}", f'"{self.app_role}"'))


DEFAULT_LAYOUT: Final = DatabaseLayout()
