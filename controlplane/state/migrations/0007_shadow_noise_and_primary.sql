-- Noise learned per (tenant, endpoint, field) and shared by every router worker and replica: how
-- often two answers of the primary differed on a field, and how often primary and shadow did, per
-- minute. The row with path '' holds the number of pairs compared on each side. A field is noise
-- only when both rates are close (controlplane/state/shadow_noise.py), over a recent window.
CREATE TABLE {schema}.shadow_noise (
    tenant          text NOT NULL,
    endpoint        text NOT NULL,
    path            text NOT NULL,
    minute          timestamptz NOT NULL,
    primary_pairs   bigint NOT NULL DEFAULT 0,  -- primary vs primary: pairs ('') or differences
    shadow_pairs    bigint NOT NULL DEFAULT 0,  -- primary vs shadow: pairs ('') or differences
    PRIMARY KEY (tenant, endpoint, path, minute)
);
CREATE INDEX shadow_noise_recent ON {schema}.shadow_noise (minute);
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.shadow_noise TO {app};

-- Which backend was primary for the counted comparisons (minutes before and after a flip are no
-- longer mixed), and the orders the shadow had not replicated yet (confirmed by asking again).
ALTER TABLE {schema}.shadow_counts
    ADD COLUMN primary_backend text NOT NULL DEFAULT 'unknown',
    ADD COLUMN not_replicated bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.shadow_counts DROP CONSTRAINT shadow_counts_pkey;
ALTER TABLE {schema}.shadow_counts ADD PRIMARY KEY (tenant, endpoint, minute, primary_backend);
