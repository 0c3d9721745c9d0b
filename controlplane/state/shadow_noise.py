"""Noise learned from two answers of the primary, shared through the state database (Diffy's rule).

A field is noise for an endpoint only when the primary differs from itself on it about as often as
it differs from the shadow: over the window, with r_pp the share of primary-vs-primary pairs that
differed on the field and r_ps the share of primary-vs-shadow pairs, the field is noise when
r_pp > 0 and the excess r_ps - r_pp is within RELATIVE_THRESHOLD of r_ps or within
ABSOLUTE_THRESHOLD. An order whose status changed once between the two primary reads therefore
does not make every `pending` vs `PENDING_PAYMENT` noise: r_pp is tiny, r_ps is 1. Fields declared
as state (`state_fields`: status, amounts) and the HTTP status are never noise.

The counts are per (tenant, endpoint, path, minute), additive upserts, so every worker and replica
adds to the same rows; routers read the window's totals back periodically (proxy/router/
shadow_store.py), off the request path. The rule and the tally are pure; only the SQL touches the
database. Without a state database a router learns from its own pairs alone.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from controlplane.shadow.compare import listed

RELATIVE_THRESHOLD: Final = 0.20
ABSOLUTE_THRESHOLD: Final = 0.0003
NOISE_WINDOW_S: Final = 3600
MAX_PATHS_PER_ENDPOINT: Final = 200  # keeps the tally bounded whatever arrays the answers carry
PAIRS: Final = ""  # the path of the row that counts pairs
NEVER_NOISE: Final = frozenset({"status"})  # an HTTP status difference always counts

# (tenant, endpoint, path, minute as epoch seconds, primary, shadow)
UPSERT: Final = (
    "INSERT INTO {s}.shadow_noise AS n (tenant, endpoint, path, minute, primary_pairs, shadow_pairs) "
    "VALUES (%s, %s, %s, to_timestamp(%s), %s, %s) ON CONFLICT (tenant, endpoint, path, minute) DO UPDATE "
    "SET primary_pairs = n.primary_pairs + EXCLUDED.primary_pairs, "
    "shadow_pairs = n.shadow_pairs + EXCLUDED.shadow_pairs")
# (window in seconds) -> (tenant, endpoint, path, primary, shadow)
WINDOW_TOTALS: Final = (
    "SELECT tenant, endpoint, path, sum(primary_pairs), sum(shadow_pairs) FROM {s}.shadow_noise "
    "WHERE minute >= now() - make_interval(secs => %s) GROUP BY tenant, endpoint, path")
# (window in seconds): rows older than the window say nothing any more
PRUNE: Final = "DELETE FROM {s}.shadow_noise WHERE minute < now() - make_interval(secs => %s)"

Key = tuple[str, str]  # (tenant, endpoint)
Row = tuple[str, str, str, int, int]  # (tenant, endpoint, path, primary, shadow)


@dataclass(slots=True)
class EndpointNoise:
    primary_pairs: int = 0
    shadow_pairs: int = 0
    primary: collections.Counter[str] = field(default_factory=collections.Counter)
    shadow: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, side: str, paths: Iterable[str], pairs: int = 1) -> None:
        counter = self.primary if side == "primary" else self.shadow
        if side == "primary":
            self.primary_pairs += pairs
        else:
            self.shadow_pairs += pairs
        for path in paths:
            if path in counter or len(counter) < MAX_PATHS_PER_ENDPOINT:
                counter[path] += 1

    def merge(self, other: EndpointNoise) -> None:
        self.primary_pairs += other.primary_pairs
        self.shadow_pairs += other.shadow_pairs
        self.primary.update(other.primary)
        self.shadow.update(other.shadow)

    def rows(self, tenant: str, endpoint: str) -> list[Row]:
        out: list[Row] = [(tenant, endpoint, PAIRS, self.primary_pairs, self.shadow_pairs)]
        for path in self.primary.keys() | self.shadow.keys():
            out.append((tenant, endpoint, path, self.primary[path], self.shadow[path]))
        return out


def is_noise(path: str, tally: EndpointNoise, state_fields: frozenset[str]) -> bool:
    """Diffy's rule for one field (see the module's docstring)."""
    if path in NEVER_NOISE or listed(path, state_fields):
        return False
    if not tally.primary_pairs or not tally.shadow_pairs or not tally.primary[path]:
        return False
    r_pp = tally.primary[path] / tally.primary_pairs
    r_ps = tally.shadow[path] / tally.shadow_pairs
    excess = r_ps - r_pp
    return excess <= RELATIVE_THRESHOLD * r_ps or excess <= ABSOLUTE_THRESHOLD


def from_rows(rows: Iterable[Row]) -> dict[Key, EndpointNoise]:
    totals: dict[Key, EndpointNoise] = {}
    for tenant, endpoint, path, primary, shadow in rows:
        tally = totals.setdefault((tenant, endpoint), EndpointNoise())
        if path == PAIRS:
            tally.primary_pairs += int(primary)
            tally.shadow_pairs += int(shadow)
        else:
            tally.primary[path] += int(primary)
            tally.shadow[path] += int(shadow)
    return totals


class NoiseLearner:
    """A router worker's view: the shared totals last read, plus its own pairs since (pure)."""

    def __init__(self) -> None:
        self._pending: dict[Key, EndpointNoise] = {}
        self._totals: dict[Key, EndpointNoise] = {}

    def record(self, tenant: str, endpoint: str, side: str, paths: Iterable[str]) -> None:
        paths = tuple(paths)
        for tallies in (self._pending, self._totals):
            tallies.setdefault((tenant, endpoint), EndpointNoise()).add(side, paths)

    def noise(self, tenant: str, endpoint: str, paths: Iterable[str], state_fields: frozenset[str]) -> set[str]:
        """The given paths that are noise for the endpoint now."""
        tally = self._totals.get((tenant, endpoint))
        if tally is None:
            return set()
        return {path for path in paths if is_noise(path, tally, state_fields)}

    def learned(self, tenant: str, endpoint: str, state_fields: frozenset[str]) -> set[str]:
        """Every path currently noise for the endpoint (for /routes-style views and tests)."""
        tally = self._totals.get((tenant, endpoint))
        return set() if tally is None else self.noise(tenant, endpoint, tally.primary, state_fields)

    def take_pending(self) -> list[Row]:
        """The pairs recorded since the last call, as rows to add to the database."""
        pending, self._pending = self._pending, {}
        return [row for (tenant, endpoint), tally in pending.items() for row in tally.rows(tenant, endpoint)]

    def put_back(self, rows: list[Row]) -> None:
        """A write failed: its rows are written with the next one."""
        for key, tally in from_rows(rows).items():
            self._pending.setdefault(key, EndpointNoise()).merge(tally)

    def adopt(self, rows: Iterable[Row]) -> None:
        """The window's totals as read from the database (every worker's and replica's pairs written so
        far), plus this worker's pairs not written yet."""
        totals = from_rows(rows)
        for key, tally in self._pending.items():
            totals.setdefault(key, EndpointNoise()).merge(tally)
        self._totals = totals
