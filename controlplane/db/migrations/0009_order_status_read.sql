-- v2's status read (`GET /orders/{id}/status`, the thank-you page's poll, most of its traffic) in
-- one statement, so one round trip: this function binds the tenant for its own transaction
-- (set_config(..., true)) and returns the order as row-level security shows it to the caller.
-- SECURITY INVOKER: it runs with the caller's rights, so RLS decides what is visible exactly as
-- for any other query of the application role; a NULL or unknown tenant sees nothing. The query
-- also names the tenant: a role that bypasses RLS (a superuser repairing an order) still reads one
-- tenant's order, never another's with the same id. Called inside a transaction already bound to
-- another tenant, it refuses (it would leave the rest of that transaction bound to this one).
-- Called in autocommit mode, the one statement is its own transaction: the setting ends with it
-- and never reaches the pooled connection's next request. PL/pgSQL (not LANGUAGE sql): its plan
-- is cached per connection, where a multi-statement SQL function is planned again on every call.
-- No SET search_path clause: every table name is qualified, and the clause would add a settings
-- save-and-restore to every call.
-- The one way these functions bind their tenant for the current transaction (set_config(..., true)):
-- refused inside a transaction already bound to another tenant, whose rest would run as this one.
CREATE FUNCTION {schema}.bind_tenant(tenant uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    IF coalesce(current_setting('app.tenant_id', true), '') NOT IN ('', tenant::text) THEN
        RAISE EXCEPTION 'app.tenant_id is bound to another tenant in this transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('app.tenant_id', tenant::text, true);
END
$$;
REVOKE ALL ON FUNCTION {schema}.bind_tenant(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.bind_tenant(uuid) TO {app};

CREATE FUNCTION {schema}.order_status(tenant uuid, wanted_order_id text, recent_s double precision)
    RETURNS TABLE (order_id text, payment_status text, gross_amount bigint, customer_name text,
                   email text, has_snap boolean, recent boolean)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    PERFORM {schema}.bind_tenant(tenant);
    RETURN QUERY
        SELECT o.order_id, o.payment_status, o.gross_amount, o.customer_name, o.email,
               o.snap_token IS NOT NULL, o.created_at > now() - make_interval(secs => recent_s)
        FROM {schema}.orders o
        WHERE o.tenant_id = tenant AND o.order_id = wanted_order_id;
END
$$;
REVOKE ALL ON FUNCTION {schema}.order_status(uuid, text, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.order_status(uuid, text, double precision) TO {app};
