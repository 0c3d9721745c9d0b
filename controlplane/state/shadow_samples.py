"""Shadow results: counts per (tenant, endpoint, minute) with latency histograms, how often each
field differed, and the newest redacted examples. The only place the SQL of `shadow_counts`,
`shadow_fields` and `shadow_samples` lives: the router's writer (proxy/router/shadow_store.py, async
psycopg) runs the upserts below in its batches; the report and the cutover gate read here (sync).

Counts are additive upserts, so several router replicas share the same rows; samples are pruned
to the newest SAMPLES_PER_FIELD per (tenant, endpoint, path).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg

from controlplane.shadow.matchrate import MatchRate
from controlplane.shadow.samples import empty_buckets
from controlplane.state.schema import query

# -- written by the router ------------------------------------------------------------------------

# (tenant, endpoint, minute as epoch seconds, primary backend, matches, mismatches, noise, not_replicated,
#  primary_buckets, shadow_buckets)
UPSERT_COUNTS: Final = (
    "INSERT INTO {s}.shadow_counts AS c (tenant, endpoint, minute, primary_backend, matches, mismatches, noise, "
    "not_replicated, primary_buckets, shadow_buckets) VALUES (%s, %s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (tenant, endpoint, minute, primary_backend) DO UPDATE SET matches = c.matches + EXCLUDED.matches, "
    "mismatches = c.mismatches + EXCLUDED.mismatches, noise = c.noise + EXCLUDED.noise, "
    "not_replicated = c.not_replicated + EXCLUDED.not_replicated, "
    "primary_buckets = ARRAY(SELECT a + b FROM unnest(c.primary_buckets, EXCLUDED.primary_buckets) "
    "AS t(a, b)), shadow_buckets = ARRAY(SELECT a + b FROM unnest(c.shadow_buckets, "
    "EXCLUDED.shadow_buckets) AS t(a, b))")
# (tenant, endpoint, path, kind, minute as epoch seconds, count)
UPSERT_FIELDS: Final = (
    "INSERT INTO {s}.shadow_fields AS f (tenant, endpoint, path, kind, minute, count) "
    "VALUES (%s, %s, %s, %s, to_timestamp(%s), %s) ON CONFLICT (tenant, endpoint, path, kind, "
    "minute) DO UPDATE SET count = f.count + EXCLUDED.count")
# (tenant, endpoint, path, kind, request_id, primary_value, shadow_value): the values redacted, as Jsonb
INSERT_SAMPLES: Final = (
    "INSERT INTO {s}.shadow_samples (tenant, endpoint, path, kind, request_id, primary_value, "
    "shadow_value) VALUES (%s, %s, %s, %s, %s, %s, %s)")
# (tenants written, SAMPLES_PER_FIELD)
PRUNE_SAMPLES: Final = (
    "DELETE FROM {s}.shadow_samples WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER ("
    "PARTITION BY tenant, endpoint, path ORDER BY recorded_at DESC, id DESC) AS n FROM "
    "{s}.shadow_samples WHERE tenant = ANY(%s)) ranked WHERE n > %s)")

# -- read by the report, the cutover gate and `dualstack status` ----------------------------

_ENDPOINT_COUNTS: Final = (
    "SELECT endpoint, sum(matches), sum(mismatches), sum(noise), sum(not_replicated) FROM {s}.shadow_counts "
    "WHERE tenant = %s AND minute >= %s AND minute < %s GROUP BY endpoint ORDER BY endpoint")
_BACKEND_COUNTS: Final = (
    "SELECT primary_backend, sum(matches), sum(mismatches), sum(noise), sum(not_replicated) FROM "
    "{s}.shadow_counts WHERE tenant = %s AND minute >= %s AND minute < %s GROUP BY primary_backend "
    "ORDER BY primary_backend")
_KINDS: Final = (
    "SELECT kind, sum(count) FROM {s}.shadow_fields WHERE tenant = %s AND minute >= %s AND minute < %s "
    "GROUP BY kind ORDER BY kind")
_TOP_FIELDS: Final = (
    "SELECT endpoint, path, kind, sum(count) AS n FROM {s}.shadow_fields WHERE tenant = %s AND minute >= %s "
    "AND minute < %s GROUP BY endpoint, path, kind ORDER BY n DESC, endpoint, path LIMIT %s")
_EXAMPLES: Final = (
    "SELECT primary_value, shadow_value FROM {s}.shadow_samples WHERE tenant = %s AND endpoint = %s "
    "AND path = %s AND recorded_at >= %s ORDER BY recorded_at DESC LIMIT %s")
_LATENCY: Final = (
    "SELECT primary_buckets, shadow_buckets FROM {s}.shadow_counts WHERE tenant = %s AND minute >= %s "
    "AND minute < %s")
_TIMELINE: Final = (
    "SELECT to_timestamp(floor(extract(epoch FROM minute) / %s) * %s) AS t, "
    "sum(matches + mismatches + noise + not_replicated), sum(mismatches) FROM {s}.shadow_counts "
    "WHERE tenant = %s AND minute >= %s AND minute < %s GROUP BY t ORDER BY t")
_TENANT_COUNTS: Final = (
    "SELECT tenant, sum(matches), sum(mismatches), sum(noise), sum(not_replicated) FROM {s}.shadow_counts "
    "WHERE minute >= %s AND minute < %s GROUP BY tenant")

Conn = psycopg.Connection[Any]


def tenant_rates(conn: Conn, schema: str, since: datetime, until: datetime) -> dict[str, MatchRate]:
    """Every tenant's comparisons in [since, until), in one query (`dualstack status`)."""
    rows = conn.execute(query(_TENANT_COUNTS, schema), (since, until)).fetchall()
    return {tenant: MatchRate(int(m), int(mm), int(n), int(nr)) for tenant, m, mm, n, nr in rows}


