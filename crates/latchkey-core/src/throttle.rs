//! Throttles on credential-guessing and mail-sending surfaces: sign-in per client IP, failed
//! sign-ins per account and per account+address (with exponential back-off), device user-code
//! entry per account, and emails per recipient and per client IP, so neither passwords nor
//! codes can be guessed at speed and nobody's inbox can be flooded from here.
//!
//! Their state is in the store, so every replica counts the same attempts: N replicas do not
//! give an attacker N times the guesses. Each throttle is a token bucket in GCRA form, one
//! timestamp per key: when the bucket is next full.

use std::{net::IpAddr, time::Duration};

use time::OffsetDateTime;

use crate::{Service, console::AuditKind, store::StoreError};

/// A bucket of `burst` attempts that refills one attempt every `refill_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub burst: u32,
    pub refill_every: Duration,
}

/// Failed sign-ins to one account from anywhere: 10 at once, then one every 90 s (~1,000
/// guesses a day). When it is empty, only addresses with no recent failure on the account
/// may still try, so a guesser cannot lock the owner out.
pub const SIGN_IN_FAILURES_PER_ACCOUNT: Limit = Limit {
    burst: 10,
    refill_every: Duration::from_secs(90),
};
/// Failed sign-ins to one account from one address: 5 free, then 2 s, 4 s, 8 s … up to an
/// hour between attempts; each failure is forgotten 15 minutes after the last one.
pub const SIGN_IN_BACKOFF: Backoff = Backoff {
    free: 5,
    first: Duration::from_secs(2),
    max: Duration::from_secs(3600),
    forget_every: Duration::from_secs(15 * 60),
};
/// Emails to one address (verification links, reset links, notices): 3 at once, then one
/// every 20 minutes, so at most a handful an hour whoever asks.
pub const MAIL_PER_RECIPIENT: Limit = Limit {
    burst: 3,
    refill_every: Duration::from_secs(20 * 60),
};
/// Emails one client address may cause (sign-ups, resends, resets): 20, then one every 3 min.
pub const MAIL_PER_IP: Limit = Limit {
    burst: 20,
    refill_every: Duration::from_secs(3 * 60),
};
/// One IP may try many accounts (an office NAT), but not thousands.
pub const SIGN_IN_PER_IP: Limit = Limit {
    burst: 30,
    refill_every: Duration::from_secs(2),
};
/// Anonymous client registrations (RFC 7591) from one address: each writes a client row.
pub const REGISTRATION_PER_IP: Limit = Limit {
    burst: 30,
    refill_every: Duration::from_secs(30),
};
/// User codes typed on the device page: 10 at once, then one every 12 s per account. With
/// 20^8 possible codes, that makes finding someone else's pending code hopeless.
pub const CODE_ENTRY_PER_ACCOUNT: Limit = Limit {
    burst: 10,
    refill_every: Duration::from_secs(12),
};

/// Exponential back-off after repeated failures. Its state is a GCRA counter whose debt is
/// the failures still remembered, and, apart, the time the current lock ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures that cost nothing.
    pub free: u32,
    /// The lock after the first failure past the free ones; each further one doubles it.
    pub first: Duration,
    pub max: Duration,
    /// How long each failure is remembered (they drain one at a time).
    pub forget_every: Duration,
}

impl Backoff {
    /// The failures still remembered at `now`, from the counter's state.
    pub fn remembered(self, counter: Option<OffsetDateTime>, now: OffsetDateTime) -> u32 {
        let Some(full_at) = counter.filter(|t| *t > now) else {
            return 0;
        };
        let debt = (full_at - now).as_seconds_f64();
        let each = self.forget_every.as_secs_f64().max(1.0);
        (debt / each).ceil().min(f64::from(u32::MAX)) as u32
    }

    /// The counter's state after one more failure at `now`.
    pub fn count_failure(
        self,
        counter: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> OffsetDateTime {
        counter.map_or(now, |t| t.max(now)) + self.forget_every
    }

    /// How long to refuse attempts after the `failures`-th remembered failure.
    pub fn lock_after(self, failures: u32) -> Option<Duration> {
        let past_free = failures.checked_sub(self.free).filter(|n| *n > 0)?;
        let doubling = 2u32.saturating_pow(past_free - 1);
        Some(self.first.saturating_mul(doubling).min(self.max))
    }
}

/// Refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// How long to wait, in words: "1 second", "12 seconds".
    pub fn retry_after_in_words(&self) -> String {
        match self.retry_after_secs() {
            1 => "1 second".to_owned(),
            secs => format!("{secs} seconds"),
        }
    }

