//! Verification of the signed-request envelope (`mimi-wire::signing`) on every listener that
//! needs it, in the order DESIGN.md fixes: the envelope decodes within its bounds, recipient
//! is this gateway (MIMI Transport's forwarding attack), timestamp within the window, key
//! known and valid at the request's time (all before the body is read), then the signature,
//! and only then the request id, recorded in the store's replay cache.
//!
//! The caller only ever learns "authentication failed"; the reason goes to the log and to
//! the `mimi_auth_failures_total` metric.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use http::HeaderMap;
use mimi_wire::signing::{RequestSignature, SIGNATURE_HEADER, SenderKind};
use uuid::Uuid;

use mimi_well_known::{PeerKeyError, PeerKeys};

pub use crate::api::reply::Authenticated;
use crate::config::Config;
pub use crate::error::AuthError;
use crate::rate_limits::{WindowSpec, peer_scope};
use crate::signatures::SignatureVerifier;
use crate::store::{RequestRecord, RequestWindow, SharedStore};

/// The client address a request came from (set by the listener).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub std::net::IpAddr);

/// A request whose envelope passed every check but the signature (`Authenticator::precheck`).
pub struct Checked {
    envelope: RequestSignature,
    key: TrustedKey,
}

impl Checked {
    /// The sender the envelope names (not yet proven: the signature is checked later).
    pub fn sender(&self) -> &str {
        &self.envelope.claims.sender
    }

    /// The caller the envelope claims to be, as rate limits name it (not yet proven).
    pub fn claimed_scope(&self) -> String {
        caller_scope(
            self.envelope.claims.sender_kind,
            &self.envelope.claims.sender,
        )
    }
}

/// One name per caller however its envelope spells it: a domain in lower case, an
/// application id as a hyphenated lower-case UUID (`Uuid::parse_str` takes several forms), so
/// that no spelling gets limits of its own.
fn caller_scope(kind: SenderKind, sender: &str) -> String {
    match kind {
        SenderKind::Application => match Uuid::parse_str(sender) {
            Ok(id) => format!("app:{}", id.hyphenated()),
            Err(_) => format!("app:{}", sender.to_ascii_lowercase()),
        },
        SenderKind::Provider => peer_scope(sender),
    }
}

/// The store's counter for a request counted in `spec`.
fn counter_of(spec: WindowSpec) -> RequestWindow<'static> {
    RequestWindow {
        name: spec.name,
        window_secs: spec.window_secs,
        now: spec.now,
    }
}

/// A public key trusted for one sender, with its validity window (Unix seconds).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub id: String,
    pub key: VerifyingKey,
    pub not_before: u64,
    pub not_after: u64,
}

impl TrustedKey {
    fn is_valid_at(&self, unix_seconds: u64) -> bool {
        self.not_before <= unix_seconds && unix_seconds < self.not_after
    }
}

pub struct Authenticator {
    /// The names a request may be addressed to: the provider domain and the DS domain.
    local_names: Vec<String>,
    window_secs: u64,
    applications: BTreeMap<Uuid, Vec<TrustedKey>>,
    allowed_peers: Vec<String>,
    peer_keys: std::sync::Arc<PeerKeys>,
    signatures: std::sync::Arc<SignatureVerifier>,
    store: SharedStore,
}

impl Authenticator {
    pub fn new(
        config: &Config,
        store: SharedStore,
        peer_keys: PeerKeys,
        signatures: std::sync::Arc<SignatureVerifier>,
    ) -> Authenticator {
        let mut local_names = vec![config.domain.clone()];
        if config.ds_domain() != config.domain {
            local_names.push(config.ds_domain().to_owned());
        }
        let applications = config
            .applications
            .iter()
            .map(|application| {
                let keys = application
                    .keys
                    .iter()
                    .filter_map(|key| {
                        // Config::validate has already refused unparsable keys.
                        let public = crate::keys::parse_public_key(&key.public_key).ok()?;
                        Some(TrustedKey {
                            id: key.id.clone(),
                            key: public,
                            not_before: key.not_before.unwrap_or(0),
                            not_after: key.not_after.unwrap_or(u64::MAX),
                        })
                    })
                    .collect();
                (application.id, keys)
            })
            .collect();
        Authenticator {
            local_names,
            window_secs: config.auth.timestamp_window_secs,
            applications,
            allowed_peers: config.federation.allowed_peers.clone(),
            peer_keys: std::sync::Arc::new(peer_keys),
            signatures,
            store,
        }
    }

