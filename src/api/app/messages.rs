//! `POST /apps/{appId}/groups/{groupId}/messages` (architecture draft, "Group Messaging"; the
//! delivery-service draft's "Send an application message to a group"): an application
//! message, a PrivateMessage the gateway routes without reading, for every member of the
//! group: at the hub straight into the members' queues (other domains' through their
//! gateways), at a follower forwarded to the hub; the sender the application names
//! (`sender`) is skipped, wherever its queue is. And each client's queue:
//! `GET|POST /apps/{appId}/clients/{clientHandle}/messages` fetches from a sequence number,
//! `POST .../messages/acknowledge` removes everything up to one (`mimi_wire::messages`).

use mimi_wire::WIRE_VERSION;
use mimi_wire::messages::{
    AcknowledgeMessagesRequest, AcknowledgeMessagesResponse, FetchMessagesRequest, MAX_FETCH,
    QueuedMessagesResponse, SendGroupMessageRequest,
};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, decode_body, group_epoch_created};
use crate::state::State;

pub async fn send(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let body: SendGroupMessageRequest =
        decode_body(request, |body: &SendGroupMessageRequest| body.version)?;
    let epoch = state
        .services
        .messages
        .send(
            application,
            group_id,
            body.message.as_slice(),
            body.sender.as_deref(),
        )
        .await?;
    group_epoch_created(group_id, epoch)
}

pub async fn fetch(state: &State, request: &Request, app: Uuid, handle: &str) -> Reply {
    authorize(state, request, app)?;
    // An empty body fetches from the start, as many as one answer holds.
    let asked = if request.body.is_empty() {
        FetchMessagesRequest {
            version: WIRE_VERSION,
            from_sequence: 0,
            limit: MAX_FETCH,
        }
    } else {
        decode_body(request, |body: &FetchMessagesRequest| body.version)?
    };
    let (messages, next_sequence) = state
        .services
        .messages
        .fetch(app, handle, asked.from_sequence, asked.limit)
        .await?;
    encoded(&QueuedMessagesResponse {
        version: WIRE_VERSION,
        messages,
        next_sequence,
    })
}

pub async fn acknowledge(state: &State, request: &Request, app: Uuid, handle: &str) -> Reply {
    authorize(state, request, app)?;
    let asked: AcknowledgeMessagesRequest =
        decode_body(request, |body: &AcknowledgeMessagesRequest| body.version)?;
    let removed = state
        .services
        .messages
        .acknowledge(app, handle, asked.up_to_sequence)
        .await?;
    encoded(&AcknowledgeMessagesResponse {
        version: WIRE_VERSION,
        removed,
    })
}
