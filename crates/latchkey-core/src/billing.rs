//! Subscriptions and entitlements, per org. The rules are pure (what a subscription grants at
//! a given time, and which of two states of it wins); the service methods at the end apply
//! them to the store. People buy tiers; products check entitlements, which the
//! configuration maps tiers to. The billing system (Stripe, see [`stripe`]) or an admin sets
//! the state; tokens, introspection, `/v1/me` and the gate read it.
//!
//! Ordering: billing events arrive late, twice and out of order. A state carries the time of
//! the event it comes from (`as_of`, the event's `created`), and a state older than the stored
//! one is ignored, whatever the arrival order. A canceled subscription stays canceled: Stripe
//! never revives one, so a late event for it (even of the same second) changes nothing; buying
//! again makes a new subscription, which replaces it.

pub mod stripe;

use std::{collections::BTreeMap, fmt, time::Duration};

use thiserror::Error;
use time::OffsetDateTime;

use crate::{
    Service,
    console::AuditKind,
    row_cache::RowCache,
    store::{BillingOutcome, Org, StoreError},
};

/// Where a subscription stands, as Stripe names it (`none`: never subscribed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionStatus {
    None,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "\u{201c}{0}\u{201d} is not a subscription status: use none, trialing, active, past_due, \
     canceled or unpaid"
)]
pub struct InvalidStatus(pub String);

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Unpaid => "unpaid",
        }
    }

    /// One of the six statuses, as an admin types it.
    pub fn parse(raw: &str) -> Result<Self, InvalidStatus> {
        Ok(match raw {
            "none" => Self::None,
            "trialing" => Self::Trialing,
            "active" => Self::Active,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "unpaid" => Self::Unpaid,
            other => return Err(InvalidStatus(other.to_owned())),
        })
    }

    /// A Stripe subscription's `status`, Stripe's extra ones folded in: `incomplete` (the
    /// first payment is pending) grants nothing yet, `incomplete_expired` is over, `paused`
    /// (a trial ended without a payment method) is unpaid.
    pub fn from_stripe(raw: &str) -> Option<Self> {
        match raw {
            "incomplete" => Some(Self::None),
            "incomplete_expired" => Some(Self::Canceled),
            "paused" => Some(Self::Unpaid),
            other => Self::parse(other).ok(),
        }
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An org's subscription as last known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub status: SubscriptionStatus,
    /// The tier bought (kept when the subscription lapses, for the record).
    pub tier: String,
    /// When the period paid for ends (a renewal moves it on); `None`: open-ended.
    pub current_period_end: Option<OffsetDateTime>,
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    /// The time of the event (or admin change) this state comes from.
    pub as_of: OffsetDateTime,
}

/// The tiers and what they grant, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans {
    /// Tier → entitlements.
    pub tiers: BTreeMap<String, Vec<String>>,
    /// The tier of an org without a subscription that grants anything.
    pub default_tier: String,
    /// How long a subscription keeps its entitlements past its period's end while the
    /// payment is retried (`past_due`), or while a renewal's event is late.
    pub grace: Duration,
    /// Where an org subscribes; `{org_id}` in it becomes the org's id (a Stripe payment
    /// link's `?client_reference_id={org_id}`).
    pub subscribe_url: Option<String>,
    /// Where each tier is bought, when it has a link of its own (the same template).
    pub tier_subscribe_urls: BTreeMap<String, String>,
    /// Where a subscribed org's owners manage billing (Stripe's customer portal).
    pub manage_url: Option<String>,
}

impl Default for Plans {
    fn default() -> Self {
        Self {
            tiers: BTreeMap::from([(DEFAULT_TIER.to_owned(), Vec::new())]),
            default_tier: DEFAULT_TIER.to_owned(),
            grace: Duration::from_secs(7 * 24 * 60 * 60),
            subscribe_url: None,
            tier_subscribe_urls: BTreeMap::new(),
            manage_url: None,
        }
    }
}

/// The tier of an org that has bought nothing.
pub const DEFAULT_TIER: &str = "free";

