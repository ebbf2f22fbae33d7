-- The account console. A session gets a public handle (`id`: the token hash never leaves the
-- database), the browser and address it was opened from, and when it was last seen.
ALTER TABLE sessions ADD COLUMN id TEXT;
UPDATE sessions SET id = 'ses_' || md5(random()::text || clock_timestamp()::text);
CREATE UNIQUE INDEX sessions_id ON sessions (id);
CREATE INDEX sessions_user ON sessions (user_id);
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN ip TEXT;
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET last_seen_at = created_at;

-- A login: one refresh family, from the grant that started it (how, on which device the
-- client said, with what scope) to its last refresh. Revoking it revokes the family.
CREATE TABLE logins (
    family_id     TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id     TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    method        TEXT NOT NULL,
    device_name   TEXT,
    scope         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL
);
CREATE INDEX logins_user ON logins (user_id);
INSERT INTO logins (family_id, user_id, client_id, method, device_name, scope, created_at, last_used_at)
    SELECT family_id, MIN(user_id), MIN(client_id), 'oauth', NULL, MIN(scope), MIN(created_at), MAX(created_at)
    FROM refresh_tokens GROUP BY family_id;

-- Audit events name the org they happened in, and are read per account or per org, newest
-- first, and pruned by age.
ALTER TABLE audit_events ADD COLUMN org_id TEXT;
ALTER TABLE audit_events ADD COLUMN ip TEXT;
CREATE INDEX audit_events_user ON audit_events (user_id, id);
CREATE INDEX audit_events_org ON audit_events (org_id, id);
CREATE INDEX audit_events_age ON audit_events (created_at);
