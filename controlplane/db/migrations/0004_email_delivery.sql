-- Email delivery through a real SMTP relay: each tenant's relay and language, which backend an
-- order was created on (v1 sends its own emails), and the outbox's lease, retry schedule and
-- dead-letter state.

-- The tenant's relay: host, port and TLS mode here; the credential is only NAMED here (NULL: no
-- AUTH), its username and password live in v2's environment file (never in the database, never
-- on a command line): DUALSTACK_SMTP_USERNAME_<NAME> and DUALSTACK_SMTP_PASSWORD_<NAME>.
ALTER TABLE {schema}.tenants
    ADD COLUMN email_language text NOT NULL DEFAULT 'id' CHECK (email_language IN ('id', 'en')),
    ADD COLUMN smtp_host text CHECK (smtp_host ~ '^[A-Za-z0-9.-]{1,253}$'),
    ADD COLUMN smtp_port integer CHECK (smtp_port BETWEEN 1 AND 65535),
    ADD COLUMN smtp_security text NOT NULL DEFAULT 'starttls' CHECK (smtp_security IN ('starttls', 'tls', 'none')),
    ADD COLUMN smtp_credential text CHECK (smtp_credential ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$');

-- v1: the order was created on v1 and migrated (controlplane/migrate_sqlite.py); v1 sent its
-- order email and sends the payment email when it applies the settlement (the router copies
-- every notification to both backends), so v2 sends neither.
ALTER TABLE {schema}.orders
    ADD COLUMN origin text NOT NULL DEFAULT 'v2' CHECK (origin IN ('v2', 'v1'));

-- pending -> sending (claimed: committed before the SMTP conversation, with a lease) -> sent, or
-- back to pending (a temporary failure, retried at next_attempt_at), or dead (a permanent failure,
-- or too many attempts; last_error says why). For a row in 'sending', next_attempt_at is the end
-- of its lease: a worker that died mid-send leaves it to be claimed again then.
-- skipped: the order is v1's (see orders.origin); `dualstack outbox retry` sends it anyway.
ALTER TABLE {schema}.notification_outbox DROP CONSTRAINT notification_outbox_status_check;
ALTER TABLE {schema}.notification_outbox
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN claim_id uuid,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Existing rows, read past row-level security (the owner, inside this one transaction):
ALTER TABLE {schema}.orders NO FORCE ROW LEVEL SECURITY;
ALTER TABLE {schema}.notification_outbox NO FORCE ROW LEVEL SECURITY;
-- v2 stores the Snap token of every order it creates before answering; the migration copies none.
UPDATE {schema}.orders SET origin = 'v1' WHERE snap_token IS NULL;
UPDATE {schema}.notification_outbox x SET status = 'skipped', last_error = 'order created on v1, which sends its emails'
    FROM {schema}.orders o
    WHERE o.tenant_id = x.tenant_id AND o.order_id = x.order_id AND o.origin = 'v1';
-- Until now the only sender wrote a log line: rows it marked sent never reached anyone. They are
-- dead-lettered with that reason, for ops to send (`dualstack outbox retry --all-dead`) or leave.
UPDATE {schema}.notification_outbox x SET status = 'dead',
    last_error = CASE WHEN x.status = 'sent' THEN 'never emailed: v2 had no SMTP sender before migration 0004'
                      ELSE coalesce(x.last_error, 'failed') END
    FROM {schema}.orders o
    WHERE o.tenant_id = x.tenant_id AND o.order_id = x.order_id AND o.origin = 'v2'
      AND x.status IN ('sent', 'failed');
ALTER TABLE {schema}.orders FORCE ROW LEVEL SECURITY;
ALTER TABLE {schema}.notification_outbox FORCE ROW LEVEL SECURITY;

ALTER TABLE {schema}.notification_outbox ADD CONSTRAINT notification_outbox_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'dead', 'skipped'));
DROP INDEX {schema}.notification_outbox_pending;
CREATE INDEX notification_outbox_due ON {schema}.notification_outbox (tenant_id, next_attempt_at)
    WHERE status IN ('pending', 'sending');
