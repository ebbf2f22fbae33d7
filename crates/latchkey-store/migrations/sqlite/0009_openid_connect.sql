-- OpenID Connect and more signing algorithms.
-- Keys of every algorithm share the table: one active key per algorithm. Public keys are
-- Ed25519's 32 bytes, P-256's uncompressed point or RSA's PKCS#1 DER.
ALTER TABLE signing_keys ADD COLUMN alg TEXT NOT NULL DEFAULT 'EdDSA';
-- When the person signed in (OIDC auth_time, max_age, prompt=login). 0 for sessions opened
-- before: they count as too old for any max_age.
ALTER TABLE sessions ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
-- The name the person gave, for the profile scope's name claim.
ALTER TABLE users ADD COLUMN name TEXT;
ALTER TABLE authorization_codes ADD COLUMN nonce TEXT;
ALTER TABLE authorization_codes ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
-- RP-initiated logout targets (JSON array) and the algorithms a client registered.
ALTER TABLE oauth_clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE oauth_clients ADD COLUMN id_token_alg TEXT;
ALTER TABLE oauth_clients ADD COLUMN access_token_alg TEXT;
-- prompt=none looks for a live approval of (person, client).
CREATE INDEX refresh_tokens_user_client ON refresh_tokens (user_id, client_id);
