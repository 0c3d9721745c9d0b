-- Origins (scheme://host[:port]) whose pages may call the tenant's API from a browser (CORS), besides
-- the tenant's own hosts, which are always allowed (<slug>.<base_domain> and its routing-file hosts,
-- https and http). Each is checked by `dualstack tenant add/set --cors-origin`; v2 checks again
-- when it reads them and ignores one it cannot use. Not a secret: the tenants table is v2's to read.
ALTER TABLE {schema}.tenants
    ADD COLUMN cors_origins text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(cors_origins) <= 20 AND array_position(cors_origins, NULL) IS NULL);
