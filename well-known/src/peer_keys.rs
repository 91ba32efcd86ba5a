//! A cache of peers' verification keys (MIMI Transport, "Verification Key"): discovery
//! answers are kept for a TTL; a key id the cache does not know causes at most one refresh
//! per peer per interval (so a flood of made-up key ids cannot make the gateway hammer a
//! peer); keys outside their validity window are never handed out. Lookups for senders with
//! no cached keys (strangers, until they prove otherwise) are limited gateway-wide per minute,
//! and a request waits for one at most a bounded time (the lookup itself goes on in its own
//! task, so a slow peer's keys still arrive for its next request), so forged senders cost a
//! bounded number of outbound connections and never a request's full timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mimi_wire::verification_key::{VerificationKey, VerificationKeyResponse};

use crate::resolver::{ResolveError, Resolver};

#[derive(Debug, thiserror::Error)]
pub enum PeerKeyError {
    #[error("peer `{0}` could not be resolved: {1}")]
    Unreachable(String, ResolveError),
    #[error("lookups of unknown senders are over their rate; `{0}` was not looked up")]
    RateLimited(String),
    #[error("peer `{0}`'s keys were not found within {1:?}")]
    TooSlow(String, Duration),
    #[error("peer `{peer}` publishes no key `{key_id}`")]
    UnknownKey { peer: String, key_id: String },
    #[error("key `{key_id}` of peer `{peer}` is not valid at {at}")]
    Expired {
        peer: String,
        key_id: String,
        at: u64,
    },
}

struct Entry {
    keys: Option<VerificationKeyResponse>,
    fetched_at: Option<Instant>,
    last_attempt: Instant,
}

pub struct PeerKeys {
    resolver: Resolver,
    ttl: Duration,
    refresh_interval: Duration,
    // A std Mutex: held only to read or swap an entry, never across an await.
    entries: Mutex<HashMap<String, Entry>>,
    strangers: Mutex<StrangerBudget>,
    lookup_wait: Duration,
}

/// Most peers remembered without keys (failed lookups); older ones are forgotten first.
const MAX_KEYLESS_ENTRIES: usize = 10_000;

/// A token bucket for lookups of senders with no cached keys.
struct StrangerBudget {
    per_minute: u32,
    tokens: f64,
    at: Instant,
}

impl StrangerBudget {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(self.per_minute) / 60.0;
        self.tokens = (self.tokens + refill).min(f64::from(self.per_minute));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl PeerKeys {
    pub fn new(resolver: Resolver, ttl: Duration, refresh_interval: Duration) -> PeerKeys {
        PeerKeys {
            resolver,
            ttl,
            refresh_interval,
            entries: Mutex::new(HashMap::new()),
            strangers: Mutex::new(StrangerBudget {
                per_minute: 120,
                tokens: 120.0,
                at: Instant::now(),
            }),
            lookup_wait: Duration::from_secs(2),
        }
    }

    /// At most `per_minute` lookups of senders with no cached keys, gateway-wide; a request
    /// waits at most `wait` for its sender's lookup.
    pub fn with_stranger_limits(mut self, per_minute: u32, wait: Duration) -> PeerKeys {
        let per_minute = per_minute.max(1);
        self.strangers = Mutex::new(StrangerBudget {
            per_minute,
            tokens: f64::from(per_minute),
            at: Instant::now(),
        });
        self.lookup_wait = wait;
        self
    }

    fn cached(&self, peer: &str, key_id: &str) -> (Option<VerificationKey>, bool, bool) {
        let Ok(entries) = self.entries.lock() else {
            return (None, true, true);
        };
        match entries.get(peer) {
            None => (None, true, true),
            Some(entry) => {
                let fresh = entry.fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
                let may_refresh = entry.last_attempt.elapsed() >= self.refresh_interval;
                let key = entry
                    .keys
                    .as_ref()
                    .and_then(|keys| keys.key(key_id))
                    .cloned();
                (key, fresh, may_refresh)
            }
        }
    }

    /// Fetches the peer's keys now, recording the attempt first so concurrent callers do not
    /// all refresh.
    async fn refresh(&self, peer: &str) -> Result<(), PeerKeyError> {
        if let Ok(mut entries) = self.entries.lock() {
            let known = entries.get(peer).is_some_and(|entry| entry.keys.is_some());
            if !known {
                let allowed = self
                    .strangers
                    .lock()
                    .map(|mut budget| budget.take())
                    .unwrap_or(false);
                if !allowed {
                    return Err(PeerKeyError::RateLimited(peer.to_owned()));
                }
                if entries.len() >= MAX_KEYLESS_ENTRIES {
                    let stale = self.refresh_interval;
                    entries.retain(|_, entry| {
                        entry.keys.is_some() || entry.last_attempt.elapsed() < stale
                    });
                }
            }
            let entry = entries.entry(peer.to_owned()).or_insert_with(|| Entry {
                keys: None,
                fetched_at: None,
                last_attempt: Instant::now(),
            });
            entry.last_attempt = Instant::now();
        }
        let discovery = self
            .resolver
            .discover(peer)
            .await
            .map_err(|error| PeerKeyError::Unreachable(peer.to_owned(), error))?;
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(peer)
        {
            entry.keys = Some(discovery.keys);
            entry.fetched_at = Some(Instant::now());
        }
        Ok(())
    }

    /// A refresh that goes on in its own task: the caller waits at most `lookup_wait`, and
    /// a slow peer's keys still land in the cache for the next request.
    async fn refresh_bounded(self: &Arc<Self>, peer: &str) -> Result<(), PeerKeyError> {
        let keys = self.clone();
        let name = peer.to_owned();
        let lookup = tokio::spawn(async move { keys.refresh(&name).await });
        match tokio::time::timeout(self.lookup_wait, lookup).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(PeerKeyError::TooSlow(peer.to_owned(), self.lookup_wait)),
        }
    }

    /// The key `key_id` of `peer`, valid at `at` (Unix seconds).
    pub async fn key(
        self: &Arc<Self>,
        peer: &str,
        key_id: &str,
        at: u64,
    ) -> Result<VerificationKey, PeerKeyError> {
        let (mut key, fresh, may_refresh) = self.cached(peer, key_id);
        if (!fresh || key.is_none()) && may_refresh {
            match self.refresh_bounded(peer).await {
                Ok(()) => key = self.cached(peer, key_id).0,
                // A stale cache still serves known keys while the peer is unreachable.
                Err(error) if key.is_none() => return Err(error),
                Err(_) => {}
            }
        }
        let key = key.ok_or_else(|| PeerKeyError::UnknownKey {
            peer: peer.to_owned(),
            key_id: key_id.to_owned(),
        })?;
        if !key.is_valid_at(at) {
            return Err(PeerKeyError::Expired {
                peer: peer.to_owned(),
                key_id: key_id.to_owned(),
                at,
            });
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lookups of senders without keys: a burst of `per_minute`, then refused until time
    /// refills the bucket.
    #[test]
    fn stranger_lookups_are_limited_per_minute() {
        let mut budget = StrangerBudget {
            per_minute: 2,
            tokens: 2.0,
            at: Instant::now(),
        };
        assert!(budget.take());
        assert!(budget.take());
        assert!(!budget.take(), "the third in the same moment is refused");
        budget.at -= Duration::from_secs(30);
        assert!(budget.take(), "half a minute later one more is allowed");
        assert!(!budget.take());
    }
}
