-- A user's token version: part of every access token issued to them, raised whenever their
-- role changes, so that every token issued before the change stops working for good (a role
-- changed and changed back does not revive them).
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0 CHECK (token_version >= 0);
