"""What one migration pass did, and the lines that say it (the CLI and the cutover's syncs print them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.evidence import Judgement


class MigrationProblem(Exception):
    """The migration cannot run (the message says why); nothing was written."""


@dataclass
class Report:
    read: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (order id, why)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_newer: int = 0  # v2 had moved on (e.g. paid by a webhook): not regressed
    confirmed: int = 0  # money-moving v1 statuses carried on evidence
    unconfirmed: list[Judgement] = field(default_factory=list)  # ... and those without it: not carried
    differences: list[tuple[str, str]] = field(default_factory=list)  # after the run: (order id, what)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.differences


def detail_lines(report: Report) -> list[str]:
    """One line per order worth a look: bad rows, claims without evidence, differences."""
    return ([f"  bad row {order_id}: {why} (not migrated)" for order_id, why in report.bad]
            + [f"  {j.claim.order_id}: {j.line()}" for j in report.unconfirmed]
            + [f"  difference {order_id}: {what}" for order_id, what in report.differences])
