//! Wakes token-flow waits the moment their flow is decided, instead of polling the store.
//! Decisions made on another replica arrive through the store's change feed (`changes.rs`).
//!
//! A waiter subscribes *before* it reads the flow, so a decision landing between the read and
//! the wait is never missed.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct WakeHub {
    flows: Mutex<HashMap<String, Arc<Notify>>>,
    /// Set once when the process stops: waits answer at once instead of parking.
    closing: AtomicBool,
}

pub(crate) struct Subscription<'a> {
    hub: &'a WakeHub,
    flow_id: String,
    notify: Arc<Notify>,
}

impl WakeHub {
    pub(crate) fn subscribe(&self, flow_id: &str) -> Subscription<'_> {
        let notify = match self.flows.lock() {
            Ok(mut flows) => flows.entry(flow_id.to_owned()).or_default().clone(),
            // A poisoned map only loses wake-ups; the wait still ends at its timeout.
            Err(_) => Arc::new(Notify::new()),
        };
        Subscription {
            hub: self,
            flow_id: flow_id.to_owned(),
            notify,
        }
    }

    pub(crate) fn wake(&self, flow_id: &str) {
        let notify = self.flows.lock().ok().and_then(|f| f.get(flow_id).cloned());
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes every wait: used when wake-ups may have been missed.
    pub(crate) fn wake_all(&self) {
        let notifies: Vec<_> = match self.flows.lock() {
            Ok(flows) => flows.values().cloned().collect(),
            Err(_) => return,
        };
        for notify in notifies {
            notify.notify_waiters();
        }
    }

    /// Ends every wait, now and from now on: the process is stopping.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.flows.lock().map(|f| f.len()).unwrap_or(0)
    }
}

impl Subscription<'_> {
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if let Ok(mut flows) = self.hub.flows.lock() {
            // Only the map and this subscription hold it: nobody else waits on this flow.
            if Arc::strong_count(&self.notify) == 2 {
                flows.remove(&self.flow_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_a_waiter_that_subscribed_before_it() {
        let hub = WakeHub::default();
        let sub = hub.subscribe("tf_1");
        let notified = sub.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        hub.wake("tf_1");
        tokio::time::timeout(std::time::Duration::from_secs(1), notified)
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn closing_wakes_every_waiter_and_stays_closed() {
        let hub = WakeHub::default();
        let sub = hub.subscribe("tf_1");
        let notified = sub.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        assert!(!hub.is_closing());
        hub.close();
        tokio::time::timeout(std::time::Duration::from_secs(1), notified)
            .await
            .expect("woken");
        assert!(hub.is_closing());
    }

    #[test]
    fn entries_are_removed_when_the_last_waiter_leaves() {
        let hub = WakeHub::default();
        let a = hub.subscribe("tf_1");
        let b = hub.subscribe("tf_1");
        assert_eq!(hub.len(), 1);
        drop(a);
        assert_eq!(hub.len(), 1);
        drop(b);
        assert_eq!(hub.len(), 0);
    }
}
