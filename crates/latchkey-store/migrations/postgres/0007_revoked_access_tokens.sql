-- Access tokens revoked one by one (RFC 7009), by `jti`, kept until they would have expired.
-- (Tokens revoked with their whole login are found from their refresh family instead.)
CREATE TABLE revoked_access_tokens (
    jti         TEXT PRIMARY KEY,
    revoked_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX revoked_access_tokens_expiry ON revoked_access_tokens (expires_at);

-- Gates follow revocations by time: revoked refresh families are found by when.
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