    /// How long a request id is remembered: past the window on both sides, so a replay is
    /// refused either as stale or as seen.
    fn replay_ttl(&self) -> Duration {
        Duration::from_secs(2 * self.window_secs + 60)
    }

    /// Everything the envelope allows checking before the body is read, in DESIGN.md's order:
    /// it decodes with every field within its bound, the sender kind is this listener's, the
    /// recipient is this gateway (the transport's forwarding attack), the timestamp is within
    /// the window, the sender is known and its key valid at the request's time. A stranger's
    /// request ends here: nothing is written and no body is read.
    pub async fn precheck(
        &self,
        expected: SenderKind,
        headers: &HeaderMap,
        now: u64,
    ) -> Result<Checked, AuthError> {
        let header = headers.get(SIGNATURE_HEADER).ok_or(AuthError::Unsigned)?;
        let envelope = RequestSignature::from_header_value(header.as_bytes())
            .map_err(AuthError::MalformedEnvelope)?;
        let claims = &envelope.claims;
        if claims.sender_kind != expected {
            return Err(AuthError::WrongSenderKind(claims.sender_kind));
        }
        if !self
            .local_names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(&claims.recipient))
        {
            return Err(AuthError::WrongRecipient(claims.recipient.clone()));
        }
        if now.abs_diff(claims.timestamp) > self.window_secs {
            return Err(AuthError::StaleTimestamp {
                timestamp: claims.timestamp,
                now,
                window: self.window_secs,
            });
        }
        let key = self
            .trusted_key(
                claims.sender_kind,
                &claims.sender,
                &claims.key_id,
                claims.timestamp,
            )
            .await?;
        if !key.is_valid_at(claims.timestamp) {
            return Err(AuthError::ExpiredKey(claims.key_id.clone()));
        }
        Ok(Checked { envelope, key })
    }

    /// The rest, once the body is read: the signature (batched with other requests' when
    /// several wait, `crate::signatures`), and only then the request id, recorded with one
    /// atomic set-if-absent (a forged request writes nothing; of two copies of a genuine one
    /// exactly one passes). In the same step the request is counted in the caller's `window`
    /// (`rate_limits`), whose count comes back with the caller.
    pub async fn finish(
        &self,
        checked: Checked,
        method: &str,
        path: &str,
        body: &[u8],
        window: Option<WindowSpec>,
    ) -> Result<(Authenticated, u64), AuthError> {
        let (caller, request_id) = self.verify(checked, method, path, body).await?;
        let window = window.map(counter_of);
        let recorded = self
            .store
            .record_request(&caller.scope, &request_id, self.replay_ttl(), window)
            .await
            .map_err(AuthError::Store)?;
        match recorded {
            None => Err(AuthError::Replayed),
            Some(count) => Ok((caller, count)),
        }
    }

    /// The signature alone, for an endpoint whose store step records the request itself
    /// ([`RequestRecord`], from [`Self::unrecorded`]): the caller and its request id.
    pub async fn verify(
        &self,
        checked: Checked,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(Authenticated, [u8; 16]), AuthError> {
        let Checked { envelope, key } = checked;
        let (Ok(content), Ok(signature)) = (
            envelope.signed_content(method, path, body),
            envelope.signature(),
        ) else {
            return Err(AuthError::BadSignature);
        };
        if !self.signatures.verify(content, signature, key.key).await {
            return Err(AuthError::BadSignature);
        }
        let claims = envelope.claims;
        let caller = Authenticated {
            scope: caller_scope(claims.sender_kind, &claims.sender),
            sender_kind: claims.sender_kind,
            sender: claims.sender,
            key_id: claims.key_id,
        };
        Ok((caller, claims.request_id))
    }

    /// What [`Self::finish`] would record for `caller`'s request `request_id`, left to the
    /// endpoint's store step, which works only while the count is at most `work_up_to`.
    pub fn unrecorded(
        &self,
        caller: &Authenticated,
        request_id: [u8; 16],
        window: WindowSpec,
        work_up_to: u64,
    ) -> RequestRecord {
        RequestRecord {
            sender: caller.scope.clone(),
            request_id,
            ttl: self.replay_ttl(),
            window: counter_of(window),
            work_up_to,
        }
    }

    /// Both steps at once, for callers holding the whole request.
    pub async fn authenticate(
        &self,
        expected: SenderKind,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: u64,
    ) -> Result<Authenticated, AuthError> {
        let checked = self.precheck(expected, headers, now).await?;
        let (caller, _) = self.finish(checked, method, path, body, None).await?;
        Ok(caller)
    }

    async fn trusted_key(
        &self,
        kind: SenderKind,
        sender: &str,
        key_id: &str,
        at: u64,
    ) -> Result<TrustedKey, AuthError> {
        match kind {
            SenderKind::Application => Uuid::parse_str(sender)
                .ok()
                .and_then(|id| self.applications.get(&id))
                .ok_or_else(|| AuthError::UnknownSender(sender.to_owned()))?
                .iter()
                .find(|key| key.id == key_id)
                .cloned()
                .ok_or_else(|| AuthError::UnknownKey(key_id.to_owned())),
            SenderKind::Provider => {
                if !mimi_well_known::is_dns_name(sender) {
                    return Err(AuthError::UnknownSender(sender.to_owned()));
                }
                if !self.allowed_peers.is_empty()
                    && !self
                        .allowed_peers
                        .iter()
                        .any(|peer| peer.eq_ignore_ascii_case(sender))
                {
                    return Err(AuthError::PeerNotAllowed(sender.to_owned()));
                }
                let key = self
                    .peer_keys
                    .key(&sender.to_ascii_lowercase(), key_id, at)
                    .await
                    .map_err(|error| match error {
                        PeerKeyError::UnknownKey { .. } => AuthError::UnknownKey(key_id.to_owned()),
                        PeerKeyError::Expired { .. } => AuthError::ExpiredKey(key_id.to_owned()),
                        PeerKeyError::Unreachable(..)
                        | PeerKeyError::RateLimited(_)
                        | PeerKeyError::TooSlow(..) => AuthError::PeerKeys(error.to_string()),
                    })?;
                let public = key
                    .ed25519()
                    .ok_or_else(|| AuthError::PeerKeys(format!("key {key_id} is not Ed25519")))?;
                Ok(TrustedKey {
                    id: key.key_id,
                    key: public,
                    not_before: key.not_before,
                    not_after: key.not_after,
                })
            }
        }
    }
}

