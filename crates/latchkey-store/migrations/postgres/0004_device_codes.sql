-- RFC 8628 device authorization. The device code is stored as SHA-256; the user code (8 letters
-- from an unambiguous alphabet, shown as XXXX-XXXX) is what a person types, so it is unique
-- among live rows.
CREATE TABLE device_codes (
    device_code_hash  BYTEA PRIMARY KEY,
    user_code         TEXT NOT NULL UNIQUE,
    client_id         TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scope             TEXT NOT NULL,
    resource          TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    last_polled_at    BIGINT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'delivered')),
    user_id           TEXT REFERENCES users (id) ON DELETE CASCADE,
    family_id         TEXT NOT NULL
);
