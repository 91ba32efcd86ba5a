//! Requests this gateway sends to peers (MIMI Transport, "REST Endpoints"): the peer's DS
//! domain found through `/.well-known/mimi/ds-domain` (cached), the body signed with this
//! gateway's current key (DESIGN.md "Peer and application authentication"), sent over TLS 1.3
//! with the peer's certificate checked against the configured roots.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use mimi_well_known::{HttpsClient, HttpsError, ResolveError, Resolver};
use mimi_wire::signing::{RequestClaims, SIGNATURE_HEADER, SenderKind, sign};

use crate::keys::{KeyRing, unix_now};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("discovering {peer}: {source}")]
    Discovery { peer: String, source: ResolveError },
    #[error(transparent)]
    Https(#[from] HttpsError),
    #[error("no valid signing key")]
    NoSigningKey,
    #[error("signing: {0}")]
    Signing(String),
}

/// A peer's answer: status, body and, when it sent one, its `Retry-After` (seconds).
#[derive(Debug)]
pub struct PeerAnswer {
    pub status: StatusCode,
    pub body: Bytes,
    pub retry_after_secs: Option<u64>,
}

pub struct PeerClient {
    https: HttpsClient,
    resolver: Resolver,
    /// This gateway's provider domain: the sender of every request.
    domain: String,
    ttl: Duration,
    // A std Mutex: held only to read or write an entry, never across an await.
    ds_domains: Mutex<HashMap<String, (String, Instant)>>,
}

impl PeerClient {
    pub fn new(https: HttpsClient, domain: String, ttl: Duration) -> PeerClient {
        PeerClient {
            resolver: Resolver::new(https.clone()),
            https,
            domain,
            ttl,
            ds_domains: Mutex::new(HashMap::new()),
        }
    }

    /// Where the peer's DS answers: its DS domain (with the peer's port, if one was named).
    async fn ds_authority(&self, peer: &str) -> Result<String, PeerError> {
        if let Ok(cache) = self.ds_domains.lock()
            && let Some((authority, at)) = cache.get(peer)
            && at.elapsed() < self.ttl
        {
            return Ok(authority.clone());
        }
        let ds_domain =
            self.resolver
                .ds_domain(peer)
                .await
                .map_err(|source| PeerError::Discovery {
                    peer: peer.to_owned(),
                    source,
                })?;
        let authority = format!(
            "{ds_domain}{}",
            mimi_well_known::resolver::port_suffix(peer)
        );
        if let Ok(mut cache) = self.ds_domains.lock() {
            cache.insert(peer.to_owned(), (authority.clone(), Instant::now()));
        }
        Ok(authority)
    }

    /// `POST {path}` at `peer`'s DS with `body`, signed with the current key of `keys`.
    pub async fn post(
        &self,
        keys: &RwLock<KeyRing>,
        peer: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<PeerAnswer, PeerError> {
        let authority = self.ds_authority(peer).await?;
        let now = unix_now();
        let envelope = {
            let ring = keys.read().map_err(|_| PeerError::NoSigningKey)?;
            let current = ring.current(now).ok_or(PeerError::NoSigningKey)?;
            let claims = RequestClaims {
                sender_kind: SenderKind::Provider,
                sender: self.domain.clone(),
                recipient: peer.to_owned(),
                timestamp: now,
                request_id: rand::random(),
                key_id: current.id.clone(),
            };
            sign(&current.key, claims, "POST", path, &body)
                .map_err(|error| PeerError::Signing(error.to_string()))?
        };
        let mut headers = HeaderMap::new();
        let value = envelope
            .to_header_value()
            .map_err(|error| PeerError::Signing(error.to_string()))?;
        headers.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_str(&value).map_err(|error| PeerError::Signing(error.to_string()))?,
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(mimi_wire::CONTENT_TYPE),
        );
        let answer = self
            .https
            .send(Method::POST, &authority, path, headers, Bytes::from(body))
            .await?;
        let retry_after_secs = answer
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok());
        Ok(PeerAnswer {
            status: answer.status,
            body: answer.body,
            retry_after_secs,
        })
    }
}
