-- Invitations, password resets and address verification: the flows that go through someone's
-- mailbox. Each sends one message: a row of `outbound_emails` written in the transaction of the
-- change that causes it, with the job (kind `email.send`) that sends it. A message's link
-- carries a token derived from the message's id under a server key; only the token's SHA-256
-- is stored here (on the invitation, or in `user_tokens`), never the token. A token is spent
-- by deleting its row. Every table is tenant data, under the same RLS as the rest.

ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

CREATE TABLE outbound_emails (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         uuid        NOT NULL,
    purpose    text        NOT NULL CHECK (purpose IN ('invitation', 'password_reset', 'verify_email')),
    recipient  text        NOT NULL CHECK (length(recipient) <= 254),
    state      text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead', 'dropped')),
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text        CHECK (length(last_error) <= 512),
    -- A reset message's token is issued on its first attempt only: a retry never re-issues a
    -- token that was spent meanwhile.
    token_issued boolean   NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX outbound_emails_done_idx ON outbound_emails (created_at) WHERE state <> 'pending';

CREATE TABLE invitations (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         uuid        NOT NULL,
    email      text        NOT NULL CHECK (length(email) <= 254),
    role       text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    invited_by uuid        NOT NULL,
    token_hash bytea       NOT NULL CHECK (length(token_hash) = 32),
    email_id   uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email),
    UNIQUE (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, email_id) REFERENCES outbound_emails (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX invitations_expiry_idx ON invitations (expires_at);
CREATE INDEX invitations_email_idx ON invitations (tenant_id, email_id);

CREATE TABLE user_tokens (
    tenant_id  uuid        NOT NULL,
    token_hash bytea       NOT NULL CHECK (length(token_hash) = 32),
    purpose    text        NOT NULL CHECK (purpose IN ('password_reset', 'verify_email')),
    user_id    uuid        NOT NULL,
    email_id   uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, email_id) REFERENCES outbound_emails (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_tokens_user_idx ON user_tokens (tenant_id, user_id);
CREATE INDEX user_tokens_email_idx ON user_tokens (tenant_id, email_id);
CREATE INDEX user_tokens_expiry_idx ON user_tokens (expires_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['outbound_emails', 'invitations', 'user_tokens'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = NULLIF(current_setting(''app.current_tenant'', true), '''')::uuid) '
            'WITH CHECK (tenant_id = NULLIF(current_setting(''app.current_tenant'', true), '''')::uuid)', t);
    END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON outbound_emails, invitations, user_tokens TO plinth_app;

-- Retention across every tenant, as the owner: expired invitations and tokens (the cutoff is
-- the earlier of the caller's time and the database's, so nothing live goes), and messages no
-- longer pending queued before `p_before` (with the tokens they carried).
CREATE FUNCTION plinth_prune_account_emails(p_now timestamptz, p_before timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE a bigint; b bigint; c bigint;
DECLARE cutoff timestamptz := least(p_now, now());
BEGIN
    DELETE FROM public.invitations WHERE expires_at <= cutoff;
    GET DIAGNOSTICS a = ROW_COUNT;
    DELETE FROM public.user_tokens WHERE expires_at <= cutoff;
    GET DIAGNOSTICS b = ROW_COUNT;
    DELETE FROM public.outbound_emails WHERE state <> 'pending' AND created_at < p_before;
    GET DIAGNOSTICS c = ROW_COUNT;
    RETURN a + b + c;
END $$;
REVOKE ALL ON FUNCTION plinth_prune_account_emails(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plinth_prune_account_emails(timestamptz, timestamptz) TO plinth_app;
