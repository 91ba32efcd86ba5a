//! The benchmark's load client: requests made (and signed) before the timed phase, sent
//! over a few kept TLS 1.3 / HTTP/2 connections with a fixed number in flight, bounded by
//! their count and by a deadline; every answer's status and latency recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mimi_wire::signing::{RequestClaims, SIGNATURE_HEADER, SenderKind, sign};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use uuid::Uuid;

/// One request, ready to send: nothing is computed for it in the timed phase but the
/// `http::Request` around these parts.
#[derive(Clone)]
pub struct Prepared {
    pub method: Method,
    pub path: String,
    pub signature: Option<HeaderValue>,
    pub body: Bytes,
}

impl Prepared {
    pub fn unsigned(method: Method, path: &str) -> Prepared {
        Prepared {
            method,
            path: path.to_owned(),
            signature: None,
            body: Bytes::new(),
        }
    }
}

/// Who signs the prepared requests.
#[derive(Clone)]
pub struct Signer {
    pub app: Uuid,
    pub key: SigningKey,
    pub key_id: String,
    pub recipient: String,
}

impl Signer {
    /// `method path` with `body`, signed now with a fresh request id.
    pub fn sign(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Prepared, String> {
        let claims = RequestClaims {
            sender_kind: SenderKind::Application,
            sender: self.app.to_string(),
            recipient: self.recipient.clone(),
            timestamp: crate::keys::unix_now(),
            request_id: rand::random(),
            key_id: self.key_id.clone(),
        };
        let envelope = sign(&self.key, claims, method.as_str(), path, &body)
            .map_err(|error| error.to_string())?;
        let header = envelope
            .to_header_value()
            .map_err(|error| error.to_string())?;
        Ok(Prepared {
            method,
            path: path.to_owned(),
            signature: Some(HeaderValue::from_str(&header).map_err(|error| error.to_string())?),
            body: Bytes::from(body),
        })
    }
}

/// What one timed run gave.
pub struct RunOutcome {
    /// Latencies of the requests answered with 2xx, sorted.
    pub latencies: Vec<Duration>,
    /// Answers by HTTP status; `0` counts requests that got no answer.
    pub statuses: BTreeMap<u16, u64>,
    pub elapsed: Duration,
    /// New connections whose TLS handshake resumed a session (handshake runs).
    pub resumed: usize,
    /// Paced runs: requests due before the deadline that no worker got to send (every one
    /// was waiting on an answer): the server was saturated, and the latencies, of what was
    /// sent, are a lower bound.
    pub unsent: usize,
}

impl RunOutcome {
    /// Requests answered with 2xx.
    pub fn answered(&self) -> usize {
        self.latencies.len()
    }

    pub fn per_second(&self) -> f64 {
        self.answered() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        // The nearest-rank percentile: the smallest latency with at least p of them at or
        // below it.
        let rank = (self.latencies.len() as f64 * p).ceil() as usize;
        let index = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[index]
    }

    /// Answers that were not 2xx (and requests without an answer), by status.
    pub fn errors(&self) -> BTreeMap<u16, u64> {
        self.statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(status, count)| (*status, *count))
            .collect()
    }
}

/// A client TLS configuration trusting `ca` (PEM), TLS 1.3 only, offering h2; with
/// `resumption`, sessions are kept (in memory) and resumed on later connections.
pub fn connector(ca: &std::path::Path, resumption: bool) -> Result<TlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|error| format!("{}: {error}", ca.display()))?
    {
        roots
            .add(certificate.map_err(|error| error.to_string())?)
            .map_err(|error| error.to_string())?;
    }
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `count` HTTP/2 connections to `address` (TLS server name `localhost`).
pub async fn connect(
    tls: &TlsConnector,
    address: SocketAddr,
    count: usize,
) -> Result<Vec<SendRequest<Full<Bytes>>>, String> {
    Ok(connect_counting(tls, address, count).await?.0)
}

/// As [`connect`], also answering how many of the TLS handshakes resumed a session.
async fn connect_counting(
    tls: &TlsConnector,
    address: SocketAddr,
    count: usize,
) -> Result<(Vec<SendRequest<Full<Bytes>>>, usize), String> {
    let mut senders = Vec::with_capacity(count);
    let mut resumed = 0;
    for _ in 0..count {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|error| format!("{address}: {error}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("localhost").map_err(|error| error.to_string())?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS to {address}: {error}"))?;
        if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        }
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|error| format!("HTTP/2 to {address}: {error}"))?;
        tokio::spawn(connection);
        senders.push(sender);
    }
    Ok((senders, resumed))
}

