use crate::support::group_client::{GroupApi, error};
use crate::support::*;
use http::{Method, StatusCode};
use mimi_wire::messages::{
    FetchMessagesRequest, QueuedMessage, QueuedMessagesResponse, SendGroupMessageRequest,
};
use mimi_wire::{decode_exact, encode};

pub async fn queued_ok(harness: &Harness, handle: &str, from: u64) -> Vec<QueuedMessage> {
    let answer = queued(harness, handle, from).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    decode_exact::<QueuedMessagesResponse>(&answer.body)
        .unwrap()
        .messages
}

/// An application message sent by `sender` (whose own queue is skipped), if named.
pub async fn send_message_from(api: &GroupApi, message: &[u8], sender: Option<&str>) -> Answer {
    let body = encode(&SendGroupMessageRequest {
        version: 1,
        message: message.to_vec().into(),
        sender: sender.map(str::to_owned),
    })
    .unwrap();
    api.target
        .call(
            Method::POST,
            &format!("/apps/{}/groups/{}/messages", api.app, api.group),
            body,
        )
        .await
}

/// The messages queued for `handle` at `harness` from sequence number `from`.
pub async fn queued(harness: &Harness, handle: &str, from: u64) -> Answer {
    let body = encode(&FetchMessagesRequest {
        version: 1,
        from_sequence: from,
        limit: 100,
    })
    .unwrap();
    harness
        .call(
            Method::POST,
            &format!("/apps/{}/clients/{handle}/messages", harness.app.id),
            body,
        )
        .await
}
