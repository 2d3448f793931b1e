-- Sessions: one per login, continued by refresh tokens that rotate on every use. Only the
-- SHA-256 of a refresh token is stored. A spent token keeps its row (with when it was spent
-- and the hash of its successor) for as long as its session lives, so that a spent token
-- presented again is recognised and ends the session. Ending a session deletes it with its
-- tokens; deleting a user deletes their sessions.

CREATE TABLE sessions (
    tenant_id       uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              uuid        NOT NULL,
    user_id         uuid        NOT NULL,
    created_at      timestamptz NOT NULL,
    last_used_at    timestamptz NOT NULL,
    idle_expires_at timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    ip              text        CHECK (length(ip) <= 64),
    user_agent      text        CHECK (length(user_agent) <= 256),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user_idx ON sessions (tenant_id, user_id, created_at DESC, id DESC);
CREATE INDEX sessions_expiry_idx ON sessions (least(idle_expires_at, expires_at));

CREATE TABLE refresh_tokens (
    tenant_id  uuid        NOT NULL,
    hash       bytea       NOT NULL CHECK (length(hash) = 32),
    session_id uuid        NOT NULL,
    spent_at   timestamptz,
    successor  bytea       CHECK (length(successor) = 32),
    PRIMARY KEY (tenant_id, hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE,
    CHECK ((spent_at IS NULL) = (successor IS NULL))
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (tenant_id, session_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sessions', 'refresh_tokens'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = NULLIF(current_setting(''app.current_tenant'', true), '''')::uuid) '
            'WITH CHECK (tenant_id = NULLIF(current_setting(''app.current_tenant'', true), '''')::uuid)', t);
    END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, refresh_tokens TO plinth_app;

-- Retention of sessions across every tenant, as the owner. The cutoff is the earlier of the
-- caller's time and the database's: no caller can end a session that is still live.
CREATE FUNCTION plinth_prune_sessions(p_now timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE n bigint;
DECLARE cutoff timestamptz := least(p_now, now());
BEGIN
    DELETE FROM public.sessions WHERE least(idle_expires_at, expires_at) <= cutoff;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION plinth_prune_sessions(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plinth_prune_sessions(timestamptz) TO plinth_app;
