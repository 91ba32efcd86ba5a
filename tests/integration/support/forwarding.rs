use crate::support::group_client::GroupApi;
use crate::support::*;
use http::Method;
use mimi_wire::encode;
use mimi_wire::messages::{FetchMessagesRequest, QueuedMessage, SendGroupMessageRequest};

pub async fn queued_ok(harness: &Harness, handle: &str, from: u64) -> Vec<QueuedMessage> {
    harness
        .app_client()
        .fetch_messages(handle, from, 100)
        .await
        .unwrap_or_else(|error| panic!("messages of {handle}: {error}"))
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
