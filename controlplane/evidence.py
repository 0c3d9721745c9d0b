"""Whether a status v1 claims for an order may be carried into v2.

v1 applies any notification, signed or not (and its admin page sets any status), so a v1 row
saying `paid` is a claim. A claim that would move money in v2 (to paid, failed or refunded, where
the move is allowed at all) is carried only on evidence, as v2's own webhooks require:
- Midtrans' confirmation recorded by v2 for that order (payment_events.confirmation: the Get
  Status answer v2 took before applying or rejecting a notification), or
- Midtrans' own Get Status, asked now (`concurrency` calls in flight, paced to `rate_per_s`), and
  given up for the rest of a pass after `give_up_after` unavailable answers in a row, so an outage
  costs a pass seconds, not hours.
In both, Midtrans' status must mean the claimed one and its amount must be the order's. A signed
notification alone is not evidence: the signature does not cover the status.

Answers that refute a claim are remembered for `remember_s`, so `migrate sqlite --follow` does
not ask Midtrans about the same forged row every few seconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from controlplane.midtrans_answer import StatusUnavailable, TransactionReport
from controlplane.midtrans_status import MidtransStatus
from controlplane.order_status import MONEY_MOVING, may_move, order_status_for

RATE_PER_S: Final = 20.0
RATE_ENV: Final = "DUALSTACK_MIDTRANS_STATUS_RATE"
CONCURRENCY: Final = 4  # calls in flight: Midtrans is far away, the pace is the limit
GIVE_UP_AFTER: Final = 3
REMEMBER_S: Final = 600.0
MAX_REMEMBERED: Final = 100_000

# (phase, done, total), as the migration's progress (controlplane/migrate/).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Claim:
    order_id: str
    status: str  # what v1 says, in v2's spelling
    amount: int
    current: str | None  # what v2 holds; None when v2 does not hold the order yet


@dataclass(frozen=True, slots=True)
class Judgement:
    claim: Claim
    confirmed: bool
    why: str  # what the evidence said, safe to print

    def line(self) -> str:
        """`paid on v1 without evidence: not applied (Midtrans says pending)`."""
        done = "not applied" if self.claim.current is not None else "inserted as pending"
        return f"{self.claim.status} on v1 without evidence: {done} ({self.why})"


def needs_evidence(claimed: str, current: str | None) -> bool:
    """A claim that would move money in v2 (a move precedence forbids is not made anyway)."""
    if claimed not in MONEY_MOVING:
        return False
    return current is None or (current != claimed and may_move(current, claimed))


def _recorded_evidence(claim: Claim, confirmations: Iterable[Mapping[str, Any]]) -> str | None:
    for answer in confirmations:
        status = answer.get("transaction_status")
        if not isinstance(status, str):
            continue  # {"unavailable": ...}: v2 could not ask either
        fraud = answer.get("fraud_status") if isinstance(answer.get("fraud_status"), str) else None
        if order_status_for(status, fraud) == claim.status and _same_amount(answer.get("gross_amount"), claim.amount):
            return f"confirmed by Midtrans to v2 ({status})"
    return None


def _same_amount(value: object, amount: int) -> bool:
    try:
        return isinstance(value, str) and Decimal(value) == Decimal(amount)
    except InvalidOperation:
        return False


class EvidenceCheck:
    def __init__(self, status: MidtransStatus | None, *, rate_per_s: float = RATE_PER_S,
                 concurrency: int = CONCURRENCY, give_up_after: int = GIVE_UP_AFTER, remember_s: float = REMEMBER_S,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.status = status  # None: Get Status is not asked (only recorded confirmations count)
        self.interval_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.concurrency = max(1, concurrency)
        self.give_up_after = give_up_after
        self.remember_s = remember_s
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next_call = 0.0
        self._refuted: dict[tuple[str, str], tuple[float, str]] = {}  # (order, claim) -> (when, why)
        self._in_a_row = 0  # unavailable answers, this pass
        self._gave_up = ""
        self.asked = 0  # Get Status calls made

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> EvidenceCheck:
        """Get Status at the Core API the environment names, at `DUALSTACK_MIDTRANS_STATUS_RATE`
        calls per second (default RATE_PER_S)."""
        text = environ.get(RATE_ENV, "")
        try:
            rate = float(text) if text else RATE_PER_S
        except ValueError:
            raise ValueError(f"{RATE_ENV}='{text}': give calls per second, e.g. 20") from None
        return cls(MidtransStatus.from_environment(environ), rate_per_s=rate)

    def judge(self, claims: list[Claim], *, recorded: Mapping[str, Sequence[Mapping[str, Any]]],
              server_key: str | None, environment: str, progress: Progress | None = None) -> list[Judgement]:
        judged: dict[int, Judgement] = {}
        to_ask: list[tuple[int, Claim]] = []
        for index, claim in enumerate(claims):
            quick = self._without_asking(claim, recorded.get(claim.order_id, ()), server_key)
            if quick is None:
                to_ask.append((index, claim))
            else:
                judged[index] = quick
        if to_ask and server_key:
            self._in_a_row, self._gave_up = 0, ""

            def ask(item: tuple[int, Claim]) -> tuple[int, Judgement]:
                return item[0], self._ask(item[1], server_key, environment)

            pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="get-status")
            try:
                for done, (index, judgement) in enumerate(pool.map(ask, to_ask), start=1):
                    judged[index] = judgement
                    if progress:
                        progress("confirming", done, len(to_ask))
            finally:  # Ctrl-C: the calls not started are dropped, not waited for
                pool.shutdown(wait=False, cancel_futures=True)
        return [judged[index] for index in range(len(claims))]

    def _without_asking(self, claim: Claim, recorded: Sequence[Mapping[str, Any]],
                        server_key: str | None) -> Judgement | None:
        found = _recorded_evidence(claim, recorded)
        if found is not None:
            return Judgement(claim, True, found)
        with self._lock:
            entry = self._refuted.get((claim.order_id, claim.status))
        if entry is not None and self._clock() - entry[0] < self.remember_s:
            return Judgement(claim, False, f"{entry[1]}, asked {self._clock() - entry[0]:.0f}s ago")
        if self.status is None:
            return Judgement(claim, False, "Get Status not asked")
        if not server_key:
            return Judgement(claim, False, "Get Status not asked: no Midtrans key for this tenant")
        return None

    def _ask(self, claim: Claim, server_key: str, environment: str) -> Judgement:
        assert self.status is not None
        with self._lock:
            if self._gave_up:
                return Judgement(claim, False, self._gave_up)
            now = self._clock()
            at = max(now, self._next_call)
            self._next_call = at + self.interval_s
            self.asked += 1
        if at > now:
            self._sleep(at - now)
        try:
            answer = self.status.transaction_status(claim.order_id, server_key=server_key, environment=environment)
        except StatusUnavailable as exc:
            with self._lock:
                self._in_a_row += 1
                if self._in_a_row >= self.give_up_after and not self._gave_up:
                    self._gave_up = f"Get Status unavailable ({exc}); not asked again this pass"
            return Judgement(claim, False, f"Get Status unavailable ({exc})")
        with self._lock:
            self._in_a_row = 0
        return self._weigh(claim, answer)

    def _weigh(self, claim: Claim, answer: TransactionReport | None) -> Judgement:
        if answer is None:
            return self._refute(claim, "Midtrans does not know this order")
        if answer.order_status != claim.status:
            return self._refute(claim, f"Midtrans says {answer.describe()}")
        if not answer.amount_is(claim.amount):
            return self._refute(claim, f"Midtrans holds amount {answer.gross_amount}, v1 {claim.amount}")
        return Judgement(claim, True, f"Midtrans says {answer.describe()}")

    def _refute(self, claim: Claim, why: str) -> Judgement:
        with self._lock:
            self._refuted[(claim.order_id, claim.status)] = (self._clock(), why)
            if len(self._refuted) > MAX_REMEMBERED:  # bounded: the oldest answers go first
                for stale in list(self._refuted)[: len(self._refuted) // 2]:
                    del self._refuted[stale]
        return Judgement(claim, False, why)
