//! The second factor: an authenticator app (TOTP, RFC 6238, by `totp-rs`) with ten single-use
//! recovery codes, asked for at sign-in once enabled; and orgs that require their members to
//! have one. The rules are pure; the service methods apply them.

use std::{net::IpAddr, time::Duration};

use latchkey_proto::{SecondFactorToken, SecretHash, SessionToken};
use rand::{Rng, RngCore, rngs::OsRng};
use thiserror::Error;
use time::OffsetDateTime;
use totp_rs::{Builder, Secret, Totp};

use crate::{
    AccountError, Password, Service,
    console::{AuditKind, SessionOrigin},
    store::{StoreError, User},
    throttle::{Limit, Throttled, admit},
};

/// How many recovery codes a person gets, each usable once.
pub const RECOVERY_CODES: usize = 10;
/// How long a sign-in waits for its second factor.
const CHALLENGE_TTL: Duration = Duration::from_secs(10 * 60);
/// Wrong codes per account: five at once, then one a minute (a 6-digit code has a million
/// values, three of them right at a time: a guesser's odds are about 1 in 230 a day).
pub const CODES_PER_ACCOUNT: Limit = Limit {
    burst: 5,
    refill_every: Duration::from_secs(60),
};

#[derive(Debug, Error)]
pub enum SecondFactorError {
    #[error("that code is not right (or was already used); try the next one your app shows")]
    WrongCode,
    #[error("too many codes tried; try again in {}", .0.retry_after_in_words())]
    Throttled(Throttled),
    #[error("this sign-in has expired or was already finished; sign in again")]
    NoChallenge,
    #[error("two-factor authentication is already on; turn it off first to set up another app")]
    AlreadyOn,
    #[error("start the setup again: no authenticator app is being set up")]
    NotSettingUp,
    #[error("two-factor authentication is not on")]
    NotOn,
    #[error("the stored secret cannot be opened with this deployment's master key")]
    Sealed,
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What setting up an authenticator app shows: the secret to type, and the `otpauth://` URL a
/// QR code carries.
#[derive(Debug, Clone)]
pub struct TotpSetup {
    pub secret_base32: String,
    pub otpauth_url: String,
}

/// After the first factor: signed in, or a code still to ask for.
#[derive(Debug)]
pub enum SignInStep {
    SignedIn(SessionToken, Box<User>),
    SecondFactor(SecondFactorToken),
}

/// RFC 6238 as authenticator apps read it: SHA-1, 6 digits, 30-second steps, one step of
/// clock skew either way.
fn totp(secret: Vec<u8>, issuer: &str, account: &str) -> Result<Totp, SecondFactorError> {
    Builder::new()
        .with_secret(Secret::new(secret.into_boxed_slice()))
        .with_issuer(Some(issuer.replace(':', " ")))
        .with_account_name(account.replace(':', " "))
        .build()
        .map_err(|_| SecondFactorError::Sealed)
}

/// What a person typed at the code prompt: six digits from the app, or a recovery code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedCode {
    Totp(String),
    Recovery(String),
}

/// Reads a typed code: spaces and dashes are ignored, case too.
pub fn read_code(raw: &str) -> Option<TypedCode> {
    let compact: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit()) {
        Some(TypedCode::Totp(compact))
    } else if compact.len() == 16 && compact.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)) {
        Some(TypedCode::Recovery(compact))
    } else {
        None
    }
}

/// Lowercase base32 without the easily confused 0, 1, 8 (o, l, b stay readable).
const RECOVERY_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A recovery code: 16 characters of base32 (80 bits), shown as `xxxx-xxxx-xxxx-xxxx`.
pub fn new_recovery_code<R: RngCore>(rng: &mut R) -> String {
    let raw: String = (0..16)
        .map(|_| char::from(RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())]))
        .collect();
    format!(
        "{}-{}-{}-{}",
        &raw[..4],
        &raw[4..8],
        &raw[8..12],
        &raw[12..]
    )
}

/// The stored form of a recovery code, however it was typed.
pub fn recovery_hash(code: &str) -> Option<SecretHash> {
    match read_code(code)? {
        TypedCode::Recovery(compact) => Some(SecretHash::of(&compact)),
        TypedCode::Totp(_) => None,
    }
}

