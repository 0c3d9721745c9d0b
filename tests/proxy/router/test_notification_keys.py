"""The router's notification keys: one tenant's key through the router's own role, cached and kept
through a short PostgreSQL outage, bounded, and never in a log line or a repr."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from controlplane.db.tenants import NewTenant, TenantAdmin
from proxy.router.notification_keys import (
    DatabaseKeyStore,
    FileKeyStore,
    KeyStoreError,
    KeysUnavailable,
    key_store_from_environment,
)
from proxy.serving.signature import notification_signature, signature_is_valid
from tests.conftest import Database


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """A loopback TCP relay in front of PostgreSQL that can be cut (every connection dropped,
    new ones refused) and restored: the database going away as the router sees it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()
        self.server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.difference_update((writer, up_writer))


@pytest.fixture
def tenant(database: Database) -> tuple[str, str]:
    slug, key = "nk" + secrets.token_hex(3), "SB-Mid-server-" + secrets.token_hex(12)
    TenantAdmin(database.admin_url, database.layout).add(NewTenant(slug, slug, "pro", key, "sandbox"))
    return slug, key


@pytest.fixture
async def outage(database: Database) -> Outage:
    info = conninfo_to_dict(database.router_url)
    relay = Outage(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    await relay.start()
    yield relay
    if relay.server is not None:
        await relay.cut()


async def test_one_tenants_key_is_read_cached_and_checks_a_signature(database: Database,
                                                                     tenant: tuple[str, str]) -> None:
    slug, key = tenant
    store = DatabaseKeyStore(database.router_url, database.layout.schema)
    try:
        found = await store.key_for(slug)
        assert found is not None and found.reveal() == key
        assert await store.key_for("nobody-" + secrets.token_hex(2)) is None
        assert await store.key_for("Not A Slug!") is None  # never asked: no tenant can be named so
        assert store.queries == 2
        assert (await store.key_for(slug)) is not None and store.queries == 2  # cached
        signed = notification_signature("ORDER-1", "200", "10000.00", key)
        payload = {"order_id": "ORDER-1", "status_code": "200", "gross_amount": "10000.00", "signature_key": signed}
        assert signature_is_valid(payload, found.reveal())
    finally:
        await store.close()


async def test_keys_outlive_a_short_outage_and_never_reach_a_log_or_a_repr(
    database: Database, tenant: tuple[str, str], outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slug, key = tenant
    clock = Clock()
    url = make_conninfo(database.router_url, host="127.0.0.1", port=outage.port)
    store = DatabaseKeyStore(url, database.layout.schema, ttl_s=60, max_stale_s=600, retry_after_s=5, clock=clock)
    try:
        first = await store.key_for(slug)
        assert first is not None
        await outage.cut()
        clock.now += 120  # past the TTL: the key is asked for again, and the database is gone
        during = await store.key_for(slug)
        assert during is not None and during.reveal() == key  # the last key read still verifies
        asked = store.queries
        assert await store.key_for(slug) is not None and store.queries == asked  # left alone for retry_after_s
        with pytest.raises(KeysUnavailable):  # a tenant never read before: no key to fall back on
            await store.key_for("other" + secrets.token_hex(2))
        clock.now += 600  # the outage outlasts max_stale_s: the old key is no longer trusted
        with pytest.raises(KeysUnavailable):
            await store.key_for(slug)
        await outage.start()  # the database is back (on the same port)
        clock.now += 5
        back = await store.key_for(slug)
        assert back is not None and back.reveal() == key
        for text in (repr(store), str(store), repr(back), str(back), f"{back}", repr([back])):
            assert key not in text
        assert "cannot read the database" in caplog.text and "answers again" in caplog.text
    finally:
        await store.close()
    assert key not in caplog.text
    assert all(key not in str(record.args) for record in caplog.records)


async def test_the_cache_is_bounded(database: Database) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    slugs = ["b" + secrets.token_hex(3) for _ in range(3)]
    for slug in slugs:
        admin.add(NewTenant(slug, slug, "pro", "SB-Mid-server-" + secrets.token_hex(8), "sandbox"))
    store = DatabaseKeyStore(database.router_url, database.layout.schema, max_entries=2)
    try:
        await store.prefetch(slugs)
        assert len(store) == 2 and store.queries == 3
        assert await store.key_for(slugs[0]) is not None and store.queries == 4  # evicted first, read again
    finally:
        await store.close()


def write_keys(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


async def test_a_keys_file_is_private_strict_and_reread_when_changed(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    secret = "SB-Mid-server-" + secrets.token_hex(10)
    path = write_keys(tmp_path / "keys", f"# slug=key\nshop = {secret}\n\nother=SB-Mid-server-OTHER\n", 0o644)
    with pytest.raises(KeyStoreError, match=r"mode 0644 .*chmod 600"):
        FileKeyStore.load(path)
    os.chmod(path, 0o600)
    clock = Clock()
    store = FileKeyStore.load(path, check_every_s=2.0, clock=clock)
    found = await store.key_for("shop")
    assert found is not None and found.reveal() == secret and await store.key_for("nobody") is None
    assert secret not in repr(store)

    write_keys(path, f"shop={secret}\nthis line has the key {secret} but no equals sign\n")
    clock.now += 3
    assert await store.key_for("shop") is not None  # a broken edit keeps the last good keys
    assert f"{path}:2: expected slug=key" in caplog.text and secret not in caplog.text

    write_keys(path, "shop=SB-Mid-server-ROTATED\n")
    clock.now += 3
    rotated = await store.key_for("shop")
    assert rotated is not None and rotated.reveal() == "SB-Mid-server-ROTATED"
    assert await store.key_for("other") is None

    for text, message in ((f"shop={secret}\nshop=x\n", "tenant shop appears twice"),
                          (f"Not A Slug={secret}\n", "is not a tenant slug")):
        with pytest.raises(KeyStoreError, match=message) as info:
            FileKeyStore.load(write_keys(path, text))
        assert secret not in str(info.value)


def test_the_environment_names_one_source(tmp_path: Path, database: Database) -> None:
    path = write_keys(tmp_path / "keys", "shop=SB-Mid-server-X\n")
    assert isinstance(key_store_from_environment({"DUALSTACK_MIDTRANS_KEYS_FILE": str(path)}), FileKeyStore)
    store = key_store_from_environment({"DUALSTACK_ROUTER_DATABASE_URL": database.router_url})
    assert isinstance(store, DatabaseKeyStore) and "password" not in repr(store)
    assert key_store_from_environment({}) is None
    with pytest.raises(KeyStoreError, match="not both"):
        key_store_from_environment({"DUALSTACK_MIDTRANS_KEYS_FILE": str(path),
                                    "DUALSTACK_ROUTER_DATABASE_URL": database.router_url})
