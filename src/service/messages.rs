//! What goes into clients' message queues (issue 7, "Queues and delivery that lose nothing";
//! architecture draft, "Group Messaging"; delivery-service draft, "Send an application
//! message to a group"): application messages the group's hub routes to every member (this
//! gateway's members directly, other domains' through `/deliver_message` to their gateway),
//! and connection requests. Handshake messages are not queued: applications read them as
//! control messages.
//!
//! Each entry's id is the SHA-256 of its message, so a redelivered fan-out is dropped while
//! the first copy is still queued or was acknowledged within `store::DEDUP_WINDOW_SECS`.

use mimi_wire::messages::{QueuedMessage, QueuedMessageKind};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{ContentType, MlsMessageIn};
use sha2::{Digest, Sha256};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::mls::group::GroupError;
use crate::mls::key_package::{MemberRules, is_of_domain, split_foreign};
use crate::state::State;
use crate::store::{self, GroupStoreError};

/// An application message's group and epoch, refused unless it is a PrivateMessage of
/// content type application (the only thing routed without being read).
pub fn application_message(message: &[u8]) -> Result<(Vec<u8>, u64), GroupError> {
    let protocol = MlsMessageIn::tls_deserialize_exact(message)
        .map_err(|error| GroupError::Malformed(error.to_string()))?
        .try_into_protocol_message()
        .map_err(|_| GroupError::Malformed("not a PrivateMessage".into()))?;
    if protocol.is_handshake_message() || protocol.content_type() != ContentType::Application {
        return Err(GroupError::Malformed("not an application message".into()));
    }
    if !matches!(
        protocol,
        openmls::prelude::ProtocolMessage::PrivateMessage(_)
    ) {
        return Err(GroupError::Malformed("not a PrivateMessage".into()));
    }
    Ok((
        protocol.group_id().as_slice().to_vec(),
        protocol.epoch().as_u64(),
    ))
}

/// Queues `message` (of `kind`, for `group_id`) for each of this gateway's `handles`.
pub async fn enqueue(
    state: &State,
    app: Uuid,
    handles: &[String],
    kind: QueuedMessageKind,
    group_id: &[u8],
    message: &[u8],
) -> Result<(), GatewayError> {
    let (id, entry) = queue_entry(kind, group_id, message)?;
    for handle in handles {
        state
            .store
            .enqueue_message(app, handle, &id, &entry)
            .await?;
    }
    Ok(())
}

/// A queue entry's id (the SHA-256 of the message) and encoding.
fn queue_entry(
    kind: QueuedMessageKind,
    group_id: &[u8],
    message: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), GatewayError> {
    let entry = mimi_wire::encode(&QueuedMessage {
        sequence: 0,
        kind,
        group_id: VLBytes::new(group_id.to_vec()),
        message: VLBytes::new(message.to_vec()),
    })
    .map_err(|error| GatewayError::Internal(error.to_string()))?;
    Ok((Sha256::digest(message).to_vec(), entry))
}

/// A queued entry as the application reads it, with its sequence number; `None` (logged)
/// for an entry that no longer decodes: the fetch's `next_sequence` still moves past it, so
/// it never blocks the queue and goes with the next acknowledgement past it.
pub fn queued(entry: store::QueuedMessage) -> Option<QueuedMessage> {
    match mimi_wire::decode_exact::<QueuedMessage>(&entry.entry) {
        Ok(mut message) => {
            message.sequence = entry.sequence;
            Some(message)
        }
        Err(error) => {
            tracing::warn!(sequence = entry.sequence, %error, "skipping a queued entry that does not decode");
            None
        }
    }
}

