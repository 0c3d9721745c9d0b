-- v2's payment creation (`POST /payment/create`) in two round trips instead of about 6 + 5: its two
-- transactions, before and after the Snap call, are one statement each. Like order_status() (0009),
-- each function binds the tenant for its own transaction (set_config(..., true)) and runs with the
-- caller's rights (SECURITY INVOKER), so row-level security decides what it reads and checks what
-- it writes exactly as for any other statement of the application role, and a NULL or unknown
-- tenant reads nothing and can write nothing. Called in autocommit mode, one statement is its own
-- transaction: the setting ends with it and never reaches the pooled connection's next request, and
-- an error (a concurrent insert of the same order id: unique_violation, retried by the caller as a
-- repeat) undoes everything the call did, the quota unit included. Parameter and result names
-- differ from every column name (PL/pgSQL would find them ambiguous) and table names are qualified.
-- Every query also names the tenant: a role that bypasses RLS (a superuser repairing an order) still
-- cannot write one tenant's link onto another tenant's order with the same id.

-- Before Snap: find the order (locked) or take one unit of the monthly quota, upsert the customer
-- and insert the order (the customer is keyed by `customer_email`, the address as the service
-- folds it; the order keeps `buyer_email` as given). `outcome`:
--   created                 the order is new (committed with the call);
--   exists                  the tenant already has this order id: the stored_* columns describe it,
--                           the caller decides (a repeat, or a conflicting amount or customer);
--   monthly_limit_reached   the plan's limit is used up this month (Asia/Jakarta): nothing written.
-- monthly_limit NULL: no limit. The quota is a conditional upsert on the tenant's counter row, so
-- concurrent creates can never take more than the limit.
CREATE FUNCTION {schema}.create_order(
        tenant uuid, new_order_id text, amount bigint, buyer_email text, customer_email text, buyer_phone text,
        buyer_name text, method text, monthly_limit integer)
    RETURNS TABLE (outcome text, stored_amount bigint, stored_email text, stored_status text,
                   stored_snap_token text, stored_redirect_url text)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    customer uuid;
BEGIN
    PERFORM {schema}.bind_tenant(tenant);
    SELECT o.gross_amount, o.email, o.payment_status, o.snap_token, o.redirect_url
        INTO stored_amount, stored_email, stored_status, stored_snap_token, stored_redirect_url
        FROM {schema}.orders o WHERE o.tenant_id = tenant AND o.order_id = new_order_id FOR UPDATE;
    IF FOUND THEN
        outcome := 'exists';
        RETURN NEXT;
        RETURN;
    END IF;
    IF monthly_limit IS NOT NULL THEN
        IF monthly_limit <= 0 THEN
            outcome := 'monthly_limit_reached';
            RETURN NEXT;
            RETURN;
        END IF;
        INSERT INTO {schema}.usage_counters AS u (tenant_id, period_start, orders)
            VALUES (tenant, date_trunc('month', now() AT TIME ZONE 'Asia/Jakarta')::date, 1)
            ON CONFLICT (tenant_id, period_start) DO UPDATE SET orders = u.orders + 1
                WHERE u.orders < monthly_limit;
        IF NOT FOUND THEN
            outcome := 'monthly_limit_reached';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    INSERT INTO {schema}.customers AS c (tenant_id, email, phone, name)
        VALUES (tenant, customer_email, buyer_phone, buyer_name)
        ON CONFLICT (tenant_id, email) DO UPDATE
            SET phone = EXCLUDED.phone, name = EXCLUDED.name, updated_at = now()
        RETURNING c.id INTO customer;
    INSERT INTO {schema}.orders (tenant_id, order_id, customer_id, customer_name, email, phone, gross_amount,
                                 payment_method)
        VALUES (tenant, new_order_id, customer, buyer_name, buyer_email, buyer_phone, amount, method);
    outcome := 'created';
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION {schema}.create_order(uuid, text, bigint, text, text, text, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.create_order(uuid, text, bigint, text, text, text, text, text, integer) TO {app};

-- After Snap: store the payment link on the order unless one is stored already, and queue the order
-- email (it carries the link) in the same transaction. The email row is what
-- proxy/v2/outbox.py:queue_email writes: one per (order, template), 'skipped' for an order v1
-- created. Result: the link to answer with (the one stored first, when a concurrent repeat won)
-- and whether an email row to send was written (the caller wakes the outbox after the commit).
CREATE FUNCTION {schema}.store_payment_link(
        tenant uuid, wanted_order_id text, new_snap_token text, new_redirect_url text, email_template text)
    RETURNS TABLE (snap_token_answered text, redirect_url_answered text, email_queued boolean)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    queued text;
BEGIN
    PERFORM {schema}.bind_tenant(tenant);
    UPDATE {schema}.orders o SET snap_token = new_snap_token, redirect_url = new_redirect_url, updated_at = now()
        WHERE o.tenant_id = tenant AND o.order_id = wanted_order_id AND o.snap_token IS NULL;
    IF NOT FOUND THEN  -- a concurrent repeat stored first: answer with what it stored
        SELECT o.snap_token, o.redirect_url INTO snap_token_answered, redirect_url_answered
            FROM {schema}.orders o WHERE o.tenant_id = tenant AND o.order_id = wanted_order_id;
        IF snap_token_answered IS NOT NULL AND redirect_url_answered IS NOT NULL THEN
            email_queued := false;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    INSERT INTO {schema}.notification_outbox AS x (tenant_id, order_id, template, status, last_error)
        SELECT o.tenant_id, o.order_id, email_template,
               CASE WHEN o.origin = 'v1' THEN 'skipped' ELSE 'pending' END,
               CASE WHEN o.origin = 'v1' THEN 'order created on v1, which sends its emails' END
        FROM {schema}.orders o WHERE o.tenant_id = tenant AND o.order_id = wanted_order_id
        ON CONFLICT (tenant_id, order_id, template) DO NOTHING
        RETURNING x.status INTO queued;
    snap_token_answered := new_snap_token;
    redirect_url_answered := new_redirect_url;
    email_queued := coalesce(queued = 'pending', false);
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION {schema}.store_payment_link(uuid, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.store_payment_link(uuid, text, text, text, text) TO {app};
