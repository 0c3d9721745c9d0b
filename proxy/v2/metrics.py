"""Every metric v2 exports, built against an injected registry.

With several worker processes (`--workers N`) the values live in prometheus_client's multiprocess
files (PROMETHEUS_MULTIPROC_DIR, set by the supervisor) and /metrics aggregates them, so totals are
right whichever worker answers the scrape. The outbox gauges come from the database, which every
worker reads alike: the live workers' maximum is the value.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from proxy.v2.email_templates import TEMPLATES


class V2Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.invalid_notifications_throttled = Counter(
            "dualstack_v2_invalid_notifications_throttled", "Notifications answered 429 unread: their tenant "
            "and client sent too many invalid (unsigned, forged, malformed) ones.", ["tenant"], registry=registry)
        self.admin_token_refused = Counter(
            "dualstack_v2_admin_token_refused", "Admin token attempts refused, by outcome: failed (a wrong or "
            "missing token, answered 401) or throttled (answered 429 before the token was compared).",
            ["tenant", "outcome"], registry=registry)
        self.admin_login_refused = Counter(
            "dualstack_v2_admin_login_refused", "Admin page sign-ins refused, by outcome: failed (a wrong user or "
            "password, answered 401) or throttled (answered 429 before the password was checked).",
            ["tenant", "outcome"], registry=registry)
        self.admin_session_refused = Counter(
            "dualstack_v2_admin_session_refused", "Admin page calls refused for their session token, by reason: "
            "missing, malformed, algorithm (not HS256), signature, expired, tenant (another tenant's).",
            ["tenant", "reason"], registry=registry)
        self.emails_sent = Counter(
            "dualstack_v2_emails_sent", "Emails the relay accepted, by tenant and template.",
            ["tenant", "template"], registry=registry)
        self.emails_failed = Counter(
            "dualstack_v2_emails_failed", "Send attempts that failed, by kind: temporary (retried later) or "
            "permanent (dead-lettered).", ["tenant", "kind"], registry=registry)
        self.emails_dead_lettered = Counter(
            "dualstack_v2_emails_dead_lettered", "Emails given up on (a permanent failure, or too many attempts); "
            "`dualstack outbox list --status dead` shows why.", ["tenant"], registry=registry)
        self.outbox_oldest_unsent_age = Gauge(
            "dualstack_v2_outbox_oldest_unsent_age_seconds", "Age of the oldest email not sent yet (0: none).",
            ["tenant"], registry=registry, multiprocess_mode="livemax")
        self.outbox_unsent = Gauge(
            "dualstack_v2_outbox_unsent", "Emails waiting to be sent (pending or being sent).",
            ["tenant"], registry=registry, multiprocess_mode="livemax")
        self.outbox_dead = Gauge(
            "dualstack_v2_outbox_dead", "Dead-lettered emails still in the outbox.",
            ["tenant"], registry=registry, multiprocess_mode="livemax")
        self.relay_ready = Gauge(
            "dualstack_v2_email_relay_ready", "1 if the tenant's emails can go out (relay, sender address and "
            "credential configured), 0 if they wait in the outbox.", ["tenant"], registry=registry,
            multiprocess_mode="livemin")
        self.read_confirmations = Counter(
            "dualstack_v2_status_read_confirmations", "Status reads of a recent pending order that asked Midtrans "
            "(Get Status) before answering, by result: applied (the order changed, e.g. to paid), unchanged, "
            "amount_mismatch, unknown_order, unavailable, timeout (answered from the database), rationed (not "
            "asked: the order was asked about moments ago, or the tenant's rate was spent).",
            ["tenant", "result"], registry=registry)
        self._seen: set[str] = set()

    def tenant_seen(self, tenant: str, *, ready: bool) -> None:
        self.relay_ready.labels(tenant).set(1 if ready else 0)
        if tenant in self._seen:
            return
        self._seen.add(tenant)
        # Series exist at zero from the start: a counter that first appears at 1 shows no increase().
        for template in TEMPLATES:
            self.emails_sent.labels(tenant, template)
        for kind in ("temporary", "permanent"):
            self.emails_failed.labels(tenant, kind)
        self.emails_dead_lettered.labels(tenant)
        for outcome in ("failed", "throttled"):
            self.admin_token_refused.labels(tenant, outcome)
            self.admin_login_refused.labels(tenant, outcome)

    def backlog(self, tenant: str, *, unsent: int, dead: int, oldest_unsent_s: float) -> None:
        self.outbox_unsent.labels(tenant).set(unsent)
        self.outbox_dead.labels(tenant).set(dead)
        self.outbox_oldest_unsent_age.labels(tenant).set(oldest_unsent_s)
