//! The account's API keys, as the logged-in person manages them: create, list, revoke (by id,
//! prefix or name).

use latchkey_proto::wire::{
    ApiKeyCreateRequest, ApiKeyCreateResponse, ApiKeyInfo, MeResponse, SessionsResponse,
};

use crate::{Client, ClientError, Credential};

/// The one key of `keys` that `which` names: its id, its prefix (as listed, with or without
/// the trailing `…`) or its name.
pub fn find_key<'a>(keys: &'a [ApiKeyInfo], which: &str) -> Result<&'a ApiKeyInfo, ClientError> {
    let which = which.trim().trim_end_matches('…');
    let by = |matches: &dyn Fn(&ApiKeyInfo) -> bool| -> Vec<&'a ApiKeyInfo> {
        keys.iter().filter(|k| matches(k)).collect()
    };
    let found = [
        by(&|k| k.id == which),
        by(&|k| k.key_prefix == which),
        by(&|k| k.name == which),
    ]
    .into_iter()
    .find(|found| !found.is_empty())
    .unwrap_or_default();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(ClientError::Config(format!(
            "you have no API key \"{which}\": `keys list` shows their ids, prefixes and names"
        ))),
        several => Err(ClientError::Config(format!(
            "\"{which}\" names {} keys; name one by its id ({})",
            several.len(),
            several
                .iter()
                .map(|k| k.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

impl Client {
    /// The logged-in credential, refreshed when due.
    pub(crate) async fn active_credential(&self) -> Result<Credential, ClientError> {
        self.fresh_credential()
            .await?
            .ok_or_else(|| ClientError::NotLoggedIn {
                issuer: self.settings().issuer_id(),
            })
    }

    /// The bearer of the logged-in credential, refreshed when due.
    pub(crate) async fn bearer(&self) -> Result<String, ClientError> {
        Ok(self.active_credential().await?.secret.bearer().to_owned())
    }

    /// Who is logged in, and the account's live and expired keys.
    pub async fn api_keys(&self) -> Result<(MeResponse, Vec<ApiKeyInfo>), ClientError> {
        let bearer = self.bearer().await?;
        let me = self.whoami(&bearer).await?;
        let keys = self.api.list_api_keys(&bearer).await?.api_keys;
        Ok((me, keys))
    }

    /// A new key, shown in the answer this once.
    pub async fn create_api_key(
        &self,
        request: &ApiKeyCreateRequest,
    ) -> Result<ApiKeyCreateResponse, ClientError> {
        let bearer = self.bearer().await?;
        self.api.create_api_key(&bearer, request).await
    }

    /// Revokes the key with this id.
    pub async fn revoke_api_key(&self, id: &str) -> Result<(), ClientError> {
        let bearer = self.bearer().await?;
        self.api.revoke_api_key(&bearer, id).await
    }

    /// Where the logged-in person is signed in: browser sessions, and the apps and CLIs
    /// holding logins for them.
    pub async fn sessions(&self) -> Result<SessionsResponse, ClientError> {
        let bearer = self.bearer().await?;
        self.api.list_sessions(&bearer).await
    }

    /// Signs out a browser session (`ses_…`) or revokes a login (`rf_…`).
    pub async fn end_session(&self, id: &str) -> Result<(), ClientError> {
        let bearer = self.bearer().await?;
        self.api.end_session(&bearer, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, prefix: &str, name: &str) -> ApiKeyInfo {
        ApiKeyInfo {
            id: id.into(),
            name: name.into(),
            key_prefix: prefix.into(),
            org_id: "org_1".into(),
            scopes: None,
            created_at: "2026-12-03T00:00:00Z".into(),
            expires_at: None,
            expired: false,
            last_used_at: None,
            usage_count: 0,
        }
    }

    #[test]
    fn a_key_is_named_by_id_then_prefix_then_name() {
        let keys = [
            key("key_a", "lk_AAAA1111", "ci"),
            key("key_b", "lk_BBBB2222", "laptop"),
            key("key_c", "lk_CCCC3333", "ci"),
            key("key_d", "lk_DDDD4444", "key_a"),
        ];
        let id = |which: &str| find_key(&keys, which).map(|k| k.id.clone());
        assert_eq!(id("key_b").ok().as_deref(), Some("key_b"));
        assert_eq!(id("lk_BBBB2222…").ok().as_deref(), Some("key_b"));
        assert_eq!(id("laptop").ok().as_deref(), Some("key_b"));
        assert_eq!(
            id("key_a").ok().as_deref(),
            Some("key_a"),
            "an id wins over a name"
        );
        let several = id("ci").expect_err("two keys are called ci");
        assert!(several.to_string().contains("key_a, key_c"), "{several}");
        assert!(
            id("lk_BBBB").is_err(),
            "a prefix matches whole, not in part"
        );
        assert!(id("nothing").is_err());
    }
}
