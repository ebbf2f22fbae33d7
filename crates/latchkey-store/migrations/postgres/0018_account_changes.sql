-- An operator may disable an account (a compromised one, say) and enable it again: while
-- disabled it cannot sign in and its API keys are refused; enabling gives them back.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- A change of email waiting for the new address to be confirmed by the link mailed to it.
CREATE TABLE email_changes (
    token_hash  BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX email_changes_expiry ON email_changes (expires_at);
