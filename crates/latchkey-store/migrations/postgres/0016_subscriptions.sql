-- Subscriptions, one per org once anything is known of it, with the time of the billing event
-- (or admin change) the row comes from: an older event never overwrites a newer state.
CREATE TABLE subscriptions (
    org_id              TEXT PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    status              TEXT NOT NULL,
    tier                TEXT NOT NULL,
    current_period_end  BIGINT,
    customer_id         TEXT,
    subscription_id     TEXT,
    as_of               BIGINT NOT NULL
);
CREATE INDEX subscriptions_subscription ON subscriptions (subscription_id);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);
-- Billing events already applied, by the provider's event id: a replay changes nothing.
CREATE TABLE billing_events (
    event_id     TEXT PRIMARY KEY,
    received_at  BIGINT NOT NULL
);
-- Ids older than a month are pruned as new events arrive.
CREATE INDEX billing_events_received ON billing_events (received_at);
