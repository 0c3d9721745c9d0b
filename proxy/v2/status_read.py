"""The status read (`order_status()`, payments migration 0009) sent through libpq directly, on a
pooled connection lent to the caller alone.

Why not psycopg's cursor: the thank-you page's poll is most of v2's traffic, and psycopg's Python
layers (query conversion, the prepare manager, adapters, the generator-based wait, the row
factory) cost about 30 us of CPU a call, a quarter of the whole round trip (`bench/v2.py`). The SQL
is the same function, so row-level security decides exactly as before: one prepared statement,
run in its own implicit transaction (the connection is idle, in autocommit mode), which binds the
tenant with set_config(..., true) and ends at the statement's Sync. A session's first read
prepares the statement (a round trip of its own); every later one is one round trip.

What psycopg would otherwise guarantee is kept here:
- parameters go as text, which libpq ends at a NUL byte: an order id holding one is answered "no
  such order" without asking (the orders table's check admits no such id), so "A<NUL>B" never
  reads order "A";
- a call interrupted midway (cancelled, the server gone) closes the connection, so the pool never
  lends one with a result still in flight; an error from the server leaves it idle and usable;
- an error from the server is raised as psycopg's exception for its SQLSTATE (an outage is an
  OperationalError, answered 503 by the caller, as for every other query);
- the columns are checked against the types decoded here on each session's first read, so a
  migration that changes one fails with its name, not with a misread value.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import psycopg
from psycopg import pq
from psycopg.rows import DictRow

_TEXT_OID, _INT8_OID, _BOOL_OID = 25, 20, 16


def _flag(value: bytes, _: str) -> bool:
    return value == b"t"


def _whole(value: bytes, _: str) -> int:
    return int(value)


def _text(value: bytes, encoding: str) -> str:
    return value.decode(encoding)


# What order_status() returns, in order: (column, type OID, decoder of its text form).
_COLUMNS: Final[tuple[tuple[str, int, Callable[[bytes, str], Any]], ...]] = (
    ("order_id", _TEXT_OID, _text), ("payment_status", _TEXT_OID, _text), ("gross_amount", _INT8_OID, _whole),
    ("customer_name", _TEXT_OID, _text), ("email", _TEXT_OID, _text), ("has_snap", _BOOL_OID, _flag),
    ("recent", _BOOL_OID, _flag),
)
COLUMNS_SQL: Final = ", ".join(name for name, _, _ in _COLUMNS)
_STATEMENT: Final = b"dualstack_order_status"
_QUERY: Final = f"SELECT {COLUMNS_SQL} FROM order_status($1, $2, $3)".encode()
_UNDEFINED_STATEMENT: Final = b"26000"  # invalid_sql_statement_name: the statement is not (or no longer) there


class StatusReadConnection(psycopg.AsyncConnection[DictRow]):
    """A connection that knows whether its server session holds the prepared status read (the
    flag lives and dies with the session: a new connection prepares it on its first read)."""

    status_read_prepared: bool = False


async def read_order_status(conn: StatusReadConnection, tenant_id: uuid.UUID, order_id: str,
                            recent_s: float) -> dict[str, Any] | None:
    """The tenant's order as `order_status()` returns it (the columns above), or None. `conn` is idle,
    in autocommit mode, lent to this caller alone."""
    pgconn = conn.pgconn
    if (pgconn.transaction_status != pq.TransactionStatus.IDLE or not conn.autocommit
            or pgconn.pipeline_status != pq.PipelineStatus.OFF):
        raise psycopg.ProgrammingError(
            "the status read needs an idle connection in autocommit mode, out of pipeline mode; this one is "
            f"{pq.TransactionStatus(pgconn.transaction_status).name}, autocommit {conn.autocommit}, "
            f"pipeline {pq.PipelineStatus(pgconn.pipeline_status).name}")
    if "\0" in order_id:
        return None
    encoding = conn.info.encoding
    params = (str(tenant_id).encode(), order_id.encode(encoding), repr(float(recent_s)).encode())
    try:
        result = await _execute(conn, params)
        if result is None:  # the prepared statement is gone (a DISCARD on the session): prepare once more
            conn.status_read_prepared = False
            result = await _execute(conn, params)
        if result is None:
            raise psycopg.OperationalError(
                f"the prepared statement {_STATEMENT.decode()} vanished again right after it was prepared: is a "
                "transaction-mode pooler (PgBouncer) between v2 and PostgreSQL? v2 needs session pooling or none")
    except BaseException:
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            await conn.close()  # a result may still be in flight: the pool must never lend it
        raise
    if result.ntuples == 0:
        return None
    row: dict[str, Any] = {}
    for i, (name, _, decode) in enumerate(_COLUMNS):
        value = result.get_value(0, i)
        row[name] = None if value is None else decode(value, encoding)
    return row


async def _execute(conn: StatusReadConnection, params: Sequence[bytes]) -> pq.abc.PGresult | None:
    """The prepared read's result, preparing it first on a new session (and checking its columns on
    the first result); None when the server says the statement does not exist."""
    pgconn = conn.pgconn
    checked = conn.status_read_prepared
    if not checked:
        pgconn.send_prepare(_STATEMENT, _QUERY)
        await _flush(pgconn)
        _raise_for(await _last_result(pgconn), conn)
        conn.status_read_prepared = True
    pgconn.send_query_prepared(_STATEMENT, params)
    await _flush(pgconn)
    result = await _last_result(pgconn)
    if (result.status == pq.ExecStatus.FATAL_ERROR
            and result.error_field(pq.DiagnosticField.SQLSTATE) == _UNDEFINED_STATEMENT):
        return None
    _raise_for(result, conn)
    if not checked:
        _check_columns(result)
    return result


def _check_columns(result: pq.abc.PGresult) -> None:
    found = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
    types = [result.ftype(i) for i in range(result.nfields)]
    if found != [name for name, _, _ in _COLUMNS] or types != [oid for _, oid, _ in _COLUMNS]:
        raise psycopg.ProgrammingError(
            f"order_status() returns columns {list(zip(found, types, strict=True))}, where v2 reads "
            f"{[(name, oid) for name, oid, _ in _COLUMNS]} (name, type OID): the payments schema and v2 disagree")


def _raise_for(result: pq.abc.PGresult, conn: psycopg.AsyncConnection[Any]) -> None:
    if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        # psycopg's own mapping: a class for the SQLSTATE, else its class's (08xxx: OperationalError),
        # with the diagnostics attached (tests/proxy/v2/test_status_read.py pins it)
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)


async def _flush(pgconn: pq.abc.PGconn) -> None:
    """Send what libpq holds. As libpq asks: while the socket is full, also read what the server
    sends meanwhile (notices), or both sides could wait on each other."""
    while pgconn.flush():  # 1: some left in libpq's buffer, the socket full
        if await _ready(pgconn.socket, writable=True) == "read":
            pgconn.consume_input()


async def _last_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
    """Every result of the one query sent, read to the end (the connection is idle again); the last."""
    last: pq.abc.PGresult | None = None
    while True:
        pgconn.consume_input()  # raises OperationalError when the connection is lost
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                if last is None:
                    raise psycopg.OperationalError("the server closed the connection without an answer")
                return last
            last = result
        await _ready(pgconn.socket)


async def _ready(fileno: int, *, writable: bool = False) -> str:
    """Wait until the socket can be read ("read") or, with `writable`, written ("write")."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[str] = loop.create_future()
    loop.add_reader(fileno, _wake, ready, "read")
    if writable:
        loop.add_writer(fileno, _wake, ready, "write")
    try:
        return await ready
    finally:
        loop.remove_reader(fileno)
        if writable:
            loop.remove_writer(fileno)


def _wake(ready: asyncio.Future[str], how: str) -> None:
    if not ready.done():
        ready.set_result(how)
