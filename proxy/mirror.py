"""Shadow copies of a tenant's requests to the other backend, compared with the primary's answers.

The primary is never delayed, altered or failed by this: the decision to mirror is made on the
request path in a few microseconds, the copy is queued without waiting (a full queue drops it and
counts why), and a fixed number of owned workers send copies with a timeout. Writes and webhooks
are mirrored only to v2, which runs them dry (the shadow marker). For safe requests, a sample is
also sent to the primary a second time: paths that differ primary-vs-primary are noise.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from dataclasses import dataclass
from typing import Final

from controlplane.config.model import RouteClass, ShadowLimits, ShadowSpec, UpstreamSpec
from controlplane.shadow.compare import Difference, Normalisation, compare, endpoint_template
from proxy.forward import UpstreamPools, exchange
from proxy.metrics import ProxyMetrics
from proxy.routing import Route
from proxy.shadow_store import ShadowStore
from proxy.tasks import TaskPool
from proxy.upstream import UpstreamError

log = logging.getLogger(__name__)

MAX_SHADOW_RESPONSE_BYTES: Final = 1024 * 1024
MAX_ENDPOINTS_PER_TENANT: Final = 50  # keeps the endpoint label bounded whatever paths clients send
RECENT_MISMATCHES: Final = 200


def route_class(method: str, path: str) -> RouteClass:
    if path.startswith("/admin"):
        return "admin"
    if path.startswith("/webhooks/"):
        return "webhook"
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "write"


# Reasons that mean a copy that should have been mirrored was lost (counted as drops); the others
# are skips by design (sampling, route classes, admin, writes to v1).
DROP_REASONS: Final = frozenset({"body_too_large"})


def skip_reason(route: Route, method: str, path: str, body_length: int | None, has_body: bool) -> str | None:
    """Why this request is not mirrored (None: mirror it). Pure and cheap: runs on the request path."""
    spec = route.shadow
    if spec is None:
        return "disabled"
    kind = route_class(method, path)
    if kind == "admin":
        return "admin"
    if kind == "webhook" and route.webhooks_to_both:
        return "delivered_to_both"  # the other backend applies it for real (proxy/handover.py)
    if kind not in spec.routes:
        return "route_not_mirrored"
    if kind in ("write", "webhook") and route.shadow_backend != "v2":
        return "write_to_v1"  # only v2 can run a write dry
    if has_body and (body_length is None or body_length > spec.max_body_bytes):
        return "body_too_large"
    if spec.sample_rate < 1.0 and random.random() >= spec.sample_rate:
        return "not_sampled"
    return None


@dataclass(frozen=True, slots=True)
class ShadowJob:
    route: Route
    endpoint: str
    method: str
    shadow_head: bytes
    primary_head: bytes  # for the noise sample (the primary again)
    request_id: str
    body: bytes | None
    primary_status: int
    primary_body: bytes
    primary_elapsed_s: float
    learn_noise: bool


@dataclass(frozen=True, slots=True)
class Mismatch:
    tenant: str
    endpoint: str
    request_id: str
    differences: tuple[Difference, ...]
    at_s: float


class Mirror:
    def __init__(self, limits: ShadowLimits, pools: UpstreamPools, metrics: ProxyMetrics, tasks: TaskPool,
                 store: ShadowStore | None = None) -> None:
        self._limits = limits
        self._store = store
        self._pools = pools
        self._metrics = metrics
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=limits.queue_size)
        self._tasks = tasks
        self._started = False
        self._endpoints: dict[str, set[str]] = collections.defaultdict(set)
        # (tenant, endpoint) -> JSON paths seen differing between two answers of the primary
        self.noise: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        self.recent: collections.deque[Mismatch] = collections.deque(maxlen=RECENT_MISMATCHES)

    def start(self) -> None:
        if not self._started:
            self._started = True
            for n in range(self._limits.concurrency):
                self._tasks.spawn(self._work(), name=f"shadow-{n}")

    async def close(self) -> None:
        await self._tasks.close(timeout_s=0)

    def endpoint(self, tenant: str, method: str, path: str) -> str:
        template = endpoint_template(method, path)
        known = self._endpoints[tenant]
        if template in known or len(known) < MAX_ENDPOINTS_PER_TENANT:
            known.add(template)
            return template
        return "other"

    def offer(self, job: ShadowJob) -> None:
        """Queue a copy without waiting; a full queue drops it (counted)."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._metrics.shadow_dropped(job.route.tenant, "queue_full")

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._run(job)
            except Exception:
                log.exception("shadow comparison for %s %s failed", job.route.tenant, job.endpoint)

    async def _send(self, job: ShadowJob, head: bytes, upstream: UpstreamSpec) -> tuple[int, bytes, float]:
        pool = self._pools.pool_for(upstream)
        started = time.perf_counter()
        answer = await asyncio.wait_for(exchange(pool, head, job.body, max_body_bytes=MAX_SHADOW_RESPONSE_BYTES),
                                        self._limits.timeout_s)
        return answer.status, answer.body, time.perf_counter() - started

    async def _run(self, job: ShadowJob) -> None:
        tenant, spec = job.route.tenant, job.route.shadow
        assert spec is not None and job.route.shadow_upstream is not None
        try:
            status, body, elapsed = await self._send(job, job.shadow_head, job.route.shadow_upstream)
        except TimeoutError:
            self._metrics.shadow_request(tenant, "timeout")
            return
        except (UpstreamError, OSError):
            self._metrics.shadow_request(tenant, "error")
            return
        self._metrics.shadow_request(tenant, "sent")
        self._metrics.shadow_latency(tenant, job.primary_elapsed_s, elapsed)
        rules = _rules(spec)
        if job.learn_noise:
            await self._learn_noise(job, rules)
        comparison = compare(job.primary_status, job.primary_body, status, body, rules)
        noise = self.noise.get((tenant, job.endpoint), set())
        real = tuple(d for d in comparison.differences if d.path not in noise)
        result = "match" if comparison.matches else ("noise" if not real else "mismatch")
        self._metrics.shadow_comparison(tenant, job.endpoint, result)
        if real:
            self.recent.append(Mismatch(tenant, job.endpoint, job.request_id, real, time.time()))
        if self._store is not None:
            self._store.record(tenant, job.endpoint, result, job.primary_elapsed_s, elapsed, real, job.request_id)

    async def _learn_noise(self, job: ShadowJob, rules: Normalisation) -> None:
        try:
            status, body, _ = await self._send(job, job.primary_head, job.route.upstream)
        except (TimeoutError, UpstreamError, OSError):
            return
        again = compare(job.primary_status, job.primary_body, status, body, rules)
        if again.differences:
            self.noise[(job.route.tenant, job.endpoint)].update(d.path for d in again.differences)


def _rules(spec: ShadowSpec) -> Normalisation:
    return Normalisation(ignore=spec.ignore, case_insensitive=spec.case_insensitive,
                         numeric_tolerance=spec.numeric_tolerance, ignore_extra_fields=spec.ignore_extra_fields)

