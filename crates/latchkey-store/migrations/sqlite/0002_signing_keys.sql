-- Ed25519 access-token signing keys. The newest unretired key signs; retired keys stay in the
-- JWKS until the tokens they signed have expired, then they are deleted.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    private_pkcs8  BLOB NOT NULL,
    public_key     BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    retired_at     INTEGER
);
