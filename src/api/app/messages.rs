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
use crate::error::GatewayError;
use crate::service::forward;
use crate::state::State;
use crate::store::RegistryError;

use crate::api::{authorize, decode_body, mirrored_from};

pub async fn send(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let body: SendGroupMessageRequest =
        decode_body(request, |body: &SendGroupMessageRequest| body.version)?;
    let rules = application.member_rules(&state.config);
    let message = body.message.as_slice();
    // The sender is one of the application's own clients here, never another domain's.
    let sender = body.sender.as_deref();
    if let Some(handle) = sender {
        crate::api::app::register_client::check_client_handle(application, handle)?;
        registered(state, app, handle).await?;
    }
    let epoch = match mirrored_from(state, app, group_id, &rules).await? {
        Some(hub) => forward::message(state, &hub, app, group_id, message, sender).await?,
        None => {
            crate::service::messages::route(state, app, group_id, message, &rules, None, sender)
                .await?
        }
    };
    crate::api::group_epoch_created(group_id, epoch)
}

/// The queue's owner must be a registered client of the application.
async fn registered(state: &State, app: Uuid, handle: &str) -> Result<(), GatewayError> {
    match state.store.client_by_handle(app, handle).await? {
        Some(_) => Ok(()),
        None => Err(RegistryError::UnknownClient.into()),
    }
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
    registered(state, app, handle).await?;
    let limit = usize::from(asked.limit.clamp(1, MAX_FETCH));
    let entries = state
        .store
        .queued_messages(app, handle, asked.from_sequence, limit)
        .await?;
    let next_sequence = entries.last().map_or(asked.from_sequence, |entry| {
        entry.sequence.saturating_add(1)
    });
    encoded(&QueuedMessagesResponse {
        version: WIRE_VERSION,
        messages: entries
            .into_iter()
            .filter_map(crate::service::messages::queued)
            .collect(),
        next_sequence,
    })
}

pub async fn acknowledge(state: &State, request: &Request, app: Uuid, handle: &str) -> Reply {
    authorize(state, request, app)?;
    let asked: AcknowledgeMessagesRequest =
        decode_body(request, |body: &AcknowledgeMessagesRequest| body.version)?;
    registered(state, app, handle).await?;
    let removed = state
        .store
        .acknowledge_messages(app, handle, asked.up_to_sequence)
        .await?;
    encoded(&AcknowledgeMessagesResponse {
        version: WIRE_VERSION,
        removed,
    })
}
