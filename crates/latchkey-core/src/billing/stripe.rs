//! Stripe's webhooks, pure: the `Stripe-Signature` check exactly as Stripe documents it, and
//! what each event says of a subscription.
//!
//! The signature: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, each `v1` an
//! HMAC-SHA256 of `<t>.<raw body>` under an endpoint's signing secret. Any `v1` matching any
//! configured secret passes (secrets rotate: Stripe signs with old and new for a while), if `t`
//! is within the tolerance of now. Compared in constant time.

use std::{collections::HashMap, time::Duration};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use thiserror::Error;
use time::OffsetDateTime;

use super::{Subscription, SubscriptionStatus, supersedes};

/// How far a signature's timestamp may be from now (Stripe's libraries' default).
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The most `v1` signatures one header may carry.
const MAX_SIGNATURES: usize = 8;

/// Where checkout records the org (`client_reference_id` too) and the tier bought.
pub const ORG_METADATA: &str = "latchkey_org";
pub const TIER_METADATA: &str = "latchkey_tier";

/// A deployment's Stripe: the webhook endpoint's signing secrets (several while rotating) and
/// which tier each price sells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSettings {
    pub webhook_secrets: Vec<String>,
    pub prices: HashMap<String, String>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header needs a timestamp (t=) and one to 8 v1 signatures")]
    Malformed,
    #[error("the Stripe-Signature timestamp is more than 5 minutes from now")]
    Stale,
    #[error("no v1 signature matches a configured webhook secret")]
    NoMatch,
}

