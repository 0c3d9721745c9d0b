-- Each tenant's move to v2: its soak window, the decision engine's memory, and every decision
-- with the evidence, the tests and the thresholds it used.
CREATE TABLE {schema}.rollouts (
    tenant           text PRIMARY KEY,
    phase            text NOT NULL CHECK (phase IN ('soaking', 'promoted', 'rolled_back')),
    soak_started_at  timestamptz NOT NULL,
    memory           jsonb NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.rollout_decisions (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant    text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    action    text NOT NULL,
    verdict   text NOT NULL,
    dry_run   boolean NOT NULL,
    reasons   jsonb NOT NULL,
    checks    jsonb NOT NULL
);
CREATE INDEX rollout_decisions_tenant ON {schema}.rollout_decisions (tenant, at DESC);

GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.rollouts, {schema}.rollout_decisions TO {app};
