-- Where Snap sends the buyer after paying (`callbacks.finish`), per tenant. NULL: v2's own
-- template (`--finish-url-template`, by default the tenant's thank-you page on its own host).
-- Placeholders {slug}, {base_domain} and {order_id} are checked by `dualstack tenant add/set`;
-- v2 checks again when it reads one and falls back to its own template for one it cannot use.
ALTER TABLE {schema}.tenants
    ADD COLUMN finish_url text CHECK (length(finish_url) BETWEEN 1 AND 2048);
