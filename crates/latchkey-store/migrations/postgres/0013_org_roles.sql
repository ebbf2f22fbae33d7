-- Organizations: admins beside owners and members, and when each person joined.
ALTER TABLE memberships DROP CONSTRAINT memberships_role_check;
ALTER TABLE memberships
    ADD CONSTRAINT memberships_role_check CHECK (role IN ('owner', 'admin', 'member'));
ALTER TABLE memberships ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX memberships_org ON memberships (org_id, role);
-- Invitations to an org: one pending per address and org (inviting again replaces it), the
-- link's token as a SHA-256 hash, used once, by a verified account with that address.
CREATE TABLE org_invitations (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    token_hash  BYTEA NOT NULL UNIQUE,
    invited_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    UNIQUE (org_id, email)
);
