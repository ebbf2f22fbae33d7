-- Sign-in with upstream identity providers.
-- A sign-in in flight: its state (hashed), the browser it belongs to (the hash of a cookie's
-- value), the PKCE verifier and nonce it sent, where to go afterwards. Single use: removed
-- once the callback has signed the person in, so a failed code exchange can be retried.
CREATE TABLE upstream_logins (
    state_hash    BYTEA PRIMARY KEY,
    provider_id   TEXT NOT NULL,
    browser_hash  BYTEA NOT NULL,
    pkce_verifier TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    next_path     TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
-- Who an account is at a provider: its subject there, never its email, decides.
CREATE TABLE identities (
    provider_id TEXT NOT NULL,
    subject     TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (provider_id, subject)
);
CREATE INDEX identities_user ON identities (user_id);
