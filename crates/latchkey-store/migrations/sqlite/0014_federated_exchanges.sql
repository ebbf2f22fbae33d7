-- Keyless CI: every exchange of an external issuer's token (which trust, which subject and
-- claims, which org), for audit.
CREATE TABLE federated_exchanges (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    trusted_issuer  TEXT NOT NULL,
    subject         TEXT NOT NULL,
    claims          TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    at              BIGINT NOT NULL
);
CREATE INDEX federated_exchanges_at ON federated_exchanges (at);