def endpoint_rates(conn: Conn, schema: str, tenant: str, since: datetime, until: datetime) -> dict[str, MatchRate]:
    """The tenant's comparisons in [since, until) per endpoint, in endpoint order."""
    rows = conn.execute(query(_ENDPOINT_COUNTS, schema), (tenant, since, until)).fetchall()
    return {endpoint: MatchRate(int(m), int(mm), int(n), int(nr)) for endpoint, m, mm, n, nr in rows}


def backend_rates(conn: Conn, schema: str, tenant: str, since: datetime,
                  until: datetime) -> dict[str, MatchRate]:
    """The tenant's comparisons in [since, until) by the backend that was primary ('unknown' before it
    was recorded): minutes before and after a flip are not mixed."""
    rows = conn.execute(query(_BACKEND_COUNTS, schema), (tenant, since, until)).fetchall()
    return {backend: MatchRate(int(m), int(mm), int(n), int(nr)) for backend, m, mm, n, nr in rows}


def kinds(conn: Conn, schema: str, tenant: str, since: datetime, until: datetime) -> dict[str, int]:
    """How many field differences of each kind (missing, extra, type_changed, value_changed, status...)."""
    return {kind: int(n) for kind, n in conn.execute(query(_KINDS, schema), (tenant, since, until))}


def top_fields(conn: Conn, schema: str, tenant: str, since: datetime, until: datetime,
               limit: int) -> list[tuple[str, str, str, int]]:
    """(endpoint, path, kind, count) of the fields that differed most."""
    rows = conn.execute(query(_TOP_FIELDS, schema), (tenant, since, until, limit)).fetchall()
    return [(endpoint, path, kind, int(n)) for endpoint, path, kind, n in rows]


def examples(conn: Conn, schema: str, tenant: str, endpoint: str, path: str, since: datetime,
             limit: int) -> list[tuple[Any, Any]]:
    """The newest stored (primary, shadow) values of a field (redacted by the router)."""
    rows = conn.execute(query(_EXAMPLES, schema), (tenant, endpoint, path, since, limit)).fetchall()
    return [(primary, shadow) for primary, shadow in rows]


def latency(conn: Conn, schema: str, tenant: str, since: datetime, until: datetime) -> tuple[list[int], list[int]]:
    """The primary's and the shadow's latency histograms summed over the window."""
    primary = empty_buckets()
    shadow = list(primary)
    for p_buckets, s_buckets in conn.execute(query(_LATENCY, schema), (tenant, since, until)):
        primary = [a + int(b) for a, b in zip(primary, p_buckets, strict=False)]
        shadow = [a + int(b) for a, b in zip(shadow, s_buckets, strict=False)]
    return primary, shadow


def timeline(conn: Conn, schema: str, tenant: str, since: datetime, until: datetime,
             width_s: int) -> list[tuple[datetime, int, int]]:
    """(bucket start, comparisons, mismatches) per `width_s` bucket."""
    rows = conn.execute(query(_TIMELINE, schema), (width_s, width_s, tenant, since, until))
    return [(start, int(c), int(mm)) for start, c, mm in rows]
