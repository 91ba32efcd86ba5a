//! Outbound fan-out delivery (issue 7, "Queues and delivery that lose nothing"; DS draft
//! "Server to server requests"): one worker per peer, across every gateway process on the
//! store (the holder of the queue's lease), walks that peer's queue in the store,
//! oldest first, `POST`ing each `DSFanoutRequest` to the peer's `/deliver_message` and
//! removing it once the peer acknowledged it. A failure waits (exponential backoff up to
//! `federation.retry_max_ms`) and retries the same delivery, so a peer receives everything
//! in order; a peer that is down only delays its own queue. A delivery the peer refuses as
//! malformed can never succeed: it is dropped, logged and counted.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::{Notify, watch};

use crate::config::FederationConfig;
use crate::federation::client::PeerClient;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::store::{NextDelivery, SharedStore};

pub const DELIVER_MESSAGE_PATH: &str = "/deliver_message";

/// How long a walker's lease on a peer queue outlasts its longest wait between attempts
/// (`federation.retry_max_ms`): it is renewed before each attempt, so it must outlast the
/// wait and one attempt (the outbound client gives up after 10 s), or another process would
/// take the queue over mid-backoff and start its own backoff afresh. A process that died
/// holding it delays that peer's queue by the wait plus this at most.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// What the delivery loop works with: the outbound queues (the store), the signed client to
/// peers and the signing keys, the metrics, its timings, a wake-up for new deliveries, the
/// peers whose worker runs in this process, and this process's name as a lease holder.
pub struct Delivery {
    store: SharedStore,
    peers: Arc<PeerClient>,
    keys: Arc<RwLock<KeyRing>>,
    metrics: Arc<Metrics>,
    timings: Timings,
    wake: Notify,
    // A std Mutex: held only to insert or remove a name.
    running: Mutex<HashSet<String>>,
    holder: String,
    /// What operators see of each peer this process delivered to (`GET /admin/peers`).
    // A std Mutex: held for a few instructions, never across an await.
    peer_states: Mutex<BTreeMap<String, PeerState>>,
}

/// One peer as an operator sees it (`GET /admin/peers`); times in Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    pub peer: String,
    pub last_success: Option<u64>,
    pub last_failure: Option<u64>,
    pub last_failure_reason: Option<String>,
    /// Fan-out bodies waiting, as the last scan measured them.
    pub queue_depth: u64,
    /// Since when this process has seen the queue non-empty: its oldest entry is at least
    /// that old.
    pub waiting_since: Option<u64>,
    /// Until when the worker waits before trying again (`POST /admin/peers/{peer}/retry`
    /// ends it).
    pub backoff_until: Option<u64>,
}

#[derive(Default)]
struct PeerState {
    status: PeerStatus,
    retry: Arc<Notify>,
}

/// `federation.delivery_scan_ms`, `retry_initial_ms` and `retry_max_ms`.
struct Timings {
    scan: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    lease: Duration,
}

impl Delivery {
    pub fn new(
        config: &FederationConfig,
        store: SharedStore,
        peers: Arc<PeerClient>,
        keys: Arc<RwLock<KeyRing>>,
        metrics: Arc<Metrics>,
    ) -> Delivery {
        let retry_initial = Duration::from_millis(config.retry_initial_ms.max(1));
        Delivery {
            store,
            peers,
            keys,
            metrics,
            timings: Timings {
                scan: Duration::from_millis(config.delivery_scan_ms.max(10)),
                retry_initial,
                retry_max: Duration::from_millis(config.retry_max_ms).max(retry_initial),
                lease: Duration::from_millis(config.retry_max_ms).max(retry_initial) + LEASE_MARGIN,
            },
            wake: Notify::default(),
            running: Mutex::default(),
            holder: uuid::Uuid::new_v4().to_string(),
            peer_states: Mutex::default(),
        }
    }

