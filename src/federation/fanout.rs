//! What the hub of a group sends its followers (DESIGN.md "Federation: one hub per group";
//! DS draft "Server to server requests"): every accepted handshake message goes, as a
//! `DSFanoutRequest`, to each peer with members in the group (and to a peer whose members
//! it removes); a Welcome goes to each peer with members it adds, right after its commit in
//! that peer's queue (before the commit), which is how the follower knows the group and
//! epoch it belongs to.

use std::collections::BTreeMap;

use mimi_wire::ds::{
    ClientId, ClientRef, DS_PROTOCOL_VERSION, DSFanoutRequest, FanoutAuthToken, MlsMessage,
};
use uuid::Uuid;

use crate::error::GatewayError;
use crate::mls::key_package::split_foreign;

/// What a commit queues for peers: per peer domain, its `DSFanoutRequest` bodies in order.
pub type Fanout = Vec<(String, Vec<Vec<u8>>)>;

/// Member names (`handle@domain`) of other domains, grouped by domain; names of this
/// gateway's members are left out.
pub fn by_peer<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, Vec<String>> {
    let mut peers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        if let Some((handle, domain)) = split_foreign(name) {
            let handles = peers.entry(domain.to_owned()).or_default();
            if !handles.iter().any(|known| known == handle) {
                handles.push(handle.to_owned());
            }
        }
    }
    peers
}

/// The `DSFanoutRequest` carrying `message` to `handles` of `domain`. Enqueue authorization
/// tokens are a TODO of the draft (a KeyPackage extension no MLS library has): each
/// recipient gets an empty token, and the follower authorizes by the hub's signature and
/// the group's membership instead (`docs/federation-wire.md`).
pub fn fanout_request(
    app: Uuid,
    domain: &str,
    handles: &[String],
    message: &[u8],
) -> Result<Vec<u8>, GatewayError> {
    let request = DSFanoutRequest {
        version: DS_PROTOCOL_VERSION,
        recipient_ids: handles
            .iter()
            .map(|handle| ClientId {
                application: *app.as_bytes(),
                domain: domain.to_owned(),
                client: ClientRef::Handle(handle.clone()),
            })
            .collect(),
        fanout_auth_tokens: handles
            .iter()
            .map(|_| FanoutAuthToken {
                token: tls_codec::VLBytes::new(Vec::new()),
            })
            .collect(),
        mls_message: MlsMessage::from_bytes(message.to_vec())
            .map_err(|error| GatewayError::Internal(format!("fan-out message: {error}")))?,
    };
    mimi_wire::encode(&request).map_err(|error| GatewayError::Internal(error.to_string()))
}

/// The fan-out of one accepted commit, per peer in the order the follower needs them: the
/// new epoch's GroupInfo, then the Welcome (to peers with members it adds), then the commit
/// itself, which the follower applies with the two it holds by then. Peers with members
/// after the commit (`members`) or members it removed (`removed`) get the commit.
pub fn commit_fanout(
    app: Uuid,
    members: &[String],
    removed: &[String],
    commit: &[u8],
    group_info: Option<&[u8]>,
    welcome: Option<(&[u8], &[String])>,
) -> Result<Fanout, GatewayError> {
    let added = welcome.map(|(_, added)| by_peer(added)).unwrap_or_default();
    let mut out = Vec::new();
    for (peer, handles) in by_peer(members.iter().chain(removed)) {
        let mut bodies = Vec::with_capacity(3);
        if let Some(group_info) = group_info {
            bodies.push(fanout_request(app, &peer, &handles, group_info)?);
        }
        if let (Some((packet, _)), Some(joiners)) = (welcome, added.get(&peer)) {
            bodies.push(fanout_request(app, &peer, joiners, packet)?);
        }
        bodies.push(fanout_request(app, &peer, &handles, commit)?);
        out.push((peer, bodies));
    }
    Ok(out)
}

/// The fan-out of an accepted proposal: to every peer with members in the group.
pub fn proposal_fanout(
    app: Uuid,
    members: &[String],
    proposal: &[u8],
) -> Result<Fanout, GatewayError> {
    by_peer(members)
        .into_iter()
        .map(|(peer, handles)| {
            let body = fanout_request(app, &peer, &handles, proposal)?;
            Ok((peer, vec![body]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_the_domains_of_foreign_members() {
        let names = [
            "alice".to_string(),
            "carol@b.localhost".to_string(),
            "dave@c.localhost".to_string(),
            "erin@b.localhost".to_string(),
            "carol@b.localhost".to_string(),
        ];
        let peers = by_peer(&names);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers["b.localhost"], ["carol", "erin"]);
        assert_eq!(peers["c.localhost"], ["dave"]);
    }
}
