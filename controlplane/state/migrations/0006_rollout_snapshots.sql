-- Counter snapshots for the embedded evidence source (the routers' own /metrics, no Prometheus):
-- counts since the soak started are the latest snapshot minus the one taken at its start.
CREATE TABLE {schema}.rollout_snapshots (
    tenant    text NOT NULL,
    taken_at  timestamptz NOT NULL,
    counters  jsonb NOT NULL,
    PRIMARY KEY (tenant, taken_at)
);
GRANT SELECT, INSERT, DELETE ON {schema}.rollout_snapshots TO {app};
