//! One listener (MIMI Transport: HTTPS with TLS 1.3; DESIGN.md "Robustness"): accept under a
//! connection limit and a per-address cap, TLS 1.3 handshake, then HTTP/2 or HTTP/1.1 as the
//! ALPN result says (HTTP/1.1 on the plain admin listener). No connection holds a slot for
//! free: from accept to its first complete request head it has `limits.header_read_timeout_ms`
//! (the handshake included), a kept-alive connection with nothing in flight is closed after
//! `limits.idle_timeout_ms`, and HTTP/2 peers are pinged and dropped when they stop answering.
//! On shutdown the listener stops accepting, and every connection finishes its in-flight
//! requests (at most the configured grace period); what is left then is stopped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::api::endpoints::ListenerKind;
use crate::net::auth::{ClientAddress, PeerCertificate};
use crate::net::pipeline;
use crate::state::State;

/// Longest HTTP/1 header section accepted.
const MAX_HEADER_BUFFER: usize = 64 * 1024;
/// How long a connection told to close may take to finish before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub struct Listener {
    pub kind: ListenerKind,
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// The protocol builders and timers every connection of a listener shares.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    first_request: Duration,
    idle: Duration,
}

/// Serves until `shutdown` turns true, then drains in-flight requests for at most the
/// configured grace period.
pub async fn run(listener: Listener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let limits = &state.config.limits;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::new(limits.max_connections_per_ip));
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout())
        .max_buf_size(MAX_HEADER_BUFFER);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        // What a peer may send before the gateway reads it: the body budget only counts what
        // is being read.
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(256 * 1024)
        .keep_alive_interval(Duration::from_millis(limits.http2_keep_alive_interval_ms))
        .keep_alive_timeout(Duration::from_millis(limits.http2_keep_alive_timeout_ms));
    let protocols = Arc::new(Protocols {
        http1,
        http2,
        first_request: state.config.header_read_timeout(),
        idle: state.config.idle_timeout(),
    });

    // The connection tasks, so that whatever is left when the grace period ends is stopped
    // with the listener (a JoinSet aborts its tasks when dropped).
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        // Finished connections are reaped as new ones come.
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop_requested(&mut shutdown) => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(%error, listener = listener.kind.name(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop_requested(&mut shutdown) => break,
        };
        // Closed at once: one address may not take the pool, nor churn through it.
        if !state.new_connections.admit(peer.ip()) {
            state
                .metrics
                .count_refused_connection(listener.kind.name(), "connection_rate");
            tracing::debug!(%peer, "connection refused: too many new ones from this address");
            continue;
        }
        let Some(address_slot) = per_address.enter(peer.ip()) else {
            state
                .metrics
                .count_refused_connection(listener.kind.name(), "per_address");
            tracing::debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let protocols = protocols.clone();
        let tls = listener.tls.clone();
        let kind = listener.kind;
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _slots = (permit, address_slot);
            let first_request_by = Instant::now() + protocols.first_request;
            let Some(acceptor) = tls else {
                let connection = Connection {
                    state,
                    kind,
                    address: peer.ip(),
                    certificate: None,
                    first_request_by,
                };
                return connection.serve(&protocols, false, tcp, shutdown).await;
            };
            let stream = match tokio::time::timeout_at(first_request_by, acceptor.accept(tcp)).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    return tracing::debug!(%peer, %error, "TLS handshake refused");
                }
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let session = stream.get_ref().1;
            let http2 = session.alpn_protocol() == Some(b"h2");
            let certificate = session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| PeerCertificate(Arc::new(leaf.clone().into_owned())));
            let connection = Connection {
                state,
                kind,
                address: peer.ip(),
                certificate,
                first_request_by,
            };
            connection.serve(&protocols, http2, stream, shutdown).await;
        });
    }
    drop(listener);
    // Every connection holds a permit until it is done: all permits back means drained.
    let grace = state.config.shutdown_grace();
    let all = u32::try_from(state.config.limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; closing remaining connections"
        );
        tasks.abort_all();
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    // The borrow guard is dropped here, before any await point of the caller.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// Open connections per client address, capped.
struct PerAddress {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerAddress`], given back when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    fn new(cap: usize) -> PerAddress {
        PerAddress {
            cap,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn enter(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let address = crate::rate_limits::address_key(address);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(address).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: self.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// What a connection's watchdog knows of its requests.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// A complete request head has arrived.
    started: AtomicBool,
    /// When the last request ended (the idle time counts from it).
    last_end: Mutex<Option<Instant>>,
    /// Woken when a request starts or ends.
    changed: tokio::sync::Notify,
}

impl Activity {
    /// When the connection became idle, if nothing is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        *self
            .last_end
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request in flight on a connection, counted until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> InFlight {
        activity.started.store(true, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.changed.notify_one();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut last_end) = self.0.last_end.lock() {
            *last_end = Some(Instant::now());
        }
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

struct Connection {
    state: Arc<State>,
    kind: ListenerKind,
    address: IpAddr,
    certificate: Option<PeerCertificate>,
    first_request_by: Instant,
}

impl Connection {
    async fn serve<IO>(
        self,
        protocols: &Protocols,
        http2: bool,
        io: IO,
        shutdown: watch::Receiver<bool>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let (state, kind, certificate, address) =
            (self.state, self.kind, self.certificate, self.address);
        let counted = activity.clone();
        let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let in_flight = InFlight::begin(&counted);
            if let Some(certificate) = &certificate {
                request.extensions_mut().insert(certificate.clone());
            }
            request.extensions_mut().insert(ClientAddress(address));
            let state = state.clone();
            async move {
                let response = pipeline::handle(state, kind, request).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        let io = TokioIo::new(io);
        let timers = Timers {
            first_request_by: self.first_request_by,
            idle: protocols.idle,
        };
        if http2 {
            let connection = protocols.http2.serve_connection(io, service);
            watch(connection, &activity, timers, shutdown).await;
        } else {
            let connection = protocols.http1.serve_connection(io, service);
            watch(connection, &activity, timers, shutdown).await;
        }
    }
}

#[derive(Clone, Copy)]
struct Timers {
    first_request_by: Instant,
    idle: Duration,
}

/// Drives a connection to its end, closing it gracefully when it sent no request head in
/// time, when it sat idle with nothing in flight, or on shutdown; one told to close that
/// does not finish within [`CLOSE_GRACE`] is dropped.
async fn watch<C>(
    connection: C,
    activity: &Activity,
    timers: Timers,
    mut shutdown: watch::Receiver<bool>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut connection = pin!(connection);
    // Until a request head arrives: the first-request deadline; then idle from the last
    // request's end (re-armed whenever a request starts or ends).
    let mut check_at = timers.first_request_by;
    // Told to close (too slow, idle): dropped if not done by then.
    let mut drop_at: Option<Instant> = None;
    // Shutting down: in-flight requests finish within the listener's grace period.
    let mut draining = false;
    loop {
        let deadline = drop_at.unwrap_or(check_at);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = stop_requested(&mut shutdown), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = activity.changed.notified(), if drop_at.is_none() && !draining => {
                // Busy now, or idle from now: the deadline moves to the idle one.
                check_at = activity
                    .idle_since()
                    .map_or(Instant::now() + timers.idle, |since| since + timers.idle);
            }
            _ = tokio::time::sleep_until(deadline), if !draining => {
                if drop_at.is_some() {
                    tracing::debug!("connection dropped: it did not close when told");
                    return;
                }
                let started = activity.started.load(Ordering::Relaxed);
                match activity.idle_since() {
                    // In flight: look again one idle period on.
                    None if started => {
                        check_at = Instant::now() + timers.idle;
                        continue;
                    }
                    Some(since) if Instant::now() < since + timers.idle => {
                        check_at = since + timers.idle;
                        continue;
                    }
                    _ => {}
                }
                let reason = if started { "idle" } else { "no request head in time" };
                tracing::debug!(reason, "closing connection");
                connection.as_mut().graceful_shutdown();
                drop_at = Some(Instant::now() + CLOSE_GRACE);
            }
        }
    }
}
