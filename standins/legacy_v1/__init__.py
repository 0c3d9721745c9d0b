"""`dualstack legacy-v1`: a stand-in for the legacy v1 payment API (Node.js + Express, port 3002), in
either of its two generations (`--store sqlite|postgresql`), faithful to what the real service does,
flaws included (see /work/shared/reference/legacy-v1-contract.md and app.py). It is NOT v1."""

from standins.legacy_v1.admin import Admin
from standins.legacy_v1.app import LegacyV1
from standins.legacy_v1.express import KEEPALIVE_TIMEOUT_S
from standins.legacy_v1.stores import PostgresOrders, SqliteOrders, open_database

__all__ = ["KEEPALIVE_TIMEOUT_S", "Admin", "LegacyV1", "PostgresOrders", "SqliteOrders", "open_database"]
