//! `mimi-gateway inspect` (issue 16, "Operator tools"): what a captured body, header or MLS
//! message holds, printed readably. Input is the raw bytes, or their hex, or (for a
//! `mimi-signature` header) its base64url text. Without a kind, the envelope, error, MLS and
//! DS kinds are tried and the first that decodes exactly is printed, named; the application
//! API's bodies are decoded when named (`--as register-client-request`, ...).

use mimi_wire::ds::{
    DSFanoutRequest, DSFanoutResponse, DSRequest, DSResponse, QueueingServiceRequest,
};
use mimi_wire::signing::RequestSignature;
use mimi_wire::{ErrorCode, ErrorResponse};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};

/// What `inspect --as` can name.
pub const KINDS: [&str; 8] = [
    "signature",
    "error",
    "mls",
    "ds-request",
    "ds-response",
    "fanout-request",
    "fanout-response",
    "queueing-request",
];

/// The application API's bodies (`mimi-wire`), decoded only when named with `--as`: small
/// structs decode from many byte strings, so guessing among them would mislead.
pub const BODY_KINDS: [&str; 24] = [
    "register-client-request",
    "register-client-response",
    "update-client-request",
    "client-response",
    "discover-clients-request",
    "discover-clients-response",
    "create-key-queue-request",
    "update-key-queue-request",
    "retrieve-key-package-request",
    "retrieve-key-package-response",
    "create-group-request",
    "group-epoch-response",
    "upload-proposal-request",
    "upload-commit-request",
    "control-messages-request",
    "messages-response",
    "welcome-messages-response",
    "group-info-response",
    "group-status-response",
    "send-group-message-request",
    "fetch-messages-request",
    "queued-messages-response",
    "acknowledge-messages-request",
    "whoami-response",
];

fn body(kind: &str, bytes: &[u8]) -> Option<String> {
    use mimi_wire::{groups, key_queues, messages, registry, whoami};
    match kind {
        "register-client-request" => decode::<registry::RegisterClientRequest>(bytes),
        "register-client-response" => decode::<registry::RegisterClientResponse>(bytes),
        "update-client-request" => decode::<registry::UpdateClientRequest>(bytes),
        "client-response" => decode::<registry::ClientResponse>(bytes),
        "discover-clients-request" => decode::<registry::DiscoverClientsRequest>(bytes),
        "discover-clients-response" => decode::<registry::DiscoverClientsResponse>(bytes),
        "create-key-queue-request" => decode::<key_queues::CreateKeyQueueRequest>(bytes),
        "update-key-queue-request" => decode::<key_queues::UpdateKeyQueueRequest>(bytes),
        "retrieve-key-package-request" => decode::<key_queues::RetrieveKeyPackageRequest>(bytes),
        "retrieve-key-package-response" => decode::<key_queues::RetrieveKeyPackageResponse>(bytes),
        "create-group-request" => decode::<groups::CreateGroupRequest>(bytes),
        "group-epoch-response" => decode::<groups::GroupEpochResponse>(bytes),
        "upload-proposal-request" => decode::<groups::UploadProposalRequest>(bytes),
        "upload-commit-request" => decode::<groups::UploadCommitRequest>(bytes),
        "control-messages-request" => decode::<groups::ControlMessagesRequest>(bytes),
        "messages-response" => decode::<groups::MessagesResponse>(bytes),
        "welcome-messages-response" => decode::<groups::WelcomeMessagesResponse>(bytes),
        "group-info-response" => decode::<groups::GroupInfoResponse>(bytes),
        "group-status-response" => decode::<groups::GroupStatusResponse>(bytes),
        "send-group-message-request" => decode::<messages::SendGroupMessageRequest>(bytes),
        "fetch-messages-request" => decode::<messages::FetchMessagesRequest>(bytes),
        "queued-messages-response" => decode::<messages::QueuedMessagesResponse>(bytes),
        "acknowledge-messages-request" => decode::<messages::AcknowledgeMessagesRequest>(bytes),
        "whoami-response" => decode::<whoami::WhoAmIResponse>(bytes),
        _ => None,
    }
}

/// The bytes `input` stands for: hex text is decoded, anything else is taken as it is.
fn bytes_of(input: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(input);
    let compact: String = text.split_whitespace().collect();
    match hex::decode(&compact) {
        Ok(bytes) if !bytes.is_empty() => bytes,
        _ => input.to_vec(),
    }
}

fn decode<T: tls_codec::Deserialize + std::fmt::Debug>(bytes: &[u8]) -> Option<String> {
    mimi_wire::decode_exact::<T>(bytes)
        .ok()
        .map(|value| format!("{value:#?}"))
}

