"""What a cutover is asked to do, what one check found, and how a cutover stops."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from controlplane.config.model import Backend
from controlplane.db.layout import DatabaseLayout
from controlplane.state.schema import STATE_SCHEMA

if TYPE_CHECKING:
    from controlplane.migrate import V1Store

CHECKS: Final = ("health", "tenant", "migration", "shadow", "handover", "nginx", "hold", "reverse_sync")


class CutoverStopped(Exception):
    """The cutover stopped; the message says where, and whether anything had changed."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    override: str | None = None  # the recorded reason, when a failed check was overridden
    # A check no override may pass: what it guards would lose or leak money, whatever the reason.
    binding: bool = False
    # reverse_sync, passed clean: v2's time (ISO) up to which both sides were verified; the way back's
    # final sync under the hold verifies only the orders v2 changed since.
    verified_until: str | None = None

    @property
    def passes(self) -> bool:
        return self.ok or self.override is not None


@dataclass
class CutoverRequest:
    config_path: Path
    slug: str
    to: Backend
    admin_url: str | None = None  # v2's administration (tenant checks)
    database_url: str | None = None  # v2's application role (the migration)
    v1: V1Store | None = None  # the v1 store to sync from (sqlite:PATH or postgresql://...)
    state_url: str | None = None  # the control plane's state (shadow results, rollouts, the record)
    layout: DatabaseLayout = field(default_factory=DatabaseLayout)
    state_schema: str = STATE_SCHEMA
    router_admin_urls: Sequence[str] = ()
    overrides: Sequence[str] = ()
    reason: str | None = None
    skip_nginx: bool = False
    actor: str = "unknown"


Say = Callable[[str], None]
