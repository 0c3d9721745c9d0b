-- 0008: one role per program. Until now the one application role ({app}, also v2's role in the
-- payments database) could do anything here, so the router, or v2, could pin tenants by writing a
-- rollback lock. Now:
-- - the router ({router}) reads locks and rollouts (routing, metrics) and writes shadow results
--   (counts, fields, samples pruned to the newest few, the noise learner's pairs);
-- - the decider and the CLI ({control}) write locks, events, rollouts, decisions and snapshots,
--   and read shadow results (reports, the cutover gate, the decider's evidence);
-- - v2's application role ({app}) has no business here at all.
-- Identity columns need no sequence privilege; the upserts read the row they update (SELECT).

GRANT USAGE ON SCHEMA {schema} TO {router}, {control};

GRANT SELECT ON {schema}.rollout_locks, {schema}.rollouts, {schema}.rollout_decisions TO {router};
GRANT SELECT, INSERT, UPDATE ON {schema}.shadow_counts, {schema}.shadow_fields TO {router};
GRANT SELECT, INSERT, DELETE ON {schema}.shadow_samples TO {router};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.shadow_noise TO {router};

GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.rollout_locks, {schema}.rollout_events, {schema}.rollouts,
    {schema}.rollout_decisions TO {control};
GRANT SELECT, INSERT, DELETE ON {schema}.rollout_snapshots TO {control};
GRANT SELECT ON {schema}.shadow_counts, {schema}.shadow_fields, {schema}.shadow_samples, {schema}.shadow_noise
    TO {control};

REVOKE ALL ON {schema}.rollout_locks, {schema}.rollout_events, {schema}.rollouts, {schema}.rollout_decisions,
    {schema}.rollout_snapshots, {schema}.shadow_counts, {schema}.shadow_fields, {schema}.shadow_samples,
    {schema}.shadow_noise FROM {app};
REVOKE USAGE ON SCHEMA {schema} FROM {app};
