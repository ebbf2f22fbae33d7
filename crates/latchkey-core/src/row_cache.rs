//! Store rows kept in memory for the hot path, dropped the moment they change.

use std::{
    future::Future,
    hash::Hash,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use quick_cache::{Equivalent, sync::Cache};
use time::OffsetDateTime;

/// A bounded copy of rows read from the store, each trusted for `ttl` after it was read.
/// Whoever changes a row calls [`RowCache::forget`] (here, or on each replica through the
/// change feed); a read that began before a change never lands in the cache after it.
pub(crate) struct RowCache<K, V> {
    entries: Cache<K, (V, OffsetDateTime)>,
    /// Bumped by every forget: what a read found is cached only if none came between.
    forgets: AtomicU64,
    ttl: Duration,
}

/// Taken before a store read, handed to [`RowCache::insert`] with what it found.
#[derive(Clone, Copy)]
struct ReadStarted(u64);

impl<K: Eq + Hash + Clone, V: Clone> RowCache<K, V> {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Cache::new(capacity.max(16)),
            forgets: AtomicU64::new(0),
            ttl,
        }
    }

    /// What was read within the last `ttl`, if anything.
    fn get<Q>(&self, key: &Q, now: OffsetDateTime) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (value, read_at) = self.entries.get(key)?;
        (now - read_at < self.ttl).then_some(value)
    }

    /// What is cached for `key`, or else what `read` finds in the store, which is then cached
    /// (unless the row changed while it was being read). `read` is only called on a miss.
    pub(crate) async fn read_through<Q, E, F>(
        &self,
        key: &Q,
        now: OffsetDateTime,
        read: impl FnOnce() -> F,
    ) -> Result<V, E>
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
        F: Future<Output = Result<V, E>>,
    {
        if let Some(cached) = self.get(key, now) {
            return Ok(cached);
        }
        let started = self.read_started();
        let value = read().await?;
        self.insert(key.to_owned(), value.clone(), now, started);
        Ok(value)
    }

    fn read_started(&self) -> ReadStarted {
        ReadStarted(self.forgets.load(Ordering::SeqCst))
    }

    /// Caches what a read found, unless a forget landed since it began.
    fn insert(&self, key: K, value: V, read_at: OffsetDateTime, started: ReadStarted) {
        self.entries.insert(key.clone(), (value, read_at));
        if self.forgets.load(Ordering::SeqCst) != started.0 {
            self.entries.remove(&key);
        }
    }

    pub(crate) fn forget<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(key);
    }

    pub(crate) fn clear(&self) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    #[test]
    fn a_row_is_trusted_for_its_ttl_and_dropped_when_it_changes() {
        let cache = RowCache::new(16, Duration::from_secs(30));
        cache.insert("org", 1, at(0), cache.read_started());
        assert_eq!(cache.get(&"org", at(29)), Some(1));
        assert_eq!(cache.get(&"org", at(30)), None, "older than its ttl");
        cache.forget(&"org");
        assert_eq!(cache.get(&"org", at(1)), None);
        cache.insert("org", 2, at(0), cache.read_started());
        cache.clear();
        assert_eq!(cache.get(&"org", at(1)), None);
    }

    #[test]
    fn a_read_that_began_before_a_change_is_not_cached_after_it() {
        let cache = RowCache::new(16, Duration::from_secs(30));
        let started = cache.read_started();
        // The row changes (and is forgotten) while the read is on its way back.
        cache.forget(&"org");
        cache.insert("org", "before the change", at(0), started);
        assert_eq!(cache.get(&"org", at(1)), None);
        cache.insert("org", "after", at(0), cache.read_started());
        assert_eq!(cache.get(&"org", at(1)), Some("after"));
    }
}
