"""`dualstack rollout ...`: simulate, decide, replay, explain, and the manual actions (rollback, ack,
promote, hold, resume, status)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from controlplane.commands.options import (
    notify_url,
    state_url,
)
from controlplane.config import load_config
from controlplane.errors import ExitStatus, UsageProblem
from controlplane.invocation import command_path


def cmd_rollout_simulate(ns: argparse.Namespace) -> ExitStatus:
    import sys

    from controlplane.progress import ProgressDisplay
    from controlplane.rollout.calibration import plan_for
    from controlplane.rollout.cases import CASES, cells, jobs, run_job, table
    from controlplane.rollout.decide import Policy
    from controlplane.rollout.simulate import Result

    plan = plan_for(Policy(alpha=0.01))
    work = jobs(CASES, ns.seeds)
    print(f"{ns.seeds} seeded soak(s) per cell; one decision per simulated minute; alpha = 1 % per soak "
          "(bench/decisions.py runs 200 per cell)\n", flush=True)
    progress = ProgressDisplay(sys.stderr, unit="soaks")
    results: list[tuple[str, str, Result]] = []
    try:
        for job in work:
            progress("simulating", len(results), len(work))
            results.append(run_job(plan, job))
        progress("simulating", len(results), len(work))
    except KeyboardInterrupt:
        progress.close(interrupted=True)
        raise
    progress.close()
    print("\n".join(table(cells(CASES, results))))
    return ExitStatus.OK

def cmd_rollout_locks(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.config.locks import effective_backend
    from controlplane.rollout.notify import notify
    from controlplane.state.events import actor
    from controlplane.state.locks import LOCK_POLL_S, LockStore
    from controlplane.state.reverse_syncs import ReverseSyncStore

    store = LockStore(state_url(ns), ns.schema)
    if ns.rollout_command == "ack":
        lock = store.ack(ns.slug, actor())
        if lock is not None:
            notify(notify_url(ns), f"dualstack: {ns.slug} lock acknowledged by {actor()}; the routing file decides")
        print(f"{ns.slug}: lock released ({lock.reason}); the routing file decides again" if lock
              else f"{ns.slug}: no lock to acknowledge")
        return ExitStatus.OK
    config = load_config(ns.config)
    if ns.rollout_command == "rollback":
        if ns.slug not in config.tenants:
            raise UsageProblem(f"no tenant '{ns.slug}' in {ns.config}")
        store.rollback(config, ns.slug, ns.reason, actor())
        notify(notify_url(ns), f"dualstack: {ns.slug} rolled back to v1 by {actor()} - {ns.reason}")
        print(f"{ns.slug}: pinned to v1 ({ns.reason}); every router reads locks every "
              f"{LOCK_POLL_S:g} s and applies it at once. "
              f"`dualstack rollout ack {ns.slug}` releases it.")
        return ExitStatus.OK
    for tenant in store.release_stale(config, actor()):
        print(f"{tenant}: lock released, its routing entry changed since the rollback")
    locks = store.locks()
    print(f"{'tenant':24} {'declared':9} {'effective':10} why")
    for slug, spec in sorted(config.tenants.items()):
        backend, why = effective_backend(spec.backend, locks.get(slug))
        print(f"{slug:24} {spec.backend:9} {backend:10} {why or '-'}")
    _print_reverse_syncs(ReverseSyncStore(state_url(ns), ns.schema).all())
    return ExitStatus.OK


def _print_reverse_syncs(records: dict[str, Any]) -> None:
    """The running reverse syncs (v2 -> v1's store) and how far behind each is."""
    running = [r for r in records.values() if r.running]
    if not running:
        return
    now = datetime.now(UTC)
    print("\nreverse sync (v2's orders into v1's store; `dualstack cutover complete SLUG` ends it):")
    print(f"{'tenant':24} {'lag':>8} {'caught up to':24} last pass")
    for r in running:
        lag = r.lag_at(now)
        caught = f"{r.watermark:%Y-%m-%d %H:%M:%S} UTC" if r.watermark else "no pass finished yet"
        last = ("failed: " + (r.last_error or "")[:80]) if r.last_error else (
            f"clean, {r.rows_copied} rows copied since {r.started_at:%Y-%m-%d %H:%M} UTC")
        print(f"{r.tenant:24} {'-' if lag is None else f'{lag:.0f} s':>8} {caught:24} {last}")

def cmd_rollout_decide(ns: argparse.Namespace) -> ExitStatus:
    import time
    from datetime import UTC

    from controlplane.rollout.decider import run_once
    from controlplane.rollout.embedded import EmbeddedSource
    from controlplane.rollout.sources import EvidenceSource, PrometheusSource
    from controlplane.state.rollouts import RolloutStore

    store = RolloutStore(state_url(ns), ns.schema)
    source: EvidenceSource
    if ns.prometheus_url:
        source = PrometheusSource(ns.prometheus_url)
    elif ns.metrics_url:
        source = EmbeddedSource(ns.metrics_url, state_url(ns), ns.schema)
    else:
        raise UsageProblem("no evidence source: pass --prometheus-url, or --metrics-url for each router")
    while True:
        config = load_config(ns.config)
        for tenant, what in run_once(config, store, source, None, datetime.now(UTC), dry_run=ns.dry_run,
                                     notify_url=notify_url(ns)):
            first, *details = what.splitlines()
            print(f"{datetime.now(UTC):%H:%M:%S} {tenant}: {first}", *(f"    {line}" for line in details),
                  sep="\n", flush=True)
        if ns.once:
            return ExitStatus.OK
        time.sleep(ns.interval)

def cmd_rollout_manual(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.rollout.notify import notify
    from controlplane.state.events import EventKind, actor
    from controlplane.state.rollouts import Phase, RolloutStore

    kind = EventKind(ns.rollout_command)
    phase = {EventKind.PROMOTE: Phase.PROMOTED, EventKind.HOLD: Phase.HELD, EventKind.RESUME: Phase.SOAKING}[kind]
    store = RolloutStore(state_url(ns), ns.schema)
    if not store.set_phase(ns.slug, phase, kind, actor(), ns.reason):
        raise UsageProblem(f"no rollout for '{ns.slug}' (the decider starts one when the tenant is declared on v2)")
    message = f"dualstack: {ns.slug} {ns.rollout_command} by {actor()} - {ns.reason}"
    delivered = notify(notify_url(ns), message)
    print(f"{ns.slug}: {phase.replace('_', ' ')} ({ns.reason})" + (" - notified" if delivered else ""))
    return ExitStatus.OK

def cmd_rollout_replay(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.config.model import CutoverPolicy, RolloutPolicy
    from controlplane.rollout.calibration import plan_for
    from controlplane.rollout.decide import Verdict
    from controlplane.rollout.replay import parse_step, parse_time, replay
    from controlplane.rollout.sources import PrometheusSource
    from controlplane.state.rollouts import decision_to_json

    start, end, step = parse_time(ns.start), parse_time(ns.end), parse_step(ns.step)
    if end < start:
        raise UsageProblem("--to is before --from")
    soak_started = parse_time(ns.soak_start) if ns.soak_start else start
    if ns.config:
        config = load_config(ns.config)
        plan = plan_for(config.rollout_policy(ns.slug), config.cutover)
    else:
        plan = plan_for(RolloutPolicy(), CutoverPolicy())
    result = replay(PrometheusSource(ns.prometheus_url, lag_s=0.0), ns.slug, plan, soak_started, start, end, step)
    if ns.json:
        def step_json(at: datetime, decision: Any) -> dict[str, Any]:
            reasons, checks = decision_to_json(decision)
            return {"at": at.isoformat(), "action": str(decision.action), "verdict": str(decision.verdict),
                    "reasons": reasons, "checks": checks}

        first = result.first_action
        print(json.dumps({"tenant": ns.slug, "soak_started_at": soak_started.isoformat(),
                          "steps": [step_json(s.at, s.decision) for s in result.steps],
                          "first_action": step_json(first.at, first.decision) if first else None,
                          "verdict": str(result.verdict)}, indent=2))
    else:
        print(f"{ns.slug}: replaying {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC every "
              f"{step.total_seconds():g} s; soak started {soak_started:%Y-%m-%d %H:%M:%S} UTC; nothing is changed")
        for s in result.steps:
            print(f"  {s.at:%Y-%m-%d %H:%M:%S} {s.decision.action} ({s.decision.verdict}): "
                  + "; ".join(s.decision.reasons))
        first = result.first_action
        print(f"first action: {first.at:%Y-%m-%d %H:%M:%S} {first.decision.action}: {first.decision.reasons[0]}"
              if first else "first action: none (continue throughout)")
        print(f"verdict: {result.verdict}")
    return {Verdict.GO: ExitStatus.OK, Verdict.NO_GO: ExitStatus.INVALID,
            Verdict.ERROR: ExitStatus.ENVIRONMENT}.get(result.verdict, ExitStatus.INCONCLUSIVE)


def cmd_rollout_explain(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.state.rollouts import RolloutStore

    store = RolloutStore(state_url(ns), ns.schema)
    rollout = store.rollouts().get(ns.slug)
    lock = store.locks.locks().get(ns.slug)
    decisions, events = store.history(ns.slug, ns.limit)
    if lock is not None:  # what routes the tenant comes first: a lock overrides the rollout's phase
        since = f" since {lock.created_at:%Y-%m-%d %H:%M} UTC" if lock.created_at else ""
        print(f"{ns.slug}: pinned to {lock.backend} by a rollback lock{since} ({lock.reason}; by {lock.actor}); "
              f"`{command_path()} rollout ack {ns.slug}` releases it")
    if rollout is None and not decisions and not events:
        print(f"{ns.slug}: no rollout recorded (the decider starts one when the tenant is declared on v2)")
        return ExitStatus.OK
    if rollout is not None:
        started = f"{rollout.soak_started_at:%Y-%m-%d %H:%M} UTC"
        paused = " (paused while the lock pins it)" if lock is not None and rollout.phase == "soaking" else ""
        print(f"{ns.slug}: rollout {rollout.phase.replace('_', ' ')}{paused}; soak started {started}")
    latest = decisions[0].at if decisions else None
    story: list[tuple[datetime, str, list[dict[str, Any]] | None, bool]] = [
        (at, f"decision: {action} ({verdict}){' [dry run]' if dry else ''}: " + "; ".join(reasons), checks,
         at == latest)
        for at, action, verdict, dry, reasons, checks in decisions]
    story += [(at, f"{kind} by {actor}: {_event_detail(kind, detail)}", None, False)
              for at, kind, actor, detail in events]
    for at, line, checks, newest in sorted(story, key=lambda item: item[0]):
        print(f"  {at:%Y-%m-%d %H:%M:%S} {line}")
        for check in checks or []:
            if newest or check["outcome"] != "pass":
                print("      " + _check_story(check))
    return ExitStatus.OK


def _check_story(check: dict[str, Any]) -> str:
    """One check in the explain's terms: its outcome and why, its baseline, its test, how close it is."""
    inputs = check.get("inputs") or {}
    line = f"{check['name']}: {check['outcome']} - {check['reason']}"
    if "baseline" in inputs:
        line += (f"\n        baseline: {inputs['baseline']}; tolerable rate in the last slice "
                 f"{inputs.get('tolerable', 0):.2%}")
    if check.get("test"):
        line += f"\n        test: {check['test']}; {check['threshold']}"
    if "recent_power" in inputs:  # promotion's power floor: could the last hour have shown a regression?
        power = inputs["recent_power"]
        together = f", {power['together']:.0%} on every route together" if "together" in power else ""
        line += (f"\n        recent evidence: a regression to {power['harm']:.2%} over the last hour would be refused "
                 f"{power['probability']:.0%} of the time{together} (need {power['target']:.0%}; "
                 f"{power['recent']} of v2's requests in the last hour, {power['needed']} would do alone)")
    if "statistic" in inputs and inputs.get("threshold"):
        share = inputs["statistic"] / inputs["threshold"]
        line += (f"\n        closest alternative {inputs.get('alternative')}: {inputs['statistic']:.1f} of "
                 f"{inputs['threshold']:.1f} ({share:.0%} of the way to a rollback)")
    return line

def _event_detail(kind: str, detail: dict[str, Any]) -> str:
    from controlplane.state.events import EventKind

    if kind == EventKind.CUTOVER_STARTED:
        checks = ", ".join(f"{c['name']} {'ok' if c['ok'] else 'OVERRIDDEN' if c.get('override') else 'failed'}"
                           for c in detail.get("checks", []))
        reason = f"; override reason: {detail['reason']}" if detail.get("reason") else ""
        return f"{detail.get('from')} -> {detail.get('to')}; preflight: {checks}{reason}"
    return json.dumps(detail)
