//! A typed async client of the MIMI gateway's application API (architecture draft, "REST
//! API"; MIMI Transport's signed `application/octet-stream` requests), for application
//! servers: one method per endpoint, taking and returning the `mimi-wire` types. It signs
//! every request with the application's Ed25519 key, encodes and decodes the TLS-serialized
//! bodies, keeps one HTTP/2 connection over TLS 1.3 (made again when it breaks), and turns
//! the gateway's `ErrorResponse` into an [`Error::Gateway`] with the code, the HTTP status
//! and the detail.
//!
//! ```no_run
//! use mimi_client::{Client, ClientConfig, TrustRoots};
//! use uuid::Uuid;
//!
//! # async fn example() -> Result<(), mimi_client::Error> {
//! let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let client = Client::new(ClientConfig {
//!     url: "https://localhost:4430".into(),
//!     app: Uuid::parse_str("6f1b4ac3-0c52-4a50-9a7e-2f1f3c9f8a10").unwrap(),
//!     key,
//!     key_id: "k1".into(),
//!     roots: TrustRoots::PemFile("data/dev-ca.pem".into()),
//!     gateway_domain: None,
//!     connect_to: None,
//! })?;
//! let me = client.whoami().await?;
//! println!("the gateway knows us as {}", me.sender);
//! let carol = client.register_client("carol", &["friends"]).await?;
//! let queue = client.create_key_queue(carol, 1, 1, "").await?;
//! # let key_packages: Vec<Vec<u8>> = Vec::new();
//! client
//!     .update_key_queue(carol, queue, &key_packages, false, None, None)
//!     .await?;
//! // A commit that lost the race for its epoch: bring the client up to date, then retry.
//! # let group_id = vec![1u8; 16];
//! # let commit = mimi_client::Commit { commit: vec![], group_info: None, welcome: None };
//! let epoch = client
//!     .upload_commit_retrying(&group_id, 3, |missed| {
//!         // `missed`: the handshake messages since the client's epoch, to process; then
//!         // answer the commit made again on top of them.
//!         let _ = missed;
//!         Ok(commit.clone())
//!     })
//!     .await?;
//! println!("now at epoch {epoch}");
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mimi_wire::codec::WireBool;
use mimi_wire::groups::{
    ControlMessagesRequest, CreateGroupRequest, GroupEpochResponse, GroupInfoResponse,
    GroupStatusResponse, JoinInfo, MessagesResponse, UploadCommitRequest, UploadProposalRequest,
    WelcomeMessagesResponse, group_id_to_path,
};
use mimi_wire::key_queues::{
    ConnectionKeyPackagesResponse, CreateKeyQueueRequest, CreateKeyQueueResponse,
    RetrieveConnectionKeyPackagesRequest, RetrieveKeyPackageRequest, RetrieveKeyPackageResponse,
    UpdateKeyQueueRequest, UpdateKeyQueueResponse,
};
use mimi_wire::messages::{
    AcknowledgeMessagesRequest, AcknowledgeMessagesResponse, FetchMessagesRequest, MAX_FETCH,
    QueuedMessage, QueuedMessagesResponse, SendConnectionRequest, SendGroupMessageRequest,
};
use mimi_wire::registry::{
    ApplicationList, ClientRecord, ClientResponse, DiscoverClientsRequest, DiscoverClientsResponse,
    RegisterClientRequest, RegisterClientResponse, UpdateClientRequest,
};
use mimi_wire::signing::{RequestClaims, SIGNATURE_HEADER, SenderKind, sign};
use mimi_wire::whoami::WhoAmIResponse;
use mimi_wire::{ErrorCode, ErrorResponse, WIRE_VERSION};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tls_codec::VLBytes;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use uuid::Uuid;

/// Where the gateway's TLS certificate chains to.
#[derive(Debug, Clone)]
pub enum TrustRoots {
    /// The CA certificates of a PEM file (a development CA, a private PKI).
    PemFile(PathBuf),
    /// The CA certificates of PEM text.
    Pem(Vec<u8>),
    /// The web's roots (Mozilla's, through `webpki-roots`).
    Web,
}

