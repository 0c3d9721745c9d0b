-- Only a notification that was applied, or changed nothing harmlessly, holds its deduplication key.
-- Until now a rejected one (a wrong amount) took the key too, and the genuine notification that
-- followed was recorded as a duplicate and never applied. Rejected events give their keys back, and
-- the schema keeps the rule from now on.

-- What Midtrans' Get Status answered before a move to paid, failed or refunded (or why it could
-- not be asked); NULL when the notification needed no confirmation.
ALTER TABLE {schema}.payment_events ADD COLUMN confirmation jsonb;

-- Row-level security is forced on the owner too: release the keys tenant by tenant, as each one.
DO $$
DECLARE t uuid;
BEGIN
    FOR t IN SELECT id FROM {schema}.tenants LOOP
        PERFORM set_config('app.tenant_id', t::text, true);
        UPDATE {schema}.payment_events SET dedupe_key = NULL
            WHERE dedupe_key IS NOT NULL
              AND outcome NOT IN ('applied', 'no_change', 'ignored_precedence', 'flagged_reversal', 'unknown_status');
    END LOOP;
    PERFORM set_config('app.tenant_id', '', true);
END $$;

ALTER TABLE {schema}.payment_events ADD CONSTRAINT payment_events_dedupe_key_only_when_settled
    CHECK (dedupe_key IS NULL
           OR outcome IN ('applied', 'no_change', 'ignored_precedence', 'flagged_reversal', 'unknown_status'));