/// The TLS client certificate (leaf) a federation connection presented, carried in each of
/// its requests' extensions.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub std::sync::Arc<rustls_pki_types::CertificateDer<'static>>);

/// Mutual TLS (the newer MIMI protocol draft): the client certificate must be valid for the
/// domain that signed the request. Its chain was checked during the handshake.
pub fn check_client_certificate(
    certificate: Option<&PeerCertificate>,
    sender: &str,
) -> Result<(), AuthError> {
    let mismatch = || AuthError::ClientCertificateMismatch(sender.to_owned());
    let certificate = certificate.ok_or_else(mismatch)?;
    let name = rustls_pki_types::ServerName::try_from(sender).map_err(|_| mismatch())?;
    let leaf = webpki::EndEntityCert::try_from(certificate.0.as_ref()).map_err(|_| mismatch())?;
    leaf.verify_is_valid_for_subject_name(&name)
        .map_err(|_| mismatch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_has_one_scope_however_it_is_spelled() {
        let id = Uuid::new_v4();
        let spellings = [
            id.hyphenated().to_string(),
            id.hyphenated().to_string().to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
        ];
        for spelling in spellings {
            assert_eq!(
                caller_scope(SenderKind::Application, &spelling),
                format!("app:{id}")
            );
        }
        assert_eq!(
            caller_scope(SenderKind::Provider, "PEER.Example"),
            "peer:peer.example"
        );
    }
}