    /// Whole seconds to wait, rounded up: never tell a client to come back too early.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let rounded = if self.retry_after.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        };
        rounded.max(1)
    }
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

/// Whether `limit` would admit one more attempt, without taking it.
pub fn would_admit(limit: Limit, full_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    admit(limit, full_at, now).is_ok()
}

impl Service {
    /// Moves `key`'s state by `step` (given what is stored, the new state or a refusal), with
    /// compare-and-set on the store so concurrent attempts on any replica all count. Returns
    /// the state written.
    async fn update_throttle(
        &self,
        key: &str,
        step: impl Fn(Option<OffsetDateTime>) -> Result<OffsetDateTime, Throttled>,
        raced: Throttled,
    ) -> Result<Result<OffsetDateTime, Throttled>, StoreError> {
        for _ in 0..8 {
            let seen = self.inner.store.throttle_state(key).await?;
            let next = match step(seen) {
                Ok(next) => next,
                Err(refused) => return Ok(Err(refused)),
            };
            if self
                .inner
                .store
                .swap_throttle_state(key, seen, next)
                .await?
            {
                return Ok(Ok(next));
            }
        }
        // Eight attempts raced this one on the same key: that is an attack, not a person.
        Ok(Err(raced))
    }

    /// Moves `key`'s state by `step`, which never refuses (a failure being counted); returns
    /// the state written, or `None` when eight others moved it at once (theirs count instead).
    async fn set_throttle(
        &self,
        key: &str,
        step: impl Fn(Option<OffsetDateTime>) -> OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let never = Throttled {
            retry_after: Duration::ZERO,
        };
        Ok(self
            .update_throttle(key, |seen| Ok(step(seen)), never)
            .await?
            .ok())
    }

    /// Takes one attempt from `key`'s bucket, shared by every replica (compare-and-set on the
    /// store, retried when another attempt moved the bucket first). The outer error is the
    /// store's; the inner one, the refusal.
    pub(crate) async fn throttle(
        &self,
        key: &str,
        limit: Limit,
    ) -> Result<Result<(), Throttled>, StoreError> {
        let raced = Throttled {
            retry_after: limit.refill_every,
        };
        Ok(self
            .update_throttle(key, |seen| admit(limit, seen, self.now()), raced)
            .await?
            .map(|_| ()))
    }

    /// May this address try a password for this account now? Every attempt counts against
    /// the address; failures are counted by [`Service::sign_in_failed`].
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
        let keys = SignInKeys::new(email, ip);
        let now = self.now();
        let store = &self.inner.store;
        if let Some(until) = store.throttle_state(&keys.lock).await?
            && until > now
        {
            return Ok(Err(Throttled {
                retry_after: (until - now).try_into().unwrap_or(SIGN_IN_BACKOFF.first),
            }));
        }
        let account = store.throttle_state(&keys.account).await?;
        if !would_admit(SIGN_IN_FAILURES_PER_ACCOUNT, account, now) {
            let failed_here =
                SIGN_IN_BACKOFF.remembered(store.throttle_state(&keys.pair).await?, now);
            if failed_here > 0 {
                return Ok(Err(Throttled {
                    retry_after: SIGN_IN_FAILURES_PER_ACCOUNT.refill_every,
                }));
            }
        }
        Ok(Ok(()))
    }

    /// Counts a wrong password: against the account, and against this address on this
    /// account, locking the pair for longer after each failure past the free ones.
    pub(crate) async fn sign_in_failed(
        &self,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let keys = SignInKeys::new(email, ip);
        let now = self.now();
        // Already empty: the failure is refused a slot, which is all it needs.
        let _ = self
            .throttle(&keys.account, SIGN_IN_FAILURES_PER_ACCOUNT)
            .await?;
        let counter = self
            .set_throttle(&keys.pair, |seen| SIGN_IN_BACKOFF.count_failure(seen, now))
            .await?;
        let failures = SIGN_IN_BACKOFF.remembered(counter, now);
        if let Some(lock) = SIGN_IN_BACKOFF.lock_after(failures) {
            let until = now + lock;
            self.set_throttle(&keys.lock, |seen| seen.map_or(until, |t| t.max(until)))
                .await?;
            if let Some(user) = self.inner.store.user_by_email(email).await? {
                let detail = format!(
                    "{failures} failed sign-ins; locked out for {}s",
                    lock.as_secs()
                );
                self.audit(AuditKind::SignInFailures, Some(&user.id), None, ip, &detail)
                    .await?;
            }
        }
        Ok(())
    }

    /// A correct password clears this address's failures on the account.
    pub(crate) async fn sign_in_succeeded(
        &self,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let keys = SignInKeys::new(email, ip);
        let now = self.now();
        for key in [&keys.pair, &keys.lock] {
            if self.inner.store.throttle_state(key).await?.is_some() {
                self.set_throttle(key, |_| now).await?;
            }
        }
        Ok(())
    }

    /// May one more email go to `recipient` at the request of `ip`?
    pub(crate) async fn throttle_mail(
        &self,
        recipient: &str,
        ip: Option<IpAddr>,
    ) -> Result<Result<(), Throttled>, StoreError> {
        if let Some(ip) = ip {
            let per_ip = self.throttle(&format!("mail:ip:{ip}"), MAIL_PER_IP).await?;
            if per_ip.is_err() {
                return Ok(per_ip);
            }
        }
        self.throttle(&format!("mail:to:{recipient}"), MAIL_PER_RECIPIENT)
            .await
    }
}

