-- 0009: the cutover journal. Each `dualstack cutover` of a tenant is one row of cutovers; each of its
-- steps writes journal rows as it happens (started, then done / skipped / interrupted / failed), so
-- that Ctrl-C or a crash leaves a record of where it stopped and a re-run continues from there.
-- outcome is NULL while a run is going on (or after a process died mid-step); a cutover that ended
-- interrupted or stopped is continued by the next run of the same move, and one for the other
-- direction supersedes it. Only the control role ({control}: the CLI) reads and writes them.
CREATE TABLE {schema}.cutovers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant        text NOT NULL,
    from_backend  text NOT NULL CHECK (from_backend IN ('v1', 'v2')),
    to_backend    text NOT NULL CHECK (to_backend IN ('v1', 'v2')),
    actor         text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    outcome       text CHECK (outcome IN ('done', 'stopped', 'interrupted', 'superseded'))
);
CREATE INDEX cutovers_tenant ON {schema}.cutovers (tenant, id DESC);

CREATE TABLE {schema}.cutover_journal (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cutover_id  bigint NOT NULL REFERENCES {schema}.cutovers (id) ON DELETE CASCADE,
    step        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('started', 'done', 'skipped', 'interrupted', 'failed')),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX cutover_journal_cutover ON {schema}.cutover_journal (cutover_id, id);

GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.cutovers, {schema}.cutover_journal TO {control};