/// What a [`Client`] needs: the gateway's application URL, the application and its signing
/// key, and whom to trust.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://host[:port]` of the gateway's application listener.
    pub url: String,
    /// The application id, the sender of every request.
    pub app: Uuid,
    pub key: SigningKey,
    /// The id under which the gateway knows `key`.
    pub key_id: String,
    pub roots: TrustRoots,
    /// The gateway's domain, which every request names as its recipient; the URL's host
    /// when `None`.
    pub gateway_domain: Option<String>,
    /// Connect to this address instead of resolving the URL's host (the certificate is
    /// still checked against the host), like curl's `--resolve`.
    pub connect_to: Option<std::net::SocketAddr>,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway refused the request: its stable code, the HTTP status, the detail it sent
    /// and the structured fields.
    #[error("{status}, {}: {detail}", code_name(.code, *.raw_code))]
    Gateway {
        status: StatusCode,
        /// `None` for a code this version of `mimi-wire` does not know (see `raw_code`).
        code: Option<ErrorCode>,
        raw_code: u16,
        detail: String,
        response: ErrorResponse,
        /// The gateway's clock (its `Date` header), to tell a refusal for a stale
        /// timestamp from a clock that is off.
        gateway_time: Option<SystemTime>,
        /// `Retry-After`, when the gateway said when to come back.
        retry_after: Option<Duration>,
    },
    /// The configuration cannot work (URL, trust roots).
    #[error("configuration: {0}")]
    Config(String),
    /// No answer: connection, TLS or HTTP failure.
    #[error("transport: {0}")]
    Transport(String),
    /// An answer that does not decode as the endpoint's type.
    #[error("the gateway's answer does not decode: {0}")]
    Decode(String),
    /// The `upload_commit_retrying` callback refused to go on.
    #[error("{0}")]
    Callback(String),
}

fn code_name(code: &Option<ErrorCode>, raw: u16) -> String {
    match code {
        Some(code) => format!("{code:?} ({raw})"),
        None => format!("code {raw}"),
    }
}

impl Error {
    /// The gateway's code, for a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Gateway { code, .. } => *code,
            _ => None,
        }
    }

    /// The group's current epoch of a `StaleEpoch` (or `EpochOutOfRange`, `EpochPruned`)
    /// refusal, as a number.
    pub fn current_epoch(&self) -> Option<u64> {
        match self {
            Error::Gateway { response, .. } => response.current_epoch(),
            _ => None,
        }
    }

    /// How far the gateway's clock is ahead of this machine's (negative: behind), when the
    /// refusal says the gateway's time.
    pub fn clock_skew_secs(&self) -> Option<i64> {
        let Error::Gateway {
            gateway_time: Some(at),
            ..
        } = self
        else {
            return None;
        };
        let theirs = at.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
        Some(theirs - unix_now() as i64)
    }
}

/// A commit and what goes with it, for [`Client::upload_commit`].
#[derive(Debug, Clone)]
pub struct Commit {
    /// The MLSMessage of the commit (a PublicMessage).
    pub commit: Vec<u8>,
    /// The GroupInfo of the new epoch, when the group's members need one.
    pub group_info: Option<Vec<u8>>,
    /// The Welcome for added members.
    pub welcome: Option<Vec<u8>>,
}

/// A key package handed out by a retrieval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievedKeyPackage {
    /// The MLSMessage holding the KeyPackage.
    pub key_package: Vec<u8>,
    /// The queue's final key (its pool is empty): reusable, replace it soon.
    pub is_final_key: bool,
}

/// A typed async client of one gateway, for one application. Cheap to clone: clones share
/// the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    host: String,
    port: u16,
    domain: String,
    tls: TlsConnector,
    connection: Mutex<Option<SendRequest<Full<Bytes>>>>,
    requests: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// What a client has exchanged with its gateway so far: requests answered (accepted or
/// refused) and the bytes of their bodies each way (the TLS-serialized structs; headers and
/// framing not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    pub body_bytes_sent: u64,
    pub body_bytes_received: u64,
}

impl std::ops::Add for Traffic {
    type Output = Traffic;

    fn add(self, other: Traffic) -> Traffic {
        Traffic {
            requests: self.requests + other.requests,
            body_bytes_sent: self.body_bytes_sent + other.body_bytes_sent,
            body_bytes_received: self.body_bytes_received + other.body_bytes_received,
        }
    }
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;

    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            requests: self.requests.saturating_sub(earlier.requests),
            body_bytes_sent: self.body_bytes_sent.saturating_sub(earlier.body_bytes_sent),
            body_bytes_received: self
                .body_bytes_received
                .saturating_sub(earlier.body_bytes_received),
        }
    }
}