    /// Every peer this process delivered to or found queued deliveries for.
    pub fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.peer_states.lock().map_or_else(
            |_| Vec::new(),
            |states| states.values().map(|state| state.status.clone()).collect(),
        )
    }

    /// Ends `peer`'s backoff at once: its worker tries again now. `false` for a peer this
    /// process knows nothing of.
    pub fn retry_now(&self, peer: &str) -> bool {
        let retry = self.peer_states.lock().ok().and_then(|states| {
            states
                .get(&peer.to_ascii_lowercase())
                .map(|state| (state.retry.clone(), state.status.backoff_until.is_some()))
        });
        match retry {
            Some((retry, waiting)) => {
                // Only a worker in its backoff is woken: a permit stored for a worker that is
                // not waiting would cut a later outage's first backoff short.
                if waiting {
                    retry.notify_one();
                }
                self.wake();
                true
            }
            None => false,
        }
    }

    /// Changes `peer`'s status (created on first use); answers its retry signal.
    fn update(&self, peer: &str, change: impl FnOnce(&mut PeerStatus)) -> Arc<Notify> {
        let Ok(mut states) = self.peer_states.lock() else {
            return Arc::default();
        };
        let Some(state) = state_of(&mut states, peer) else {
            return Arc::default();
        };
        change(&mut state.status);
        state.retry.clone()
    }

    /// Waits out `backoff` for `peer` (or until an operator's retry), showing it as the
    /// peer's `backoff_until` meanwhile, with `change` recorded first; `true` if shutdown
    /// began.
    async fn back_off(
        &self,
        peer: &str,
        shutdown: &mut watch::Receiver<bool>,
        backoff: Duration,
        change: impl FnOnce(&mut PeerStatus),
    ) -> bool {
        let until = crate::keys::unix_now() + backoff.as_secs_f64().ceil() as u64;
        let retry = self.update(peer, |status| {
            change(status);
            status.backoff_until = Some(until);
        });
        let stopping = wait(shutdown, backoff, &retry).await;
        self.update(peer, |status| status.backoff_until = None);
        stopping
    }

    /// The scan's measurement: `depths` of the peers with queued deliveries; every other
    /// known peer's queue is empty.
    fn record_depths(&self, depths: &[(String, u64)], now: u64) {
        let Ok(mut states) = self.peer_states.lock() else {
            return;
        };
        let measured: BTreeMap<&str, u64> = depths
            .iter()
            .map(|(peer, depth)| (peer.as_str(), *depth))
            .collect();
        // Peers that no longer have deliveries queued: empty, waiting for nothing.
        for (peer, state) in states.iter_mut() {
            if !measured.contains_key(peer.as_str()) {
                state.status.queue_depth = 0;
                state.status.waiting_since = None;
            }
        }
        for (peer, depth) in measured {
            let Some(state) = state_of(&mut states, peer) else {
                continue;
            };
            state.status.queue_depth = depth;
            if depth == 0 {
                state.status.waiting_since = None;
            } else {
                // Kept from the first scan that saw the queue non-empty.
                state.status.waiting_since.get_or_insert(now);
            }
        }
    }

    /// New deliveries were queued: look for them now instead of at the next scan.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// What to do with a delivery after one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry,
    Refused,
}

fn judge(status: StatusCode) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    match status {
        // The request itself is wrong: sending it again cannot help.
        StatusCode::BAD_REQUEST
        | StatusCode::NOT_FOUND
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::UNPROCESSABLE_ENTITY => Outcome::Refused,
        // Authentication (keys being refreshed, clocks), permission (an allow-list being
        // updated), overload and outages may pass.
        _ => Outcome::Retry,
    }
}

/// A peer's answer as an operator reads it: the HTTP status and, when the body is the
/// transport's error body, its code and detail (the peer's text cut to 200 characters,
/// control characters dropped), e.g. `400 Bad Request, 602 NotOurClient: ...`.
fn described(answer: &crate::federation::client::PeerAnswer) -> String {
    if answer.status.is_success() {
        return answer.status.to_string();
    }
    match mimi_wire::decode_exact::<mimi_wire::ErrorResponse>(&answer.body) {
        Ok(error) => {
            let name = mimi_wire::ErrorCode::from_code(error.code)
                .map_or_else(|| "unknown code".to_owned(), |code| format!("{code:?}"));
            let detail: String = error
                .detail
                .chars()
                .filter(|character| !character.is_control())
                .take(200)
                .collect();
            format!("{}, {} {name}: {detail}", answer.status, error.code)
        }
        Err(_) => answer.status.to_string(),
    }
}

