//! Shared test harness: a real gateway on 127.0.0.1 (in-process, real TLS listeners), a real
//! TLS 1.3 client (HTTP/1.1 or HTTP/2), signed requests made with `mimi-wire`, and real
//! `redis-server` instances (single and three-master Cluster) on free loopback ports, each
//! stopped by its PID when dropped. The helpers of every test, none a test itself.

pub mod federation;
pub mod forwarding;
pub mod group_client;
pub mod key_queues;
pub mod mls_client;
pub mod mls_rs_client;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mimi_gateway::config::{ApplicationConfig, ApplicationKeyConfig, Config};
use mimi_gateway::serve::Gateway;
use mimi_wire::signing::{RequestClaims, SIGNATURE_HEADER, SenderKind, sign};
use mimi_wire::{ErrorCode, ErrorResponse, decode_exact};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use uuid::Uuid;

/// Which store a test gateway runs on.
#[derive(Clone, Debug)]
pub enum StoreSpec {
    Memory,
    Redis(String),
    Cluster(Vec<String>),
}

/// An application configured on the test gateway, with a valid and an expired key.
#[derive(Clone)]
pub struct TestApp {
    pub id: Uuid,
    pub key: SigningKey,
    pub key_id: String,
    pub expired_key: SigningKey,
    pub expired_key_id: String,
    /// The domain requests are addressed to (the gateway's `domain`).
    pub recipient: String,
}

pub struct Harness {
    pub gateway: Option<Gateway>,
    pub ca: PathBuf,
    pub app: TestApp,
    pub application: SocketAddr,
    pub federation: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

pub fn now() -> u64 {
    mimi_gateway::keys::unix_now()
}

impl TestApp {
    pub fn new() -> TestApp {
        let mut rng = rand::rngs::OsRng;
        TestApp {
            id: Uuid::new_v4(),
            key: SigningKey::generate(&mut rng),
            key_id: "app-key-1".into(),
            expired_key: SigningKey::generate(&mut rng),
            expired_key_id: "app-key-0".into(),
            recipient: "localhost".into(),
        }
    }

    pub fn config(&self) -> ApplicationConfig {
        ApplicationConfig {
            id: self.id,
            public: true,
            identity: Default::default(),
            keys: vec![
                ApplicationKeyConfig {
                    id: self.key_id.clone(),
                    public_key: hex::encode(self.key.verifying_key().as_bytes()),
                    not_before: None,
                    not_after: None,
                },
                ApplicationKeyConfig {
                    id: self.expired_key_id.clone(),
                    public_key: hex::encode(self.expired_key.verifying_key().as_bytes()),
                    not_before: Some(1),
                    not_after: Some(now() - 3600),
                },
            ],
        }
    }

    /// Claims of a fresh request from this application to `localhost`.
    pub fn claims(&self) -> RequestClaims {
        RequestClaims {
            sender_kind: SenderKind::Application,
            sender: self.id.to_string(),
            recipient: self.recipient.clone(),
            timestamp: now(),
            request_id: rand::random(),
            key_id: self.key_id.clone(),
        }
    }
}

/// Headers carrying the envelope for `claims`, signed with `key`.
pub fn signed_headers(
    key: &SigningKey,
    claims: RequestClaims,
    method: &Method,
    path: &str,
    body: &[u8],
) -> HeaderMap {
    let envelope = sign(key, claims, method.as_str(), path, body).expect("sign");
    let mut headers = HeaderMap::new();
    headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&envelope.to_header_value().unwrap()).unwrap(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers
}

/// A test configuration: everything on 127.0.0.1 with ephemeral ports, data in `dir`.
pub fn test_config(dir: &Path, app: &TestApp, store: &StoreSpec) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listeners.application = loopback;
    config.listeners.federation = loopback;
    config.listeners.admin = loopback;
    config.applications = vec![app.config()];
    config.store.command_timeout_ms = 1_000;
    // Peers of the tests live on loopback, which outbound connections refuse by default.
    config.federation.allowed_ip_ranges = vec!["127.0.0.0/8".into()];
    // The test clients open a connection per request, all from 127.0.0.1: many more than an
    // application or peer keeping its connections opens. Tests of the limit set their own.
    config.limits.new_connections_per_ip_per_minute = 1_000_000;
    match store {
        StoreSpec::Memory => {}
        StoreSpec::Redis(url) => config.store.redis_url = Some(url.clone()),
        StoreSpec::Cluster(urls) => config.store.redis_cluster_urls = urls.clone(),
    }
    config
}

