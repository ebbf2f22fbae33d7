-- A verification link remembers the browser that signed up (the hash of its sign-up receipt
-- cookie): only that browser, or someone who knows the password, may use it.
ALTER TABLE email_verifications ADD COLUMN browser_hash BYTEA;
CREATE INDEX email_verifications_browser ON email_verifications (browser_hash);

-- Password reset links: single use, short-lived, hashed like every other secret.
CREATE TABLE password_resets (
    token_hash  BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX password_resets_expiry ON password_resets (expires_at);
CREATE INDEX password_resets_user ON password_resets (user_id);

-- Unverified accounts expire: the sweep finds them by age.
CREATE INDEX users_unverified ON users (created_at) WHERE NOT email_verified;
