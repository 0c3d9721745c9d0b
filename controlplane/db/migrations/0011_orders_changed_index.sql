-- The reverse sync (controlplane/reverse/run.py) pages through a tenant's orders changed since its
-- watermark, `ORDER BY updated_at, order_id`, every second while it follows: an index on that order
-- keeps a pass proportional to what changed, not to the tenant's whole history.
CREATE INDEX orders_tenant_changed ON {schema}.orders (tenant_id, updated_at, order_id);
