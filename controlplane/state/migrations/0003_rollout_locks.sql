-- Rollback locks: a tenant pinned to a backend, overriding the routing file until acknowledged,
-- and the log of every rollout action with who took it and why.
CREATE TABLE {schema}.rollout_locks (
    tenant            text PRIMARY KEY,
    backend           text NOT NULL CHECK (backend IN ('v1', 'v2')),
    declared_backend  text NOT NULL CHECK (declared_backend IN ('v1', 'v2')),  -- what the file said
    reason            text NOT NULL,
    actor             text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.rollout_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant    text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL,  -- rollback | ack | released | decision | promote | hold
    actor     text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX rollout_events_tenant ON {schema}.rollout_events (tenant, at DESC);

GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.rollout_locks, {schema}.rollout_events TO {app};
