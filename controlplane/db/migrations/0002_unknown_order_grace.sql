-- During a cutover, notifications can arrive for orders v2 does not know yet (created on v1 just
-- before the flip, migrated moments later). Until this time, such notifications are answered so
-- that Midtrans retries them, instead of being acknowledged and lost.
ALTER TABLE {schema}.tenants ADD COLUMN unknown_order_retry_until timestamptz;
