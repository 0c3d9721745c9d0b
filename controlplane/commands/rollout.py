"""`dualstack rollout ...`: simulate, decide, explain, and the manual actions (rollback, ack, promote,
hold, resume, status)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from controlplane.commands.options import (
    notify_url,
    state_url,
)
from controlplane.config import load_config
from controlplane.errors import ExitStatus, UsageProblem


def cmd_rollout_simulate(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.rollout.decide import Policy
    from controlplane.rollout.simulate import summary

    print(f"{ns.seeds} seeded run(s) per scenario; regressions injected 3 h into a 24 h soak; "
          "one decision per simulated minute\n")
    print("\n".join(summary(Policy(), ns.seeds)))
    return ExitStatus.OK

def cmd_rollout_locks(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.config.locks import effective_backend
    from controlplane.rollout.locks import LockStore, actor
    from controlplane.rollout.notify import notify

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
        print(f"{ns.slug}: pinned to v1 ({ns.reason}); every router applies it within 5 s. "
              f"`dualstack rollout ack {ns.slug}` releases it.")
        return ExitStatus.OK
    for tenant in store.release_stale(config, actor()):
        print(f"{tenant}: lock released, its routing entry changed since the rollback")
    locks = store.locks()
    print(f"{'tenant':24} {'declared':9} {'effective':10} why")
    for slug, spec in sorted(config.tenants.items()):
        backend, why = effective_backend(spec.backend, locks.get(slug))
        print(f"{slug:24} {spec.backend:9} {backend:10} {why or '-'}")
    return ExitStatus.OK

def cmd_rollout_decide(ns: argparse.Namespace) -> ExitStatus:
    import time
    from datetime import UTC, datetime

    from controlplane.rollout.decider import RolloutStore, run_once
    from controlplane.rollout.embedded import EmbeddedSource
    from controlplane.rollout.sources import EvidenceSource, PrometheusSource

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
            print(f"{datetime.now(UTC):%H:%M:%S} {tenant}: {what}", flush=True)
        if ns.once:
            return ExitStatus.OK
        time.sleep(ns.interval)

def cmd_rollout_manual(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.rollout.decider import RolloutStore
    from controlplane.rollout.locks import actor
    from controlplane.rollout.notify import notify

    phase = {"promote": "promoted", "hold": "held", "resume": "soaking"}[ns.rollout_command]
    store = RolloutStore(state_url(ns), ns.schema)
    if not store.set_phase(ns.slug, phase, ns.rollout_command, actor(), ns.reason):
        raise UsageProblem(f"no rollout for '{ns.slug}' (the decider starts one when the tenant is declared on v2)")
    message = f"dualstack: {ns.slug} {ns.rollout_command} by {actor()} - {ns.reason}"
    delivered = notify(notify_url(ns), message)
    print(f"{ns.slug}: {phase.replace('_', ' ')} ({ns.reason})" + (" - notified" if delivered else ""))
    return ExitStatus.OK

def cmd_rollout_explain(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.rollout.decider import RolloutStore

    store = RolloutStore(state_url(ns), ns.schema)
    rollout = store.rollouts().get(ns.slug)
    decisions, events = store.history(ns.slug, ns.limit)
    if rollout is None and not decisions and not events:
        print(f"{ns.slug}: no rollout recorded (the decider starts one when the tenant is declared on v2)")
        return ExitStatus.OK
    if rollout is not None:
        started = f"{rollout.soak_started_at:%Y-%m-%d %H:%M} UTC"
        print(f"{ns.slug}: {rollout.phase.replace('_', ' ')}; soak started {started}")
    story = [(at, f"decision: {action} ({verdict}){' [dry run]' if dry else ''}: " + "; ".join(reasons), checks)
             for at, action, verdict, dry, reasons, checks in decisions]
    story += [(at, f"{kind} by {actor}: {_event_detail(kind, detail)}", None) for at, kind, actor, detail in events]
    for at, line, checks in sorted(story, key=lambda item: item[0]):
        print(f"  {at:%Y-%m-%d %H:%M:%S} {line}")
        for check in checks or []:
            if check["outcome"] != "pass":
                print(f"      {check['name']}: {check['outcome']} - {check['reason']} [{check['test']}; "
                      f"{check['threshold']}]")
    return ExitStatus.OK

def _event_detail(kind: str, detail: dict[str, Any]) -> str:
    if kind == "cutover_started":
        checks = ", ".join(f"{c['name']} {'ok' if c['ok'] else 'OVERRIDDEN' if c.get('override') else 'failed'}"
                           for c in detail.get("checks", []))
        reason = f"; override reason: {detail['reason']}" if detail.get("reason") else ""
        return f"{detail.get('from')} -> {detail.get('to')}; preflight: {checks}{reason}"
    return json.dumps(detail)
