-- 0005: least privilege for tenant secrets and the router's key, and reconcile's index.

-- Tenant secrets leave the tenants table, which the application role reads whole (it is looked up
-- before any tenant context exists). In tenant_secrets, under forced row-level security, the
-- application role reads one tenant's secrets only, in a transaction bound to that tenant: never
-- a listing. The owner (tenant administration) reads and writes them all.

CREATE TABLE {schema}.tenant_secrets (
    tenant_id            uuid PRIMARY KEY REFERENCES {schema}.tenants (id),
    midtrans_server_key  text NOT NULL,
    admin_token_sha256   text,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {schema}.tenant_secrets (tenant_id, midtrans_server_key, admin_token_sha256)
    SELECT id, midtrans_server_key, admin_token_sha256 FROM {schema}.tenants;
ALTER TABLE {schema}.tenants DROP COLUMN midtrans_server_key, DROP COLUMN admin_token_sha256;

ALTER TABLE {schema}.tenant_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE {schema}.tenant_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON {schema}.tenant_secrets FOR SELECT
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));
-- Policies add up: the owner (only reachable by SET ROLE from an administrator, or inside the
-- one SECURITY DEFINER function below) administers every row.
CREATE POLICY owner_administers ON {schema}.tenant_secrets TO {owner} USING (true) WITH CHECK (true);
GRANT SELECT ON {schema}.tenant_secrets TO {app};

-- The router checks Midtrans notifications' signatures before any backend sees them (v1 applies
-- anything), without depending on v2. It reads one key, of one tenant named by slug, and nothing
-- else: no table, no listing. NULL for an unknown or cancelled tenant (suspended ones still settle).
CREATE FUNCTION {schema}.notification_key(tenant_slug text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.midtrans_server_key
    FROM {schema}.tenants t JOIN {schema}.tenant_secrets s ON s.tenant_id = t.id
    WHERE t.slug = tenant_slug AND t.status <> 'cancelled'
$$;
REVOKE ALL ON FUNCTION {schema}.notification_key(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA {schema} TO {router};
GRANT EXECUTE ON FUNCTION {schema}.notification_key(text) TO {router};

-- Reconcile (`dualstack reconcile`, v2's /admin/reconcile) looks for notifications recorded
-- `unconfirmed` (Get Status was down): few rows, read every run.
CREATE INDEX payment_events_unconfirmed ON {schema}.payment_events (tenant_id, received_at)
    WHERE outcome = 'unconfirmed';
