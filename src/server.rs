//! One listener: accept under a connection limit, TLS 1.3 handshake under a timeout, serve
//! HTTP/1.1 and HTTP/2 on the same port (hyper-util's auto builder), and on shutdown stop
//! accepting and let in-flight requests finish (hyper-util's graceful watcher).

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::PeerCertificate;
use crate::router::ListenerKind;
use crate::service;
use crate::state::State;

/// Longest HTTP/1 header section accepted.
const MAX_HEADER_BUFFER: usize = 64 * 1024;
/// Concurrent HTTP/2 streams per connection.
const MAX_H2_STREAMS: u32 = 256;

pub struct Listener {
    pub kind: ListenerKind,
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// Serves until `shutdown` turns true, then drains in-flight requests for at most the
/// configured grace period.
pub async fn run(listener: Listener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let limits = &state.config.limits;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout())
        .max_buf_size(MAX_HEADER_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS);
    let builder = Arc::new(builder);
    let handshake_timeout = state.config.header_read_timeout();

    loop {
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
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop_requested(&mut shutdown) => break,
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let state = state.clone();
        let builder = builder.clone();
        let tls = listener.tls.clone();
        let kind = listener.kind;
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| PeerCertificate(Arc::new(leaf.clone().into_owned())));
                            serve_connection(&builder, stream, state, kind, watcher, certificate)
                                .await
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake refused"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(&builder, tcp, state, kind, watcher, None).await,
            }
        });
    }
    drop(listener);
    let grace = state.config.shutdown_grace();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    // The borrow guard is dropped here, before any await point of the caller.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

async fn serve_connection<IO>(
    builder: &auto::Builder<TokioExecutor>,
    io: IO,
    state: Arc<State>,
    kind: ListenerKind,
    watcher: Watcher,
    certificate: Option<PeerCertificate>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        if let Some(certificate) = &certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        let state = state.clone();
        async move { Ok::<_, Infallible>(service::handle(state, kind, request).await) }
    });
    if let Err(error) = watcher
        .watch(builder.serve_connection(TokioIo::new(io), service))
        .await
    {
        tracing::debug!(%error, "connection ended with an error");
    }
}
