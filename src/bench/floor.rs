//! The bare references the gateway is measured against (issue 17): hyper + tokio-rustls
//! (TLS 1.3, HTTP/2) answering a static path, and the same doing what every signed request
//! costs at least: decode the `mimi-signature` envelope, one Ed25519 verification over it,
//! one Redis `SET NX` of its request id. Nothing of the gateway's own code runs here; it is
//! started as its own process (`mimi-gateway bench-floor`) so its CPU is its own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mimi_wire::signing::{RequestSignature, SIGNATURE_HEADER};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the floor process serves.
pub struct FloorOptions<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// The static path's listener.
    pub bare: SocketAddr,
    /// The signed floor's listener.
    pub signed: SocketAddr,
    pub redis_url: &'a str,
    /// The application key the signed requests are made with.
    pub app_key: VerifyingKey,
}

fn tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{}: {error}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|error| format!("{}: {error}", key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| error.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn answer(status: StatusCode, body: &'static [u8]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// The signed floor's one request: envelope, verification, replay record.
async fn signed(
    request: Request<Incoming>,
    key: VerifyingKey,
    mut redis: redis::aio::MultiplexedConnection,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|body| body.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST, b"body");
    };
    let Some(envelope) = parts
        .headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| RequestSignature::from_header_value(value.as_bytes()).ok())
    else {
        return answer(StatusCode::UNAUTHORIZED, b"envelope");
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |path| path.as_str());
    if envelope
        .verify(parts.method.as_str(), path, &body, &key)
        .is_err()
    {
        return answer(StatusCode::UNAUTHORIZED, b"signature");
    }
    let fresh: Result<Option<String>, _> = redis::cmd("SET")
        .arg(&envelope.claims.request_id[..])
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(600)
        .query_async(&mut redis)
        .await;
    match fresh {
        Ok(Some(_)) => answer(StatusCode::OK, b"ok"),
        Ok(None) => answer(StatusCode::CONFLICT, b"replayed"),
        Err(_) => answer(StatusCode::SERVICE_UNAVAILABLE, b"redis"),
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    signed_floor: Option<(VerifyingKey, redis::aio::MultiplexedConnection)>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors or the like: wait instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let signed_floor = signed_floor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let signed_floor = signed_floor.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(match signed_floor {
                        Some((key, redis)) => signed(request, key, redis).await,
                        None => answer(StatusCode::OK, b"\x00\x01\x09localhost"),
                    })
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Serves both references until the process is stopped.
pub async fn run(options: FloorOptions<'_>) -> Result<(), String> {
    let acceptor = tls(options.cert, options.key)?;
    let redis = redis::Client::open(options.redis_url)
        .map_err(|error| error.to_string())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|error| format!("Redis: {error}"))?;
    let bare = TcpListener::bind(options.bare)
        .await
        .map_err(|error| format!("{}: {error}", options.bare))?;
    let signed_listener = TcpListener::bind(options.signed)
        .await
        .map_err(|error| format!("{}: {error}", options.signed))?;
    let bare_task = tokio::spawn(serve(bare, acceptor.clone(), None));
    serve(signed_listener, acceptor, Some((options.app_key, redis))).await;
    bare_task.abort();
    Ok(())
}
