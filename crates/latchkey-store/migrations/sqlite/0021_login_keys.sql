-- How an API key came to be: `token_flow` or `handoff` for the key a CLI login was given (the
-- account console lists those among the logins); NULL for a key made on purpose.
ALTER TABLE api_keys ADD COLUMN origin TEXT;
