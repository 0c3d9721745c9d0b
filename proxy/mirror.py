"""Shadow copies of a tenant's requests to the other backend, compared with the primary's answers.

The primary is never delayed, altered or failed by this: the decision to mirror is made on the
request path in a few microseconds, the copy is queued without waiting (a full queue drops it and
counts why), and copies leave in batches over pipelined connections with a timeout, their answers
compared in callbacks (proxy/pipeline.py): no task per copy. Writes and webhooks
are mirrored only to v2, which runs them dry (the shadow marker). For safe requests, a sample is
also sent to the primary a second time: paths that differ primary-vs-primary are noise.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from dataclasses import dataclass
from typing import Final

from controlplane.config.model import RouteClass, ShadowLimits, ShadowSpec, UpstreamSpec
from controlplane.shadow.compare import Difference, Normalisation, compare, endpoint_template
from proxy.metrics import ProxyMetrics
from proxy.pipeline import ShadowChannel
from proxy.routing import Route
from proxy.shadow_store import ShadowStore

log = logging.getLogger(__name__)

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
    if method == "HEAD":
        return "head"  # its answer cannot be framed on a pipelined connection (proxy/pipeline.py)
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
    def __init__(self, limits: ShadowLimits, metrics: ProxyMetrics, store: ShadowStore | None = None) -> None:
        self._limits = limits
        self._store = store
        self._metrics = metrics
        self._channels: dict[UpstreamSpec, ShadowChannel] = {}
        self._rules: dict[ShadowSpec, Normalisation] = {}
        self._endpoints: dict[str, set[str]] = collections.defaultdict(set)
        # (tenant, endpoint) -> JSON paths seen differing between two answers of the primary
        self.noise: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        self.recent: collections.deque[Mismatch] = collections.deque(maxlen=RECENT_MISMATCHES)

    def reconfigure(self, limits: ShadowLimits, upstreams: set[UpstreamSpec]) -> None:
        """After a reload: the new bounds apply at once; channels to backends now gone retire."""
        self._limits = limits
        for spec, channel in list(self._channels.items()):
            if spec in upstreams:
                channel.configure(limits)
            else:
                del self._channels[spec]
                channel.retire()

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def endpoint(self, tenant: str, method: str, path: str) -> str:
        template = endpoint_template(method, path)
        known = self._endpoints[tenant]
        if template in known or len(known) < MAX_ENDPOINTS_PER_TENANT:
            known.add(template)
            return template
        return "other"

    def _channel(self, spec: UpstreamSpec) -> ShadowChannel:
        channel = self._channels.get(spec)
        if channel is None:
            channel = self._channels[spec] = ShadowChannel(spec, self._limits)
        return channel

    def offer(self, job: ShadowJob) -> None:
        """Queue a copy without waiting; a full queue drops it (counted)."""
        assert job.route.shadow_upstream is not None
        if not self._channel(job.route.shadow_upstream).offer(
                job.shadow_head, job.body, lambda status, body, outcome: self._shadow_answered(job, status, body,
                                                                                               outcome)):
            self._metrics.shadow_dropped(job.route.tenant, "queue_full")

    def _shadow_answered(self, job: ShadowJob, status: int, body: bytes, outcome: float | str) -> None:
        tenant = job.route.tenant
        if isinstance(outcome, str):
            self._metrics.shadow_request(tenant, outcome)  # timeout | error
            return
        self._metrics.shadow_request(tenant, "sent")
        self._metrics.shadow_latency(tenant, job.primary_elapsed_s, outcome)
        if job.learn_noise and self._channel(job.route.upstream).offer(
                job.primary_head, job.body,
                lambda again_status, again_body, again: self._primary_again(job, status, body, outcome,
                                                                            again_status, again_body, again)):
            return  # compared once the primary has answered a second time
        self._compare(job, status, body, outcome)

    def _primary_again(self, job: ShadowJob, status: int, body: bytes, elapsed: float, again_status: int,
                       again_body: bytes, again: float | str) -> None:
        if not isinstance(again, str):
            repeat = compare(job.primary_status, job.primary_body, again_status, again_body, self._rules_for(job))
            if repeat.differences:
                self.noise[(job.route.tenant, job.endpoint)].update(d.path for d in repeat.differences)
        self._compare(job, status, body, elapsed)

    def _rules_for(self, job: ShadowJob) -> Normalisation:
        spec = job.route.shadow
        assert spec is not None
        rules = self._rules.get(spec)
        if rules is None:
            rules = self._rules[spec] = _rules(spec)
        return rules

    def _compare(self, job: ShadowJob, status: int, body: bytes, elapsed: float) -> None:
        tenant = job.route.tenant
        comparison = compare(job.primary_status, job.primary_body, status, body, self._rules_for(job))
        real: tuple[Difference, ...] = ()
        if comparison.matches:
            result = "match"
        else:
            noise = self.noise.get((tenant, job.endpoint), set())
            real = tuple(d for d in comparison.differences if d.path not in noise)
            result = "mismatch" if real else "noise"
        self._metrics.shadow_comparison(tenant, job.endpoint, result)
        if real:
            self.recent.append(Mismatch(tenant, job.endpoint, job.request_id, real, time.time()))
        if self._store is not None:
            self._store.record(tenant, job.endpoint, result, job.primary_elapsed_s, elapsed, real, job.request_id)


def _rules(spec: ShadowSpec) -> Normalisation:
    return Normalisation(ignore=spec.ignore, case_insensitive=spec.case_insensitive,
                         numeric_tolerance=spec.numeric_tolerance, ignore_extra_fields=spec.ignore_extra_fields)

