"""Writing v2's orders into v1's own store, both generations, as v1 itself writes them: the SQLite
`orders` file and the PostgreSQL `payment_orders` table, v1's column names, its status spelling,
`payment_method` 'midtrans', amounts in its column type, times as its defaults write them.

v1 is the store's other writer, so every write is short: a few dozen orders per transaction; the
SQLite file is locked with BEGIN IMMEDIATE (v1 waits at most that long; a busy file is waited for
up to `busy_timeout_s`, then the batch is tried again, a bounded number of times); PostgreSQL rows
are locked FOR UPDATE with a lock timeout. Inside the transaction v1's row is read and the decision
(rows.py) made on what it holds then, so a status v1 wrote a moment ago is never overwritten with an
older one. v1's store is never created or altered here: a missing file or table is refused."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import psycopg

from controlplane.errors import first_line
from controlplane.migrate.report import MigrationProblem
from controlplane.migrate.stores import CONNECT_TIMEOUT_S, PostgresStore, SqliteStore, V1Store
from controlplane.reverse.rows import V1_PAYMENT_METHOD, Action, Spelling, V2Order, action_for, sqlite_time, v1_spelling

BATCH_ORDERS: Final = 50  # per transaction: v1 waits for at most one batch
BUSY_TIMEOUT_S: Final = 5.0
BUSY_ATTEMPTS: Final = 5  # a batch that found the file busy this many times in a row fails the pass
LOCK_TIMEOUT_MS: Final = 2000


class ReverseSyncProblem(MigrationProblem):
    """A reverse pass could not use one of the stores (the message says why and what to do): `side`
    'v1' (its store) or 'v2' (v2's database). Nothing of the batch it was on was written."""

    def __init__(self, message: str, side: str = "v1") -> None:
        super().__init__(message)
        self.side = side


@dataclass
class Written:
    """What one pass did to v1's store."""

    counts: dict[Action, int] = field(default_factory=lambda: dict.fromkeys(Action, 0))
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (order id, v1's status): left alone
    busy_retries: int = 0

    @property
    def copied(self) -> int:
        return self.counts[Action.INSERT] + self.counts[Action.UPDATE]

    def left_alone_lines(self) -> list[str]:
        """One line per order whose v1 status is none of v1's spellings (what ops look at)."""
        return [f"  {order_id}: v1 holds status {status!r}, none of its spellings: left alone"
                for order_id, status in self.unknown]

    def add(self, other: Written) -> None:
        for action, n in other.counts.items():
            self.counts[action] += n
        self.unknown += other.unknown
        self.busy_retries += other.busy_retries


class V1Writer(Protocol):
    @property
    def name(self) -> str: ...

    def write(self, orders: Sequence[V2Order]) -> Written:
        """Each order into v1's store, never regressing a row v1 holds."""
        ...

    def statuses(self, order_ids: Collection[str]) -> dict[str, Any]:
        """The raw status v1 holds for each of these ids it holds."""
        ...

    def spelling(self) -> Spelling:
        """The status spelling v1 uses in this store (most of its rows; lower case for an empty one)."""
        ...


def writer_for(store: V1Store, spelling: Spelling | None = None) -> V1Writer:
    if isinstance(store, SqliteStore):
        return SqliteWriter(store.path, spelling)
    if isinstance(store, PostgresStore):
        return PostgresWriter(store.url, store.name, spelling)
    raise ReverseSyncProblem(f"{store.name}: the reverse sync writes sqlite:PATH or postgresql://... stores")


def _batches(orders: Sequence[V2Order]) -> Iterator[Sequence[V2Order]]:
    for at in range(0, len(orders), BATCH_ORDERS):
        yield orders[at:at + BATCH_ORDERS]


def _chunks(ids: Collection[str], size: int = 500) -> Iterator[list[str]]:
    listed = list(ids)
    for at in range(0, len(listed), size):
        yield listed[at:at + size]


def _decide(batch: Sequence[V2Order], held: dict[str, Any], out: Written) -> list[tuple[Action, V2Order]]:
    todo: list[tuple[Action, V2Order]] = []
    for order in batch:
        action = action_for(held.get(order.order_id), order.status)
        out.counts[action] += 1
        if action is Action.UNKNOWN_V1:
            out.unknown.append((order.order_id, str(held[order.order_id])[:40]))
        elif action in (Action.INSERT, Action.UPDATE):
            todo.append((action, order))
    return todo


class SqliteWriter:
    """The seed's orders.db (rollback journal: while a batch is written, v1's readers wait too)."""

    def __init__(self, path: Path, spelling: Spelling | None = None, *,
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._spelling = spelling
        self.busy_timeout_s = busy_timeout_s

    @property
    def name(self) -> str:
        return f"sqlite:{self.path}"

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise ReverseSyncProblem(f"{self.path}: no such file (the reverse sync writes v1's own orders.db; "
                                     "it never creates one)")
        conn = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=self.busy_timeout_s,
                               isolation_level=None)
        try:
            conn.execute("SELECT id, status, updated_at FROM orders LIMIT 1")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ReverseSyncProblem(f"{self.path}: not a v1 orders database ({exc})") from None
        return conn

    def spelling(self) -> Spelling:
        if self._spelling is None:
            conn = self._connect()
            try:
                row = conn.execute("SELECT coalesce(sum(status = upper(status) AND status <> lower(status)), 0), "
                                   "coalesce(sum(status = lower(status)), 0) FROM orders").fetchone()
            finally:
                conn.close()
            self._spelling = "upper" if row and row[0] > row[1] else "lower"
        return self._spelling

    def statuses(self, order_ids: Collection[str]) -> dict[str, Any]:
        conn = self._connect()
        try:
            return self._held(conn, order_ids)
        finally:
            conn.close()

    @staticmethod
    def _held(conn: sqlite3.Connection, order_ids: Collection[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for chunk in _chunks(order_ids):
            marks = ", ".join("?" * len(chunk))
            found.update(conn.execute(f"SELECT id, status FROM orders WHERE id IN ({marks})", chunk).fetchall())
        return found

    def write(self, orders: Sequence[V2Order]) -> Written:
        spelling = self.spelling()
        out = Written()
        conn = self._connect()
        try:
            for batch in _batches(orders):
                out.add(self._write_batch(conn, batch, spelling))
        except sqlite3.Error as exc:
            raise ReverseSyncProblem(f"{self.path}: {exc}") from None
        finally:
            conn.close()
        return out

    def _write_batch(self, conn: sqlite3.Connection, batch: Sequence[V2Order], spelling: Spelling) -> Written:
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            out = Written(busy_retries=attempt - 1)
            try:
                conn.execute("BEGIN IMMEDIATE")  # v1's own writes wait (busy timeout) until COMMIT
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.05 * attempt)
                continue
            try:
                for action, order in _decide(batch, self._held(conn, [o.order_id for o in batch]), out):
                    status = v1_spelling(order.status, spelling)
                    if action is Action.INSERT:
                        conn.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, "
                                     "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                     (order.order_id, order.name, order.email, order.phone, order.amount,
                                      V1_PAYMENT_METHOD, status, sqlite_time(order.created_at),
                                      sqlite_time(order.updated_at)))
                    else:
                        conn.execute("UPDATE orders SET status = ?, updated_at = ? WHERE id = ?",
                                     (status, sqlite_time(order.updated_at), order.order_id))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return out
        raise ReverseSyncProblem(f"{self.path}: busy for {BUSY_ATTEMPTS} attempts of {self.busy_timeout_s:g} s "
                                 "(v1 holds the file's lock that long); nothing of that batch was written, the "
                                 "next pass tries again")


class PostgresWriter:
    """The later generation's payment_orders (TIMESTAMP columns in the server's zone, NUMERIC amounts)."""

    def __init__(self, url: str, name: str, spelling: Spelling | None = None) -> None:
        self.url = url
        self._name = name
        self._spelling = spelling

    @property
    def name(self) -> str:
        return self._name

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise ReverseSyncProblem(f"{self.name}: cannot connect ({first_line(exc)})") from None

    def _problem(self, exc: psycopg.Error) -> ReverseSyncProblem:
        return ReverseSyncProblem(f"{self.name}: {exc.diag.message_primary or type(exc).__name__} (the reverse "
                                  "sync writes v1's own payment_orders table as v1's role; it never creates it)")

    def spelling(self) -> Spelling:
        if self._spelling is None:
            with self._connect() as conn:
                try:
                    row = conn.execute("SELECT count(*) FILTER (WHERE status = upper(status) AND status <> "
                                       "lower(status)), count(*) FILTER (WHERE status = lower(status)) "
                                       "FROM payment_orders").fetchone()
                except psycopg.Error as exc:
                    raise self._problem(exc) from None
            self._spelling = "upper" if row and row[0] > row[1] else "lower"
        return self._spelling

    def statuses(self, order_ids: Collection[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._connect() as conn:
            try:
                for chunk in _chunks(order_ids):
                    found.update(conn.execute("SELECT id, status FROM payment_orders WHERE id = ANY(%s)",
                                              (chunk,)).fetchall())
            except psycopg.Error as exc:
                raise self._problem(exc) from None
        return found

    def write(self, orders: Sequence[V2Order]) -> Written:
        spelling = self.spelling()
        out = Written()
        with self._connect() as conn:
            try:
                for batch in _batches(orders):
                    with conn.transaction():
                        conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                        held = dict(conn.execute("SELECT id, status FROM payment_orders WHERE id = ANY(%s) "
                                                 "FOR UPDATE", ([o.order_id for o in batch],)).fetchall())
                        for action, order in _decide(batch, held, out):
                            self._apply(conn, action, order, v1_spelling(order.status, spelling), out)
            except psycopg.Error as exc:
                raise self._problem(exc) from None
        return out

    @staticmethod
    def _apply(conn: psycopg.Connection[tuple[Any, ...]], action: Action, order: V2Order, status: str,
               out: Written) -> None:
        if action is Action.UPDATE:
            conn.execute("UPDATE payment_orders SET status = %s, updated_at = %s::timestamptz WHERE id = %s",
                         (status, order.updated_at, order.order_id))
            return
        inserted = conn.execute(
            "INSERT INTO payment_orders (id, customer_name, email, phone, amount, payment_method, status, "
            "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz) "
            "ON CONFLICT (id) DO NOTHING",
            (order.order_id, order.name, order.email, order.phone, order.amount, V1_PAYMENT_METHOD, status,
             order.created_at, order.updated_at)).rowcount
        if not inserted:  # v1 created the same id a moment ago (FOR UPDATE cannot lock a missing row): v1's stays
            out.counts[Action.INSERT] -= 1
            out.counts[Action.KEPT_V1] += 1
