-- 0012: the reverse sync of each tenant cut over to v2: v2's new orders and status changes written
-- back into v1's own store, so that a way back loses nothing even with v2 stopped. One row per
-- tenant, begun (again) by each cutover to v2, advanced by every pass of `dualstack reverse-sync`,
-- ended by `dualstack cutover complete SLUG`. The way back (`cutover --to v1`) reads it when v2's
-- database cannot be reached: a follower that was caught up, and has failed since only because v2's
-- database went away, says what v1 holds.
-- Only the control role ({control}: the CLI and the follower) reads and writes it.
CREATE TABLE {schema}.reverse_syncs (
    tenant           text PRIMARY KEY,
    v1_store         text NOT NULL,          -- where the rows go, as messages name it (never a password)
    started_at       timestamptz NOT NULL DEFAULT now(),
    started_by       text NOT NULL,
    watermark        timestamptz,            -- v2's clock: every change v2 committed before it is in v1
    last_pass_at     timestamptz,            -- the end of the last pass that finished clean
    lag_s            double precision,       -- that pass's end minus its watermark
    rows_copied      bigint NOT NULL DEFAULT 0 CHECK (rows_copied >= 0),  -- inserted or updated in v1
    last_attempt_at  timestamptz,            -- the end of the last pass, clean or not
    last_error       text,                   -- NULL after a clean pass
    failing_since    timestamptz,            -- the first failed pass after the last clean one
    failing_side     text CHECK (failing_side IN ('v1', 'v2')),  -- ... and which store it could not use
    completed_at     timestamptz,            -- `cutover complete`: the follower copies no more
    completed_by     text
);

GRANT SELECT, INSERT, UPDATE ON {schema}.reverse_syncs TO {control};
