"""`dualstack shadow report` on real traffic: the funnel's creates and polls through the real router
to v1's PostgreSQL generation (the stand-in, faithful to the real service), mirrored to the real v2,
v1's orders migrated into v2 by the real migration. Each way the real v1 differs from v2 lands in its
own class of the report:
- sync lag: an order v1 had just created, not migrated yet when its status was read (v2 answered 404,
  then found it when asked again after the migration): "not replicated", outside the match rate;
- the status spelling (`pending` on v1, `PENDING_PAYMENT` on v2): a value difference on a state field,
  a mismatch, never noise (the primary is asked twice on every read, so noise is being learned);
- the amount's type (`"150000.00"` on v1, `150000` on v2): a type difference;
- no payment link (v1's `{"success": true}` while its Midtrans circuit is open): the field only v2 has.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from controlplane.cli import ExitStatus, run
from controlplane.migrate import PostgresStore, migrate
from proxy.router import keys
from tests.conftest import wait_until
from tests.fixtures.cutover_world import World

READ, CREATE = "GET /orders/{id}/status", "POST /payment/create"
# Asked again after this long: the test migrates the order well within it (a bound on a slow
# machine, never an assertion on time).
RECHECK_S = 5


async def test_each_difference_of_the_real_v1_lands_in_its_own_class(world_pg: World, tmp_path: Path) -> None:
    w, slug = world_pg, world_pg.tenant.slug
    routing = w.router.config_path.read_text()
    w.router.config_path.write_text(routing.replace(
        "backend: v1   # flipped by dualstack cutover\n",
        "backend: v1   # flipped by dualstack cutover\n"
        f"    shadow: {{noise_sample_rate: 1, not_replicated_recheck_s: {RECHECK_S}}}\n"))
    await wait_until(lambda: w.router.app[keys.STATE].table.routes[slug].shadow is not None)
    assert w.v1_database_url is not None
    v1_store, db = PostgresStore(w.v1_database_url), w.stack.database

    def sent() -> float:
        return w.router.sample("dualstack_shadow_requests_total", tenant=slug, result="sent")

    def migrated() -> None:
        report = migrate(v1_store, db.app_url, slug, db.layout.schema)
        assert report.clean and not report.bad, report

    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, **kwargs: Any) -> Any:
            async with session.request(method, f"{w.router.url}{path}", headers={"Host": f"{slug}.agentbar.ai"},
                                       **kwargs) as response:
                assert response.status == 200, await response.text()
                assert response.headers["X-Dualstack-Backend"] == "v1"
                return await response.json(content_type=None)

        def order(order_id: str) -> dict[str, Any]:
            return {"orderId": order_id, "amount": 150000, "email": "budi@example.com", "phone": "0812",
                    "name": "Budi", "paymentMethod": "bca"}

        # Spelling and type: an order both hold (migrated), read through the router.
        assert "paymentUrl" in await call("POST", "/payment/create", json=order("SPELL-1"))
        await asyncio.to_thread(migrated)
        assert (await call("GET", "/orders/SPELL-1/status"))["order"]["status"] == "pending"
        await wait_until(lambda: sent() == 2)
        # Sync lag: read before the migration; migrated before v2 is asked again.
        await call("POST", "/payment/create", json=order("LAG-1"))
        await call("GET", "/orders/LAG-1/status")
        await wait_until(lambda: sent() == 4, timeout_s=RECHECK_S)
        await asyncio.to_thread(migrated)
        await wait_until(lambda: w.router.sample("dualstack_shadow_requests_total", tenant=slug,
                                                 result="recheck") == 1, timeout_s=3 * RECHECK_S)
        # No payment link: Midtrans fails, v1's circuit opens, v1 answers without one.
        w.stack.midtrans.fail_next("snap", "500")
        assert await call("POST", "/payment/create", json=order("LINK-1")) == {"success": True}
    await wait_until(lambda: w.router.sample("dualstack_shadow_comparisons_total", tenant=slug) == 5)

    out = tmp_path / "report.json"

    async def reported() -> dict[str, Any]:
        code = await asyncio.to_thread(run, ["shadow", "report", "--tenant", slug, "--state-database-url",
                                             w.state.control_url, "--since", "1h", "--format", "json", "--out",
                                             str(out)])
        assert code == ExitStatus.OK
        return dict(json.loads(out.read_text()))

    data = await reported()
    for _ in range(100):  # the router writes its results once a second
        if data["comparisons"] == 5:
            break
        await asyncio.sleep(0.1)
        data = await reported()
    endpoints = {row["endpoint"]: row for row in data["endpoints"]}
    assert {k: endpoints[READ][k] for k in ("matches", "mismatches", "noise", "not_replicated")} == {
        "matches": 0, "mismatches": 1, "noise": 0, "not_replicated": 1}
    assert {k: endpoints[CREATE][k] for k in ("matches", "mismatches", "noise", "not_replicated")} == {
        "matches": 2, "mismatches": 1, "noise": 0, "not_replicated": 0}
    assert data["match_rate"] == 2 / 4  # the sync lag is outside the rate
    assert data["kinds"] == {"value_changed": 1, "type_changed": 1, "extra": 2}
    fields = {(f["endpoint"], f["path"]): (f["kind"], f["examples"][0]) for f in data["fields"]}
    assert fields == {
        (READ, "$.order.status"): ("value_changed", ["pending", "PENDING_PAYMENT"]),
        (READ, "$.order.totalAmount"): ("type_changed", ["150000.00", 150000]),
        (CREATE, "$.paymentUrl"): ("extra", [None, "[redacted]"]),
        (CREATE, "$.token"): ("extra", [None, "[redacted]"]),
    }
