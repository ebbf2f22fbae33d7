-- What a key may do: space-separated scopes, as OAuth writes them. NULL: everything its
-- account may (every key made before).
ALTER TABLE api_keys ADD COLUMN scope TEXT;