/// Sends `requests` over `senders` with `in_flight` at once until all are answered or
/// `limit` has passed.
pub async fn drive(
    senders: &[SendRequest<Full<Bytes>>],
    requests: Vec<Prepared>,
    in_flight: usize,
    limit: Duration,
) -> RunOutcome {
    drive_marking(senders, requests, in_flight, limit, None, None).await
}

/// When each request was sent, by its index (`drive_marking`).
pub type SendMarks = Arc<[std::sync::OnceLock<Instant>]>;

/// `drive`, noting in `marks` (when given) when each request was sent (paced: when it was
/// due): for latencies that end elsewhere than at the answer (`fanout`: when the last queue
/// has the message). With `every`, request `i` is due `i * every` into the run and not sent
/// before (an offered rate, still at most `in_flight` at once), and its latency counts from
/// when it was due: a request that waited for a free worker behind a slow server waited
/// for that server. Requests due before the deadline that no worker got to are `unsent`.
pub async fn drive_marking(
    senders: &[SendRequest<Full<Bytes>>],
    requests: Vec<Prepared>,
    in_flight: usize,
    limit: Duration,
    marks: Option<SendMarks>,
    every: Option<Duration>,
) -> RunOutcome {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let mut workers = Vec::with_capacity(in_flight);
    for worker in 0..in_flight {
        let mut sender = senders[worker % senders.len()].clone();
        let requests = requests.clone();
        let next = next.clone();
        let marks = marks.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests.len() || Instant::now() >= deadline {
                    break;
                }
                let due = match every {
                    Some(every) => match due(started, every, index, deadline).await {
                        Some(due) => Some(due),
                        None => break,
                    },
                    None => None,
                };
                let sent = Instant::now();
                if let Some(mark) = marks.as_ref().and_then(|marks| marks.get(index)) {
                    let _ = mark.set(due.unwrap_or(sent));
                }
                let status = exchange(&mut sender, &requests[index], deadline).await;
                note(&mut latencies, &mut statuses, due.unwrap_or(sent), status);
            }
            (latencies, statuses, 0)
        }));
    }
    let mut outcome = gather(workers, started).await;
    if let Some(every) = every {
        outcome.unsent = unsent(&outcome, requests.len(), limit, every);
    }
    outcome
}

/// How many of `count` requests paced at one per `every` were due within `limit` but not
/// sent (request `i` is due at `i * every`; every sent one has a status).
fn unsent(outcome: &RunOutcome, count: usize, limit: Duration, every: Duration) -> usize {
    let due = (limit.as_secs_f64() / every.as_secs_f64().max(1e-9)).ceil() as usize;
    let sent: u64 = outcome.statuses.values().sum();
    due.min(count)
        .saturating_sub(usize::try_from(sent).unwrap_or(usize::MAX))
}

/// One worker per chain, each sending its chain's requests in order and one at a time (a
/// group's commits are serial: each needs the epoch the one before made), the chains side
/// by side, until all are answered or `limit` has passed. A refusal ends its chain (the
/// group is behind the requests that follow).
pub async fn drive_chains(
    senders: &[SendRequest<Full<Bytes>>],
    chains: Vec<Vec<Prepared>>,
    limit: Duration,
) -> RunOutcome {
    let started = Instant::now();
    let deadline = started + limit;
    let mut workers = Vec::with_capacity(chains.len());
    for (index, chain) in chains.into_iter().enumerate() {
        let mut sender = senders[index % senders.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            for request in &chain {
                if Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let status = exchange(&mut sender, request, deadline).await;
                if !note(&mut latencies, &mut statuses, sent, status) {
                    break;
                }
            }
            (latencies, statuses, 0)
        }));
    }
    gather(workers, started).await
}

