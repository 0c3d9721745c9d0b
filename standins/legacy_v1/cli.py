"""`dualstack legacy-v1 --store sqlite|postgresql ...`: the stand-in as a process."""

from __future__ import annotations

import argparse
import os

from aiohttp import web

from controlplane.config.address import parse_listen
from standins.legacy_v1 import __doc__ as DESCRIPTION
from standins.legacy_v1.admin import Admin
from standins.legacy_v1.app import LegacyV1
from standins.legacy_v1.express import KEEPALIVE_TIMEOUT_S
from standins.legacy_v1.mail import Mailer
from standins.legacy_v1.stores import OrderStore, PostgresOrders, SqliteOrders, open_database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=os.environ.get("DUALSTACK_PROG", "dualstack legacy-v1"),
                                     description=DESCRIPTION)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite",
                        help="the generation to imitate: the seed's orders.db, or the later payment_orders table")
    parser.add_argument("--sqlite", help="the orders.db file (created if missing), with --store sqlite")
    parser.add_argument("--database-url", help="with --store postgresql: where payment_orders lives (created if "
                        "missing); default $DATABASE_URL, so a password stays out of the process list")
    parser.add_argument("--listen", default="127.0.0.1:3002")
    parser.add_argument("--midtrans-server-key-env", default="MIDTRANS_SERVER_KEY",
                        help="environment variable holding the server key")
    parser.add_argument("--snap-url", default="https://app.sandbox.midtrans.com/snap/v1/transactions")
    parser.add_argument("--notification-url", help="sent as X-Override-Notification")
    parser.add_argument("--status-spelling", choices=["lower", "upper"], default="lower",
                        help="pending/paid (v1's own), or PENDING_PAYMENT/PAID (a later SQLite variant)")
    parser.add_argument("--smtp", metavar="HOST:PORT", help="with --store sqlite: where the confirmation emails "
                        "go, awaited inside the request as that generation does (unset: none are sent)")
    parser.add_argument("--admin-password-env", default="ADMIN_PASSWORD",
                        help="environment variable holding the admin page's password (unset: no login)")
    ns = parser.parse_args(argv)
    key = os.environ.get(ns.midtrans_server_key_env)
    if not key:
        parser.error(f"set the Midtrans server key in ${ns.midtrans_server_key_env}")
    store: OrderStore
    if ns.store == "sqlite":
        if not ns.sqlite:
            parser.error("--store sqlite needs --sqlite PATH")
        store = SqliteOrders(open_database(ns.sqlite))
    else:
        url = ns.database_url or os.environ.get("DATABASE_URL")
        if not url:
            parser.error("--store postgresql needs --database-url (or $DATABASE_URL)")
        store = PostgresOrders(url)
    address = parse_listen(ns.listen)
    smtp = parse_listen(ns.smtp) if ns.smtp else None
    stand_in = LegacyV1(store, server_key=key, snap_url=ns.snap_url, notification_url=ns.notification_url,
                        spelling=ns.status_spelling, mailer=Mailer(smtp.host, smtp.port) if smtp else None,
                        admin=Admin(store, password=os.environ.get(ns.admin_password_env) or None))
    web.run_app(stand_in.app(), host=address.host, port=address.port, access_log=None, print=None,
                keepalive_timeout=KEEPALIVE_TIMEOUT_S)
    return 0