fn codes_key(user: &User) -> String {
    format!("second-factor:{}", user.id)
}

fn unix(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

impl Service {
    fn seal_totp(&self, user_id: &str, secret: &[u8]) -> Vec<u8> {
        match &self.inner.policy.master_key {
            Some(key) => key.seal(&mut OsRng, &format!("totp:{user_id}"), secret),
            None => secret.to_vec(),
        }
    }

    fn open_totp(&self, user: &User, stored: &[u8]) -> Result<Totp, SecondFactorError> {
        let secret = match &self.inner.policy.master_key {
            Some(key) => key
                .open(&format!("totp:{}", user.id), stored)
                .map_err(|_| SecondFactorError::Sealed)?,
            None => stored.to_vec(),
        };
        totp(secret, &self.inner.policy.product_name, &user.email)
    }

    /// Whether `user` must give a second factor at sign-in: an authenticator app, or a passkey.
    pub async fn has_second_factor(&self, user: &User) -> Result<bool, StoreError> {
        let (app, passkeys) = self.second_factors(user).await?;
        Ok(app || passkeys)
    }

    /// Which second factors `user` has: an authenticator app, passkeys.
    async fn second_factors(&self, user: &User) -> Result<(bool, bool), StoreError> {
        let store = &self.inner.store;
        let app = store
            .totp(&user.id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some());
        let passkeys = !store.passkeys(&user.id).await?.is_empty();
        Ok((app, passkeys))
    }

    /// For a live sign-in waiting for its second factor: which ones its account can give (an
    /// authenticator app's code, a passkey).
    pub async fn challenge_methods(
        &self,
        token: &SecondFactorToken,
    ) -> Result<Option<(bool, bool)>, StoreError> {
        match self.challenged_user(token).await? {
            Some((user, _)) => Ok(Some(self.second_factors(&user).await?)),
            None => Ok(None),
        }
    }

    /// The account a live sign-in waiting for its second factor belongs to, and where it goes
    /// on to.
    pub(crate) async fn challenged_user(
        &self,
        token: &SecondFactorToken,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let store = &self.inner.store;
        let Some((user_id, next)) = store.sign_in_challenge(&token.hash(), self.now()).await?
        else {
            return Ok(None);
        };
        Ok(store.user_by_id(&user_id).await?.map(|user| (user, next)))
    }

    /// The second factor was given: the waiting sign-in ends in a session. `None` when a
    /// concurrent answer finished it first (it is spent once).
    pub(crate) async fn pass_second_factor(
        &self,
        token: &SecondFactorToken,
        user: &User,
        origin: &SessionOrigin,
    ) -> Result<Option<SessionToken>, StoreError> {
        if !self
            .inner
            .store
            .delete_sign_in_challenge(&token.hash())
            .await?
        {
            return Ok(None);
        }
        Ok(Some(self.open_session(user, origin).await?))
    }

    /// Whether an authenticator app is on, and how many recovery codes are left.
    pub async fn second_factor_status(&self, user: &User) -> Result<(bool, u64), StoreError> {
        if !self.second_factors(user).await?.0 {
            return Ok((false, 0));
        }
        Ok((true, self.inner.store.recovery_codes_left(&user.id).await?))
    }

    /// Starts setting up an authenticator app: a new 160-bit secret, kept (sealed) until a
    /// code from the app confirms it.
    pub async fn start_totp_setup(&self, user: &User) -> Result<TotpSetup, SecondFactorError> {
        let mut secret = [0u8; 20];
        OsRng.fill_bytes(&mut secret);
        let sealed = self.seal_totp(&user.id, &secret);
        if !self
            .inner
            .store
            .start_totp(&user.id, &sealed, self.now())
            .await?
        {
            return Err(SecondFactorError::AlreadyOn);
        }
        let totp = totp(
            secret.to_vec(),
            &self.inner.policy.product_name,
            &user.email,
        )?;
        Ok(TotpSetup {
            secret_base32: totp.secret().to_base32(),
            otpauth_url: totp.to_url().map_err(|_| SecondFactorError::Sealed)?,
        })
    }

    /// Checks `code` against the app being set up (or already set up, when `confirmed`), under
    /// the per-account throttle; the matched time step.
    async fn check_totp(
        &self,
        user: &User,
        code: &str,
        confirmed: bool,
    ) -> Result<u64, SecondFactorError> {
        self.codes_admitted(user).await?;
        let record = self
            .inner
            .store
            .totp(&user.id)
            .await?
            .filter(|t| t.confirmed_at.is_some() == confirmed)
            .ok_or(if confirmed {
                SecondFactorError::NotOn
            } else {
                SecondFactorError::NotSettingUp
            })?;
        match self
            .open_totp(user, &record.secret)?
            .check(code, unix(self.now()))
        {
            Some(step) if step > record.last_step => Ok(step),
            _ => Err(self.wrong_code(user).await),
        }
    }

    /// Refuses while the account's bucket of wrong codes is empty; looking costs nothing.
    async fn codes_admitted(&self, user: &User) -> Result<(), SecondFactorError> {
        let state = self.inner.store.throttle_state(&codes_key(user)).await?;
        admit(CODES_PER_ACCOUNT, state, self.now())
            .map(drop)
            .map_err(SecondFactorError::Throttled)
    }

    /// A wrong code takes one from the account's bucket: the refusal to give.
    async fn wrong_code(&self, user: &User) -> SecondFactorError {
        match self.throttle(&codes_key(user), CODES_PER_ACCOUNT).await {
            Ok(Ok(())) => SecondFactorError::WrongCode,
            Ok(Err(throttled)) => SecondFactorError::Throttled(throttled),
            Err(e) => SecondFactorError::Store(e),
        }
    }

    /// Confirms the app being set up with a code it shows: two-factor authentication is on,
    /// and the ten recovery codes, shown this once, are returned.
    pub async fn confirm_totp_setup(
        &self,
        user: &User,
        code: &str,
    ) -> Result<Vec<String>, SecondFactorError> {
        let Some(TypedCode::Totp(code)) = read_code(code) else {
            return Err(SecondFactorError::WrongCode);
        };
        let step = self.check_totp(user, &code, false).await?;
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| new_recovery_code(&mut OsRng))
            .collect();
        let hashes: Vec<SecretHash> = codes.iter().filter_map(|c| recovery_hash(c)).collect();
        if !self
            .inner
            .store
            .confirm_totp(&user.id, step, &hashes, self.now())
            .await?
        {
            return Err(SecondFactorError::NotSettingUp);
        }
        self.audit(
            AuditKind::SecondFactorEnabled,
            Some(&user.id),
            None,
            None,
            "an authenticator app",
        )
        .await?;
        let host = &self.inner.policy.public_url;
        let text = format!(
            "Two-factor authentication was turned on for your account on {host}: signing in now \
             needs a code from your authenticator app (or a recovery code).\n\nIf it was not you, \
             reset your password at once: {host}/forgot-password\n"
        );
        self.mail(&user.email, "Two-factor authentication is on", text)
            .await?;
        Ok(codes)
    }

    /// Turns the second factor off, after the password (or a recent sign-in) again.
    pub async fn disable_totp(
        &self,
        user: &User,
        password: Option<Password>,
        signed_in_at: OffsetDateTime,
        ip: Option<IpAddr>,
    ) -> Result<(), SecondFactorError> {
        self.reauthenticate(user, password, signed_in_at, ip)
            .await?;
        if !self.inner.store.delete_totp(&user.id).await? {
            return Err(SecondFactorError::NotOn);
        }
        self.audit(
            AuditKind::SecondFactorDisabled,
            Some(&user.id),
            None,
            ip,
            "the authenticator app and its recovery codes",
        )
        .await?;
        let host = &self.inner.policy.public_url;
        let text = format!(
            "Two-factor authentication was turned off for your account on {host}.\n\nIf it was \
             not you, reset your password at once: {host}/forgot-password\n"
        );
        self.mail(&user.email, "Two-factor authentication is off", text)
            .await
            .map_err(SecondFactorError::Account)
    }

    /// The first factor (a password, an identity provider) is done: a session, or, when the
    /// account has a second factor, a sign-in waiting for it (its token goes in a cookie).
    pub async fn after_first_factor(
        &self,
        user: User,
        origin: &SessionOrigin,
        next: Option<&str>,
    ) -> Result<SignInStep, StoreError> {
        if !self.has_second_factor(&user).await? {
            let token = self.open_session(&user, origin).await?;
            return Ok(SignInStep::SignedIn(token, Box::new(user)));
        }
        let token = SecondFactorToken::generate(&mut OsRng);
        self.inner
            .store
            .insert_sign_in_challenge(&token.hash(), &user.id, next, self.now() + CHALLENGE_TTL)
            .await?;
        Ok(SignInStep::SecondFactor(token))
    }

    /// Finishes a waiting sign-in with a code from the app or a recovery code: each works
    /// once, tries are throttled per account. Returns the session and where to go on to.
    pub async fn finish_second_factor(
        &self,
        token: &SecondFactorToken,
        code: &str,
        origin: &SessionOrigin,
    ) -> Result<(SessionToken, User, Option<String>), SecondFactorError> {
        let store = &self.inner.store;
        let (user, next) = self
            .challenged_user(token)
            .await?
            .ok_or(SecondFactorError::NoChallenge)?;
        match read_code(code) {
            Some(TypedCode::Totp(code)) => {
                let step = self.check_totp(&user, &code, true).await?;
                if !store.use_totp_step(&user.id, step).await? {
                    return Err(self.wrong_code(&user).await);
                }
            }
            Some(TypedCode::Recovery(compact)) => {
                self.codes_admitted(&user).await?;
                let hash = SecretHash::of(&compact);
                if !store.use_recovery_code(&user.id, &hash, self.now()).await? {
                    return Err(self.wrong_code(&user).await);
                }
                let left = store.recovery_codes_left(&user.id).await?;
                let detail = format!("{left} left");
                self.audit(
                    AuditKind::RecoveryCodeUsed,
                    Some(&user.id),
                    None,
                    origin.ip,
                    &detail,
                )
                .await?;
            }
            None => {
                self.codes_admitted(&user).await?;
                return Err(self.wrong_code(&user).await);
            }
        }
        let session = self
            .pass_second_factor(token, &user, origin)
            .await?
            .ok_or(SecondFactorError::NoChallenge)?;
        Ok((session, user, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_codes_are_read_leniently_and_nothing_else_passes() {
        assert_eq!(
            read_code(" 123 456 "),
            Some(TypedCode::Totp("123456".into()))
        );
        assert_eq!(
            read_code("ABCD-efgh-2345-7ijk"),
            Some(TypedCode::Recovery("abcdefgh23457ijk".into()))
        );
        for bad in [
            "",
            "12345",
            "1234567",
            "abcd-efgh-2345-7ij1",
            "12345a",
            "' OR 1=1",
        ] {
            assert_eq!(read_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn recovery_codes_are_random_readable_and_hash_however_typed() {
        let code = new_recovery_code(&mut OsRng);
        assert_eq!(code.len(), 19);
        assert_ne!(code, new_recovery_code(&mut OsRng));
        assert_eq!(
            recovery_hash(&code),
            recovery_hash(&code.to_uppercase().replace('-', " "))
        );
        assert!(recovery_hash("123456").is_none());
    }

    #[test]
    fn the_app_s_code_of_this_step_and_its_neighbours_is_accepted() {
        let app = totp(
            b"12345678901234567890".to_vec(),
            "latchkey",
            "ann@example.com",
        )
        .expect("valid");
        // RFC 6238 appendix B: at 59 s the SHA-1 code is 287082 (its last six of 94287082).
        assert_eq!(app.generate(59).to_string(), "287082");
        assert_eq!(app.check("287082", 59), Some(1));
        assert_eq!(
            app.check("287082", 59 + 30),
            Some(1),
            "one step late is skew"
        );
        assert_eq!(app.check("287082", 59 + 60), None, "two steps late is not");
        assert!(
            app.to_url()
                .expect("url")
                .starts_with("otpauth://totp/latchkey:ann%40example.com?")
        );
    }
}
