//! Outbound fan-out delivery (issue 7, "Queues and delivery that lose nothing"; DS draft
//! "Server to server requests"): one worker per peer, across every gateway process on the
//! store (the holder of the queue's lease), walks that peer's queue in the store,
//! oldest first, `POST`ing each `DSFanoutRequest` to the peer's `/deliver_message` and
//! removing it once the peer acknowledged it. A failure waits (exponential backoff up to
//! `federation.retry_max_ms`) and retries the same delivery, so a peer receives everything
//! in order; a peer that is down only delays its own queue. A delivery the peer refuses as
//! malformed can never succeed: it is dropped, logged and counted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::{Notify, watch};

use crate::config::FederationConfig;
use crate::federation::client::PeerClient;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::store::SharedStore;

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

/// Delivers `peer`'s queue until it is empty, then leaves the running set.
async fn deliver_to(delivery: Arc<Delivery>, peer: String, mut shutdown: watch::Receiver<bool>) {
    let (initial, max) = (delivery.timings.retry_initial, delivery.timings.retry_max);
    let mut backoff = initial;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // One walker per queue across processes: another holds it, this one leaves.
        match delivery
            .store
            .lease_outbound(&peer, &delivery.holder, delivery.timings.lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                tracing::warn!(%error, peer, "cannot take the outbound queue's lease");
                if wait(&mut shutdown, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(max);
                continue;
            }
        }
        let head = match delivery.store.outbound_head(&peer).await {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, peer, "cannot read the outbound queue");
                if wait(&mut shutdown, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(max);
                continue;
            }
        };
        let outcome = match delivery
            .peers
            .post(&delivery.keys, &peer, DELIVER_MESSAGE_PATH, head.clone())
            .await
        {
            Ok(answer) => {
                let outcome = judge(answer.status);
                if outcome != Outcome::Delivered {
                    tracing::warn!(peer, status = %answer.status, "fan-out not accepted");
                }
                outcome
            }
            Err(error) => {
                tracing::warn!(%error, peer, "fan-out delivery failed");
                Outcome::Retry
            }
        };
        match outcome {
            Outcome::Delivered | Outcome::Refused => {
                delivery
                    .metrics
                    .count_fanout(if outcome == Outcome::Delivered {
                        "delivered"
                    } else {
                        "refused"
                    });
                if let Err(error) = delivery.store.pop_outbound(&peer, &head).await {
                    tracing::warn!(%error, peer, "delivered, but cannot take it off the queue");
                    // The next attempt sends it again; the peer drops the duplicate.
                }
                backoff = initial;
            }
            Outcome::Retry => {
                delivery.metrics.count_fanout("retried");
                if wait(&mut shutdown, backoff).await {
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

/// Sleeps for `duration`; `true` if shutdown began meanwhile.
async fn wait(shutdown: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(duration) => *shutdown.borrow(),
    }
}

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
