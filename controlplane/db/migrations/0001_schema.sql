-- The payments schema: tenants, customers, orders, payment events, the notification outbox and
-- the monthly usage counter. {owner} owns everything; {app} (the service's login role) owns
-- nothing and reaches tenant rows only through row-level security.

CREATE TABLE {schema}.tenants (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug                  text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'cancelled')),
    plan                  text NOT NULL CHECK (plan IN ('starter', 'pro', 'enterprise')),
    max_orders_per_month  integer CHECK (max_orders_per_month IS NULL OR max_orders_per_month >= 0),
    midtrans_server_key   text NOT NULL,
    midtrans_client_key   text,
    midtrans_environment  text NOT NULL CHECK (midtrans_environment IN ('sandbox', 'production')),
    midtrans_merchant_id  text,
    email_from            text,
    email_reply_to        text,
    admin_token_sha256    text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.customers (
    tenant_id     uuid NOT NULL REFERENCES {schema}.tenants (id),
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    email         text NOT NULL,
    phone         text NOT NULL,
    name          text NOT NULL,
    total_orders  integer NOT NULL DEFAULT 0,
    total_spent   bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE {schema}.orders (
    tenant_id        uuid NOT NULL REFERENCES {schema}.tenants (id),
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    order_id         text NOT NULL CHECK (order_id ~ '^[A-Za-z0-9._~-]{1,50}$'),
    customer_id      uuid NOT NULL,
    customer_name    text NOT NULL,
    email            text NOT NULL,
    phone            text NOT NULL,
    gross_amount     bigint NOT NULL CHECK (gross_amount > 0),
    payment_method   text,
    payment_status   text NOT NULL DEFAULT 'pending'
                     CHECK (payment_status IN ('pending', 'paid', 'failed', 'expired', 'refunded')),
    status_flagged   boolean NOT NULL DEFAULT false,
    snap_token       text,
    redirect_url     text,
    transaction_id   text,
    paid_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, order_id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES {schema}.customers (tenant_id, id)
);
CREATE INDEX orders_tenant_created ON {schema}.orders (tenant_id, created_at DESC);
CREATE INDEX orders_tenant_status ON {schema}.orders (tenant_id, payment_status);

-- Every notification received for a known tenant, valid or not, with what was done with it.
CREATE TABLE {schema}.payment_events (
    tenant_id           uuid NOT NULL REFERENCES {schema}.tenants (id),
    id                  bigint GENERATED ALWAYS AS IDENTITY,
    order_id            text,
    transaction_id      text,
    transaction_status  text,
    fraud_status        text,
    status_code         text,
    gross_amount        text,
    signature_valid     boolean NOT NULL,
    outcome             text NOT NULL,
    dedupe_key          text,
    payload             jsonb,
    received_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- Deduplication of verified notifications: the first copy holds the key, repeats are recorded
-- without it.
CREATE UNIQUE INDEX payment_events_dedupe ON {schema}.payment_events (tenant_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
CREATE INDEX payment_events_tenant_order ON {schema}.payment_events (tenant_id, order_id);

-- Emails to send once an order is paid: written in the same transaction as the status change,
-- sent after commit, at most one per order and template.
CREATE TABLE {schema}.notification_outbox (
    tenant_id    uuid NOT NULL REFERENCES {schema}.tenants (id),
    id           bigint GENERATED ALWAYS AS IDENTITY,
    order_id     text NOT NULL,
    template     text NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, order_id, template)
);
CREATE INDEX notification_outbox_pending ON {schema}.notification_outbox (tenant_id, status)
    WHERE status = 'pending';

-- Orders created per tenant and calendar month (Asia/Jakarta), for the plan's monthly quota.
CREATE TABLE {schema}.usage_counters (
    tenant_id     uuid NOT NULL REFERENCES {schema}.tenants (id),
    period_start  date NOT NULL,
    orders        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, period_start)
);

-- Row-level security: enabled and FORCED (so even the owner obeys it), one policy per table.
-- NULLIF: a pooled connection's setting reverts to '' after a transaction, and ''::uuid raises.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customers', 'orders', 'payment_events', 'notification_outbox', 'usage_counters']
    LOOP
        EXECUTE format('ALTER TABLE {schema}.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE {schema}.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON {schema}.%I '
            'USING (tenant_id = (SELECT NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)) '
            'WITH CHECK (tenant_id = (SELECT NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid))',
            t);
    END LOOP;
END $$;

-- The application role: reads tenants (looked up before any tenant context exists), and works on
-- tenant rows under RLS. It can delete nothing.
GRANT USAGE ON SCHEMA {schema} TO {app};
GRANT SELECT ON {schema}.tenants TO {app};
GRANT SELECT, INSERT, UPDATE ON {schema}.customers, {schema}.orders, {schema}.payment_events,
    {schema}.notification_outbox, {schema}.usage_counters TO {app};