/// How long connecting (TCP, TLS, HTTP/2) and each request's exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Handles travel percent-encoded in paths (they may hold `/`, `@`, `:`, spaces...).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

fn encode<T: tls_codec::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    mimi_wire::encode(value).map_err(|error| Error::Decode(error.to_string()))
}

fn decode<T: tls_codec::Deserialize>(bytes: &[u8]) -> Result<T, Error> {
    mimi_wire::decode_exact(bytes).map_err(|error| Error::Decode(error.to_string()))
}

impl Client {
    /// A client for `config`; connects on the first request.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let uri: http::Uri = config
            .url
            .parse()
            .map_err(|error| Error::Config(format!("url `{}`: {error}", config.url)))?;
        if uri.scheme_str() != Some("https") {
            return Err(Error::Config(format!("url `{}` is not https", config.url)));
        }
        let host = uri
            .host()
            .ok_or_else(|| Error::Config(format!("url `{}` has no host", config.url)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let mut roots = rustls::RootCertStore::empty();
        match &config.roots {
            TrustRoots::Web => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            TrustRoots::PemFile(path) => {
                let certificates = CertificateDer::pem_file_iter(path)
                    .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                    .map_err(|error| Error::Config(format!("{}: {error}", path.display())))?;
                roots.add_parsable_certificates(certificates);
            }
            TrustRoots::Pem(pem) => {
                let certificates = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| Error::Config(format!("trust roots: {error}")))?;
                roots.add_parsable_certificates(certificates);
            }
        }
        if roots.is_empty() {
            return Err(Error::Config("no trust root".into()));
        }
        let mut tls =
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .with_root_certificates(roots)
                .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let domain = config
            .gateway_domain
            .clone()
            .unwrap_or_else(|| host.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                host,
                port,
                domain,
                tls: TlsConnector::from(Arc::new(tls)),
                connection: Mutex::new(None),
                requests: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
            }),
        })
    }

    /// The application this client speaks for.
    pub fn app(&self) -> Uuid {
        self.inner.config.app
    }

    /// What this client (and its clones) exchanged so far; subtract two readings for what
    /// happened in between.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.inner.requests.load(Ordering::Relaxed),
            body_bytes_sent: self.inner.sent.load(Ordering::Relaxed),
            body_bytes_received: self.inner.received.load(Ordering::Relaxed),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Error> {
        let inner = &self.inner;
        let connected = match inner.config.connect_to {
            Some(address) => TcpStream::connect(address).await,
            None => TcpStream::connect((inner.host.as_str(), inner.port)).await,
        };
        let tcp = connected.map_err(|error| {
            Error::Transport(format!("connect {}:{}: {error}", inner.host, inner.port))
        })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(inner.host.clone())
            .map_err(|error| Error::Config(format!("host `{}`: {error}", inner.host)))?;
        let tls = inner
            .tls
            .connect(name, tcp)
            .await
            .map_err(|error| Error::Transport(format!("TLS: {error}")))?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|error| Error::Transport(format!("HTTP/2: {error}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// The kept connection, made (again) if there is none or it closed.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, Error> {
        let mut kept = self.inner.connection.lock().await;
        if let Some(sender) = kept.as_ref().filter(|sender| !sender.is_closed()) {
            return Ok(sender.clone());
        }
        let sender = tokio::time::timeout(TIMEOUT, self.connect())
            .await
            .map_err(|_| Error::Transport(format!("no connection within {TIMEOUT:?}")))??;
        *kept = Some(sender.clone());
        Ok(sender)
    }

    /// Drops the kept connection if it is still `failed` (another call may have made a new
    /// one meanwhile).
    async fn forget(&self, failed: &SendRequest<Full<Bytes>>) {
        let mut kept = self.inner.connection.lock().await;
        if kept
            .as_ref()
            .is_some_and(|sender| sender.is_closed() || failed.is_closed())
        {
            *kept = None;
        }
    }

    fn signed(
        &self,
        method: &Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let config = &self.inner.config;
        let claims = RequestClaims {
            sender_kind: SenderKind::Application,
            sender: config.app.to_string(),
            recipient: self.inner.domain.clone(),
            timestamp: unix_now(),
            request_id: rand::random(),
            key_id: config.key_id.clone(),
        };
        let envelope = sign(&config.key, claims, method.as_str(), path, &body)
            .map_err(|error| Error::Config(format!("signing: {error}")))?;
        let header = envelope
            .to_header_value()
            .map_err(|error| Error::Config(format!("signing: {error}")))?;
        // An IPv6 literal goes back into its brackets.
        let host = if self.inner.host.contains(':') {
            format!("[{}]", self.inner.host)
        } else {
            self.inner.host.clone()
        };
        let authority = if self.inner.port == 443 {
            host
        } else {
            format!("{host}:{}", self.inner.port)
        };
        Request::builder()
            .method(method.clone())
            .uri(format!("https://{authority}{path}"))
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header(
                SIGNATURE_HEADER,
                HeaderValue::from_str(&header).map_err(|error| Error::Config(error.to_string()))?,
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| Error::Config(error.to_string()))
    }

    /// Sends one signed request and answers the body of a 2xx; an error answer becomes
    /// [`Error::Gateway`]. A kept connection found closed before the request goes out is made
    /// again; a request that went out is never sent twice (a failure after it is
    /// `Error::Transport`: for a commit, read the group's epoch before sending it again).
    /// Connecting and the whole exchange are each bounded by [`TIMEOUT`].
    pub async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Bytes, Error> {
        let mut sender = self.sender().await?;
        if sender.ready().await.is_err() {
            self.forget(&sender).await;
            sender = self.sender().await?;
            sender
                .ready()
                .await
                .map_err(|error| Error::Transport(format!("HTTP/2: {error}")))?;
        }
        let sent = body.len() as u64;
        let request = self.signed(&method, path, body)?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|error| Error::Transport(format!("HTTP/2: {error}")))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|error| Error::Transport(format!("reading the answer: {error}")))?
                .to_bytes();
            Ok::<_, Error>((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| Error::Transport(format!("no answer within {TIMEOUT:?}")))??;
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.sent.fetch_add(sent, Ordering::Relaxed);
        self.inner
            .received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if parts.status.is_success() {
            return Ok(bytes);
        }
        let response: ErrorResponse = decode(&bytes).unwrap_or_else(|_| ErrorResponse {
            code: 0,
            detail: String::from_utf8_lossy(&bytes).into_owned(),
            fields: Vec::new(),
        });
        let header = |name: http::header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        Err(Error::Gateway {
            status: parts.status,
            code: response.error_code(),
            raw_code: response.code,
            detail: response.detail.clone(),
            gateway_time: header(http::header::DATE)
                .and_then(|date| httpdate::parse_http_date(&date).ok()),
            retry_after: header(http::header::RETRY_AFTER)
                .and_then(|secs| secs.parse().ok())
                .map(Duration::from_secs),
            response,
        })
    }

    async fn typed<T: tls_codec::Deserialize>(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, Error> {
        decode(&self.call(method, path, body).await?)
    }

    fn app_path(&self, rest: &str) -> String {
        format!("/apps/{}{rest}", self.inner.config.app)
    }

    fn group_path(&self, group_id: &[u8], rest: &str) -> String {
        self.app_path(&format!("/groups/{}{rest}", group_id_to_path(group_id)))
    }

    fn handle_path(&self, handle: &str, rest: &str) -> String {
        self.app_path(&format!("/clients/{}{rest}", segment(handle)))
    }

    // ---- who am I, applications

    /// `POST /whoami`: how the gateway authenticated this client's requests.
    pub async fn whoami(&self) -> Result<WhoAmIResponse, Error> {
        self.typed(Method::POST, "/whoami", Vec::new()).await
    }

    /// `GET /apps`: the public applications hosted by the gateway.
    pub async fn applications(&self) -> Result<ApplicationList, Error> {
        self.typed(Method::GET, "/apps", Vec::new()).await
    }

    // ---- registry (architecture draft, "Identity Registration", "Client Discovery")

    /// `POST /apps/{app}/clients`: registers a client; answers its id.
    pub async fn register_client(&self, handle: &str, tags: &[&str]) -> Result<Uuid, Error> {
        let body = encode(&RegisterClientRequest {
            version: WIRE_VERSION,
            client_handle: handle.to_owned(),
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        })?;
        let answer: RegisterClientResponse = self
            .typed(Method::POST, &self.app_path("/clients"), body)
            .await?;
        Ok(Uuid::from_bytes(answer.client_id))
    }

    /// `GET /apps/{app}/clients/{client}`.
    pub async fn read_client(&self, client: Uuid) -> Result<ClientRecord, Error> {
        let answer: ClientResponse = self
            .typed(
                Method::GET,
                &self.app_path(&format!("/clients/{client}")),
                Vec::new(),
            )
            .await?;
        Ok(answer.client)
    }

    /// `PATCH /apps/{app}/clients/{client}`: a new handle and tags added and removed.
    pub async fn update_client(
        &self,
        client: Uuid,
        handle: Option<&str>,
        add: &[&str],
        remove: &[&str],
    ) -> Result<ClientRecord, Error> {
        let owned = |tags: &[&str]| tags.iter().map(|tag| (*tag).to_owned()).collect();
        let body = encode(&UpdateClientRequest {
            version: WIRE_VERSION,
            client_handle: handle.map(str::to_owned),
            tags_to_add: owned(add),
            tags_to_remove: owned(remove),
        })?;
        let answer: ClientResponse = self
            .typed(
                Method::PATCH,
                &self.app_path(&format!("/clients/{client}")),
                body,
            )
            .await?;
        Ok(answer.client)
    }

    /// `DELETE /apps/{app}/clients/{client}`: the client and its key queues.
    pub async fn delete_client(&self, client: Uuid) -> Result<(), Error> {
        self.call(
            Method::DELETE,
            &self.app_path(&format!("/clients/{client}")),
            Vec::new(),
        )
        .await
        .map(drop)
    }

    /// Client discovery by tag: this gateway's clients, or (with `domain`) another
    /// gateway's, asked through this one.
    pub async fn discover_clients(
        &self,
        tag: &str,
        domain: Option<&str>,
    ) -> Result<Vec<ClientRecord>, Error> {
        let body = encode(&DiscoverClientsRequest {
            version: WIRE_VERSION,
            domain: domain.map(str::to_owned),
            tag: tag.to_owned(),
        })?;
        // POST `?discover`: proxies may drop the body of a GET.
        let answer: DiscoverClientsResponse = self
            .typed(Method::POST, &self.app_path("/clients?discover"), body)
            .await?;
        Ok(answer.identities)
    }

    // ---- key queues (architecture draft, "Key Queues", "Key Package Retrieval")

    /// `POST /apps/{app}/clients/{client}/queues`: a queue for (protocol version, cipher
    /// suite, label); answers its id.
    pub async fn create_key_queue(
        &self,
        client: Uuid,
        protocol_version: u16,
        cipher_suite: u16,
        app_label: &str,
    ) -> Result<Uuid, Error> {
        let body = encode(&CreateKeyQueueRequest {
            version: WIRE_VERSION,
            protocol_version,
            cipher_suite,
            app_label: app_label.to_owned(),
        })?;
        let answer: CreateKeyQueueResponse = self
            .typed(
                Method::POST,
                &self.app_path(&format!("/clients/{client}/queues")),
                body,
            )
            .await?;
        Ok(Uuid::from_bytes(answer.key_queue_id))
    }

    /// `PATCH .../queues/{queue}`: key packages (MLSMessages) added, or replacing the pool
    /// (`reset`), a new label, a new final key; answers the number in the pool.
    pub async fn update_key_queue(
        &self,
        client: Uuid,
        queue: Uuid,
        key_packages: &[Vec<u8>],
        reset: bool,
        app_label: Option<&str>,
        final_key: Option<&[u8]>,
    ) -> Result<u32, Error> {
        let body = encode(&UpdateKeyQueueRequest {
            version: WIRE_VERSION,
            key_packages: key_packages
                .iter()
                .map(|bytes| VLBytes::new(bytes.clone()))
                .collect(),
            is_reset: WireBool(reset),
            app_label: app_label.map(str::to_owned),
            final_key: final_key.map(|bytes| VLBytes::new(bytes.to_vec())),
        })?;
        let answer: UpdateKeyQueueResponse = self
            .typed(
                Method::PATCH,
                &self.app_path(&format!("/clients/{client}/queues/{queue}")),
                body,
            )
            .await?;
        Ok(answer.key_packages_in_pool)
    }

    /// `DELETE .../queues/{queue}`.
    pub async fn delete_key_queue(&self, client: Uuid, queue: Uuid) -> Result<(), Error> {
        self.call(
            Method::DELETE,
            &self.app_path(&format!("/clients/{client}/queues/{queue}")),
            Vec::new(),
        )
        .await
        .map(drop)
    }

    /// A key package of `client` (of `domain`'s gateway when given) for `receiver`, from the
    /// queue of (protocol version, cipher suite, label).
    pub async fn retrieve_key_package(
        &self,
        client: Uuid,
        domain: Option<&str>,
        protocol_version: u16,
        cipher_suite: u16,
        app_label: Option<&str>,
        receiver: &str,
    ) -> Result<RetrievedKeyPackage, Error> {
        let body = encode(&RetrieveKeyPackageRequest {
            version: WIRE_VERSION,
            domain: domain.map(str::to_owned),
            protocol_version,
            cipher_suite,
            app_label: app_label.map(str::to_owned),
            receiver_client_id: receiver.to_owned(),
        })?;
        let answer: RetrieveKeyPackageResponse = self
            .typed(
                Method::POST,
                &self.app_path(&format!("/clients/{client}/keyPackage")),
                body,
            )
            .await?;
        Ok(RetrievedKeyPackage {
            key_package: answer.key_package.as_slice().to_vec(),
            is_final_key: answer.is_final_key.0,
        })
    }

    /// Whether `client`'s queue `queue` runs low: its pool holds fewer than `low_water`
    /// packages (the pool as the gateway counts it: every package no commit has used yet,
    /// assigned to a receiver or not). Asked by an update that adds nothing, which answers
    /// the pool's size.
    pub async fn key_queue_is_low(
        &self,
        client: Uuid,
        queue: Uuid,
        low_water: u32,
    ) -> Result<bool, Error> {
        let left = self
            .update_key_queue(client, queue, &[], false, None, None)
            .await?;
        Ok(left < low_water)
    }

    /// Connection key packages of every client of `account` (at `domain`'s gateway when
    /// given), for `receiver`.
    pub async fn connection_key_packages(
        &self,
        account: &str,
        domain: Option<&str>,
        receiver: &str,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let body = encode(&RetrieveConnectionKeyPackagesRequest {
            version: WIRE_VERSION,
            domain: domain.map(str::to_owned),
            account: account.to_owned(),
            receiver_client_id: receiver.to_owned(),
        })?;
        let answer: ConnectionKeyPackagesResponse = self
            .typed(
                Method::POST,
                &self.app_path("/connection-key-packages"),
                body,
            )
            .await?;
        Ok(answer
            .key_packages
            .into_iter()
            .map(|bytes| bytes.as_slice().to_vec())
            .collect())
    }

    /// A connection request (an MLSMessage) for `handle` at `domain`.
    pub async fn send_connection_request(
        &self,
        domain: &str,
        handle: &str,
        message: &[u8],
    ) -> Result<(), Error> {
        let body = encode(&SendConnectionRequest {
            version: WIRE_VERSION,
            domain: domain.to_owned(),
            client_handle: handle.to_owned(),
            message: VLBytes::new(message.to_vec()),
        })?;
        self.call(Method::POST, &self.app_path("/connection-requests"), body)
            .await
            .map(drop)
    }

    // ---- groups (architecture draft, "Groups")

    /// `PUT /apps/{app}/groups`: a new group from its creator's GroupInfo and ratchet tree;
    /// answers its id (and epoch 0).
    pub async fn create_group(
        &self,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) -> Result<GroupEpochResponse, Error> {
        let body = encode(&CreateGroupRequest {
            version: WIRE_VERSION,
            group_info: VLBytes::new(group_info.to_vec()),
            ratchet_tree: VLBytes::new(ratchet_tree.to_vec()),
        })?;
        self.typed(Method::PUT, &self.app_path("/groups"), body)
            .await
    }

    /// `PUT .../proposals`: a proposal (PublicMessage) held until the next commit; answers
    /// its epoch.
    pub async fn upload_proposal(&self, group_id: &[u8], proposal: &[u8]) -> Result<u64, Error> {
        let body = encode(&UploadProposalRequest {
            version: WIRE_VERSION,
            packet: VLBytes::new(proposal.to_vec()),
        })?;
        let answer: GroupEpochResponse = self
            .typed(Method::PUT, &self.group_path(group_id, "/proposals"), body)
            .await?;
        Ok(answer.epoch)
    }

    /// `GET .../proposals`: the current epoch's proposals, in upload order.
    pub async fn list_proposals(&self, group_id: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let answer: MessagesResponse = self
            .typed(
                Method::GET,
                &self.group_path(group_id, "/proposals"),
                Vec::new(),
            )
            .await?;
        Ok(answer
            .messages
            .into_iter()
            .map(|message| message.as_slice().to_vec())
            .collect())
    }

    /// `PUT .../epochs`: a commit; answers the new epoch. Of concurrent commits for one
    /// epoch one wins; the others get `StaleEpoch` with the current epoch
    /// ([`Error::current_epoch`]).
    pub async fn upload_commit(&self, group_id: &[u8], commit: &Commit) -> Result<u64, Error> {
        let body = encode(&UploadCommitRequest {
            version: WIRE_VERSION,
            commit_packet: VLBytes::new(commit.commit.clone()),
            group_info: commit.group_info.clone().map(VLBytes::new),
            welcome_packet: commit.welcome.clone().map(VLBytes::new),
        })?;
        let answer: GroupEpochResponse = self
            .typed(Method::PUT, &self.group_path(group_id, "/epochs"), body)
            .await?;
        Ok(answer.epoch)
    }

    /// The commit `remake` makes, sent at most `attempts` times in all: after each
    /// `StaleEpoch` the handshake messages the client missed (from the epoch after the one
    /// the refused commit was made in, to the current one) are fetched and handed to
    /// `remake`, which processes them and answers the commit made again on top of them.
    /// Answers the new epoch. `remake` is called first with no messages for the first commit.
    pub async fn upload_commit_retrying(
        &self,
        group_id: &[u8],
        attempts: usize,
        mut remake: impl FnMut(&[Vec<u8>]) -> Result<Commit, String>,
    ) -> Result<u64, Error> {
        let mut commit = remake(&[]).map_err(Error::Callback)?;
        let mut tried = 0;
        loop {
            tried += 1;
            match self.upload_commit(group_id, &commit).await {
                Err(error) if error.code() == Some(ErrorCode::StaleEpoch) && tried < attempts => {
                    // Without the current epoch or the commit's own, the range is unknown:
                    // the refusal itself is the answer.
                    let (Some(current), Some(made_at)) =
                        (error.current_epoch(), commit_epoch(&commit.commit))
                    else {
                        return Err(error);
                    };
                    let missed = self
                        .control_messages(group_id, made_at.saturating_add(1), Some(current))
                        .await?;
                    commit = remake(&missed).map_err(Error::Callback)?;
                }
                other => return other,
            }
        }
    }

    /// `.../control-msgs`: the handshake messages of epochs `start` to `end` (the current
    /// one when `None`).
    pub async fn control_messages(
        &self,
        group_id: &[u8],
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let body = encode(&ControlMessagesRequest {
            version: WIRE_VERSION,
            start_epoch_id: start,
            end_epoch_id: end,
        })?;
        let answer: MessagesResponse = self
            .typed(
                Method::POST,
                &self.group_path(group_id, "/control-msgs"),
                body,
            )
            .await?;
        Ok(answer
            .messages
            .into_iter()
            .map(|message| message.as_slice().to_vec())
            .collect())
    }

    /// `GET .../group-info`: the current GroupInfo (if one was uploaded) and ratchet tree.
    pub async fn group_info(&self, group_id: &[u8]) -> Result<GroupInfoResponse, Error> {
        self.typed(
            Method::GET,
            &self.group_path(group_id, "/group-info"),
            Vec::new(),
        )
        .await
    }

    /// `GET /apps/{app}/groups/{group}`: epoch, role (hub or mirror), member count.
    pub async fn group_status(&self, group_id: &[u8]) -> Result<GroupStatusResponse, Error> {
        self.typed(Method::GET, &self.group_path(group_id, ""), Vec::new())
            .await
    }

    /// The Welcomes waiting for `handle`.
    pub async fn welcomes(&self, handle: &str) -> Result<Vec<JoinInfo>, Error> {
        let answer: WelcomeMessagesResponse = self
            .typed(
                Method::GET,
                &self.handle_path(handle, "/welcome-msgs"),
                Vec::new(),
            )
            .await?;
        Ok(answer.join_infos)
    }

    /// `handle` took the Welcome `welcome`: it leaves the list.
    pub async fn acknowledge_welcome(&self, handle: &str, welcome: Uuid) -> Result<(), Error> {
        self.call(
            Method::DELETE,
            &self.handle_path(handle, &format!("/welcome-msgs/{welcome}")),
            Vec::new(),
        )
        .await
        .map(drop)
    }

    // ---- messages (architecture draft, "Group Messaging")

    /// An application message (a PrivateMessage) to the group, from `sender` (whose own
    /// queue it skips); answers its epoch.
    pub async fn send_message(
        &self,
        group_id: &[u8],
        message: &[u8],
        sender: Option<&str>,
    ) -> Result<u64, Error> {
        let body = encode(&SendGroupMessageRequest {
            version: WIRE_VERSION,
            message: VLBytes::new(message.to_vec()),
            sender: sender.map(str::to_owned),
        })?;
        let answer: GroupEpochResponse = self
            .typed(Method::POST, &self.group_path(group_id, "/messages"), body)
            .await?;
        Ok(answer.epoch)
    }

    /// Up to `limit` queued messages of `handle` from `from_sequence`, and the sequence to
    /// fetch from next.
    pub async fn fetch_messages(
        &self,
        handle: &str,
        from_sequence: u64,
        limit: u16,
    ) -> Result<QueuedMessagesResponse, Error> {
        let body = encode(&FetchMessagesRequest {
            version: WIRE_VERSION,
            from_sequence,
            limit,
        })?;
        self.typed(Method::POST, &self.handle_path(handle, "/messages"), body)
            .await
    }

    /// Every message queued for `handle` from `from_sequence`, page after page until the
    /// queue has no more; answers them and the sequence to fetch from next. Nothing is
    /// removed: acknowledge what was processed.
    pub async fn fetch_all_messages(
        &self,
        handle: &str,
        mut from_sequence: u64,
    ) -> Result<(Vec<QueuedMessage>, u64), Error> {
        let mut all = Vec::new();
        loop {
            let page = self
                .fetch_messages(handle, from_sequence, MAX_FETCH)
                .await?;
            let done = page.next_sequence == from_sequence;
            from_sequence = page.next_sequence;
            all.extend(page.messages);
            if done {
                return Ok((all, from_sequence));
            }
        }
    }

    /// Removes `handle`'s messages up to `up_to_sequence`; answers how many went.
    pub async fn acknowledge_messages(
        &self,
        handle: &str,
        up_to_sequence: u64,
    ) -> Result<u64, Error> {
        let body = encode(&AcknowledgeMessagesRequest {
            version: WIRE_VERSION,
            up_to_sequence,
        })?;
        let answer: AcknowledgeMessagesResponse = self
            .typed(
                Method::POST,
                &self.handle_path(handle, "/messages/acknowledge"),
                body,
            )
            .await?;
        Ok(answer.removed)
    }
}

/// The epoch a commit (an MLSMessage holding a PublicMessage) was made in: RFC 9420
/// `MLSMessage { version, wire_format = public_message, PublicMessage { FramedContent {
/// group_id<V>, epoch, ... } } }`.
fn commit_epoch(message: &[u8]) -> Option<u64> {
    let rest = message.get(4..)?; // version (2), wire_format (2)
    let (length, header) = varint(rest)?;
    let epoch = rest.get(header + length..header + length + 8)?;
    Some(u64::from_be_bytes(epoch.try_into().ok()?))
}

/// An RFC 9420 variable-length integer: its value and the bytes it took.
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = *bytes.first()?;
    let size = 1usize << (first >> 6);
    if size > 4 || bytes.len() < size {
        return None;
    }
    let mut value = usize::from(first & 0x3f);
    for byte in &bytes[1..size] {
        value = (value << 8) | usize::from(*byte);
    }
    Some((value, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commits_epoch_is_read_from_its_framing() {
        // version mls10, wire format public_message, group id of 3 bytes, epoch 7.
        let message = [
            0, 1, 0, 1, 3, 0xaa, 0xbb, 0xcc, 0, 0, 0, 0, 0, 0, 0, 7, 0xff,
        ];
        assert_eq!(commit_epoch(&message), Some(7));
        // A two-byte length (0x40 | 0, 3).
        let message = [
            0, 1, 0, 1, 0x40, 3, 0xaa, 0xbb, 0xcc, 0, 0, 0, 0, 0, 0, 1, 2,
        ];
        assert_eq!(commit_epoch(&message), Some(258));
        assert_eq!(commit_epoch(&[0, 1, 0, 1, 3, 0xaa]), None);
    }

    #[test]
    fn handles_are_percent_encoded_in_paths() {
        assert_eq!(
            segment("alice@b.example/phone 1"),
            "alice%40b.example%2Fphone%201"
        );
        assert_eq!(segment("c{a}:rol"), "c%7Ba%7D%3Arol");
    }
}