impl Harness {
    pub async fn start(store: StoreSpec) -> Harness {
        Harness::start_with(store, |_| {}).await
    }

    pub async fn start_with(store: StoreSpec, adjust: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_for(store, TestApp::new(), adjust).await
    }

    /// A gateway serving `app` (several gateways may serve one application).
    pub async fn start_for(
        store: StoreSpec,
        app: TestApp,
        adjust: impl FnOnce(&mut Config),
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path(), &app, &store);
        adjust(&mut config);
        let gateway = Gateway::start(config).await.expect("gateway starts");
        // Empty when the test configured its own certificate.
        let ca = gateway.dev_ca.clone().unwrap_or_default();
        Harness {
            application: gateway.application,
            federation: gateway.federation,
            admin: gateway.admin,
            gateway: Some(gateway),
            ca,
            app,
            dir,
        }
    }

    /// Stops the gateway (draining it) and answers its configuration, for `start_again`.
    pub async fn stop(&mut self) -> Config {
        let gateway = self.gateway.take().expect("a running gateway");
        let config = gateway.state.config.as_ref().clone();
        gateway.shutdown().await;
        config
    }

    /// Starts the gateway again with `config` (same data dir, keys and store).
    pub async fn start_again(&mut self, config: Config) {
        let gateway = Gateway::start(config).await.expect("gateway restarts");
        self.application = gateway.application;
        self.federation = gateway.federation;
        self.admin = gateway.admin;
        self.gateway = Some(gateway);
    }

    pub fn client(&self, protocol: Protocol) -> TlsClient {
        TlsClient::new(&self.ca, protocol).named(&self.app.recipient)
    }

    /// A signed request from the test application to the application listener.
    pub async fn signed(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
        claims: RequestClaims,
    ) -> Answer {
        let headers = signed_headers(&self.app.key, claims, &method, path, body);
        self.client(Protocol::Http1)
            .send(self.application, method, path, headers, body.to_vec())
            .await
    }

    /// A fresh signed request from the test application.
    pub async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Answer {
        self.signed(method, path, &body, self.app.claims()).await
    }

    /// Where and as whom to send application requests to this gateway.
    pub fn target(&self) -> Target {
        Target {
            application: self.application,
            ca: self.ca.clone(),
            app: self.app.clone(),
        }
    }

    /// The `mimi-client` of the test application at this gateway.
    pub fn app_client(&self) -> mimi_client::Client {
        self.target().client()
    }

    /// The value of one metric line on the admin listener (0 when absent).
    pub async fn metric(&self, series: &str) -> u64 {
        let text = admin_get(self.admin, "/metrics").await.1;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

/// A gateway's application listener (in-process or a spawned process) and the application
/// that signs requests to it.
#[derive(Clone)]
pub struct Target {
    pub application: SocketAddr,
    pub ca: PathBuf,
    pub app: TestApp,
}

impl Target {
    /// The `mimi-client` of this target's application, as an application server would hold
    /// it: the happy paths of the tests go through it; raw `call`s are for what the crate
    /// would never send (bad bytes, bad signatures, refusals checked by status and body).
    pub fn client(&self) -> mimi_client::Client {
        mimi_client::Client::new(mimi_client::ClientConfig {
            url: format!("https://{}:{}", self.app.recipient, self.application.port()),
            app: self.app.id,
            key: self.app.key.clone(),
            key_id: self.app.key_id.clone(),
            roots: mimi_client::TrustRoots::PemFile(self.ca.clone()),
            gateway_domain: Some(self.app.recipient.clone()),
            connect_to: Some(self.application),
        })
        .expect("a client for the test gateway")
    }

    pub async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Answer {
        let headers = signed_headers(&self.app.key, self.app.claims(), &method, path, &body);
        TlsClient::new(&self.ca, Protocol::Http1)
            .named(&self.app.recipient)
            .send(self.application, method, path, headers, body)
            .await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The error code of a TLS-serialized `ErrorResponse` body (panics if it is not one:
    /// every error answer must be).
    pub fn error_code(&self) -> ErrorCode {
        let response: ErrorResponse =
            decode_exact(&self.body).expect("error body is an ErrorResponse");
        let code = response.error_code().expect("known error code");
        assert_eq!(
            self.status.as_u16(),
            code.http_status(),
            "status matches the code's documented status"
        );
        assert_eq!(
            self.headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/octet-stream"[..])
        );
        code
    }
}

pub fn root_store(ca: &Path) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// A TLS client trusting the test CA, speaking TLS 1.3 with one ALPN protocol.
pub struct TlsClient {
    connector: TlsConnector,
    protocol: Protocol,
    server_name: String,
}

impl TlsClient {
    pub fn new(ca: &Path, protocol: Protocol) -> TlsClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(root_store(ca))
            .with_no_client_auth();
        config.alpn_protocols = vec![match protocol {
            Protocol::Http1 => b"http/1.1".to_vec(),
            Protocol::Http2 => b"h2".to_vec(),
        }];
        TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            protocol,
            server_name: "localhost".into(),
        }
    }

    /// Expects the server's certificate to name `name` (SNI too) instead of `localhost`.
    pub fn named(mut self, name: &str) -> TlsClient {
        self.server_name = name.to_owned();
        self
    }

    pub async fn connect(&self, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        self.handshake(tcp).await.expect("TLS handshake")
    }

    /// A TCP connection to `addr` from the loopback address `source` (127.0.0.0/8), as
    /// another client host would make it.
    pub async fn tcp_from(addr: SocketAddr, source: std::net::IpAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind a loopback source address");
        socket.connect(addr).await.expect("connect")
    }

    /// The TLS handshake over `tcp`; an error if the server closed or refused it.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        tcp.set_nodelay(true).expect("nodelay");
        self.connector
            .connect(ServerName::try_from(self.server_name.clone()).unwrap(), tcp)
            .await
    }

    pub async fn send(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Answer {
        self.send_body(addr, method, path, headers, Full::new(Bytes::from(body)))
            .await
    }

    /// Sends a request whose body is produced by `body` (streamed, slow or never-ending).
    pub async fn send_body<B>(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: B,
    ) -> Answer
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.connect(addr).await;
        self.exchange(tls, method, path, headers, body)
            .await
            .expect("response")
    }

    /// One request over an established TLS stream; `None` if the exchange broke off (the
    /// server closed, reset or died).
    pub async fn exchange<B>(
        &self,
        tls: tokio_rustls::client::TlsStream<TcpStream>,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: B,
    ) -> Option<Answer>
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let uri = match self.protocol {
            Protocol::Http1 => path.to_owned(),
            Protocol::Http2 => format!("https://localhost{path}"),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .unwrap();
        request.headers_mut().extend(headers);
        if self.protocol == Protocol::Http1 {
            request
                .headers_mut()
                .insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        let response = match self.protocol {
            Protocol::Http1 => {
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls))
                        .await
                        .ok()?;
                tokio::spawn(connection);
                sender.send_request(request).await.ok()?
            }
            Protocol::Http2 => {
                let (mut sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .ok()?;
                tokio::spawn(connection);
                sender.send_request(request).await.ok()?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        Some(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// A plain HTTP GET on the admin listener: (status, body).
pub async fn admin_get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    admin_request(addr, Method::GET, path).await
}

/// A plain HTTP request with no body on the admin listener: (status, body).
pub async fn admin_request(addr: SocketAddr, method: Method, path: &str) -> (StatusCode, String) {
    admin_request_for(addr, method, path, "localhost").await
}

/// As `admin_request`, naming `host` in the Host header.
pub async fn admin_request_for(
    addr: SocketAddr,
    method: Method,
    path: &str,
    host: &str,
) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect admin");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.expect("admin answer");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `check` every 100 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` this test started, stopped by its PID on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    cluster: bool,
    persistent: bool,
}

fn spawn_redis(port: u16, cluster: bool, persistent: bool, dir: &Path) -> Child {
    let mut command = Command::new("redis-server");
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(if persistent {
            // Every write is on disk before it is answered: a SIGKILL loses nothing answered.
            ["--appendonly", "yes", "--appendfsync", "always"].as_slice()
        } else {
            ["--appendonly", "no"].as_slice()
        })
        .args(["--dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if cluster {
        command.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ]);
    }
    command
        .spawn()
        .expect("redis-server is installed (tests/run.sh installs it)")
}

/// A free port of `range`, picked at random and checked by binding it (and, with `bus`, the
/// port + 10000 too: a Cluster node's bus). Ports that must survive a restart of what holds
/// them come from ranges below the kernel's ephemeral ports (32768-60999 here), so no
/// outgoing connection or port-0 listener of a concurrent test takes one meanwhile.
fn free_port_in(range: std::ops::Range<u16>, bus: bool) -> u16 {
    use rand::Rng as _;
    // Ports handed out in this test process: never twice, so two tests that pick a port
    // before binding it cannot pick the same one.
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..10_000 {
        let port = rand::thread_rng().gen_range(range.clone());
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !handed_out.contains(&port) && free(port) && (!bus || free(port + 10_000)) {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port in {range:?}");
}

/// A port for a `redis-server` (its Cluster bus, + 10000, stays below 30000).
fn free_redis_port(cluster: bool) -> u16 {
    free_port_in(11_000..20_000, cluster)
}

/// A port for a listener that must come back on the same address after a restart (a
/// federation peer's, which the others resolve to).
pub fn free_listener_port() -> u16 {
    free_port_in(30_000..32_700, false)
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(false, false)
    }

    /// A server that writes every command to its append-only file before answering it, so
    /// that `kill` then `restart` loses nothing it acknowledged.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(false, true)
    }

    /// Starts a server on a free port; if another process took the port between choosing and
    /// binding it (the server exits at once), tries another, a few times.
    fn start_with(cluster: bool, persistent: bool) -> RedisServer {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let port = free_redis_port(cluster);
            let dir = tempfile::tempdir().unwrap();
            let child = spawn_redis(port, cluster, persistent, dir.path());
            let mut server = RedisServer {
                port,
                child: Some(child),
                dir,
                cluster,
                persistent,
            };
            if server.wait_until_up() {
                return server;
            }
            server.kill();
        }
        panic!("no redis-server came up in {ATTEMPTS} attempts");
    }

    /// Whether the server answers PING within 10 seconds; `false` as soon as it exited.
    fn wait_until_up(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|out| out.trim() == "PONG") {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|child| child.try_wait().is_ok_and(|status| status.is_some()));
            if exited {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Kills the server by its PID (an outage).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty unless it is persistent).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_redis(
            self.port,
            self.cluster,
            self.persistent,
            self.dir.path(),
        ));
        assert!(
            self.wait_until_up(),
            "redis-server on port {} did not come up again",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-master Redis Cluster on loopback, started by this test.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(true, false))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = nodes.iter().all(|node| {
                node.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The index in `nodes` of the master serving `key`'s slot.
    pub fn node_of(&self, key: &str) -> usize {
        let slot: u16 = self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .and_then(|out| out.trim().parse().ok())
            .expect("CLUSTER KEYSLOT");
        self.nodes
            .iter()
            .position(|node| {
                let nodes = node.cli(&["CLUSTER", "NODES"]).unwrap_or_default();
                let own = nodes.lines().find(|line| line.contains("myself")).unwrap_or("");
                own.split_whitespace().skip(8).any(|range| {
                    let (start, end) = range.split_once('-').unwrap_or((range, range));
                    matches!((start.parse::<u16>(), end.parse::<u16>()), (Ok(start), Ok(end)) if (start..=end).contains(&slot))
                })
            })
            .expect("a master serves every slot")
    }

    /// How many keys each master holds.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|node| {
                node.cli(&["DBSIZE"])
                    .and_then(|out| out.trim().parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// A request body fed through a channel: chunks arrive when the test sends them, and the body
/// ends when the sender is dropped. With `length`, it declares a Content-Length.
pub struct ChannelBody {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    length: Option<u64>,
}

impl ChannelBody {
    pub fn new(length: Option<u64>) -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
        let (sender, chunks) = tokio::sync::mpsc::channel(16);
        (sender, ChannelBody { chunks, length })
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.chunks
            .poll_recv(context)
            .map(|chunk| chunk.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.length {
            Some(length) => hyper::body::SizeHint::with_exact(length),
            None => hyper::body::SizeHint::default(),
        }
    }
}

/// The `mimi-gateway` binary run as a user runs it; killed by its PID if still running when
/// dropped.
pub struct GatewayProcess {
    pub child: Child,
    pub banner: String,
}

impl GatewayProcess {
    /// Runs `mimi-gateway serve` in `cwd` with `env`, and waits for its banner.
    pub fn serve(cwd: &Path, args: &[&str], env: &[(&str, String)]) -> GatewayProcess {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
            .arg("serve")
            .args(args)
            .current_dir(cwd)
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(cwd.join("gateway.log")).expect("log file"),
            ))
            .spawn()
            .expect("start mimi-gateway");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut banner = String::new();
        for line in lines.by_ref() {
            let line = line.expect("banner line");
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("store") {
                break;
            }
        }
        // Keep draining stdout so the gateway never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        GatewayProcess { child, banner }
    }

    /// The address printed for a listener (`application`, `federation` or `admin`).
    pub fn address(&self, listener: &str) -> SocketAddr {
        self.banner
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(listener))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|url| url.rsplit("//").next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no {listener} address in banner:\n{}", self.banner))
    }

    /// Sends SIGTERM to the gateway's PID.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Environment that puts a spawned gateway on loopback ephemeral ports with its data in `dir`.
pub fn loopback_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("MIMI_DATA_DIR", dir.display().to_string()),
        ("MIMI_LISTENERS__APPLICATION", "127.0.0.1:0".into()),
        ("MIMI_LISTENERS__FEDERATION", "127.0.0.1:0".into()),
        ("MIMI_LISTENERS__ADMIN", "127.0.0.1:0".into()),
    ]
}

