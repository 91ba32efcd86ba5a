//! A cache of peers' verification keys (MIMI Transport, "Verification Key"): discovery
//! answers are kept for a TTL; a key id the cache does not know causes at most one refresh
//! per peer per interval (so a flood of made-up key ids cannot make the gateway hammer a
//! peer); keys outside their validity window are never handed out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mimi_wire::verification_key::{VerificationKey, VerificationKeyResponse};

use crate::resolver::{ResolveError, Resolver};

#[derive(Debug, thiserror::Error)]
pub enum PeerKeyError {
    #[error("peer `{0}` could not be resolved: {1}")]
    Unreachable(String, ResolveError),
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
}

impl PeerKeys {
    pub fn new(resolver: Resolver, ttl: Duration, refresh_interval: Duration) -> PeerKeys {
        PeerKeys {
            resolver,
            ttl,
            refresh_interval,
            entries: Mutex::new(HashMap::new()),
        }
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

    /// The key `key_id` of `peer`, valid at `at` (Unix seconds).
    pub async fn key(
        &self,
        peer: &str,
        key_id: &str,
        at: u64,
    ) -> Result<VerificationKey, PeerKeyError> {
        let (mut key, fresh, may_refresh) = self.cached(peer, key_id);
        if (!fresh || key.is_none()) && may_refresh {
            match self.refresh(peer).await {
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
