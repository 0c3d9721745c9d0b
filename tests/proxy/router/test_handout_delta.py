"""A worker takes a tenants-only change as a delta from the snapshot it holds: the same routes and the
same gauges as the full snapshot would give, and the full snapshot whenever the delta cannot say it."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from controlplane.config import ConfigFile
from controlplane.config.locks import Lock
from proxy.router.handout import RoutingPublisher, load_delta, load_published
from proxy.router.metrics import ProxyMetrics
from proxy.router.state import RouterState
from tests.conftest import routing_yaml
from tests.proxy.router.test_handout import save

V1, V2 = "http://127.0.0.1:1", "http://127.0.0.1:2"
TENANTS = """\
buatfilm: {backend: v1, hosts: [shop.example.com]}
demo: {backend: v2}
gamma: {backend: v2, shadow: {sample_rate: 0.5}}
"""
# Every kind of tenant change at once: moved (where a lock takes hold), given other hosts, mirrored,
# removed, added.
CHANGED = """\
buatfilm: {backend: v2, hosts: [store.example.com]}
demo: {backend: v2, shadow: {sample_rate: 1.0}}
zeta: {backend: v2, webhooks: primary}
"""
DEMO_PRIMARY = TENANTS.replace("demo: {backend: v2}", "demo: {backend: v2, webhooks: primary}")


def routing(tenants: str, **options: str) -> str:
    return routing_yaml(V1, V2, tenants, v1_tenants=["buatfilm"], **options)


class Worker:
    """A worker's state, built (as a forked worker is) from the supervisor's latest snapshot."""

    def __init__(self, publisher: RoutingPublisher, path: Path) -> None:
        self.registry = CollectorRegistry()
        self.state = RouterState(ConfigFile(path), ProxyMetrics(self.registry), published=publisher.latest)
        # A rollback lock made against an entry the change writes (lapsed until then), and one refused.
        self.state.apply_locks({"buatfilm": Lock("buatfilm", "v1", "v2", "rollback", "ops"),
                                "gamma": Lock("gamma", "v1", "v2", "rollback", "ops")})  # refused: not v1's
        self.handout = publisher.attach()
        self.publisher = publisher

    def take(self) -> None:
        """What `follow` does on a notice: the delta when it starts from our snapshot, else the full."""
        self.state.take(*self.state._load(self.handout, self.publisher.latest.seq))

    def take_full(self) -> None:
        self.state.take(load_published(self.publisher.outcome_path), None)

    def exposition(self) -> list[str]:
        """Every series, but the times of each worker's own clock (its watcher's run, series creation)."""
        text = generate_latest(self.registry).decode()
        return [line for line in text.splitlines() if "watch_last_run" not in line and "_created" not in line]


class Supervisor:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "routing.yaml"
        save(self.path, routing(TENANTS))
        self.publisher = RoutingPublisher(ConfigFile(self.path, settle_s=0))

    def worker(self) -> Worker:
        return Worker(self.publisher, self.path)

    def publish(self, text: str) -> None:
        save(self.path, text)
        self.publisher.poll(forced=True)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path)
    try:
        yield sup
    finally:
        sup.publisher.close()


def assert_same_tables(a: Worker, b: Worker) -> None:
    ta, tb = a.state.table, b.state.table
    assert ta.generation == tb.generation and ta.config.digest == tb.config.digest
    assert list(ta.routes.items()) == list(tb.routes.items())
    assert ta.refused_locks == tb.refused_locks and ta.tenants_on == tb.tenants_on and ta.shadowed == tb.shadowed
    assert dict(ta.config.host_aliases) == dict(tb.config.host_aliases)
    assert list(ta.config.tenants.items()) == list(tb.config.tenants.items())
    assert ta.describe() == tb.describe()
    assert a.exposition() == b.exposition()


def test_a_delta_reload_gives_the_routes_and_gauges_of_a_full_reload(supervisor: Supervisor) -> None:
    by_delta, in_full = supervisor.worker(), supervisor.worker()
    unchanged_before = by_delta.state.table.routes["demo"]
    supervisor.publish(routing(CHANGED))
    news = load_delta(by_delta.handout.delta_path)
    assert news.delta is not None and news.base_generation == 1 and news.generation == 2
    by_delta.take()
    in_full.take_full()
    assert_same_tables(by_delta, in_full)
    assert by_delta.state.table.route_for("zeta") is not None and by_delta.state.table.route_for("gamma") is None
    buatfilm = by_delta.state.table.route_for("buatfilm")
    # The file now says v2, the entry the rollback lock was made against: the lock holds it on v1.
    assert buatfilm is not None and buatfilm.backend == "v1" and buatfilm.declared_backend == "v2"
    assert by_delta.state.table.rule.host_claim("store.example.com") == "buatfilm"
    # And a second one, back, from the patched snapshot: the worker's base is now generation 2.
    supervisor.publish(routing(TENANTS))
    assert load_delta(by_delta.handout.delta_path).base_generation == 2
    by_delta.take()
    in_full.take_full()
    assert_same_tables(by_delta, in_full)
    assert by_delta.state.table.routes["demo"] == unchanged_before


def test_only_the_changed_tenants_routes_are_worked_out_again(supervisor: Supervisor) -> None:
    worker = supervisor.worker()
    before = worker.state.table
    supervisor.publish(routing(DEMO_PRIMARY))
    worker.take()
    assert worker.state.table.generation == 2
    assert worker.state.table.routes["gamma"] is before.routes["gamma"]  # shared, not rebuilt
    assert not worker.state.table.routes["demo"].webhooks_to_both


def test_a_change_beyond_tenants_is_taken_from_the_full_snapshot(supervisor: Supervisor) -> None:
    worker, in_full = supervisor.worker(), supervisor.worker()
    supervisor.publish(routing(CHANGED, timeouts=", read_timeout_s: 7"))
    assert load_delta(worker.handout.delta_path).delta is None
    worker.take()
    in_full.take_full()
    assert_same_tables(worker, in_full)
    assert worker.state.table.routes["zeta"].upstream.read_timeout_s == 7  # every route built again
    assert worker.state.table.config.upstreams["v2"].read_timeout_s == 7


def test_a_worker_on_another_base_takes_the_full_snapshot(supervisor: Supervisor) -> None:
    """A worker that missed an outcome (busy, or started earlier) holds an older base than the delta's."""
    behind, current = supervisor.worker(), supervisor.worker()
    supervisor.publish(routing(DEMO_PRIMARY))
    current.take()
    supervisor.publish(routing(CHANGED))
    news = load_delta(behind.handout.delta_path)
    assert news.delta is not None and news.base_generation == 2 != behind.state.published.generation
    behind.take()  # generation 1 -> 3, in full
    current.take()  # generation 2 -> 3, by the delta
    assert behind.state.table.generation == current.state.table.generation == 3
    assert list(behind.state.table.routes.items()) == list(current.state.table.routes.items())
    assert behind.state.table.refused_locks == current.state.table.refused_locks


