//! A minimal HTTPS client for gateway-to-gateway calls: TLS 1.3 only, certificates checked
//! against configured roots (the web's roots by default, a CA file for development), and an
//! optional address override per domain (like curl's `--resolve`) for loopback tests.
//!
//! A peer that speaks HTTP/2 (ALPN `h2`) gets one connection per authority, kept and shared
//! by all requests to it (a fan-out burst pays one TLS handshake, not one per message); a
//! peer that only speaks HTTP/1.1 gets a connection per request.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest answer body read from a peer.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How often a kept HTTP/2 connection is pinged, and how long a ping may go unanswered
/// before the connection is given up.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("`{0}` is not a valid host")]
    BadHost(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// Every address of the name is in a range outbound connections may not go to.
    #[error("{0} resolves only to addresses this gateway does not connect to")]
    Forbidden(String),
    #[error("connecting to {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("HTTP exchange with {host}: {reason}")]
    Http { host: String, reason: String },
    #[error("{host} did not answer within {timeout:?}")]
    Timeout { host: String, timeout: Duration },
}

/// An answer: status, headers and the whole body.
#[derive(Debug)]
pub struct HttpsResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A kept HTTP/2 connection and the number that tells it from the one that replaces it.
type Kept = (u64, http2::SendRequest<Full<Bytes>>);

/// Open HTTP/2 connections by authority, and the next connection number. A std Mutex: held to
/// look up or store a sender, never across an await.
#[derive(Default)]
struct Connections {
    by_authority: HashMap<String, Kept>,
    next: u64,
}

type Pool = Arc<Mutex<Connections>>;

#[derive(Clone)]
pub struct HttpsClient {
    roots: Arc<RootCertStore>,
    config: Arc<ClientConfig>,
    connector: TlsConnector,
    overrides: BTreeMap<String, SocketAddr>,
    /// Where connections may go; `None`: anywhere (operator tools).
    policy: Option<Arc<crate::address_policy::AddressPolicy>>,
    timeout: Duration,
    pool: Pool,
}