/// Checks `header` for `body` against `secrets` at `now` (Unix seconds).
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", hex)) => signatures.extend(decode_hex(hex)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    // Each signature costs an HMAC of the whole body per secret: a header stuffed with
    // thousands would make one request hash gigabytes. Stripe sends one or two.
    if signatures.is_empty() || signatures.len() > MAX_SIGNATURES {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > TOLERANCE.as_secs() {
        return Err(SignatureError::Stale);
    }
    let matches = secrets.iter().any(|secret| {
        // `verify_slice` compares in constant time.
        signatures.iter().any(|signature| {
            signer(secret, timestamp, body).is_some_and(|mac| mac.verify_slice(signature).is_ok())
        })
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// The HMAC of `<timestamp>.<body>` under `secret`, fed (HMAC takes keys of any length).
fn signer(secret: &str, timestamp: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A webhook's event: `{id, type, created, data: {object}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// What an event says of a subscription; `None` fields it does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionUpdate {
    /// The org, when the event names it (checkout's `client_reference_id`, or the metadata
    /// checkout put on the subscription); else it is found by the subscription or customer.
    pub org: Option<String>,
    pub subscription_id: Option<String>,
    pub customer_id: Option<String>,
    pub status: Option<SubscriptionStatus>,
    pub tier: Option<String>,
    pub current_period_end: Option<OffsetDateTime>,
    /// The event's `created`.
    pub as_of: OffsetDateTime,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    #[error("the event's created time is not a valid time")]
    BadTime,
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn time_at(value: &Value, pointer: &str) -> Option<OffsetDateTime> {
    value
        .pointer(pointer)
        .and_then(Value::as_i64)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
}

/// What `event` says of a subscription, reading tiers from `prices` (Stripe price id → tier);
/// `None` for an event that says nothing of one (an unknown type, a one-time checkout).
pub fn interpret(
    event: &Event,
    prices: &HashMap<String, String>,
) -> Result<Option<SubscriptionUpdate>, EventError> {
    let as_of =
        OffsetDateTime::from_unix_timestamp(event.created).map_err(|_| EventError::BadTime)?;
    let object = &event.data.object;
    let org_metadata = format!("/metadata/{ORG_METADATA}");
    let update = match event.kind.as_str() {
        "checkout.session.completed" => {
            if object.get("mode").and_then(Value::as_str) != Some("subscription") {
                return Ok(None);
            }
            let paid = matches!(
                object.get("payment_status").and_then(Value::as_str),
                Some("paid" | "no_payment_required")
            );
            SubscriptionUpdate {
                org: text(object, "/client_reference_id").or_else(|| text(object, &org_metadata)),
                subscription_id: text(object, "/subscription"),
                customer_id: text(object, "/customer"),
                status: paid.then_some(SubscriptionStatus::Active),
                tier: text(object, &format!("/metadata/{TIER_METADATA}")),
                current_period_end: None,
                as_of,
            }
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            let price = text(object, "/items/data/0/price/id");
            let status = if event.kind.ends_with("deleted") {
                Some(SubscriptionStatus::Canceled)
            } else {
                object
                    .get("status")
                    .and_then(Value::as_str)
                    .and_then(SubscriptionStatus::from_stripe)
            };
            SubscriptionUpdate {
                org: text(object, &org_metadata),
                subscription_id: text(object, "/id"),
                customer_id: text(object, "/customer"),
                status,
                tier: price.and_then(|p| prices.get(&p).cloned()),
                // Newer API versions keep the period on the item.
                current_period_end: time_at(object, "/current_period_end")
                    .or_else(|| time_at(object, "/items/data/0/current_period_end")),
                as_of,
            }
        }
        "invoice.paid" | "invoice.payment_failed" => SubscriptionUpdate {
            org: text(object, "/subscription_details/metadata/latchkey_org")
                .or_else(|| text(object, "/parent/subscription_details/metadata/latchkey_org")),
            subscription_id: text(object, "/subscription")
                .or_else(|| text(object, "/parent/subscription_details/subscription")),
            customer_id: text(object, "/customer"),
            status: Some(if event.kind == "invoice.paid" {
                SubscriptionStatus::Active
            } else {
                SubscriptionStatus::PastDue
            }),
            tier: text(object, "/lines/data/0/price/id")
                .or_else(|| text(object, "/lines/data/0/pricing/price_details/price"))
                .and_then(|p| prices.get(&p).cloned()),
            current_period_end: time_at(object, "/lines/data/0/period/end"),
            as_of,
        },
        _ => return Ok(None),
    };
    Ok(Some(update))
}

/// The state after `update`, given the stored one (`None`: none yet), or `None` when the
/// update is older than what is stored (see [`super::supersedes`]). What an event of the same
/// subscription does not say is kept; a new subscription, or an admin's state, starts from
/// nothing but the billing customer.
pub fn resolve(
    stored: Option<&Subscription>,
    update: &SubscriptionUpdate,
    default_tier: &str,
) -> Option<Subscription> {
    // Only an event of the same subscription continues it; an admin's update (no
    // subscription) or a new subscription starts afresh.
    let same = stored.filter(|s| {
        update.subscription_id.is_some() && s.subscription_id == update.subscription_id
    });
    let next = Subscription {
        status: update
            .status
            .or(same.map(|s| s.status))
            .unwrap_or(SubscriptionStatus::None),
        tier: update
            .tier
            .clone()
            .or_else(|| same.map(|s| s.tier.clone()))
            .unwrap_or_else(|| default_tier.to_owned()),
        current_period_end: update
            .current_period_end
            .or(same.and_then(|s| s.current_period_end)),
        customer_id: update
            .customer_id
            .clone()
            .or_else(|| stored.and_then(|s| s.customer_id.clone())),
        subscription_id: update.subscription_id.clone(),
        as_of: update.as_of,
    };
    match stored {
        Some(stored) if !supersedes(stored, &next) => None,
        _ => Some(next),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_700_000_000;

    /// The header Stripe would send for `body` at `timestamp`.
    fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
        let digest = signer(secret, timestamp, body)
            .unwrap()
            .finalize()
            .into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("t={timestamp},v1={hex}")
    }

    #[test]
    fn a_signature_passes_only_as_stripe_makes_it_with_a_configured_secret_in_time() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(SECRET, NOW, body);
        let secrets = [SECRET.to_owned()];
        assert_eq!(verify_signature(Some(&header), body, &secrets, NOW), Ok(()));
        // Rotation: either secret, and either of several v1 signatures.
        let rotating = ["whsec_new".to_owned(), SECRET.to_owned()];
        assert_eq!(
            verify_signature(Some(&header), body, &rotating, NOW + 299),
            Ok(())
        );
        let new_sig = signature_header("whsec_new", NOW, body);
        let both = format!(
            "{header},v1={}",
            &new_sig[new_sig.find("v1=").unwrap() + 3..]
        );
        assert_eq!(
            verify_signature(Some(&both), body, &["whsec_new".into()], NOW),
            Ok(())
        );
        for (header, body, now, expected) in [
            (None, &body[..], NOW, SignatureError::Missing),
            (Some("v1=abcd"), &body[..], NOW, SignatureError::Malformed),
            (
                Some(&format!("t={NOW}")),
                &body[..],
                NOW,
                SignatureError::Malformed,
            ),
            (Some(&header), &body[..], NOW + 301, SignatureError::Stale),
            (Some(&header), &body[..], NOW - 301, SignatureError::Stale),
            (
                Some(&header),
                br#"{"id":"evt_2"}"#,
                NOW,
                SignatureError::NoMatch,
            ),
            (
                Some(&signature_header("whsec_other", NOW, body)),
                &body[..],
                NOW,
                SignatureError::NoMatch,
            ),
            (
                Some(&header.replace("v1=", "v0=")),
                &body[..],
                NOW,
                SignatureError::Malformed,
            ),
            (
                Some(&format!("{header}{}", ",v1=00".repeat(8))),
                &body[..],
                NOW,
                SignatureError::Malformed,
            ),
        ] {
            assert_eq!(
                verify_signature(header, body, &secrets, now),
                Err(expected.clone()),
                "{header:?}"
            );
        }
    }

    fn event(kind: &str, created: i64, object: Value) -> Event {
        serde_json::from_value(json!({
            "id": "evt_1", "object": "event", "type": kind, "created": created,
            "data": {"object": object}
        }))
        .unwrap()
    }

    fn prices() -> HashMap<String, String> {
        HashMap::from([("price_pro".to_owned(), "pro".to_owned())])
    }

    #[test]
    fn events_say_what_they_know_of_a_subscription() {
        let checkout = event(
            "checkout.session.completed",
            NOW,
            json!({"object": "checkout.session", "mode": "subscription", "payment_status": "paid",
                "client_reference_id": "org_1", "customer": "cus_1", "subscription": "sub_1",
                "metadata": {"latchkey_tier": "pro"}}),
        );
        let update = interpret(&checkout, &prices()).unwrap().unwrap();
        assert_eq!(
            (update.org.as_deref(), update.status, update.tier.as_deref()),
            (Some("org_1"), Some(SubscriptionStatus::Active), Some("pro"))
        );
        let updated = event(
            "customer.subscription.updated",
            NOW + 5,
            json!({"object": "subscription", "id": "sub_1", "customer": "cus_1",
                "status": "past_due", "metadata": {"latchkey_org": "org_1"},
                "items": {"data": [{"price": {"id": "price_pro"}, "current_period_end": NOW + 100}]}}),
        );
        let update = interpret(&updated, &prices()).unwrap().unwrap();
        assert_eq!(update.status, Some(SubscriptionStatus::PastDue));
        assert_eq!(update.tier.as_deref(), Some("pro"));
        assert_eq!(
            update
                .current_period_end
                .map(OffsetDateTime::unix_timestamp),
            Some(NOW + 100)
        );
        let deleted = event(
            "customer.subscription.deleted",
            NOW + 9,
            json!({"id": "sub_1", "customer": "cus_1", "status": "active"}),
        );
        assert_eq!(
            interpret(&deleted, &prices()).unwrap().unwrap().status,
            Some(SubscriptionStatus::Canceled)
        );
        let failed = event(
            "invoice.payment_failed",
            NOW,
            json!({"subscription": "sub_1", "customer": "cus_1"}),
        );
        assert_eq!(
            interpret(&failed, &prices()).unwrap().unwrap().status,
            Some(SubscriptionStatus::PastDue)
        );
        for ignored in [
            event("customer.created", NOW, json!({})),
            event(
                "checkout.session.completed",
                NOW,
                json!({"mode": "payment"}),
            ),
        ] {
            assert_eq!(interpret(&ignored, &prices()), Ok(None));
        }
    }

    #[test]
    fn events_of_the_current_api_version_are_read_too() {
        // Since the 2025 API versions a subscription's period is on its items, and an invoice
        // names its subscription under `parent.subscription_details` (as in Stripe's OpenAPI
        // fixtures), its price under `pricing.price_details`.
        let updated = event(
            "customer.subscription.updated",
            NOW,
            json!({"object": "subscription", "id": "sub_1", "customer": "cus_1",
                "status": "active", "metadata": {},
                "items": {"object": "list", "data": [{"object": "subscription_item",
                    "current_period_end": NOW + 2_592_000, "price": {"id": "price_pro"}}]}}),
        );
        let update = interpret(&updated, &prices()).unwrap().unwrap();
        assert_eq!(
            update
                .current_period_end
                .map(OffsetDateTime::unix_timestamp),
            Some(NOW + 2_592_000)
        );
        let paid = event(
            "invoice.paid",
            NOW,
            json!({"object": "invoice", "customer": "cus_1", "subscription": null,
                "parent": {"type": "subscription_details", "subscription_details":
                    {"subscription": "sub_1", "metadata": {"latchkey_org": "org_1"}}},
                "lines": {"data": [{"period": {"start": NOW, "end": NOW + 2_592_000},
                    "pricing": {"type": "price_details",
                        "price_details": {"price": "price_pro", "product": "prod_1"}}}]}}),
        );
        let update = interpret(&paid, &prices()).unwrap().unwrap();
        assert_eq!(
            (
                update.org.as_deref(),
                update.subscription_id.as_deref(),
                update.tier.as_deref(),
                update.status
            ),
            (
                Some("org_1"),
                Some("sub_1"),
                Some("pro"),
                Some(SubscriptionStatus::Active)
            )
        );
    }

    #[test]
    fn a_late_event_changes_nothing_and_what_an_event_omits_is_kept() {
        let update = |status, created: i64| SubscriptionUpdate {
            org: None,
            subscription_id: Some("sub_1".into()),
            customer_id: None,
            status,
            tier: None,
            current_period_end: None,
            as_of: OffsetDateTime::from_unix_timestamp(NOW + created).unwrap(),
        };
        let first = SubscriptionUpdate {
            tier: Some("pro".into()),
            customer_id: Some("cus_1".into()),
            ..update(Some(SubscriptionStatus::Active), 10)
        };
        let stored = resolve(None, &first, "free").unwrap();
        let failed = resolve(
            Some(&stored),
            &update(Some(SubscriptionStatus::PastDue), 20),
            "free",
        )
        .unwrap();
        assert_eq!(
            (
                failed.status,
                failed.tier.as_str(),
                failed.customer_id.as_deref()
            ),
            (SubscriptionStatus::PastDue, "pro", Some("cus_1"))
        );
        assert_eq!(
            resolve(
                Some(&failed),
                &update(Some(SubscriptionStatus::Active), 15),
                "free"
            ),
            None,
            "older than the stored state"
        );
        let canceled = resolve(
            Some(&failed),
            &update(Some(SubscriptionStatus::Canceled), 30),
            "free",
        )
        .unwrap();
        assert_eq!(
            resolve(
                Some(&canceled),
                &update(Some(SubscriptionStatus::Active), 30),
                "free"
            ),
            None
        );
        let fresh = resolve(None, &update(None, 40), "free").unwrap();
        assert_eq!(
            (fresh.status, fresh.tier.as_str()),
            (SubscriptionStatus::None, "free")
        );
    }
}