fn signature(input: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(input);
    let envelope = RequestSignature::from_header_value(text.trim().as_bytes()).ok()?;
    let claims = &envelope.claims;
    Some(format!(
        "sender      {:?} {}\nrecipient   {}\ntimestamp   {}\nrequest id  {}\nkey id      {}\nsignature   {}",
        claims.sender_kind,
        claims.sender,
        claims.recipient,
        claims.timestamp,
        hex::encode(claims.request_id),
        claims.key_id,
        hex::encode(envelope.signature.as_slice()),
    ))
}

fn error(bytes: &[u8]) -> Option<String> {
    let response: ErrorResponse = mimi_wire::decode_exact(bytes).ok()?;
    let name = ErrorCode::from_code(response.code)
        .map_or_else(|| "unknown code".to_owned(), |code| format!("{code:?}"));
    let mut out = format!(
        "code        {} ({name})\ndetail      {}",
        response.code, response.detail
    );
    if let Some(epoch) = response.current_epoch() {
        out.push_str(&format!("\ncurrent epoch {epoch}"));
    }
    for field in &response.fields {
        out.push_str(&format!("\nfield       {field:?}"));
    }
    Some(out)
}

fn mls(bytes: &[u8]) -> Option<String> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes).ok()?;
    let body = message.extract();
    let summary = match &body {
        MlsMessageBodyIn::PublicMessage(message) => format!(
            "PublicMessage: group {} epoch {} content {:?}",
            hex::encode(message.group_id().as_slice()),
            message.epoch().as_u64(),
            message.content_type(),
        ),
        MlsMessageBodyIn::PrivateMessage(message) => format!(
            "PrivateMessage: group {} epoch {} content {:?}",
            hex::encode(message.group_id().as_slice()),
            message.epoch().as_u64(),
            message.content_type(),
        ),
        MlsMessageBodyIn::Welcome(welcome) => format!(
            "Welcome: cipher suite {:?}, {} secrets",
            welcome.ciphersuite(),
            welcome.secrets().len()
        ),
        MlsMessageBodyIn::GroupInfo(_) => "GroupInfo".to_owned(),
        MlsMessageBodyIn::KeyPackage(_) => "KeyPackage".to_owned(),
    };
    Some(format!("MLSMessage {summary}\n{body:#?}"))
}

/// Decodes `input` as `kind` (any kind when `None`); answers the kind and its rendering.
pub fn inspect(input: &[u8], kind: Option<&str>) -> Result<(String, String), String> {
    let bytes = bytes_of(input);
    let attempt = |kind: &str| -> Option<String> {
        match kind {
            "signature" => signature(input),
            "error" => error(&bytes),
            "mls" => mls(&bytes),
            "ds-request" => decode::<DSRequest>(&bytes),
            "ds-response" => decode::<DSResponse>(&bytes),
            "fanout-request" => decode::<DSFanoutRequest>(&bytes),
            "fanout-response" => decode::<DSFanoutResponse>(&bytes),
            "queueing-request" => decode::<QueueingServiceRequest>(&bytes),
            other => body(other, &bytes),
        }
    };
    match kind {
        Some(kind) if !KINDS.contains(&kind) && !BODY_KINDS.contains(&kind) => Err(format!(
            "unknown kind `{kind}`; one of {}, {}",
            KINDS.join(", "),
            BODY_KINDS.join(", ")
        )),
        Some(kind) => attempt(kind)
            .map(|text| (kind.to_owned(), text))
            .ok_or_else(|| format!("{} bytes do not decode as {kind}", bytes.len())),
        None => KINDS
            .iter()
            .find_map(|kind| attempt(kind).map(|text| ((*kind).to_owned(), text)))
            .ok_or_else(|| {
                format!(
                    "{} bytes decode as none of {}",
                    bytes.len(),
                    KINDS.join(", ")
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_is_named_in_hex_or_raw() {
        let body = mimi_wire::encode(&ErrorResponse {
            code: ErrorCode::StaleEpoch.code(),
            detail: "current epoch 4".into(),
            fields: vec![mimi_wire::ErrorField::current_epoch(4)],
        })
        .unwrap();
        for input in [body.clone(), hex::encode(&body).into_bytes()] {
            let (kind, text) = inspect(&input, None).unwrap();
            assert_eq!(kind, "error");
            assert!(
                text.contains("StaleEpoch") && text.contains("current epoch 4"),
                "{text}"
            );
        }
        assert!(inspect(&body, Some("mls")).is_err());
        assert!(inspect(b"\xff\x00garbage", None).is_err());
        assert!(
            inspect(&body, Some("nonsense"))
                .unwrap_err()
                .contains("unknown kind")
        );
    }
}