/// The throttle keys of one sign-in: the account's failures, this address's failures on the
/// account, and the lock those failures earned.
struct SignInKeys {
    account: String,
    pair: String,
    lock: String,
}

impl SignInKeys {
    fn new(email: &str, ip: Option<IpAddr>) -> Self {
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Self {
            account: format!("sign-in:account:{email}"),
            pair: format!("sign-in:failures:{email}:{ip}"),
            lock: format!("sign-in:lock:{email}:{ip}"),
        }
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
    fn waits_are_said_in_words() {
        let after = |ms| Throttled {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(after(200).retry_after_in_words(), "1 second");
        assert_eq!(after(1000).retry_after_in_words(), "1 second");
        assert_eq!(after(1001).retry_after_in_words(), "2 seconds");
    }

    #[test]
    fn a_fresh_bucket_lets_exactly_its_burst_through() {
        assert_eq!(drain(SIGN_IN_FAILURES_PER_ACCOUNT, None, T0), 10);
        assert_eq!(drain(SIGN_IN_PER_IP, None, T0), 30);
    }

    #[test]
    fn an_empty_bucket_says_when_the_next_attempt_passes() {
        let mut full_at = None;
        for _ in 0..10 {
            full_at = Some(admit(SIGN_IN_FAILURES_PER_ACCOUNT, full_at, T0).expect("within burst"));
        }
        let refused = admit(SIGN_IN_FAILURES_PER_ACCOUNT, full_at, T0).expect_err("11th refused");
        assert_eq!(refused.retry_after, Duration::from_secs(90));
        let later = T0 + Duration::from_secs(90);
        assert!(admit(SIGN_IN_FAILURES_PER_ACCOUNT, full_at, later).is_ok());
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

    #[test]
    fn failures_past_the_free_ones_lock_for_twice_as_long_each_time() {
        let b = SIGN_IN_BACKOFF;
        let locks: Vec<Option<u64>> = (1..=9)
            .map(|n| b.lock_after(n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            locks,
            [
                None,
                None,
                None,
                None,
                None,
                Some(2),
                Some(4),
                Some(8),
                Some(16)
            ]
        );
        assert_eq!(b.lock_after(40), Some(b.max), "capped");
    }

    #[test]
    fn remembered_failures_drain_one_at_a_time() {
        let b = SIGN_IN_BACKOFF;
        let mut counter = None;
        for _ in 0..7 {
            counter = Some(b.count_failure(counter, T0));
        }
        assert_eq!(b.remembered(counter, T0), 7);
        assert_eq!(b.remembered(counter, T0 + b.forget_every), 6);
        assert_eq!(b.remembered(counter, T0 + b.forget_every * 7), 0);
        assert_eq!(b.remembered(None, T0), 0);
        // A failure after a long quiet spell starts from one again.
        let later = T0 + b.forget_every * 20;
        assert_eq!(
            b.remembered(Some(b.count_failure(counter, later)), later),
            1
        );
    }
}