def test_a_rejected_file_is_taken_as_a_delta_that_keeps_the_snapshot(supervisor: Supervisor) -> None:
    worker = supervisor.worker()
    config = worker.state.table.config
    supervisor.publish(routing(TENANTS) + "  demo: {backend: v2}\n")  # a duplicate key: rejected
    news = load_delta(worker.handout.delta_path)
    assert not news.ok and news.delta is not None and news.base_generation == news.generation == 1
    worker.take()
    assert worker.state.table.config is config and worker.state.table.generation == 1
    assert not worker.state.last_reload_ok and worker.state.last_issues
    assert worker.state.published.seq == supervisor.publisher.latest.seq


def test_an_unreadable_delta_falls_back_to_the_full_snapshot(supervisor: Supervisor) -> None:
    worker = supervisor.worker()
    supervisor.publish(routing(CHANGED))
    worker.handout.delta_path.write_bytes(b"not a pickle")
    worker.take()
    assert worker.state.table.generation == 2 and "zeta" in worker.state.table.routes


def test_a_table_not_of_the_deltas_base_is_built_again_in_full(supervisor: Supervisor) -> None:
    """The delta patches routes only of the table built from its base snapshot; any other is rebuilt."""
    worker = supervisor.worker()
    table = worker.state.table
    supervisor.publish(routing(DEMO_PRIMARY))
    news = load_delta(worker.handout.delta_path)
    assert news.delta is not None
    new = news.applied_to(worker.state.published).config
    other_base = pickle.loads(pickle.dumps(table.config))  # the same content, another snapshot
    swap = worker.state.prepare_delta(other_base, new, 2, news.delta)
    assert swap.table.routes["gamma"] is not table.routes["gamma"]
    assert swap.table.routes == worker.state.prepare_delta(table.config, new, 2, news.delta).table.routes