/// What a subscription grants now: the tier in force and its entitlements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub status: SubscriptionStatus,
    pub tier: String,
    pub entitlements: Vec<String>,
}

impl Default for Standing {
    /// Nothing bought, and a default tier that grants nothing.
    fn default() -> Self {
        Self {
            status: SubscriptionStatus::None,
            tier: DEFAULT_TIER.to_owned(),
            entitlements: Vec::new(),
        }
    }
}

impl Plans {
    /// Where orgs subscribe, if the deployment says, with `{org_id}` still in it: its own
    /// link, else the first tier's.
    pub fn subscribe_url_template(&self) -> Option<&str> {
        self.subscribe_url
            .as_deref()
            .or_else(|| self.tier_subscribe_urls.values().next().map(String::as_str))
    }

    /// Where the org `org_id` subscribes, if the deployment says.
    pub fn subscribe_url(&self, org_id: &str) -> Option<String> {
        self.subscribe_url_template()
            .map(|url| url.replace("{org_id}", org_id))
    }

    /// Each tier with a link of its own, and that link for the org `org_id`.
    pub fn tier_subscribe_urls(&self, org_id: &str) -> Vec<(String, String)> {
        self.tier_subscribe_urls
            .iter()
            .map(|(tier, url)| (tier.clone(), url.replace("{org_id}", org_id)))
            .collect()
    }

    /// What `subscription` (`None`: never subscribed) grants at `now`.
    pub fn standing(&self, subscription: Option<&Subscription>, now: OffsetDateTime) -> Standing {
        let status = subscription.map_or(SubscriptionStatus::None, |s| s.status);
        let tier = match subscription {
            Some(s) if self.grants(s, now) => s.tier.as_str(),
            _ => self.default_tier.as_str(),
        };
        Standing {
            status,
            tier: tier.to_owned(),
            entitlements: self.tiers.get(tier).cloned().unwrap_or_default(),
        }
    }

    fn grants(&self, subscription: &Subscription, now: OffsetDateTime) -> bool {
        let within_grace = subscription
            .current_period_end
            .is_none_or(|end| now < end + self.grace);
        match subscription.status {
            SubscriptionStatus::Active | SubscriptionStatus::Trialing => within_grace,
            SubscriptionStatus::PastDue => {
                subscription.current_period_end.is_some() && within_grace
            }
            SubscriptionStatus::None
            | SubscriptionStatus::Canceled
            | SubscriptionStatus::Unpaid => false,
        }
    }
}

/// Whether `incoming` replaces `stored` (see the module's ordering rule).
pub fn supersedes(stored: &Subscription, incoming: &Subscription) -> bool {
    let same_subscription =
        stored.subscription_id.is_some() && stored.subscription_id == incoming.subscription_id;
    if same_subscription && stored.status == SubscriptionStatus::Canceled {
        return false;
    }
    incoming.as_of >= stored.as_of
}

