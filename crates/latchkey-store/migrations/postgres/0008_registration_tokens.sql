-- RFC 7592: a self-registered client reads, updates and deletes its own registration with the
-- registration access token it was given, stored here as SHA-256 like every other secret.
ALTER TABLE oauth_clients ADD COLUMN registration_token_hash BYTEA;
