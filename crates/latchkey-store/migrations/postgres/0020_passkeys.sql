-- Passkeys (WebAuthn): each account's credentials (the public key and signature counter, as
-- webauthn-rs keeps them: nothing secret), and the ceremonies in flight between the options
-- sent to the browser and its answer (their state stays here, never in the browser).
CREATE TABLE passkeys (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    credential_id  BYTEA NOT NULL UNIQUE,
    credential     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id);
CREATE TABLE webauthn_ceremonies (
    token_hash  BYTEA PRIMARY KEY,
    -- registration, sign_in (a passkey alone: nobody known yet) or second_factor
    kind        TEXT NOT NULL,
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    state       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);