#[derive(Debug, Error)]
pub enum BillingError {
    #[error("this server takes no Stripe webhooks: set [stripe] webhook_secrets in its config")]
    StripeNotConfigured,
    #[error(transparent)]
    Signature(#[from] stripe::SignatureError),
    #[error("the webhook body is not a Stripe event: {0}")]
    BadEvent(String),
    #[error("there is no org \u{201c}{0}\u{201d}")]
    UnknownOrg(String),
    #[error("\u{201c}{0}\u{201d} is not a tier of this server; the tiers are {1}")]
    UnknownTier(String, String),
    #[error(transparent)]
    Status(#[from] InvalidStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The org's subscription changed.
    Applied,
    /// Older than what is known, or already applied: nothing changed.
    Unchanged,
    /// An event that says nothing of a subscription, or of one no org here has.
    Ignored,
}

/// Orgs' subscriptions as stored (`None`: the org has none), by org id. Forgotten when one
/// changes: here at once, on other replicas through the change feed.
pub(crate) type SubscriptionCache = RowCache<String, Option<Subscription>>;

impl Service {
    /// What `org_id`'s subscription grants now. A client acting for itself (its `org_id` is
    /// its own id) has none: the default tier.
    pub async fn standing(&self, org_id: &str) -> Result<Standing, StoreError> {
        Ok(self.stored_subscription(org_id).await?.1)
    }

    /// What `org_id`'s subscription grants now, for a gate asking at every request: read
    /// through a cache that every change of the subscription clears, here at once and on other
    /// replicas through the change feed. A change another process makes to a SQLite file
    /// (`latchkey admin subscriptions set`) reaches it within the key cache's lifetime.
    pub async fn standing_at_the_gate(&self, org_id: &str) -> Result<Standing, StoreError> {
        let now = self.now();
        let subscription = self
            .inner
            .subscriptions
            .read_through(org_id, now, || self.inner.store.subscription(org_id))
            .await?;
        Ok(self.inner.policy.plans.standing(subscription.as_ref(), now))
    }

    /// `org_id`'s subscription as stored, and what it grants now.
    async fn stored_subscription(
        &self,
        org_id: &str,
    ) -> Result<(Option<Subscription>, Standing), StoreError> {
        let subscription = self.inner.store.subscription(org_id).await?;
        let standing = self
            .inner
            .policy
            .plans
            .standing(subscription.as_ref(), self.now());
        Ok((subscription, standing))
    }

    /// A Stripe webhook: its signature checked before anything is read, then its event
    /// applied to the org it concerns.
    pub async fn stripe_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookOutcome, BillingError> {
        let settings = self
            .inner
            .policy
            .stripe
            .as_ref()
            .ok_or(BillingError::StripeNotConfigured)?;
        let now = self.now();
        stripe::verify_signature(
            signature,
            body,
            &settings.webhook_secrets,
            now.unix_timestamp(),
        )?;
        let event: stripe::Event =
            serde_json::from_slice(body).map_err(|e| BillingError::BadEvent(e.to_string()))?;
        let Some(update) = stripe::interpret(&event, &settings.prices)
            .map_err(|e| BillingError::BadEvent(e.to_string()))?
        else {
            return Ok(WebhookOutcome::Ignored);
        };
        let org_id = match &update.org {
            Some(org) => self.inner.store.find_org(org).await?.map(|o| o.id),
            None => {
                self.inner
                    .store
                    .billing_org(
                        update.subscription_id.as_deref(),
                        update.customer_id.as_deref(),
                    )
                    .await?
            }
        };
        let Some(org_id) = org_id else {
            tracing::warn!(event = %event.id, kind = %event.kind, "a Stripe event for no org here; ignored");
            return Ok(WebhookOutcome::Ignored);
        };
        let outcome = self
            .inner
            .store
            .apply_billing_update(
                Some(&event.id),
                &org_id,
                &update,
                &self.inner.policy.plans.default_tier,
                now,
            )
            .await?;
        Ok(match outcome {
            BillingOutcome::Applied(subscription) => {
                self.subscription_changed(
                    &org_id,
                    &subscription,
                    &format!("Stripe event {}", event.id),
                )
                .await?;
                WebhookOutcome::Applied
            }
            BillingOutcome::Stale | BillingOutcome::Replayed => WebhookOutcome::Unchanged,
        })
    }

    async fn subscription_changed(
        &self,
        org_id: &str,
        subscription: &Subscription,
        by: &str,
    ) -> Result<(), StoreError> {
        self.inner.subscriptions.forget(org_id);
        let detail = format!("{} {} ({by})", subscription.status, subscription.tier);
        self.audit(
            AuditKind::SubscriptionChanged,
            None,
            Some(org_id),
            None,
            &detail,
        )
        .await
    }

    /// Sets `org`'s subscription by hand (deployments without Stripe, support): `status` in
    /// `tier`, until `until` when given. Applies as of now, so it wins over older events.
    pub async fn set_subscription(
        &self,
        org: &str,
        status: SubscriptionStatus,
        tier: &str,
        until: Option<OffsetDateTime>,
    ) -> Result<(Org, Subscription), BillingError> {
        let plans = &self.inner.policy.plans;
        if !plans.tiers.contains_key(tier) {
            let known: Vec<&str> = plans.tiers.keys().map(String::as_str).collect();
            return Err(BillingError::UnknownTier(tier.to_owned(), known.join(", ")));
        }
        let org = self.org_named(org).await?;
        let update = stripe::SubscriptionUpdate {
            org: Some(org.id.clone()),
            subscription_id: None,
            customer_id: None,
            status: Some(status),
            tier: Some(tier.to_owned()),
            current_period_end: until,
            as_of: self.now(),
        };
        match self
            .inner
            .store
            .apply_billing_update(None, &org.id, &update, &plans.default_tier, self.now())
            .await?
        {
            BillingOutcome::Applied(subscription) => {
                self.subscription_changed(&org.id, &subscription, "set by an operator")
                    .await?;
                Ok((org, subscription))
            }
            // Only a state from the future (a clock set back) is newer than now.
            BillingOutcome::Stale | BillingOutcome::Replayed => {
                let stored = self.inner.store.subscription(&org.id).await?;
                Ok((org, stored.ok_or(StoreError::Corrupt("subscription"))?))
            }
        }
    }

    /// What `org_id`'s subscription grants now, with when its period ends and where to
    /// subscribe, as `/v1/me` tells it.
    pub async fn subscription_info(
        &self,
        org_id: &str,
    ) -> Result<latchkey_proto::wire::SubscriptionInfo, StoreError> {
        let (subscription, standing) = self.stored_subscription(org_id).await?;
        Ok(latchkey_proto::wire::SubscriptionInfo {
            status: standing.status.as_str().to_owned(),
            tier: standing.tier,
            entitlements: standing.entitlements,
            current_period_end: subscription
                .and_then(|s| s.current_period_end)
                .map(OffsetDateTime::unix_timestamp),
            subscribe_url: self.inner.policy.plans.subscribe_url(org_id),
        })
    }

    /// `org`'s subscription as stored, and what it grants now.
    pub async fn subscription_of(
        &self,
        org: &str,
    ) -> Result<(Org, Option<Subscription>, Standing), BillingError> {
        let org = self.org_named(org).await?;
        let (subscription, standing) = self.stored_subscription(&org.id).await?;
        Ok((org, subscription, standing))
    }

    async fn org_named(&self, org: &str) -> Result<Org, BillingError> {
        self.inner
            .store
            .find_org(org)
            .await?
            .ok_or_else(|| BillingError::UnknownOrg(org.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
    }

    fn plans() -> Plans {
        Plans {
            tiers: BTreeMap::from([
                ("free".into(), vec![]),
                ("pro".into(), vec!["cloud_sync".into(), "api_access".into()]),
            ]),
            default_tier: "free".into(),
            grace: Duration::from_secs(3 * 24 * 60 * 60),
            subscribe_url: None,
            tier_subscribe_urls: BTreeMap::new(),
            manage_url: None,
        }
    }

    fn pro(status: SubscriptionStatus, period_end: Option<i64>, as_of: i64) -> Subscription {
        Subscription {
            status,
            tier: "pro".into(),
            current_period_end: period_end.map(at),
            customer_id: Some("cus_1".into()),
            subscription_id: Some("sub_1".into()),
            as_of: at(as_of),
        }
    }

    #[test]
    fn paying_grants_the_tier_lapsing_grants_the_default_and_past_due_a_grace() {
        use SubscriptionStatus::{Active, Canceled, PastDue, Trialing, Unpaid};
        let day = 24 * 60 * 60;
        let plans = plans();
        let tier = |s: &Subscription, now: i64| plans.standing(Some(s), at(now)).tier;
        assert_eq!(plans.standing(None, at(0)).tier, "free");
        assert_eq!(plans.standing(None, at(0)).status, SubscriptionStatus::None);
        let active = pro(Active, Some(30 * day), 0);
        assert_eq!(tier(&active, day), "pro");
        assert_eq!(
            plans.standing(Some(&active), at(day)).entitlements,
            ["cloud_sync", "api_access"]
        );
        // A renewal's event may be late: the grace covers it, then the tier lapses.
        assert_eq!(tier(&active, 32 * day), "pro");
        assert_eq!(tier(&active, 34 * day), "free");
        assert_eq!(tier(&pro(Trialing, Some(14 * day), 0), day), "pro");
        assert_eq!(tier(&pro(Active, None, 0), 9999 * day), "pro", "open-ended");
        let past_due = pro(PastDue, Some(30 * day), 30 * day);
        assert_eq!(tier(&past_due, 31 * day), "pro");
        assert_eq!(tier(&past_due, 33 * day + 1), "free");
        for lapsed in [Canceled, Unpaid, SubscriptionStatus::None] {
            let s = pro(lapsed, Some(30 * day), 0);
            assert_eq!(tier(&s, day), "free", "{lapsed}");
            assert_eq!(plans.standing(Some(&s), at(day)).status, lapsed);
            assert!(plans.standing(Some(&s), at(day)).entitlements.is_empty());
        }
    }

    #[test]
    fn the_newer_event_wins_and_a_canceled_subscription_stays_canceled() {
        use SubscriptionStatus::{Active, Canceled, PastDue};
        let created = pro(Active, Some(1000), 10);
        let updated = pro(PastDue, Some(1000), 20);
        assert!(supersedes(&created, &updated));
        assert!(!supersedes(&updated, &created), "an older event is ignored");
        assert!(
            supersedes(&updated, &updated.clone()),
            "the same second applies"
        );
        let deleted = pro(Canceled, Some(1000), 30);
        assert!(supersedes(&updated, &deleted));
        assert!(!supersedes(&deleted, &pro(Active, Some(2000), 25)));
        assert!(
            !supersedes(&deleted, &pro(Active, Some(2000), 30)),
            "not even in the same second"
        );
        let resubscribed = Subscription {
            subscription_id: Some("sub_2".into()),
            ..pro(Active, Some(5000), 40)
        };
        assert!(
            supersedes(&deleted, &resubscribed),
            "a new subscription replaces it"
        );
    }

    #[test]
    fn subscribe_links_name_the_org() {
        let mut plans = plans();
        assert_eq!(plans.subscribe_url("org_1"), None);
        plans.tier_subscribe_urls.insert(
            "pro".into(),
            "https://buy.stripe.com/pro?client_reference_id={org_id}".into(),
        );
        assert_eq!(
            plans.subscribe_url("org_1").as_deref(),
            Some("https://buy.stripe.com/pro?client_reference_id=org_1")
        );
        plans.subscribe_url = Some("https://acme.example/pricing?org={org_id}".into());
        assert_eq!(
            plans.subscribe_url("org_1").as_deref(),
            Some("https://acme.example/pricing?org=org_1")
        );
        assert_eq!(
            plans.tier_subscribe_urls("org_2"),
            [(
                "pro".to_owned(),
                "https://buy.stripe.com/pro?client_reference_id=org_2".to_owned()
            )]
        );
    }

    #[test]
    fn statuses_parse_as_admins_type_them_and_as_stripe_sends_them() {
        for status in [
            "none", "trialing", "active", "past_due", "canceled", "unpaid",
        ] {
            assert_eq!(
                SubscriptionStatus::parse(status).map(|s| s.as_str()),
                Ok(status)
            );
        }
        assert!(SubscriptionStatus::parse("Active").is_err());
        assert_eq!(
            SubscriptionStatus::from_stripe("incomplete"),
            Some(SubscriptionStatus::None)
        );
        assert_eq!(
            SubscriptionStatus::from_stripe("paused"),
            Some(SubscriptionStatus::Unpaid)
        );
        assert_eq!(SubscriptionStatus::from_stripe("bogus"), None);
    }
}
