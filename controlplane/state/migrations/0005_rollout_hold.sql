-- Ops can hold a tenant's rollout: the decider records evidence but takes no action until resumed.
ALTER TABLE {schema}.rollouts DROP CONSTRAINT rollouts_phase_check;
ALTER TABLE {schema}.rollouts ADD CONSTRAINT rollouts_phase_check
    CHECK (phase IN ('soaking', 'promoted', 'rolled_back', 'held'));