/// Runs until `shutdown` turns true: scans for peers with queued deliveries and keeps one
/// worker per such peer.
pub async fn run(delivery: Arc<Delivery>, mut shutdown: watch::Receiver<bool>) {
    let scan = delivery.timings.scan;
    loop {
        match delivery.store.outbound_peers().await {
            Ok(peers) => {
                let mut depths = Vec::with_capacity(peers.len());
                for peer in &peers {
                    match delivery.store.outbound_len(peer).await {
                        Ok(depth) => depths.push((peer.clone(), depth)),
                        Err(error) => {
                            tracing::warn!(%error, peer, "cannot measure an outbound queue")
                        }
                    }
                }
                delivery.record_depths(&depths, crate::keys::unix_now());
                delivery.metrics.set_outbound_depths(depths);
                for peer in peers {
                    let started = delivery
                        .running
                        .lock()
                        .map(|mut running| running.insert(peer.clone()))
                        .unwrap_or(false);
                    if started {
                        tokio::spawn(deliver_to(delivery.clone(), peer, shutdown.clone()));
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list outbound queues"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = delivery.wake.notified() => {}
            _ = tokio::time::sleep(scan) => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Takes or renews `peer`'s lease and reads its queue's head: `None` when another process
/// holds the lease or the queue is empty; `Err` (logged) when the store failed.
async fn next_head(delivery: &Delivery, peer: &str) -> Result<Option<Vec<u8>>, ()> {
    // One walker per queue across processes: another holds it, this one leaves.
    match delivery
        .store
        .lease_outbound(peer, &delivery.holder, delivery.timings.lease)
        .await
    {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(error) => {
            tracing::warn!(%error, peer, "cannot take the outbound queue's lease");
            return Err(());
        }
    }
    delivery.store.outbound_head(peer).await.map_err(|error| {
        tracing::warn!(%error, peer, "cannot read the outbound queue");
    })
}

/// Delivers `peer`'s queue until it is empty, then leaves the running set.
async fn deliver_to(delivery: Arc<Delivery>, peer: String, mut shutdown: watch::Receiver<bool>) {
    let (initial, max) = (delivery.timings.retry_initial, delivery.timings.retry_max);
    let mut backoff = initial;
    // The next body, when the step after the last delivery read it (and renewed the lease).
    let mut ahead: Option<Vec<u8>> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let head = match ahead.take() {
            Some(head) => head,
            None => match next_head(&delivery, &peer).await {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(()) => {
                    if delivery
                        .back_off(&peer, &mut shutdown, backoff, |_| {})
                        .await
                    {
                        break;
                    }
                    backoff = (backoff * 2).min(max);
                    continue;
                }
            },
        };
        let (outcome, reason) = match delivery
            .peers
            .post(&delivery.keys, &peer, DELIVER_MESSAGE_PATH, head.clone())
            .await
        {
            Ok(answer) => {
                let outcome = judge(answer.status);
                let answered = described(&answer);
                if outcome != Outcome::Delivered {
                    tracing::warn!(peer, answered, "fan-out not accepted");
                }
                (outcome, format!("answered {answered}"))
            }
            Err(error) => {
                tracing::warn!(%error, peer, "fan-out delivery failed");
                (Outcome::Retry, error.to_string())
            }
        };
        let now = crate::keys::unix_now();
        match outcome {
            Outcome::Delivered | Outcome::Refused => {
                delivery
                    .metrics
                    .count_fanout(if outcome == Outcome::Delivered {
                        "delivered"
                    } else {
                        "refused"
                    });
                let mut done = false;
                match delivery
                    .store
                    .pop_and_next(&peer, &head, &delivery.holder, delivery.timings.lease)
                    .await
                {
                    Ok(NextDelivery::Head(next)) => ahead = Some(next),
                    Ok(NextDelivery::Empty | NextDelivery::LeaseLost) => done = true,
                    // The next attempt sends it again; the peer drops the duplicate.
                    Err(error) => {
                        tracing::warn!(%error, peer, "delivered, but cannot take it off the queue");
                    }
                }
                delivery.update(&peer, |status| {
                    if outcome == Outcome::Delivered {
                        status.last_success = Some(now);
                    } else {
                        status.last_failure = Some(now);
                        status.last_failure_reason = Some(format!("dropped: {reason}"));
                    }
                });
                backoff = initial;
                if done {
                    break;
                }
            }
            Outcome::Retry => {
                delivery.metrics.count_fanout("retried");
                let failed = |status: &mut PeerStatus| {
                    status.last_failure = Some(now);
                    status.last_failure_reason = Some(reason);
                };
                if delivery
                    .back_off(&peer, &mut shutdown, backoff, failed)
                    .await
                {
                    break;
                }
                backoff = (backoff * 2).min(max);
            }
        }
    }
    if let Err(error) = delivery
        .store
        .release_outbound(&peer, &delivery.holder)
        .await
    {
        // It lapses by itself.
        tracing::warn!(%error, peer, "cannot give the outbound queue's lease up");
    }
    if let Ok(mut running) = delivery.running.lock() {
        running.remove(&peer);
    }
    // A delivery queued between the last empty read and leaving the set is found by the
    // next scan.
}

/// Sleeps for `duration`, or until an operator asks for a retry (`retry`, when given);
/// `true` if shutdown began meanwhile.
async fn wait(shutdown: &mut watch::Receiver<bool>, duration: Duration, retry: &Notify) -> bool {
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(duration) => *shutdown.borrow(),
        _ = retry.notified() => *shutdown.borrow(),
    }
}

/// `peer`'s state, made on first use unless `MAX_PEER_STATES` are kept already.
fn state_of<'a>(
    states: &'a mut BTreeMap<String, PeerState>,
    peer: &str,
) -> Option<&'a mut PeerState> {
    if states.len() >= MAX_PEER_STATES && !states.contains_key(peer) {
        return None;
    }
    Some(states.entry(peer.to_owned()).or_insert_with(|| PeerState {
        status: PeerStatus {
            peer: peer.to_owned(),
            ..PeerStatus::default()
        },
        retry: Arc::default(),
    }))
}

/// Most peers whose status is kept (peers are as many as the domains that have members in
/// this gateway's groups).
const MAX_PEER_STATES: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_malformed_requests_are_dropped() {
        assert_eq!(judge(StatusCode::OK), Outcome::Delivered);
        assert_eq!(judge(StatusCode::BAD_REQUEST), Outcome::Refused);
        assert_eq!(judge(StatusCode::UNAUTHORIZED), Outcome::Retry);
        assert_eq!(judge(StatusCode::FORBIDDEN), Outcome::Retry);
        assert_eq!(judge(StatusCode::SERVICE_UNAVAILABLE), Outcome::Retry);
        assert_eq!(judge(StatusCode::TOO_MANY_REQUESTS), Outcome::Retry);
    }
}
