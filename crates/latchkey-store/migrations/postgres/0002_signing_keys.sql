-- Ed25519 access-token signing keys. The newest unretired key signs; retired keys stay in the
-- JWKS until the tokens they signed have expired, then they are deleted.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    private_pkcs8  BYTEA NOT NULL,
    public_key     BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT
);
