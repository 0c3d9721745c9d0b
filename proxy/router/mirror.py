"""Shadow copies of a tenant's requests to the other backend, compared with the primary's answers.

The primary is never delayed, altered or failed by this: the decision to mirror is made on the
request path in a few microseconds, the copy is queued without waiting (a full queue drops it and
counts why), and copies leave in batches over pipelined connections with a timeout, their answers
compared in callbacks (proxy/pipeline.py): no task per copy. Writes and webhooks
are mirrored only to v2, which runs them dry (the shadow marker). For safe requests, a sample is
also sent to the primary a second time: a path is noise only when the primary differs from itself
on it about as often as from the shadow (Diffy's rule, controlplane/state/shadow_noise.py), learned
per endpoint and path by every worker and replica through the state database, and never on the
fields the tenant declares as state (status, amounts).

Copies leave without conditional headers (If-None-Match...): each backend has its own ETags, so a
conditional copy would be answered 304 by one and 200 by the other. A primary that answered 304 has
nothing to compare with and is skipped (counted). An order read the primary answers 200 and the
shadow 404 is asked again once, after `not_replicated_recheck_s` (the follow sync runs every 5 s),
on the same pipelined channel: found then (answered as the primary did), it is `not_replicated`
(sync lag, outside the match rate, whatever the found answer says: the order's later reads are
compared); still not found, a mismatch.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Final

from controlplane.config.model import RouteClass, ShadowLimits, ShadowSpec, UpstreamSpec
from controlplane.order_id import ORDER_ID_RE
from controlplane.shadow.compare import Difference, Normalisation, compare, endpoint_template
from controlplane.state.shadow_noise import NoiseLearner
from proxy.http1.pipeline import ShadowChannel
from proxy.router.metrics import ProxyMetrics
from proxy.router.notification_path import is_notification
from proxy.router.routing import Route
from proxy.router.shadow_store import ShadowStore

log = logging.getLogger(__name__)

MAX_ENDPOINTS_PER_TENANT: Final = 50  # keeps the endpoint label bounded whatever paths clients send
_STATUS_READ: Final = re.compile(r"/orders/(.*)/status", re.DOTALL)  # on the decoded path
RECENT_MISMATCHES: Final = 200
MAX_RECHECKS: Final = 1000  # order reads waiting to be asked again (each holds its copy in memory)
CONDITIONAL_HEADERS: Final = frozenset({b"if-none-match", b"if-modified-since", b"if-match",
                                        b"if-unmodified-since", b"if-range"})


def unconditional(head: bytes) -> bytes:
    """The request head without conditional headers: a copy must be answered in full."""
    lines = head.split(b"\r\n")
    kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in CONDITIONAL_HEADERS]
    return b"\r\n".join([lines[0], *kept]) if len(kept) < len(lines) - 1 else head


def route_class(method: str, path: str) -> RouteClass:
    if path.startswith("/admin"):
        return "admin"
    if path.startswith("/webhooks/") or is_notification(method, path):
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


def answer_skip_reason(primary_status: int, endpoint: str, path: str) -> str | None:
    """Why the primary's answer is not compared (None: compare it). A 304 to the client's conditional
    request carries no body: skipped, never a mismatch. A request the primary refused (not 2xx) that
    is no request of the payment API is junk: a path outside its routes (`endpoint` is `<METHOD>
    other`), or a status read of an id no order can have (`path` decoded). How each backend refuses
    junk (v1's HTML "Cannot GET", its 500 on a NUL, v2's 404) is not the match rate the cutover gate
    requires, and a stranger could lower it at will. One the primary served is compared: an order v1
    took under an id v2 cannot hold still shows as a mismatch."""
    if primary_status == 304:
        return "primary_not_modified"
    if 200 <= primary_status < 300:
        return None
    if endpoint.endswith(" other"):
        return "unknown_route"
    if (read := _STATUS_READ.fullmatch(path)) and not ORDER_ID_RE.fullmatch(read.group(1)):
        return "not_an_order_id"
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
        self.noise = NoiseLearner()
        if store is not None:
            store.learner = self.noise  # shares the pairs with every router, and reads theirs back
        self._rechecks: set[asyncio.TimerHandle] = set()
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
        for handle in self._rechecks:
            handle.cancel()
        self._rechecks.clear()
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def endpoint(self, tenant: str, method: str, path: str) -> str:
        template = endpoint_template(method, path)
        known = self._endpoints[tenant]
        if template in known or len(known) < MAX_ENDPOINTS_PER_TENANT:
            known.add(template)
            return template
        return template.partition(" ")[0] + " other"

    def _channel(self, spec: UpstreamSpec) -> ShadowChannel:
        channel = self._channels.get(spec)
        if channel is None:
            channel = self._channels[spec] = ShadowChannel(spec, self._limits)
        return channel

    def offer(self, job: ShadowJob) -> None:
        """Queue a copy without waiting; a full queue drops it (counted)."""
        upstream = job.route.shadow_upstream
        assert upstream is not None
        job = dataclasses.replace(job, shadow_head=unconditional(job.shadow_head),
                                  primary_head=unconditional(job.primary_head))
        if not self._channel(upstream).offer(
                job.shadow_head, job.body, lambda status, body, outcome: self._shadow_answered(job, status, body,
                                                                                               outcome)):
            self._metrics.shadow_dropped(job.route.tenant, "queue_full")

    def _shadow_answered(self, job: ShadowJob, status: int, body: bytes, outcome: float | str) -> None:
        tenant = job.route.tenant
        if isinstance(outcome, str):
            self._metrics.shadow_request(tenant, outcome)  # timeout | error
            return
        self._metrics.shadow_request(tenant, "sent")
        if job.route.shadow_backend is not None:
            backends = (job.route.backend, job.route.shadow_backend)
            self._metrics.shadow_latency(tenant, backends, job.primary_elapsed_s, outcome)
            self._metrics.shadow_answers_pair(tenant, backends, (job.primary_status, status))
        if job.learn_noise and self._channel(job.route.upstream).offer(
                job.primary_head, job.body,
                lambda again_status, again_body, again: self._primary_again(job, status, body, outcome,
                                                                            again_status, again_body, again)):
            return  # compared once the primary has answered a second time
        self._judge(job, status, body, outcome)

    def _primary_again(self, job: ShadowJob, status: int, body: bytes, elapsed: float, again_status: int,
                       again_body: bytes, again: float | str) -> None:
        if not isinstance(again, str):
            repeat = compare(job.primary_status, job.primary_body, again_status, again_body, self._rules_for(job))
            self.noise.record(job.route.tenant, job.endpoint, "primary", (d.path for d in repeat.differences))
        self._judge(job, status, body, elapsed)

    def _judge(self, job: ShadowJob, status: int, body: bytes, elapsed: float) -> None:
        """Compare now, or first ask the shadow again for an order it may not have replicated yet."""
        spec = job.route.shadow
        assert spec is not None
        if not (job.primary_status == 200 and status == 404 and job.method == "GET"
                and job.endpoint.startswith("GET /orders/") and spec.not_replicated_recheck_s > 0):
            self._compare(job, status, body, elapsed)
            return
        if len(self._rechecks) >= MAX_RECHECKS:
            self._metrics.shadow_request(job.route.tenant, "recheck_full")
            self._compare(job, status, body, elapsed)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def ask_again() -> None:
            self._rechecks.discard(handle)
            self._ask_again(job, status, body, elapsed)

        handle = loop.call_later(spec.not_replicated_recheck_s, ask_again)
        self._rechecks.add(handle)

    def _ask_again(self, job: ShadowJob, status: int, body: bytes, elapsed: float) -> None:
        assert job.route.shadow_upstream is not None
        tenant = job.route.tenant

        def answered(again_status: int, again_body: bytes, outcome: float | str) -> None:
            if isinstance(outcome, str):  # unconfirmed: the first answer stands
                self._metrics.shadow_request(tenant, f"recheck_{outcome}")
                self._compare(job, status, body, elapsed)
            else:
                self._metrics.shadow_request(tenant, "recheck")
                self._compare(job, again_status, again_body, elapsed, rechecked=True)

        if not self._channel(job.route.shadow_upstream).offer(job.shadow_head, job.body, answered):
            self._metrics.shadow_request(tenant, "recheck_full")
            self._compare(job, status, body, elapsed)

    def _rules_for(self, job: ShadowJob) -> Normalisation:
        spec = job.route.shadow
        assert spec is not None
        rules = self._rules.get(spec)
        if rules is None:
            rules = self._rules[spec] = _rules(spec)
        return rules

    def _compare(self, job: ShadowJob, status: int, body: bytes, elapsed: float, *, rechecked: bool = False) -> None:
        tenant, spec = job.route.tenant, job.route.shadow
        assert spec is not None
        real: tuple[Difference, ...] = ()
        if rechecked and status == job.primary_status:
            # Found when asked again: the first 404 was sync lag, and this read is that, outside the
            # match rate. Judging the answer found after the sync here would count the lag as a
            # mismatch on every field v1 and v2 spell differently; the order's later reads judge them.
            result = "not_replicated"
        else:
            comparison = compare(job.primary_status, job.primary_body, status, body, self._rules_for(job))
            paths = [d.path for d in comparison.differences]
            self.noise.record(tenant, job.endpoint, "shadow", paths)
            if comparison.matches:
                result = "match"
            else:
                noise = self.noise.noise(tenant, job.endpoint, paths, spec.state_fields)
                real = tuple(d for d in comparison.differences if d.path not in noise)
                result = "mismatch" if real else "noise"
        self._metrics.shadow_comparison(tenant, job.endpoint, result)
        if real:
            self.recent.append(Mismatch(tenant, job.endpoint, job.request_id, real, time.time()))
        if self._store is not None:
            self._store.record(tenant, job.endpoint, result, job.primary_elapsed_s, elapsed, real, job.request_id,
                               primary_backend=job.route.backend)


def _rules(spec: ShadowSpec) -> Normalisation:
    return Normalisation(ignore=spec.ignore, ignore_entirely=spec.ignore_entirely,
                         case_insensitive=spec.case_insensitive,
                         numeric_tolerance=spec.numeric_tolerance, ignore_extra_fields=spec.ignore_extra_fields)