impl HttpsClient {
    /// Trusts the roots in `ca_file` (PEM) or, without one, the web's roots.
    pub fn new(ca_file: Option<&Path>) -> Result<HttpsClient, HttpsError> {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let ca_error = |reason: String| HttpsError::CaFile {
                    path: path.display().to_string(),
                    reason,
                };
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|error| ca_error(error.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| ca_error(error.to_string()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(ca_error("no usable certificate".into()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| HttpsError::CaFile {
                path: "-".into(),
                reason: error.to_string(),
            })?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        Ok(HttpsClient {
            roots: Arc::new(roots),
            config: config.clone(),
            connector: TlsConnector::from(config),
            overrides: BTreeMap::new(),
            policy: None,
            timeout: Duration::from_secs(10),
            pool: Pool::default(),
        })
    }

    /// Presents the certificate `resolver` holds as client certificate, for peers that
    /// require mutual TLS (harmless with those that do not ask); a resolver whose pair is
    /// renewed presents the new one on every later connection.
    pub fn with_client_certificate(
        mut self,
        resolver: Arc<dyn rustls::client::ResolvesClientCert>,
    ) -> Result<Self, HttpsError> {
        let config = self.config.clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut with_client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map(|builder| {
                builder
                    .with_root_certificates(self.roots.clone())
                    .with_client_cert_resolver(resolver)
            })
            .map_err(|error| HttpsError::CaFile {
                path: "client certificate".into(),
                reason: error.to_string(),
            })?;
        with_client.alpn_protocols = config.alpn_protocols.clone();
        self.connector = TlsConnector::from(Arc::new(with_client));
        // Connections made without the certificate are not this client's.
        self.pool = Pool::default();
        Ok(self)
    }

    /// Connects to `addr` whenever `host` is asked for, whatever DNS says.
    pub fn with_override(mut self, host: &str, addr: SocketAddr) -> Self {
        self.overrides.insert(host.to_ascii_lowercase(), addr);
        self
    }

    /// Connects only to addresses `policy` permits (overrides included).
    pub fn with_address_policy(mut self, policy: crate::address_policy::AddressPolicy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one request to `https://{authority}{path}`; `authority` is `host` or
    /// `host:port`.
    pub async fn send(
        &self,
        method: Method,
        authority: &str,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<HttpsResponse, HttpsError> {
        let host = authority.to_owned();
        // The kept connection the exchange used, if any: one that stalled is not used again
        // (only that one: another task may have replaced it meanwhile).
        let used = Mutex::new(None);
        let answer = tokio::time::timeout(
            self.timeout,
            self.exchange(method, authority, path, headers, body, &used),
        )
        .await;
        match answer {
            Ok(answer) => answer,
            Err(_) => {
                if let Some(id) = used.lock().ok().and_then(|used| *used) {
                    self.forget(authority, id);
                }
                Err(HttpsError::Timeout {
                    host,
                    timeout: self.timeout,
                })
            }
        }
    }

    async fn exchange(
        &self,
        method: Method,
        authority: &str,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        used: &Mutex<Option<u64>>,
    ) -> Result<HttpsResponse, HttpsError> {
        let http = |reason: String| HttpsError::Http {
            host: authority.to_owned(),
            reason,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, authority)
            .body(Full::new(body))
            .map_err(|error| http(error.to_string()))?;
        request.headers_mut().extend(headers);
        let note = |id: u64| {
            if let Ok(mut used) = used.lock() {
                *used = Some(id);
            }
        };
        let response = match self.pooled(authority) {
            Some((id, mut sender)) => {
                note(id);
                match sender.send_request(absolute(&request, authority)?).await {
                    Ok(response) => response,
                    // The kept connection closed before the request went out (the peer
                    // restarted or went idle), or the peer refused the stream (it is shutting
                    // down): either way nothing was processed, so it goes once more on a new
                    // connection.
                    Err(error) if error.is_canceled() || refused_stream(&error) => {
                        self.forget(authority, id);
                        self.send_fresh(authority, request, &note).await?
                    }
                    Err(error) => {
                        self.forget(authority, id);
                        return Err(http(error.to_string()));
                    }
                }
            }
            None => self.send_fresh(authority, request, &note).await?,
        };
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| http(error.to_string()))?
            .to_bytes();
        Ok(HttpsResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A kept HTTP/2 connection to `authority` that can still take requests.
    fn pooled(&self, authority: &str) -> Option<Kept> {
        let mut pool = self.pool.lock().ok()?;
        match pool.by_authority.get(authority) {
            Some((id, sender)) if !sender.is_closed() => Some((*id, sender.clone())),
            Some(_) => {
                pool.by_authority.remove(authority);
                None
            }
            None => None,
        }
    }

    /// Keeps `sender` for `authority`; answers its number.
    fn keep(&self, authority: &str, sender: &http2::SendRequest<Full<Bytes>>) -> Option<u64> {
        let mut pool = self.pool.lock().ok()?;
        pool.next += 1;
        let id = pool.next;
        pool.by_authority
            .insert(authority.to_owned(), (id, sender.clone()));
        Some(id)
    }

    /// Stops using connection `id` for `authority` (a newer one stays).
    fn forget(&self, authority: &str, id: u64) {
        if let Ok(mut pool) = self.pool.lock()
            && pool
                .by_authority
                .get(authority)
                .is_some_and(|(kept, _)| *kept == id)
        {
            pool.by_authority.remove(authority);
        }
    }

    /// Connects to `authority` and sends `request`; an HTTP/2 connection is kept for the
    /// next requests.
    async fn send_fresh(
        &self,
        authority: &str,
        request: Request<Full<Bytes>>,
        note: &impl Fn(u64),
    ) -> Result<http::Response<hyper::body::Incoming>, HttpsError> {
        let (host, port) = split_authority(authority)?;
        // A name that is an IP literal is no peer's name: never connected to.
        if host.parse::<std::net::IpAddr>().is_ok() && self.policy.is_some() {
            return Err(HttpsError::BadHost(host.to_owned()));
        }
        let candidates: Vec<SocketAddr> = match self.overrides.get(&host.to_ascii_lowercase()) {
            Some(addr) => vec![*addr],
            None => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| HttpsError::Resolve(authority.to_owned()))?
                .collect(),
        };
        let permitted = |addr: &SocketAddr| {
            self.policy
                .as_ref()
                .is_none_or(|policy| policy.permits(addr.ip()))
        };
        let addr = match candidates.iter().find(|addr| permitted(addr)) {
            Some(addr) => *addr,
            None if candidates.is_empty() => {
                return Err(HttpsError::Resolve(authority.to_owned()));
            }
            None => return Err(HttpsError::Forbidden(authority.to_owned())),
        };
        let connect = |reason: String| HttpsError::Connect {
            host: authority.to_owned(),
            reason,
        };
        let http = |reason: String| HttpsError::Http {
            host: authority.to_owned(),
            reason,
        };
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| HttpsError::BadHost(host.to_owned()))?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|error| connect(error.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(server_name, tcp)
            .await
            .map_err(|error| connect(error.to_string()))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            // Pings find a connection that died silently (a half-open TCP connection would
            // otherwise take every request to the peer into the timeout).
            let (mut sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .handshake(TokioIo::new(tls))
                .await
                .map_err(|error| http(error.to_string()))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let id = self.keep(authority, &sender);
            if let Some(id) = id {
                note(id);
            }
            let request = absolute(&request, authority)?;
            return sender.send_request(request).await.map_err(|error| {
                if let Some(id) = id {
                    self.forget(authority, id);
                }
                http(error.to_string())
            });
        }
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|error| http(error.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender
            .send_request(request)
            .await
            .map_err(|error| http(error.to_string()))
    }
}

/// Whether the peer did not process the request's HTTP/2 stream, so it may be sent again
/// (RFC 9113, 8.7): it refused the stream (`REFUSED_STREAM`), or it is going away (a GOAWAY
/// fails only the streams past the last one it will process; a graceful shutdown sends it
/// with `NO_ERROR`).
fn refused_stream(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        source = cause.source();
    }
    false
}

/// `request` with the absolute URI HTTP/2 needs (`:scheme` and `:authority` come from it);
/// HTTP/1.1 sends the path alone.
fn absolute(
    request: &Request<Full<Bytes>>,
    authority: &str,
) -> Result<Request<Full<Bytes>>, HttpsError> {
    let mut request = request.clone();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    *request.uri_mut() = format!("https://{authority}{path}")
        .parse()
        .map_err(|_| HttpsError::BadHost(authority.to_owned()))?;
    Ok(request)
}

/// Splits `host[:port]` (port 443 by default).
fn split_authority(authority: &str) -> Result<(&str, u16), HttpsError> {
    let bad = || HttpsError::BadHost(authority.to_owned());
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, port.parse().map_err(|_| bad())?)),
        None if !authority.is_empty() => Ok((authority, 443)),
        _ => Err(bad()),
    }
}
