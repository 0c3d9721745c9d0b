-- How often each field differed, per minute (samples keep only the newest few examples).
CREATE TABLE {schema}.shadow_fields (
    tenant    text NOT NULL,
    endpoint  text NOT NULL,
    path      text NOT NULL,
    kind      text NOT NULL,
    minute    timestamptz NOT NULL,
    count     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, endpoint, path, kind, minute)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.shadow_fields TO {app};
