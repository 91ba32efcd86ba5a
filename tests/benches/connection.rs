//! What the benchmarks share to reach the in-process gateway: one persistent HTTP/2
//! connection over TLS 1.3, as an application server keeps.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::{Harness, Protocol};

/// An HTTP/2 connection to `harness`'s application listener, its driver spawned.
pub async fn http2(harness: &Harness) -> SendRequest<Full<Bytes>> {
    let tls = harness
        .client(Protocol::Http2)
        .connect(harness.application)
        .await;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}
