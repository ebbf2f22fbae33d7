-- An operator may disable an account (a compromised one, say) and enable it again: while
-- disabled it cannot sign in and its API keys are refused; enabling gives them back.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

-- A change of email waiting for the new address to be confirmed by the link mailed to it.
CREATE TABLE email_changes (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email   TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX email_changes_expiry ON email_changes (expires_at);
