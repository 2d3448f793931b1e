-- Tenants, their users and projects, idempotency keys and the event outbox.
--
-- Every tenant table: tenant_id first in the primary key, in every unique constraint and in
-- every foreign key to another tenant table (ready for Citus), and Row-Level Security ENABLED
-- and FORCED with a policy that USING and WITH CHECK compare tenant_id to the transaction's
-- app.current_tenant. With no tenant set, a query sees no rows and writes nothing.
--
-- The role plinth_app exists before this runs (`plinth migrate` creates it).

CREATE TABLE tenants (
    id         uuid        PRIMARY KEY,
    slug       text        NOT NULL UNIQUE,
    name       text        NOT NULL,
    plan       text        NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

-- Resolving a host's tenant happens before any tenant context exists. Rather than letting
-- plinth_app read every tenant row, this function (running as the owner) answers exactly one
-- question: which tenant, if any, has this slug.
CREATE FUNCTION tenant_by_slug(p_slug text)
RETURNS TABLE (id uuid, slug text, name text, plan text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT t.id, t.slug, t.name, t.plan FROM public.tenants t WHERE t.slug = p_slug
$$;
REVOKE ALL ON FUNCTION tenant_by_slug(text) FROM PUBLIC;

CREATE TABLE users (
    tenant_id     uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid        NOT NULL,
    email         text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT users_email_key UNIQUE (tenant_id, email)
);
CREATE INDEX users_list_idx ON users (tenant_id, created_at DESC, id DESC);

CREATE TABLE projects (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         uuid        NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX projects_list_idx ON projects (tenant_id, created_at DESC, id DESC);

CREATE TABLE idempotency_keys (
    tenant_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    key         text        NOT NULL,
    fingerprint uuid        NOT NULL,
    status      smallint,
    body        bytea,
    location    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id, key),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

-- The outbox: every event a write caused, committed with the write.
CREATE TABLE events (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         uuid        NOT NULL,
    kind       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'projects', 'idempotency_keys', 'events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = NULLIF(current_setting(''app.current_tenant'', true), '''')::uuid) '
            'WITH CHECK (tenant_id = NULLIF(current_setting(''app.current_tenant'', true), '''')::uuid)', t);
    END LOOP;
END $$;

-- What the API role may do; RLS decides which rows.
GRANT USAGE ON SCHEMA public TO plinth_app;
GRANT SELECT, INSERT ON tenants TO plinth_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, projects, idempotency_keys TO plinth_app;
GRANT SELECT, INSERT ON events TO plinth_app;
GRANT EXECUTE ON FUNCTION tenant_by_slug(text) TO plinth_app;
