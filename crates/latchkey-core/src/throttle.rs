//! Throttles on credential-guessing surfaces: sign-in per account and per client IP, and
//! device user-code entry per account, so neither passwords nor codes can be guessed at speed.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

#[derive(Debug)]
pub struct LoginThrottle {
    per_account: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
}

/// Which limit refused the attempt, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

fn quota(burst: u32, refill_every: Duration) -> Quota {
    // Both constants below are non-zero; `Quota::with_period` only fails on a zero period.
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(refill_every)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            // 10 attempts at once, then one every 90 s: ~1,000 guesses a day per account at most.
            per_account: RateLimiter::keyed(quota(10, Duration::from_secs(90))),
            // One IP may try many accounts (an office NAT), but not thousands.
            per_ip: RateLimiter::keyed(quota(30, Duration::from_secs(2))),
        }
    }
}

fn refused(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> Throttled {
    let clock = governor::clock::DefaultClock::default();
    Throttled {
        retry_after: not_until.wait_time_from(governor::clock::Clock::now(&clock)),
    }
}

/// User codes typed on the device page: 10 at once, then one every 12 s per account. With
/// 20^8 possible codes, that makes finding someone else's pending code hopeless.
#[derive(Debug)]
pub struct CodeEntryThrottle {
    per_account: DefaultKeyedRateLimiter<String>,
}

impl Default for CodeEntryThrottle {
    fn default() -> Self {
        Self {
            per_account: RateLimiter::keyed(quota(10, Duration::from_secs(12))),
        }
    }
}

impl CodeEntryThrottle {
    pub fn check(&self, user_id: &str) -> Result<(), Throttled> {
        self.per_account
            .check_key(&user_id.to_owned())
            .map_err(refused)
    }

    pub fn forget_idle(&self) {
        self.per_account.retain_recent();
    }
}

impl LoginThrottle {
    pub fn check(&self, email: &str, ip: Option<IpAddr>) -> Result<(), Throttled> {
        if let Some(ip) = ip {
            self.per_ip.check_key(&ip).map_err(refused)?;
        }
        self.per_account
            .check_key(&email.to_owned())
            .map_err(refused)
    }

    pub fn forget_idle(&self) {
        self.per_account.retain_recent();
        self.per_ip.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_refused_after_its_burst_even_from_many_ips() {
        let throttle = LoginThrottle::default();
        for i in 0..10u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            assert!(throttle.check("a@example.com", Some(ip)).is_ok());
        }
        let refused = throttle
            .check("a@example.com", Some(IpAddr::from([10, 0, 1, 1])))
            .expect_err("11th attempt refused");
        assert!(refused.retry_after > Duration::ZERO);
        assert!(
            throttle.check("b@example.com", None).is_ok(),
            "other accounts unaffected"
        );
    }

    #[test]
    fn one_ip_is_refused_after_its_burst_across_accounts() {
        let throttle = LoginThrottle::default();
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        for i in 0..30 {
            assert!(throttle.check(&format!("u{i}@example.com"), ip).is_ok());
        }
        assert!(throttle.check("new@example.com", ip).is_err());
    }
}
