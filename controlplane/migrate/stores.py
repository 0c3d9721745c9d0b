"""v1's two store generations behind one interface, both read-only.

- `sqlite:PATH`: the seed's `orders` table in `orders.db`, opened with `mode=ro` (never written,
  readable while v1 writes, rollback journal or WAL).
- `postgresql://...`: the later generation's `payment_orders` table, read in one read-only
  transaction through a server-side cursor (one consistent snapshot, bounded memory). Its
  `TIMESTAMP` columns hold `NOW()` in the server's time zone; they are read as `timestamptz` in
  that same zone (set PGTZ only if v1's connections set one).

`store_for` picks the store from its name; anything else is refused, never guessed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from controlplane.errors import UsageProblem, first_line
from controlplane.migrate.report import MigrationProblem
from controlplane.migrate.rows import RawOrder

PAGE_ROWS: Final = 10_000
LOOKUP_IDS: Final = 500  # ids per lookup query (SQLite's default limit on parameters is 999)
_COLUMNS: Final = "id, customer_name, email, phone, amount, payment_method, status"
_SECRET_PARAMETERS: Final = ("password", "sslpassword")  # never printed in a store's argument
CONNECT_TIMEOUT_S: Final = 10


class V1Store(Protocol):
    """v1's orders, read without writing anything."""

    @property
    def name(self) -> str:
        """What to call the store in messages (never a password)."""
        ...

    @property
    def argument(self) -> str:
        """How to name the store again in a printed command (`--from`): exact, but for a password,
        which is replaced by PASSWORD for ops to fill in."""
        ...

    def count(self) -> int: ...

    def pages(self) -> Iterator[list[RawOrder]]:
        """Every order, a page at a time."""
        ...

    def held(self, order_ids: Collection[str]) -> set[str]:
        """Which of these ids the store holds."""
        ...


def store_for(spec: str) -> V1Store:
    """`sqlite:PATH` or `postgresql://...` (as `--from` takes it)."""
    if spec.startswith("sqlite:") and spec.removeprefix("sqlite:"):
        return SqliteStore(Path(spec.removeprefix("sqlite:")))
    if spec.startswith(("postgresql://", "postgres://")):
        return PostgresStore(spec)
    raise UsageProblem(f"--from {spec[:40]!r}: v1's store is sqlite:PATH (orders.db) or postgresql://... "
                       "(the payment_orders table)")


def _chunks(order_ids: Collection[str]) -> Iterator[list[str]]:
    ids = list(order_ids)
    for at in range(0, len(ids), LOOKUP_IDS):
        yield ids[at:at + LOOKUP_IDS]


def open_sqlite(path: Path) -> sqlite3.Connection:
    """v1's orders.db, read-only; a file that is not one is refused."""
    if not path.exists():
        raise MigrationProblem(f"{path}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM orders LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise MigrationProblem(f"{path}: not a v1 orders database ({exc})") from None
    return conn


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def name(self) -> str:
        return f"sqlite:{self.path}"

    @property
    def argument(self) -> str:
        return self.name

    def count(self) -> int:
        conn = open_sqlite(self.path)
        try:
            row = conn.execute("SELECT count(*) FROM orders").fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()

    def held(self, order_ids: Collection[str]) -> set[str]:
        found: set[str] = set()
        conn = open_sqlite(self.path)
        try:
            for chunk in _chunks(order_ids):
                marks = ", ".join("?" * len(chunk))
                found.update(row[0] for row in conn.execute(f"SELECT id FROM orders WHERE id IN ({marks})", chunk))
        finally:
            conn.close()
        return found

    def pages(self) -> Iterator[list[RawOrder]]:
        conn = open_sqlite(self.path)
        try:
            try:
                cursor = conn.execute(f"SELECT {_COLUMNS}, created_at, updated_at FROM orders")
            except sqlite3.OperationalError as exc:  # a variant without the time columns
                raise MigrationProblem(f"{self.path}: {exc} (v1's orders table carries created_at and "
                                       "updated_at)") from None
            while rows := cursor.fetchmany(PAGE_ROWS):
                yield [RawOrder(*row) for row in rows]
        finally:
            conn.close()


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def name(self) -> str:
        try:
            info = conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            return "postgresql://(unreadable address)"
        user = f"{info['user']}@" if info.get("user") else ""
        port = f":{info['port']}" if info.get("port") else ""
        return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"

    @property
    def carries_password(self) -> bool:
        """The URL holds a password (`user:password@`, `?password=`, `?sslpassword=`)."""
        parts = urlsplit(self.url)
        return parts.password is not None or any(
            key in _SECRET_PARAMETERS for key, _ in parse_qsl(parts.query, keep_blank_values=True))

    @property
    def argument(self) -> str:
        if "://" not in self.url:  # key=value form
            try:
                info = conninfo_to_dict(self.url)
            except psycopg.ProgrammingError:
                return "postgresql://..."
            return make_conninfo("", **{**info, **{key: "PASSWORD" for key in _SECRET_PARAMETERS if info.get(key)}})
        if not self.carries_password:
            return self.url
        parts = urlsplit(self.url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:PASSWORD@{netloc.rpartition('@')[2]}"
        # A password may ride in the query too (?password=, ?sslpassword=): masked there as well.
        masked = urlencode([(key, "PASSWORD" if key in _SECRET_PARAMETERS else value)
                            for key, value in parse_qsl(parts.query, keep_blank_values=True)], quote_via=quote)
        # Put together by hand: urlunsplit drops the `//` of an empty host (postgresql:///db?host=/run/...).
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{masked}" if masked else "") + (
            f"#{parts.fragment}" if parts.fragment else "")

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise MigrationProblem(f"{self.name}: cannot connect ({first_line(exc)})") from None
        conn.read_only = True  # every transaction below is BEGIN ... READ ONLY
        return conn

    def _problem(self, exc: psycopg.Error) -> MigrationProblem:
        what = exc.diag.message_primary or type(exc).__name__
        return MigrationProblem(f"{self.name}: {what} (v1's PostgreSQL generation keeps its orders in "
                                "payment_orders)")

    def count(self) -> int:
        with self._connect() as conn:
            try:
                with conn.transaction():
                    row = conn.execute("SELECT count(*) FROM payment_orders").fetchone()
            except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege) as exc:
                raise self._problem(exc) from None
        return int(row[0]) if row else 0

    def held(self, order_ids: Collection[str]) -> set[str]:
        found: set[str] = set()
        with self._connect() as conn:
            try:
                for chunk in _chunks(order_ids):
                    with conn.transaction():
                        rows = conn.execute("SELECT id FROM payment_orders WHERE id = ANY(%s)", (chunk,)).fetchall()
                    found.update(str(row[0]) for row in rows)
            except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege) as exc:
                raise self._problem(exc) from None
        return found

    def pages(self) -> Iterator[list[RawOrder]]:
        with self._connect() as conn:
            try:
                with conn.transaction(), conn.cursor(name="v1_payment_orders") as cursor:
                    cursor.execute(f"SELECT {_COLUMNS}, created_at::timestamptz, updated_at::timestamptz "
                                   "FROM payment_orders")
                    while rows := cursor.fetchmany(PAGE_ROWS):
                        yield [RawOrder(*row) for row in rows]
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn,
                    psycopg.errors.InsufficientPrivilege) as exc:
                raise self._problem(exc) from None