/// Each request on a connection of its own: TCP, TLS 1.3 handshake (resumed when `tls`
/// keeps sessions), HTTP/2 preface, the request, then the connection closed; `in_flight`
/// at once until all are answered or `limit` has passed. A latency is the whole of it.
/// With `every`, paced as in [`drive_marking`], latencies counted from when each was due.
pub async fn drive_handshakes(
    tls: &TlsConnector,
    address: SocketAddr,
    requests: Vec<Prepared>,
    in_flight: usize,
    limit: Duration,
    every: Option<Duration>,
) -> RunOutcome {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let mut workers = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let (tls, requests, next) = (tls.clone(), requests.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut resumed = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests.len() || Instant::now() >= deadline {
                    break;
                }
                let due = match every {
                    Some(every) => match due(started, every, index, deadline).await {
                        Some(due) => Some(due),
                        None => break,
                    },
                    None => None,
                };
                let sent = due.unwrap_or_else(Instant::now);
                // Connecting and the exchange together end by the deadline (and a grace).
                let request = requests[index].clone();
                let attempt = async {
                    let (mut senders, resumed_here) =
                        connect_counting(&tls, address, 1).await.ok()?;
                    // A connection made just past the deadline still sends its request.
                    let status = exchange(&mut senders[0], &request, deadline).await;
                    Some((status, resumed_here))
                };
                let (status, resumed_here) =
                    match tokio::time::timeout(patience(deadline), attempt).await {
                        Ok(Some(answer)) => answer,
                        _ => (0, 0),
                    };
                // Resumptions are counted among the connections that got a 2xx answer.
                if note(&mut latencies, &mut statuses, sent, status) {
                    resumed += resumed_here;
                }
            }
            (latencies, statuses, resumed)
        }));
    }
    let mut outcome = gather(workers, started).await;
    if let Some(every) = every {
        outcome.unsent = unsent(&outcome, requests.len(), limit, every);
    }
    outcome
}

/// Waits until request `index` of a run paced at one per `every` is due, and answers when
/// that was; `None` when it would be due at or after the run's `deadline`.
async fn due(
    started: Instant,
    every: Duration,
    index: usize,
    deadline: Instant,
) -> Option<Instant> {
    let due = started + every.saturating_mul(u32::try_from(index).unwrap_or(u32::MAX));
    if due >= deadline {
        return None;
    }
    tokio::time::sleep_until(due.into()).await;
    Some(due)
}

/// Counts an answer by its status; a 2xx one's latency, since `sent`, goes with the
/// throughput (refusals are counted by status only). Whether it was a 2xx.
fn note(
    latencies: &mut Vec<Duration>,
    statuses: &mut BTreeMap<u16, u64>,
    sent: Instant,
    status: u16,
) -> bool {
    *statuses.entry(status).or_default() += 1;
    let answered = (200..300).contains(&status);
    if answered {
        latencies.push(sent.elapsed());
    }
    answered
}

/// Sends one prepared request on `sender` and reads the whole answer: its status, or 0 when
/// none came by the run's `deadline` and its grace (a server that stops answering ends the
/// run instead of stalling it).
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    prepared: &Prepared,
    deadline: Instant,
) -> u16 {
    let mut request = Request::builder()
        .method(prepared.method.clone())
        .uri(format!("https://localhost{}", prepared.path))
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(prepared.body.clone()))
        .expect("a request from its parts");
    if let Some(signature) = &prepared.signature {
        request
            .headers_mut()
            .insert(SIGNATURE_HEADER, signature.clone());
    }
    let answer = async {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    };
    match tokio::time::timeout(patience(deadline), answer).await {
        Ok(Ok(status)) => status,
        _ => 0,
    }
}

/// How long one exchange may still take: until the run's deadline, and a grace of 5 s.
fn patience(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5)
}

/// One worker's latencies (2xx answers), answers by status and resumed handshakes.
type WorkerTally = (Vec<Duration>, BTreeMap<u16, u64>, usize);

/// The workers' tallies as one outcome, timed from `started` until the last is done.
async fn gather(
    workers: Vec<tokio::task::JoinHandle<WorkerTally>>,
    started: Instant,
) -> RunOutcome {
    let mut outcome = RunOutcome {
        latencies: Vec::new(),
        statuses: BTreeMap::new(),
        elapsed: Duration::ZERO,
        resumed: 0,
        unsent: 0,
    };
    for worker in workers {
        if let Ok((latencies, statuses, resumed)) = worker.await {
            outcome.resumed += resumed;
            outcome.latencies.extend(latencies);
            for (status, count) in statuses {
                *outcome.statuses.entry(status).or_default() += count;
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort();
    outcome
}
