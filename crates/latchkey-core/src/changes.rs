//! Acting on changes committed elsewhere: with several replicas on one database, a flow
//! approved on one must wake the waits held on another, and a key revoked on one must leave
//! every replica's cache at once.

use crate::{
    Service,
    store::{Change, ChangeFeed},
};

impl Service {
    /// Applies each change from `feed` until it ends. Run once per process, beside the server.
    pub async fn follow_changes(&self, mut feed: ChangeFeed) {
        while let Some(change) = feed.recv().await {
            self.apply_change(change).await;
        }
    }

    async fn apply_change(&self, change: Change) {
        match change {
            Change::TokenFlowDecided(flow_id) => self.inner.wake.wake(&flow_id),
            Change::ApiKeyRevoked(hash) => self.inner.keys.forget(&hash),
            Change::ClientChanged(client_id) => self.inner.clients.forget(&client_id),
            Change::SubscriptionChanged(org_id) => self.inner.subscriptions.forget(&org_id),
            Change::SigningKeysRotated => self.reload_signing_keys().await,
            Change::Missed => {
                // Anything may have happened meanwhile: waits look at their flow again, and
                // nothing cached is trusted.
                self.inner.wake.wake_all();
                self.inner.keys.clear();
                self.inner.clients.clear();
                self.inner.subscriptions.clear();
                self.reload_signing_keys().await;
            }
        }
    }

    async fn reload_signing_keys(&self) {
        if let Err(e) = self.load_signing_keys().await {
            tracing::warn!(error = %e, "reloading the signing keys failed; the periodic reload will retry");
        }
    }
}
