-- v1's admin page on v2 (POST /admin/login, GET /admin/orders, PUT /admin/orders/:id), per tenant.
-- The sign-in credential and the key that signs its session tokens are tenant secrets: beside the
-- Midtrans key in tenant_secrets, under its row-level security (the application role reads one
-- tenant's, in a transaction bound to that tenant; never a listing). The password is stored as an
-- scrypt hash with a salt of its own (controlplane/admin_password.py), never in plain.
-- `dualstack tenant set SLUG --admin-user NAME` sets all three together, with a fresh session key,
-- which ends every session of that tenant.
ALTER TABLE {schema}.tenant_secrets
    ADD COLUMN admin_user text CHECK (admin_user ~ '^[A-Za-z0-9._@+-]{1,64}$'),
    ADD COLUMN admin_password_scrypt text CHECK (admin_password_scrypt LIKE 'scrypt$%'),
    ADD COLUMN admin_session_key text CHECK (admin_session_key ~ '^[0-9a-f]{64}$'),
    ADD CONSTRAINT tenant_secrets_admin_login_whole CHECK (
        (admin_user IS NULL) = (admin_password_scrypt IS NULL)
        AND (admin_user IS NULL) = (admin_session_key IS NULL));

-- Who made a change an event records: NULL for Midtrans' word (a notification, Get Status), the
-- admin user for a status set by hand on the admin page (outcome 'manual', signature_valid false:
-- no Midtrans signature vouches for it, the signed-in admin does).
ALTER TABLE {schema}.payment_events
    ADD COLUMN actor text CHECK (length(actor) BETWEEN 1 AND 64);