/// Runs a `mimi-gateway` subcommand to completion.
pub fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
        .args(args)
        .output()
        .expect("run mimi-gateway")
}

/// One Redis command, `args[0]` its name, sent as is (a test writing what the store's
/// scripts would not, or reading what they left).
pub async fn redis_command<C: redis::aio::ConnectionLike + Send>(
    connection: &mut C,
    args: &[&[u8]],
) -> redis::Value {
    let mut command = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(connection).await.unwrap()
}

/// Runs a store contract on the memory store, a real `redis-server` and a real three-master
/// Redis Cluster (each started here, stopped at the end) and asserts each answers the same
/// transcript.
pub async fn same_on_every_store<T, F, Fut>(contract: F)
where
    F: Fn(mimi_gateway::store::SharedStore) -> Fut,
    Fut: std::future::Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    use mimi_gateway::store::redis::RedisStore;
    const TIMEOUT: Duration = Duration::from_secs(5);
    let memory = mimi_gateway::store::open(&mimi_gateway::config::StoreConfig::default())
        .await
        .unwrap();
    let expected = contract(memory).await;
    let single = RedisServer::start();
    let redis = RedisStore::connect_single(&single.url(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(contract(Arc::new(redis)).await, expected, "on Redis");
    let cluster = RedisCluster::start();
    let clustered = RedisStore::connect_cluster(&cluster.urls(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        contract(Arc::new(clustered)).await,
        expected,
        "on a Redis Cluster"
    );
}
