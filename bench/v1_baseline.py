"""A baseline on v1's own stack for bench/v2.py: Express + `pg`, installed from the npm registry
into a scratch folder, answering `GET /orders/:orderId/status` as the PostgreSQL generation of v1
does (one SELECT by id from `payment_orders`, `{success, order: {id, status, totalAmount, email}}`,
404 for an unknown order), with v1's middleware (cors, a JSON body parser). One process, or a
node cluster of N (v1 runs under pm2 in cluster mode, 2 instances).

    from v1_baseline import install_baseline, seed_v1_orders, start_baseline
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from controlplane.processes import Child, ProcessGroup

PACKAGES = ("express@4", "pg@8", "cors@2")

SERVER_JS = r"""
const cluster = require('node:cluster');
const workers = Number(process.env.WORKERS);
if (cluster.isPrimary && workers > 1) {
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const id in cluster.workers) cluster.workers[id].kill('SIGTERM');
    process.exit(0);
  });
} else {
  const express = require('express');
  const cors = require('cors');
  const { Pool } = require('pg');  // PGHOST, PGPORT, PGUSER, PGDATABASE from the environment
  const pool = new Pool({ max: 10 });
  const app = express();
  app.use(cors());
  app.use(express.json());
  app.get('/orders/:orderId/status', async (req, res) => {
    try {
      const { rows } = await pool.query(
        'SELECT id, status, amount, email FROM payment_orders WHERE id = $1', [req.params.orderId]);
      if (rows.length === 0) return res.status(404).json({ success: false, error: 'Order not found' });
      const order = rows[0];
      res.json({ success: true, order: { id: order.id, status: order.status, totalAmount: order.amount,
                                         email: order.email } });
    } catch (err) {
      res.status(500).json({ success: false, error: 'Internal server error' });
    }
  });
  app.listen(Number(process.env.PORT), '127.0.0.1');
}
"""


def install_baseline(folder: Path) -> str | None:
    """Install the baseline into `folder`; None when ready, else why it cannot run."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are not installed"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text('{"name": "v1-baseline", "private": true}\n')
    (folder / "server.js").write_text(SERVER_JS)
    try:
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES], cwd=folder,
                       capture_output=True, text=True, check=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"npm install {' '.join(PACKAGES)} failed: {(getattr(exc, 'stderr', '') or str(exc)).strip()[-300:]}"
    return None


def seed_v1_orders(admin_url: str, count: int) -> None:
    """v1's PostgreSQL table, with the same orders as v2's seed (SEED-1..count, old: no Midtrans)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.payment_orders (id text PRIMARY KEY, customer_name text NOT NULL, "
            "email text NOT NULL, phone text NOT NULL, amount numeric(15,2) NOT NULL, payment_method text, "
            "status text DEFAULT 'pending', payment_url text, token text, "
            "created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now())")
        conn.execute(
            "INSERT INTO public.payment_orders (id, customer_name, email, phone, amount, payment_method, status, "
            "token, created_at) SELECT 'SEED-' || i, 'Seed', 's@example.com', '0812', 1000, 'bca', "
            "CASE WHEN i %% 2 = 0 THEN 'paid' ELSE 'pending' END, 'tok-' || i, now() - interval '2 days' "
            "FROM generate_series(1, %s) i", (count,))


def start_baseline(group: ProcessGroup, folder: Path, admin_url: str, port: int, processes: int) -> Child:
    params = conninfo_to_dict(admin_url)
    env = dict(os.environ, PORT=str(port), WORKERS=str(processes), NODE_ENV="production",
               PGHOST=str(params.get("host", "127.0.0.1")), PGPORT=str(params.get("port", 5432)),
               PGUSER=str(params.get("user", "postgres")), PGDATABASE=str(params["dbname"]))
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    node = shutil.which("node")
    assert node is not None
    return group.start(f"v1-baseline-{processes}", [node, str(folder / "server.js")], env)
