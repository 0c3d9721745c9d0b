-- The control plane's state: shadow comparison results (counts per minute, redacted samples).
-- Several routers write here at once: counts are additive upserts, samples are pruned per
-- (tenant, endpoint, path) to the newest few.

CREATE TABLE {schema}.shadow_counts (
    tenant        text NOT NULL,
    endpoint      text NOT NULL,
    minute        timestamptz NOT NULL,
    matches       bigint NOT NULL DEFAULT 0,
    mismatches    bigint NOT NULL DEFAULT 0,
    noise         bigint NOT NULL DEFAULT 0,
    -- latency histograms of the pairs, one count per bucket of controlplane/shadow/store.py
    primary_buckets bigint[] NOT NULL,
    shadow_buckets  bigint[] NOT NULL,
    PRIMARY KEY (tenant, endpoint, minute)
);

CREATE TABLE {schema}.shadow_samples (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text NOT NULL,
    endpoint       text NOT NULL,
    path           text NOT NULL,
    kind           text NOT NULL,
    request_id     text NOT NULL,
    primary_value  jsonb,  -- redacted before it is written
    shadow_value   jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shadow_samples_recent ON {schema}.shadow_samples (tenant, endpoint, path, recorded_at DESC);

GRANT USAGE ON SCHEMA {schema} TO {app};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.shadow_counts, {schema}.shadow_samples TO {app};
