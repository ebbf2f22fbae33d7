-- Times are Unix milliseconds (BIGINT); secrets appear only as SHA-256 hashes (BYTEA).

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL UNIQUE,
    email_verified   BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash    TEXT NOT NULL,
    personal_org_id  TEXT NOT NULL REFERENCES orgs (id),
    created_at       BIGINT NOT NULL
);

CREATE TABLE memberships (
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id   TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    role     TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    PRIMARY KEY (user_id, org_id)
);

CREATE TABLE email_verifications (
    token_hash  BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX email_verifications_expiry ON email_verifications (expires_at);

CREATE TABLE sessions (
    token_hash  BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id        TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    key_prefix    TEXT NOT NULL,
    key_hash      BYTEA NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    last_used_at  BIGINT,
    usage_count   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at);

CREATE TABLE token_flows (
    id                TEXT PRIMARY KEY,
    wait_secret_hash  BYTEA NOT NULL,
    seal_public_key   BYTEA NOT NULL,
    pairing_code      TEXT NOT NULL,
    client_name       TEXT NOT NULL,
    utm_source        TEXT,
    next_url          TEXT,
    localhost_port    BIGINT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'denied', 'approved')),
    approved_user_id  TEXT REFERENCES users (id) ON DELETE CASCADE,
    approved_key_id   TEXT,
    sealed_key        BYTEA,
    approved_at       BIGINT,
    delivered_at      BIGINT
);
CREATE INDEX token_flows_expiry ON token_flows (expires_at);
