"""The router's writer of shadow results into the state database (optional).

Comparisons are aggregated in memory per (tenant, endpoint, minute) and flushed once a second in
one transaction: counts are additive upserts, so several router replicas share the same rows.
Mismatch samples are redacted before they leave the process, and pruned to the newest few per
(tenant, endpoint, path). If the database is unreachable, counts keep accumulating (bounded by
their keys) and samples beyond MAX_PENDING_SAMPLES are dropped and counted; the router never waits.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from controlplane.shadow.compare import Difference
from controlplane.shadow.redact import redact_at
from controlplane.shadow.samples import SAMPLES_PER_FIELD, bucket_index, empty_buckets

log = logging.getLogger(__name__)

MAX_PENDING_SAMPLES: Final = 2000
_RESULT_COLUMN: Final = {"match": 0, "mismatch": 1, "noise": 2}


class ShadowStore:
    def __init__(self, database_url: str, schema: str, *, flush_interval_s: float = 1.0) -> None:
        self._pool = AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False, timeout=5.0,
                                         kwargs={"autocommit": True, "options": f"-c search_path={schema}"})
        self._interval_s = flush_interval_s
        self._counts: dict[tuple[str, str, int], list[Any]] = {}
        self._samples: list[tuple[str, str, str, str, str, Any, Any]] = []
        self._fields: collections.Counter[tuple[str, str, str, str, int]] = collections.Counter()
        self.dropped_samples = 0
        self._failing = False

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout=5)
        except (TimeoutError, psycopg.Error):
            log.warning("shadow store: last flush failed; %d sample(s) not written", len(self._samples))
        await self._pool.close()

    def record(self, tenant: str, endpoint: str, result: str, primary_s: float, shadow_s: float,
               differences: tuple[Difference, ...], request_id: str) -> None:
        minute = int(time.time() // 60 * 60)
        entry = self._counts.get((tenant, endpoint, minute))
        if entry is None:
            entry = self._counts[(tenant, endpoint, minute)] = [0, 0, 0, empty_buckets(), empty_buckets()]
        entry[_RESULT_COLUMN[result]] += 1
        entry[3][bucket_index(primary_s * 1000)] += 1
        entry[4][bucket_index(shadow_s * 1000)] += 1
        for difference in differences:
            self._fields[(tenant, endpoint, difference.path, difference.kind, minute)] += 1
            if len(self._samples) >= MAX_PENDING_SAMPLES:
                self.dropped_samples += 1
                continue
            self._samples.append((tenant, endpoint, difference.path, difference.kind, request_id,
                                  redact_at(difference.path, difference.primary),
                                  redact_at(difference.path, difference.shadow)))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
                if self._failing:
                    log.info("shadow store: writing again")
                self._failing = False
            except (psycopg.Error, OSError, TimeoutError) as exc:
                if not self._failing:
                    log.warning("shadow store: cannot write (%s); keeping results in memory", type(exc).__name__)
                self._failing = True

    async def flush(self) -> None:
        if not self._counts and not self._samples:
            return
        counts, samples, fields = self._counts, self._samples, self._fields
        self._counts, self._samples, self._fields = {}, [], collections.Counter()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                for (tenant, endpoint, minute), (m, mm, n, pb, sb) in counts.items():
                    await conn.execute(
                        "INSERT INTO shadow_counts AS c (tenant, endpoint, minute, matches, mismatches, noise, "
                        "primary_buckets, shadow_buckets) VALUES (%s, %s, to_timestamp(%s), %s, %s, %s, %s, %s) "
                        "ON CONFLICT (tenant, endpoint, minute) DO UPDATE SET matches = c.matches + EXCLUDED.matches, "
                        "mismatches = c.mismatches + EXCLUDED.mismatches, noise = c.noise + EXCLUDED.noise, "
                        "primary_buckets = ARRAY(SELECT a + b FROM unnest(c.primary_buckets, EXCLUDED.primary_buckets) "
                        "AS t(a, b)), shadow_buckets = ARRAY(SELECT a + b FROM unnest(c.shadow_buckets, "
                        "EXCLUDED.shadow_buckets) AS t(a, b))",
                        (tenant, endpoint, minute, m, mm, n, pb, sb))
                async with conn.cursor() as cursor:
                    await cursor.executemany(
                        "INSERT INTO shadow_fields AS f (tenant, endpoint, path, kind, minute, count) "
                        "VALUES (%s, %s, %s, %s, to_timestamp(%s), %s) ON CONFLICT (tenant, endpoint, path, kind, "
                        "minute) DO UPDATE SET count = f.count + EXCLUDED.count",
                        [(*key, n) for key, n in fields.items()])
                if samples:
                    async with conn.cursor() as cursor:
                        await cursor.executemany(
                            "INSERT INTO shadow_samples (tenant, endpoint, path, kind, request_id, primary_value, "
                            "shadow_value) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            [(*s[:5], Jsonb(s[5]), Jsonb(s[6])) for s in samples])
                    await conn.execute(
                        "DELETE FROM shadow_samples WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER ("
                        "PARTITION BY tenant, endpoint, path ORDER BY recorded_at DESC, id DESC) AS n FROM "
                        "shadow_samples WHERE tenant = ANY(%s)) ranked WHERE n > %s)",
                        (sorted({s[0] for s in samples}), SAMPLES_PER_FIELD))
        except BaseException:
            self._merge_back(counts, samples)
            self._fields.update(fields)
            raise

    def _merge_back(self, counts: dict[tuple[str, str, int], list[Any]],
                    samples: list[tuple[str, str, str, str, str, Any, Any]]) -> None:
        for key, (m, mm, n, pb, sb) in counts.items():
            entry = self._counts.setdefault(key, [0, 0, 0, empty_buckets(), empty_buckets()])
            entry[0] += m
            entry[1] += mm
            entry[2] += n
            entry[3] = [a + b for a, b in zip(entry[3], pb, strict=True)]
            entry[4] = [a + b for a, b in zip(entry[4], sb, strict=True)]
        room = MAX_PENDING_SAMPLES - len(self._samples)
        self._samples.extend(samples[:room])
        self.dropped_samples += max(0, len(samples) - room)
