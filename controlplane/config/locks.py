"""Rollback locks as the routers see them: which backend serves a tenant when a lock exists. Pure.

A lock pins a tenant to a backend with a reason, overriding the routing file. It records the
backend the file declared when it was taken: once ops change that tenant's entry, the file is
theirs again and the lock no longer applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controlplane.config.model import Backend, RoutingConfig


@dataclass(frozen=True, slots=True)
class Lock:
    tenant: str
    backend: Backend
    declared_backend: Backend
    reason: str
    actor: str
    created_at: datetime | None = None


def effective_backend(declared: Backend, lock: Lock | None) -> tuple[Backend, str | None]:
    """The backend that serves a tenant, and why it differs from the file (None when it does not)."""
    if lock is None:
        return declared, None
    if lock.declared_backend != declared:
        return declared, None  # the entry changed since the lock: the file decides again
    if lock.backend == declared:
        return declared, None
    return lock.backend, f"rollback lock by {lock.actor}: {lock.reason}"


def lock_refusal(config: RoutingConfig, slug: str, lock: Lock | None) -> str | None:
    """Why a router will not apply `lock` (None: it applies it, or there is none): a lock sending a tenant
    to v1 when v1 does not hold its orders would serve its customers another tenant's."""
    if lock is None or lock.backend != "v1":
        return None
    return config.v1_refusal(slug)
