-- Throttles on credential guessing (sign-in per account and per IP, device user-code entry),
-- kept in the database so that every replica counts the same attempts. `full_at` is when the
-- bucket is full again (GCRA's theoretical arrival time), in Unix milliseconds.
CREATE TABLE throttles (
    throttle_key  TEXT PRIMARY KEY,
    full_at       INTEGER NOT NULL
);
CREATE INDEX throttles_full_at ON throttles (full_at);
