//! `GET|POST /external_commit_information` and `GET|POST /welcome_information` (MIMI
//! Transport; DS draft "DS assisted joining"): the hub answers a follower the GroupInfo and
//! ratchet tree of a group's current epoch, or the tree of the epoch a Welcome brings its
//! recipients into. Only a peer with members in the group may ask (the hub keeps each
//! welcome's tree until its recipients acknowledge it or it expires).

use mimi_wire::DecodeError;
use mimi_wire::ds::{DSRequestBody, DSResponseBody, ExternalCommitInfo, MlsMessage, RatchetTree};
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::error::GatewayError;
use crate::mls::key_package::is_of_domain;
use crate::state::State;
use crate::store::GroupStoreError;

use crate::api::{decode_ds_request, ds_response, peer};

/// The application hosting `group_id` here, and the names of `peer`'s members in it;
/// `UnknownGroup` unless the group is hosted here with a member of `peer`.
async fn peer_members(
    state: &State,
    peer: &str,
    group_id: &[u8],
) -> Result<(Uuid, Vec<String>), GatewayError> {
    for app in state.applications.ids() {
        if state.store.group_head(*app, group_id).await?.is_none() {
            continue;
        }
        let application = state
            .applications
            .get(app)
            .ok_or(GatewayError::UnknownApplication)?;
        let group = state
            .groups
            .checkout(state.store.as_ref(), *app, group_id)
            .await?;
        let names = group.member_names(&application.member_rules(&state.config));
        state.groups.put(*app, group_id, group);
        let theirs: Vec<String> = names?
            .into_iter()
            .filter(|name| is_of_domain(name, peer))
            .collect();
        if theirs.is_empty() {
            break;
        }
        return Ok((*app, theirs));
    }
    Err(GatewayError::GroupStore(GroupStoreError::UnknownGroup))
}

fn malformed_store_value(what: &str) -> GatewayError {
    GatewayError::Internal(format!("stored {what} does not decode"))
}

pub async fn external_commit(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    let DSRequestBody::ExternalCommitInfo(asked) = decode_ds_request(request)? else {
        return Err(DecodeError::Malformed("not an external commit info request".into()).into());
    };
    let group_id = asked.group_id.as_slice();
    let (app, _) = peer_members(state, peer, group_id).await?;
    let current = state
        .store
        .current_group_info(app, group_id)
        .await?
        .ok_or(GatewayError::GroupStore(GroupStoreError::UnknownGroup))?;
    let group_info = current.group_info.ok_or(GatewayError::GroupInfoRequired)?;
    ds_response(DSResponseBody::ExternalCommitInfo(ExternalCommitInfo {
        group_info: MlsMessage::from_bytes(group_info)
            .map_err(|_| malformed_store_value("group info"))?,
        ratchet_tree: RatchetTree::from_bytes(current.ratchet_tree)
            .map_err(|_| malformed_store_value("ratchet tree"))?,
    }))
}

pub async fn welcome(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    let DSRequestBody::WelcomeInfo(asked) = decode_ds_request(request)? else {
        return Err(DecodeError::Malformed("not a welcome info request".into()).into());
    };
    let group_id = asked.group_id.as_slice();
    let (app, names) = peer_members(state, peer, group_id).await?;
    let now = crate::keys::unix_now();
    for name in &names {
        for pending in state.store.welcomes(app, name, now).await? {
            if pending.group_id == group_id && pending.epoch == asked.epoch {
                return ds_response(DSResponseBody::WelcomeInfo(
                    RatchetTree::from_bytes(pending.ratchet_tree)
                        .map_err(|_| malformed_store_value("ratchet tree"))?,
                ));
            }
        }
    }
    Err(GatewayError::UnknownWelcome)
}
