//! Throttles on credential-guessing surfaces: sign-in per account and per client IP, and
//! device user-code entry per account, so neither passwords nor codes can be guessed at speed.
//!
//! Their state is in the store, so every replica counts the same attempts: N replicas do not
//! give an attacker N times the guesses. Each throttle is a token bucket in GCRA form, one
//! timestamp per key: when the bucket is next full.

use std::{net::IpAddr, time::Duration};

use time::OffsetDateTime;

use crate::{Service, store::StoreError};

/// A bucket of `burst` attempts that refills one attempt every `refill_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub burst: u32,
    pub refill_every: Duration,
}

/// 10 attempts at once, then one every 90 s: ~1,000 guesses a day per account at most.
pub const SIGN_IN_PER_ACCOUNT: Limit = Limit {
    burst: 10,
    refill_every: Duration::from_secs(90),
};
/// One IP may try many accounts (an office NAT), but not thousands.
pub const SIGN_IN_PER_IP: Limit = Limit {
    burst: 30,
    refill_every: Duration::from_secs(2),
};
/// User codes typed on the device page: 10 at once, then one every 12 s per account. With
/// 20^8 possible codes, that makes finding someone else's pending code hopeless.
/// Anonymous client registrations (RFC 7591) from one address: each writes a client row.
pub const REGISTRATION_PER_IP: Limit = Limit {
    burst: 30,
    refill_every: Duration::from_secs(30),
};
pub const CODE_ENTRY_PER_ACCOUNT: Limit = Limit {
    burst: 10,
    refill_every: Duration::from_secs(12),
};

/// Refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

/// GCRA: an attempt at `now` passes unless the bucket is empty, and moves `full_at` one
/// refill later. Returns the new `full_at`.
pub fn admit(
    limit: Limit,
    full_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, Throttled> {
    let full_at = full_at.map_or(now, |t| t.max(now));
    let tolerance = limit.refill_every * limit.burst.saturating_sub(1);
    let ahead = full_at - now;
    if ahead > tolerance {
        let wait = ahead - tolerance;
        return Err(Throttled {
            retry_after: wait.try_into().unwrap_or(limit.refill_every),
        });
    }
    Ok(full_at + limit.refill_every)
}

impl Service {
    /// Takes one attempt from `key`'s bucket, shared by every replica (compare-and-set on the
    /// store, retried when another attempt moved the bucket first). The outer error is the
    /// store's; the inner one, the refusal.
    pub(crate) async fn throttle(
        &self,
        key: &str,
        limit: Limit,
    ) -> Result<Result<(), Throttled>, StoreError> {
        for _ in 0..8 {
            let seen = self.inner.store.throttle_state(key).await?;
            let next = match admit(limit, seen, self.now()) {
                Ok(next) => next,
                Err(refused) => return Ok(Err(refused)),
            };
            if self
                .inner
                .store
                .swap_throttle_state(key, seen, next)
                .await?
            {
                return Ok(Ok(()));
            }
        }
        // Eight attempts raced this one on the same key: that is an attack, not a person.
        Ok(Err(Throttled {
            retry_after: limit.refill_every,
        }))
    }

    pub(crate) async fn throttle_sign_in(
        &self,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<Result<(), Throttled>, StoreError> {
        if let Some(ip) = ip {
            let per_ip = self
                .throttle(&format!("sign-in:ip:{ip}"), SIGN_IN_PER_IP)
                .await?;
            if per_ip.is_err() {
                return Ok(per_ip);
            }
        }
        self.throttle(&format!("sign-in:account:{email}"), SIGN_IN_PER_ACCOUNT)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn drain(limit: Limit, mut full_at: Option<OffsetDateTime>, now: OffsetDateTime) -> u32 {
        let mut passed = 0;
        while let Ok(next) = admit(limit, full_at, now) {
            full_at = Some(next);
            passed += 1;
        }
        passed
    }

    #[test]
    fn a_fresh_bucket_lets_exactly_its_burst_through() {
        assert_eq!(drain(SIGN_IN_PER_ACCOUNT, None, T0), 10);
        assert_eq!(drain(SIGN_IN_PER_IP, None, T0), 30);
    }

    #[test]
    fn an_empty_bucket_says_when_the_next_attempt_passes() {
        let mut full_at = None;
        for _ in 0..10 {
            full_at = Some(admit(SIGN_IN_PER_ACCOUNT, full_at, T0).expect("within burst"));
        }
        let refused = admit(SIGN_IN_PER_ACCOUNT, full_at, T0).expect_err("11th refused");
        assert_eq!(refused.retry_after, Duration::from_secs(90));
        let later = T0 + Duration::from_secs(90);
        assert!(admit(SIGN_IN_PER_ACCOUNT, full_at, later).is_ok());
    }

    #[test]
    fn a_bucket_refills_at_its_rate_and_no_further() {
        let mut full_at = None;
        for _ in 0..10 {
            full_at = Some(admit(CODE_ENTRY_PER_ACCOUNT, full_at, T0).expect("burst"));
        }
        // 36 s later three attempts have come back; a day later, the burst and no more.
        assert_eq!(
            drain(
                CODE_ENTRY_PER_ACCOUNT,
                full_at,
                T0 + Duration::from_secs(36)
            ),
            3
        );
        assert_eq!(
            drain(
                CODE_ENTRY_PER_ACCOUNT,
                full_at,
                T0 + Duration::from_secs(86_400)
            ),
            10
        );
    }
}
