-- Linking a provider from the account page: the sign-in in flight then belongs to that
-- account, and its callback adds the identity instead of signing anyone in.
ALTER TABLE upstream_logins ADD COLUMN link_user_id TEXT;
-- An account has at most one identity per provider, so unlinking names the provider.
DROP INDEX identities_user;
CREATE UNIQUE INDEX identities_user_provider ON identities (user_id, provider_id);
