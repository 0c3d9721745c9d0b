"""The router's writer of shadow results into the state database (optional).

Comparisons are aggregated in memory per (tenant, endpoint, minute) and flushed once a second in
one transaction, with the SQL of controlplane/state/shadow_samples.py: counts are additive upserts,
so several router replicas share the same rows.
Mismatch samples are redacted before they leave the process, and pruned to the newest few per
(tenant, endpoint, path). If the database is unreachable, counts keep accumulating (bounded by
their keys) and samples beyond MAX_PENDING_SAMPLES are dropped and counted; the router never waits.
Counts are kept per primary backend, so minutes before and after a flip are not mixed.

The store also carries the noise learner's pairs (controlplane/state/shadow_noise.py) into the
database, and every `noise_read_s` reads the window's totals back into the learner: noise is
learned from every worker's and replica's pairs, and the request path only reads memory.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Final

from psycopg.types.json import Jsonb

from controlplane.shadow.compare import Difference
from controlplane.shadow.redact import redact_at
from controlplane.shadow.samples import SAMPLES_PER_FIELD, bucket_index, empty_buckets
from controlplane.state import shadow_noise, shadow_samples
from controlplane.state.schema import query
from controlplane.state.shadow_noise import NoiseLearner
from proxy.router.state_writes import last_write, state_pool, write_periodically

MAX_PENDING_SAMPLES: Final = 2000
_RESULT_COLUMN: Final = {"match": 0, "mismatch": 1, "noise": 2, "not_replicated": 3}
NOISE_READ_S: Final = 10.0
CountKey = tuple[str, str, int, str]  # (tenant, endpoint, minute, primary backend)


def _empty() -> list[Any]:
    return [0, 0, 0, 0, empty_buckets(), empty_buckets()]


class ShadowStore:
    def __init__(self, database_url: str, schema: str, *, flush_interval_s: float = 1.0,
                 noise_read_s: float = NOISE_READ_S) -> None:
        self._pool = state_pool(database_url)
        self._upsert_counts = query(shadow_samples.UPSERT_COUNTS, schema)
        self._upsert_fields = query(shadow_samples.UPSERT_FIELDS, schema)
        self._insert_samples = query(shadow_samples.INSERT_SAMPLES, schema)
        self._prune_samples = query(shadow_samples.PRUNE_SAMPLES, schema)
        self._upsert_noise = query(shadow_noise.UPSERT, schema)
        self._read_noise = query(shadow_noise.WINDOW_TOTALS, schema)
        self._prune_noise = query(shadow_noise.PRUNE, schema)
        self._interval_s = flush_interval_s
        self._noise_read_s = noise_read_s
        self._noise_read_at = 0.0
        self.learner: NoiseLearner | None = None  # set by the mirror whose pairs this store shares
        self._counts: dict[CountKey, list[Any]] = {}
        self._samples: list[tuple[str, str, str, str, str, Any, Any]] = []
        self._fields: collections.Counter[tuple[str, str, str, str, int]] = collections.Counter()
        self.dropped_samples = 0

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await last_write("shadow store", self._pool, self.flush, lambda: len(self._samples))

    def record(self, tenant: str, endpoint: str, result: str, primary_s: float, shadow_s: float,
               differences: tuple[Difference, ...], request_id: str, *, primary_backend: str) -> None:
        minute = int(time.time() // 60 * 60)
        key = (tenant, endpoint, minute, primary_backend)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = _empty()
        entry[_RESULT_COLUMN[result]] += 1
        entry[4][bucket_index(primary_s * 1000)] += 1
        entry[5][bucket_index(shadow_s * 1000)] += 1
        for difference in differences:
            self._fields[(tenant, endpoint, difference.path, difference.kind, minute)] += 1
            if len(self._samples) >= MAX_PENDING_SAMPLES:
                self.dropped_samples += 1
                continue
            self._samples.append((tenant, endpoint, difference.path, difference.kind, request_id,
                                  redact_at(difference.path, difference.primary),
                                  redact_at(difference.path, difference.shadow)))

    async def run(self) -> None:
        await write_periodically("shadow store", self._interval_s, self._write)

    async def _write(self) -> None:
        await self.flush()
        if self.learner is not None and time.monotonic() - self._noise_read_at >= self._noise_read_s:
            await self.read_noise()

    async def read_noise(self) -> None:
        """The window's noise totals from every router, into the learner (and old rows pruned)."""
        assert self.learner is not None
        async with self._pool.connection() as conn:
            await conn.execute(self._prune_noise, (shadow_noise.NOISE_WINDOW_S,))
            cursor = await conn.execute(self._read_noise, (shadow_noise.NOISE_WINDOW_S,))
            rows = await cursor.fetchall()
        self.learner.adopt((t, e, p, int(a), int(b)) for t, e, p, a, b in rows)
        self._noise_read_at = time.monotonic()

    async def flush(self) -> None:
        noise = self.learner.take_pending() if self.learner is not None else []
        if not self._counts and not self._samples and not noise:
            return
        counts, samples, fields = self._counts, self._samples, self._fields
        self._counts, self._samples, self._fields = {}, [], collections.Counter()
        minute = int(time.time() // 60 * 60)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                for (tenant, endpoint, at, backend), (m, mm, n, nr, pb, sb) in counts.items():
                    await conn.execute(self._upsert_counts, (tenant, endpoint, at, backend, m, mm, n, nr, pb, sb))
                if noise:
                    async with conn.cursor() as cursor:
                        await cursor.executemany(self._upsert_noise,
                                                 [(t, e, p, minute, a, b) for t, e, p, a, b in noise])
                async with conn.cursor() as cursor:
                    await cursor.executemany(self._upsert_fields, [(*key, n) for key, n in fields.items()])
                if samples:
                    async with conn.cursor() as cursor:
                        await cursor.executemany(self._insert_samples,
                                                 [(*s[:5], Jsonb(s[5]), Jsonb(s[6])) for s in samples])
                    await conn.execute(self._prune_samples, (sorted({s[0] for s in samples}), SAMPLES_PER_FIELD))
        except BaseException:
            self._merge_back(counts, samples)
            self._fields.update(fields)
            if self.learner is not None:
                self.learner.put_back(noise)
            raise

    def _merge_back(self, counts: dict[CountKey, list[Any]],
                    samples: list[tuple[str, str, str, str, str, Any, Any]]) -> None:
        for key, values in counts.items():
            entry = self._counts.setdefault(key, _empty())
            for i in range(4):
                entry[i] += values[i]
            entry[4] = [a + b for a, b in zip(entry[4], values[4], strict=True)]
            entry[5] = [a + b for a, b in zip(entry[5], values[5], strict=True)]
        room = MAX_PENDING_SAMPLES - len(self._samples)
        self._samples.extend(samples[:room])
        self.dropped_samples += max(0, len(samples) - room)
