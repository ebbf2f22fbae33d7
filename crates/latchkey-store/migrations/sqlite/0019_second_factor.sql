-- A second factor: an authenticator app's TOTP secret (sealed with the master key), its
-- single-use recovery codes (SHA-256: each has 80 random bits), and the sign-ins waiting for
-- it between the password and the code. An org may require its members to have one.
CREATE TABLE totp_credentials (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret        BLOB NOT NULL,
    confirmed_at  INTEGER,
    -- The last time step a code was accepted for: each code works once.
    last_step     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE sign_in_challenges (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    next_path   TEXT,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sign_in_challenges_expiry ON sign_in_challenges (expires_at);
ALTER TABLE orgs ADD COLUMN require_second_factor BOOLEAN NOT NULL DEFAULT FALSE;
