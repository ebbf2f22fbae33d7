-- A login's refresh token may act for an org other than its person's personal one (a token
-- exchanged into the org refreshes there); NULL: the personal org. Leaving or deleting the
-- org deletes such tokens.
ALTER TABLE refresh_tokens ADD COLUMN org_id TEXT REFERENCES orgs (id) ON DELETE CASCADE;
-- Who left an org, and when (user_id NULL: the org was deleted, with everyone in it). Access
-- tokens for the org issued by then are refused, by the issuer and by gates following its
-- revocation feed; a row outlives every such token by far and is then pruned.
CREATE TABLE org_departures (
    org_id       TEXT NOT NULL,
    user_id      TEXT,
    departed_at  BIGINT NOT NULL
);
CREATE INDEX org_departures_org ON org_departures (org_id, departed_at);
CREATE INDEX org_departures_at ON org_departures (departed_at);
