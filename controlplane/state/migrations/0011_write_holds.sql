-- 0011: per-tenant write holds during a cutover. The cutover ({control}) inserts a hold, NOTIFYs
-- the routers, waits until every router worker alive in router_workers has confirmed it, runs the
-- final sync, flips, and releases it (release_to: the backend the held writes go to). Each router
-- worker ({router}) registers itself and its poll interval in router_workers on every poll, reads
-- the holds, and writes its confirmation once it holds the tenant's writes. A router releases a hold
-- on its own clock at hold_s, so a cutover that dies cannot freeze a tenant; expires_at (the
-- database's clock) only keeps an abandoned hold from being picked up again.
-- The router role touches router_workers and hold_confirmations only through the three SECURITY
-- DEFINER functions below, each keyed by a secret the worker drew at start (only its SHA-256 is
-- stored): a router registers, confirms and unregisters as itself, never as another worker.
CREATE TABLE {schema}.write_holds (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text NOT NULL,
    cutover_id   bigint REFERENCES {schema}.cutovers (id) ON DELETE SET NULL,
    hold_s       double precision NOT NULL CHECK (hold_s > 0 AND hold_s <= 30),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL,
    release_to   text CHECK (release_to IN ('v1', 'v2')),
    released_at  timestamptz
);
CREATE INDEX write_holds_open ON {schema}.write_holds (expires_at) WHERE released_at IS NULL;
CREATE INDEX write_holds_tenant ON {schema}.write_holds (tenant, id DESC);

CREATE TABLE {schema}.router_workers (
    worker      text PRIMARY KEY CHECK (length(worker) <= 200),
    host        text NOT NULL CHECK (length(host) <= 200),
    pid         integer NOT NULL,
    poll_s      double precision NOT NULL CHECK (poll_s > 0 AND poll_s <= 3600),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.hold_confirmations (
    hold_id       bigint NOT NULL REFERENCES {schema}.write_holds (id) ON DELETE CASCADE,
    worker        text NOT NULL CHECK (length(worker) <= 200),
    confirmed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (hold_id, worker)
);

-- Register, or refresh last_seen; false when the name is taken by a worker with another secret.
CREATE FUNCTION {schema}.register_router_worker(p_worker text, p_host text, p_pid integer,
                                                p_poll_s double precision, p_secret text) RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO {schema}.router_workers AS w (worker, host, pid, poll_s, secret_sha256)
    VALUES (p_worker, p_host, p_pid, p_poll_s, sha256(convert_to(p_secret, 'UTF8')))
    ON CONFLICT (worker) DO UPDATE SET last_seen = now(), poll_s = EXCLUDED.poll_s
        WHERE w.secret_sha256 = EXCLUDED.secret_sha256
    RETURNING true
$$;
-- Confirm a hold as this worker (nothing, for a wrong secret; once, however often it is called).
CREATE FUNCTION {schema}.confirm_write_hold(p_hold_id bigint, p_worker text, p_secret text) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO {schema}.hold_confirmations (hold_id, worker)
    SELECT p_hold_id, w.worker FROM {schema}.router_workers w
    WHERE w.worker = p_worker AND w.secret_sha256 = sha256(convert_to(p_secret, 'UTF8'))
    ON CONFLICT DO NOTHING
$$;
-- A clean shutdown: this worker no longer has to confirm holds.
CREATE FUNCTION {schema}.unregister_router_worker(p_worker text, p_secret text) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM {schema}.router_workers
    WHERE worker = p_worker AND secret_sha256 = sha256(convert_to(p_secret, 'UTF8'))
$$;
REVOKE ALL ON FUNCTION {schema}.register_router_worker(text, text, integer, double precision, text),
    {schema}.confirm_write_hold(bigint, text, text), {schema}.unregister_router_worker(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.register_router_worker(text, text, integer, double precision, text),
    {schema}.confirm_write_hold(bigint, text, text), {schema}.unregister_router_worker(text, text) TO {router};

GRANT SELECT ON {schema}.write_holds TO {router};

GRANT SELECT, INSERT, UPDATE ON {schema}.write_holds TO {control};
GRANT SELECT, DELETE ON {schema}.router_workers TO {control};
GRANT SELECT ON {schema}.hold_confirmations TO {control};

REVOKE ALL ON {schema}.write_holds, {schema}.router_workers, {schema}.hold_confirmations FROM {app};
