-- Organizations: admins beside owners and members, and when each person joined. SQLite cannot
-- change a CHECK constraint in place: the table is made again.
CREATE TABLE memberships_new (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, org_id)
);
INSERT INTO memberships_new (user_id, org_id, role) SELECT user_id, org_id, role FROM memberships;
DROP TABLE memberships;
ALTER TABLE memberships_new RENAME TO memberships;
CREATE INDEX memberships_org ON memberships (org_id, role);
-- Invitations to an org: one pending per address and org (inviting again replaces it), the
-- link's token as a SHA-256 hash, used once, by a verified account with that address.
CREATE TABLE org_invitations (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    token_hash  BLOB NOT NULL UNIQUE,
    invited_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    UNIQUE (org_id, email)
);
