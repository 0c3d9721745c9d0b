"""`dualstack reverse-sync`: passes (run.py) one after the other, each recorded in the state database
(controlplane/state/reverse_syncs.py) and, with a metrics file, left for Prometheus as a
node_exporter textfile.

The record is read again before every pass: once `dualstack cutover complete` ended the tenant's
reverse sync, the follower copies nothing more and stops."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from controlplane.cutover.request import Say
from controlplane.reverse.run import PassReport, reverse_pass
from controlplane.reverse.v1_stores import ReverseSyncProblem, V1Writer
from controlplane.state.reverse_syncs import ReverseSyncStore


@dataclass(frozen=True, slots=True)
class PassOutcome:
    report: PassReport | None  # None: the pass failed, or the reverse sync is completed
    error: ReverseSyncProblem | None = None
    completed: bool = False  # `cutover complete` ended it: nothing was copied


class Follower:
    def __init__(self, writer: V1Writer, database_url: str, slug: str, schema: str = "payments", *,
                 state: ReverseSyncStore | None = None, metrics_path: Path | None = None) -> None:
        self.writer = writer
        self.database_url = database_url
        self.slug = slug
        self.schema = schema
        self.state = state
        self.metrics_path = metrics_path
        self.watermark: datetime | None = None  # without a state database: this process's own

    def begin(self, actor: str, say: Say) -> bool:
        """False when the tenant's reverse sync is completed (nothing to do)."""
        if self.state is None:
            say("reverse sync: no --state-database-url: progress is not recorded (the way back cannot rely on it "
                "if v2 is unreachable), and the first pass copies every order")
            return True
        record = self.state.get(self.slug)
        if record is None:
            self.state.begin(self.slug, self.writer.name, actor)
            say(f"reverse sync of {self.slug}: none was recorded (a cutover to v2 begins one); begun now, the first "
                "pass copies every order")
        elif not record.running:
            say(f"reverse sync of {self.slug}: completed at {record.completed_at:%Y-%m-%d %H:%M:%S} UTC by "
                f"{record.completed_by}; nothing to copy")
            self.write_metrics(running=False)
            return False
        return True

    def once(self) -> PassOutcome:
        if self.state is not None:
            record = self.state.get(self.slug)
            if record is None or not record.running:
                self.write_metrics(running=False)
                return PassOutcome(None, completed=True)
            self.watermark = record.watermark
        try:
            report = reverse_pass(self.writer, self.database_url, self.slug, self.schema, watermark=self.watermark)
        except ReverseSyncProblem as exc:
            if self.state is not None:
                self.state.failed(self.slug, str(exc), exc.side)
            self.write_metrics(running=True, success=False)
            return PassOutcome(None, exc)
        self.watermark = report.watermark
        if self.state is not None:
            self.state.passed(self.slug, report.watermark, report.lag_s, report.written.copied)
        self.write_metrics(running=True, success=True)
        return PassOutcome(report)

    def write_metrics(self, *, running: bool, success: bool = True) -> None:
        if self.metrics_path is not None:
            write_metrics(self.metrics_path, self.slug, running=running, success=success, watermark=self.watermark)


def write_metrics(path: Path, tenant: str, *, running: bool, success: bool, watermark: datetime | None) -> None:
    """The follower's gauges as a node_exporter textfile, replaced atomically. The alert reads the
    caught-up time: it keeps ageing when the follower stops writing the file."""
    registry = CollectorRegistry()
    Gauge("dualstack_reverse_sync_running", "1 while v2's changes of the tenant are written back into v1",
          ["tenant"], registry=registry).labels(tenant).set(1 if running else 0)
    Gauge("dualstack_reverse_sync_last_pass_success", "1 if the last reverse pass finished clean, else 0",
          ["tenant"], registry=registry).labels(tenant).set(1 if success else 0)
    if watermark is not None:
        Gauge("dualstack_reverse_sync_caught_up_timestamp_seconds",
              "v2's time up to which every change of the tenant is in v1", ["tenant"],
              registry=registry).labels(tenant).set(watermark.timestamp())
        Gauge("dualstack_reverse_sync_lag_seconds", "How far v1 is behind v2 for the tenant, when the file was "
              "written", ["tenant"], registry=registry).labels(tenant).set(
                  max(0.0, datetime.now(UTC).timestamp() - watermark.timestamp()))
    write_to_textfile(str(path), registry)


def follow(follower: Follower, interval_s: float, say: Say, *, passes: int | None = None) -> None:
    """Pass after pass until the reverse sync is completed (or `passes` were made: tests, benches)."""
    made = 0
    while passes is None or made < passes:
        outcome = follower.once()
        made += 1
        if outcome.completed:
            say(f"reverse sync of {follower.slug} completed (`cutover complete`): stopping")
            return
        if outcome.report is not None:
            say(f"reverse pass: {outcome.report.line()}")
            for line in outcome.report.written.left_alone_lines():
                say(line)
        else:
            say(f"reverse pass failed ({outcome.error}); trying again in {interval_s:g} s")
        if passes is None or made < passes:
            time.sleep(interval_s)
