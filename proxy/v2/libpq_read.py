"""The status read (`order_status()`, migration 0009) sent through libpq directly, on a pooled
connection v2 owns for the call.

Why not psycopg's cursor: the thank-you page's poll is most of v2's traffic, and psycopg's Python
layers (query conversion, the prepare manager, adapters, the generator-based wait, the row
factory) cost about 30 us of CPU a call, a quarter of the whole round trip with PostgreSQL
(`bench/v2.py`). The SQL is the same function, so row-level security decides exactly as before:
one prepared statement, run in its own implicit transaction (the connection is idle, in autocommit
mode), which binds the tenant with set_config(..., true) and ends at the statement's Sync.

What psycopg would otherwise guarantee is kept here:
- parameters go as text, which libpq ends at a NUL byte: an order id holding one is answered "no
  such order" without asking (the orders table's check admits no such id), so "A\\0B" never
  reads order "A";
- a call interrupted midway (cancelled, the server gone) closes the connection, so the pool never
  lends one with a result still in flight;
- an error from the server is raised as psycopg's exception for its SQLSTATE (an outage is an
  OperationalError, answered 503 by the caller, as for every other query).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg import pq
from psycopg.rows import DictRow

_STATEMENT: Final = b"dualstack_order_status"
_QUERY: Final = b"SELECT order_id, payment_status, gross_amount, customer_name, email, has_snap, recent " \
                b"FROM order_status($1, $2, $3)"
_COLUMNS: Final = ("order_id", "payment_status", "gross_amount", "customer_name", "email", "has_snap", "recent")
_UNDEFINED_STATEMENT: Final = "26000"  # invalid_sql_statement_name: the statement is not (or no longer) there


class StatusReadConnection(psycopg.AsyncConnection[DictRow]):
    """A connection that knows whether its server session holds the prepared status read (the
    flag lives and dies with the session: a new connection prepares it on its first read)."""

    status_read_prepared: bool = False


async def read_order_status(conn: StatusReadConnection, tenant_id: uuid.UUID, order_id: str,
                            recent_s: float) -> dict[str, Any] | None:
    """The tenant's order as `order_status()` returns it (the columns above), or None. `conn` is idle,
    in autocommit mode, lent to this caller alone. An error from the server leaves it idle and
    usable; a call interrupted midway (cancelled, the connection lost) closes it."""
    pgconn = conn.pgconn
    if (pgconn.transaction_status != pq.TransactionStatus.IDLE or not conn.autocommit
            or pgconn.pipeline_status != pq.PipelineStatus.OFF):
        raise psycopg.ProgrammingError("the status read needs an idle connection in autocommit mode")
    if "\0" in order_id:
        return None
    encoding = conn.info.encoding
    params = [str(tenant_id).encode(), order_id.encode(encoding), repr(float(recent_s)).encode()]
    try:
        result = await _execute(conn, params)
        if result is None:  # prepared statement gone (a DISCARD on the session): prepare once more
            conn.status_read_prepared = False
            result = await _execute(conn, params)
        if result is None:
            raise psycopg.errors.InvalidSqlStatementName("the status read's prepared statement vanished twice")
    except BaseException:
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            await conn.close()  # a result may still be in flight: the pool must never lend it
        raise
    if result.ntuples == 0:
        return None
    row = [result.get_value(0, i) for i in range(len(_COLUMNS))]
    order_id_v, status_v, amount_v, name_v, email_v, has_snap_v, recent_v = row
    return {
        "order_id": _text(order_id_v, encoding), "payment_status": _text(status_v, encoding),
        "gross_amount": None if amount_v is None else int(amount_v),
        "customer_name": _text(name_v, encoding), "email": _text(email_v, encoding),
        "has_snap": has_snap_v == b"t", "recent": recent_v == b"t",
    }


def _text(value: bytes | None, encoding: str) -> str | None:
    return None if value is None else value.decode(encoding)


async def _execute(conn: StatusReadConnection, params: Sequence[bytes]) -> pq.abc.PGresult | None:
    """The prepared read's result, preparing it first on a new session; None when the server says
    the statement does not exist."""
    pgconn = conn.pgconn
    if not conn.status_read_prepared:
        pgconn.send_prepare(_STATEMENT, _QUERY)
        await _flush(pgconn)
        prepared = await _last_result(pgconn)
        _raise_for(prepared, conn)
        conn.status_read_prepared = True
    pgconn.send_query_prepared(_STATEMENT, params)
    await _flush(pgconn)
    result = await _last_result(pgconn)
    if result.status == pq.ExecStatus.FATAL_ERROR and _sqlstate(result) == _UNDEFINED_STATEMENT:
        return None
    _raise_for(result, conn)
    return result


def _sqlstate(result: pq.abc.PGresult) -> str:
    code = result.error_field(pq.DiagnosticField.SQLSTATE)
    return code.decode("ascii") if code else ""


def _raise_for(result: pq.abc.PGresult, conn: psycopg.AsyncConnection[Any]) -> None:
    if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        # psycopg's own mapping: a class for the SQLSTATE, else its class's (08xxx: OperationalError),
        # with the diagnostics attached
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)


async def _flush(pgconn: pq.abc.PGconn) -> None:
    while pgconn.flush():  # 1: some left in libpq's buffer, the socket full
        await _ready(pgconn.socket, writable=True)


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


async def _ready(fileno: int, *, writable: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    (loop.add_writer if writable else loop.add_reader)(fileno, _wake, ready)
    try:
        await ready
    finally:
        (loop.remove_writer if writable else loop.remove_reader)(fileno)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
