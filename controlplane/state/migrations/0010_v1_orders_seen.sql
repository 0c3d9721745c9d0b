-- 0010: order ids the router saw v1 create (a 2xx to POST /payment/create) or answer for (a 2xx to
-- GET /orders/{id}/status), a bounded sample per tenant. The cutover preflight looks them up in the
-- v1 store it is given: a store that lacks orders v1 just created is not the one v1 writes.
-- The router only adds rows (INSERT ... ON CONFLICT DO NOTHING: the first sighting stays); the
-- control plane only reads them (controlplane/state/v1_orders_seen.py).
CREATE TABLE {schema}.v1_orders_seen (
    tenant      text NOT NULL,
    order_id    text NOT NULL,
    seen        text NOT NULL CHECK (seen IN ('created', 'answered')),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, order_id)
);
CREATE INDEX v1_orders_seen_recent ON {schema}.v1_orders_seen (tenant, seen_at);

GRANT INSERT ON {schema}.v1_orders_seen TO {router};
GRANT SELECT ON {schema}.v1_orders_seen TO {control};
REVOKE ALL ON {schema}.v1_orders_seen FROM {app};
