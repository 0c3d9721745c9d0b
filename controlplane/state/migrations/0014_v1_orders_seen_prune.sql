-- 0014: the decider prunes sightings older than the preflight's window (v1_orders_seen.prune), so the
-- table holds about a day of each tenant's sample instead of growing with v1's history.
CREATE INDEX v1_orders_seen_age ON {schema}.v1_orders_seen (seen_at);
GRANT DELETE ON {schema}.v1_orders_seen TO {control};
