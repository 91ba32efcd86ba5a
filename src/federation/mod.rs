//! Federation between gateways (DESIGN.md "Federation: one hub per group"; MIMI Transport
//! over the delivery-service draft's structs): requests to peers, durable outbound fan-out,
//! and what a hub and a follower do with a group's messages.

pub mod client;
pub mod delivery;
pub mod fanout;

use std::sync::{Arc, RwLock};

use mimi_wire::ErrorResponse;
use mimi_wire::ds::{ClientId, ClientRef, DS_PROTOCOL_VERSION, DSRequest, DSResponse};
use uuid::Uuid;

use crate::error::GatewayError;
use crate::federation::client::PeerClient;
use crate::keys::KeyRing;

pub const WELCOME_INFORMATION_PATH: &str = "/welcome_information";
pub const EXTERNAL_COMMIT_INFORMATION_PATH: &str = "/external_commit_information";
pub const GROUP_KEY_PACKAGES_PATH: &str = "/group_key_packages";
pub const DISCOVER_CLIENTS_PATH: &str = "/discover_clients";
pub const GROUP_OPERATION_PATH: &str = "/group_operation";
pub const CONNECTION_REQUEST_PATH: &str = "/connection_request";
pub const CONNECTION_KEY_PACKAGES_PATH: &str = "/connection_key_packages";

/// A ClientID for logs and error details.
pub fn client_id_text(client: &ClientId) -> String {
    match &client.client {
        ClientRef::Handle(handle) => format!("{handle}@{}", client.domain),
        ClientRef::ClientId(id) => format!("{}@{}", Uuid::from_bytes(*id), client.domain),
    }
}

/// Signed requests to peer gateways and their answers decoded: the outbound client with
/// this gateway's signing keys.
pub struct Peers {
    peers: Arc<PeerClient>,
    keys: Arc<RwLock<KeyRing>>,
}

impl Peers {
    pub fn new(peers: Arc<PeerClient>, keys: Arc<RwLock<KeyRing>>) -> Peers {
        Peers { peers, keys }
    }

    /// Sends `body` to `peer`'s `path` and decodes the answer as `T`: the peer's error answer
    /// becomes `PeerRefused` with its code, an unreachable peer `PeerUnavailable`.
    pub async fn post<T: tls_codec::Deserialize>(
        &self,
        peer: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, GatewayError> {
        let answer = self
            .peers
            .post(&self.keys, peer, path, body)
            .await
            .map_err(|error| GatewayError::PeerUnavailable {
                peer: peer.to_owned(),
                reason: error.to_string(),
            })?;
        if !answer.status.is_success() {
            let (code, detail, fields) = mimi_wire::decode_exact::<ErrorResponse>(&answer.body)
                .map(|error| (error.code, error.detail, error.fields))
                .unwrap_or_default();
            // The peer limits this gateway: the application is told to come back when the peer
            // said (bounded: a peer's header must not park the caller for days).
            if answer.status == http::StatusCode::TOO_MANY_REQUESTS
                && code == mimi_wire::ErrorCode::RateLimited.code()
            {
                return Err(GatewayError::PeerRateLimited {
                    peer: peer.to_owned(),
                    retry_after_secs: answer.retry_after_secs.unwrap_or(1).clamp(1, 3_600),
                });
            }
            return Err(GatewayError::PeerRefused {
                peer: peer.to_owned(),
                code,
                detail,
                fields,
            });
        }
        mimi_wire::decode_exact(&answer.body)
            .map_err(|_| GatewayError::PeerMalformedAnswer(peer.to_owned()))
    }

    /// A `DSRequest` to `peer`, answered by a `DSResponse` of this protocol version.
    pub async fn call(
        &self,
        peer: &str,
        path: &str,
        request: &DSRequest,
    ) -> Result<DSResponse, GatewayError> {
        let body = mimi_wire::encode(request)
            .map_err(|error| GatewayError::Internal(error.to_string()))?;
        let answer: DSResponse = self.post(peer, path, body).await?;
        if answer.version != DS_PROTOCOL_VERSION {
            return Err(GatewayError::PeerMalformedAnswer(peer.to_owned()));
        }
        Ok(answer)
    }
}