/// The hub routes an application message of its group to every member: queued here for its
/// own members, and queued for each peer with members (delivered in order with the group's
/// other fan-out). `from_peer` is the follower that forwarded it, which must have members in
/// the group (the draft: the DS authenticates the request's sender, not the message's).
/// `sender` is the sending member's name (its handle, `handle@domain` for another gateway's
/// client), as its application gave it: that queue is skipped. Answers the message's epoch.
pub async fn route(
    state: &State,
    app: Uuid,
    group_id: &[u8],
    message: &[u8],
    rules: &MemberRules<'_>,
    from_peer: Option<&str>,
    sender: Option<&str>,
) -> Result<u64, GatewayError> {
    let (message_group, epoch) = application_message(message)?;
    if message_group != group_id {
        return Err(GroupError::GroupIdMismatch.into());
    }
    let group = state
        .groups
        .checkout(state.store.as_ref(), app, group_id)
        .await?;
    let current = group.epoch;
    // Every member's credential is checked: CPU work that grows with the group.
    let members = tokio::task::block_in_place(|| group.member_names(rules));
    state.groups.put(app, group_id, group);
    let members = members?;
    if let Some(peer) = from_peer {
        let has_members = members.iter().any(|name| is_of_domain(name, peer));
        if !has_members {
            return Err(GatewayError::SenderNotOfPeer(peer.to_owned()));
        }
    }
    if epoch > current {
        return Err(GroupError::FutureEpoch { current }.into());
    }
    // The sender's own queue is skipped (MLS clients cannot process their own messages).
    let members: Vec<String> = members
        .into_iter()
        .filter(|name| Some(name.as_str()) != sender)
        .collect();
    // Without domains every member is this gateway's, whatever its handle holds.
    let (local, foreign): (Vec<String>, Vec<String>) = members
        .into_iter()
        .partition(|name| !rules.federated || split_foreign(name).is_none());
    let fanout = crate::federation::fanout::by_peer(&foreign)
        .into_iter()
        .map(|(peer, handles)| {
            let body = crate::federation::fanout::fanout_request(app, &peer, &handles, message)?;
            Ok((peer, vec![body]))
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    let (id, entry) = queue_entry(QueuedMessageKind::Application, group_id, message)?;
    // Accepted in one atomic step with every recipient's share: nothing accepted is lost.
    state
        .store
        .route_message(app, group_id, &local, &id, &entry, &fanout)
        .await?;
    if !fanout.is_empty() {
        state.delivery.wake();
    }
    Ok(epoch)
}

/// A follower's share of its hub's application message: queued for the recipients (this
/// gateway's clients, already checked) if the group is mirrored from that hub.
pub async fn deliver_from_hub(
    state: &State,
    hub: &str,
    app: Uuid,
    handles: &[String],
    message: &[u8],
) -> Result<(), GatewayError> {
    let (group_id, _) = application_message(message)?;
    let recorded = state.store.group_hub(app, &group_id).await?;
    match recorded {
        Some(recorded) if recorded.eq_ignore_ascii_case(hub) => {}
        Some(_) => return Err(GatewayError::NotTheHub(hub.to_owned())),
        None => {
            return Err(if state.store.group_head(app, &group_id).await?.is_some() {
                GatewayError::NotTheHub(hub.to_owned())
            } else {
                GatewayError::GroupStore(GroupStoreError::UnknownGroup)
            });
        }
    }
    // The hub may only fill the queues of the mirror's members.
    let application = state
        .applications
        .get(&app)
        .ok_or(GatewayError::UnknownApplication)?;
    let group = state
        .groups
        .checkout(state.store.as_ref(), app, &group_id)
        .await?;
    let rules = application.member_rules(&state.config);
    let members = tokio::task::block_in_place(|| group.member_names(&rules));
    state.groups.put(app, &group_id, group);
    let members = members?;
    if let Some(stranger) = handles.iter().find(|handle| !members.contains(handle)) {
        return Err(GatewayError::NotOurClient(stranger.clone()));
    }
    enqueue(
        state,
        app,
        handles,
        QueuedMessageKind::Application,
        &group_id,
        message,
    )
    .await
}
