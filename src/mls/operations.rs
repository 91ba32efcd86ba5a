//! The delivery-service draft's client-initiated operations ("Client-initiated operations":
//! add users, remove users, add clients, remove clients, self remove, update client, external
//! join, delete group, re-initialize): which operation a commit or proposal is, and each
//! operation's validation rules. A follower classifies what its applications upload and
//! forwards it to the hub as that operation (`service::forward`); the hub checks the rules
//! of the operation the follower named before it applies anything.

use std::collections::BTreeMap;

use mimi_wire::ds::DSRequestType;
use openmls::prelude::ProposalType;

/// What a staged commit does, in the terms the operations are judged by. Members are named
/// and grouped by user as `key_package::member_identity` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitShape {
    /// Sent by a new member (sender type NewMemberCommit).
    pub external: bool,
    /// The commit has an UpdatePath.
    pub path: bool,
    /// Types of the proposals committed by value, and by reference.
    pub by_value: Vec<ProposalType>,
    pub by_reference: Vec<ProposalType>,
    /// The committer's member name and user (for an external commit, the joiner's).
    pub committer: String,
    pub committer_user: String,
    /// The committer's leaf before the commit (`None` for an external commit).
    pub committer_leaf: Option<u32>,
    /// The commit gives the committer's leaf another credential.
    pub credential_changed: bool,
    /// ... and that credential names another client (it is no valid successor).
    pub committer_renamed: bool,
    /// Each user with members before the commit, and their leaves.
    pub users_before: BTreeMap<String, Vec<u32>>,
    /// The users of the members the commit adds.
    pub added_users: Vec<String>,
    /// Leaves removed by value, with their users.
    pub removed_by_value: Vec<(u32, String)>,
    /// The group a ReInit proposal points to.
    pub reinit_group: Option<Vec<u8>>,
}

/// What a standalone proposal is: enough to judge a self remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalShape {
    pub proposal_type: ProposalType,
    /// The sender's leaf (`None` for senders that are not members).
    pub sender_leaf: Option<u32>,
    /// The leaf a Remove proposal removes.
    pub removed_leaf: Option<u32>,
    /// The sender's member name.
    pub sender: Option<String>,
}

/// Why an operation's rules refuse a commit or proposal (the detail sent with
/// `OperationRulesViolated`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    #[error("{0:?} is not a group operation")]
    NotAGroupOperation(DSRequestType),
    #[error("{0:?} commits only {1}")]
    OnlyProposals(DSRequestType, &'static str),
    #[error("the commit changes the sender's credential")]
    CredentialChanged,
    #[error("an added client belongs to a user already in the group")]
    UserAlreadyMember,
    #[error("added clients must all belong to one user already in the group")]
    NotClientsOfOneMember,
    #[error("a removal by value leaves other clients of that user in the group")]
    PartialUserRemoval,
    #[error("a removal by value targets a client of another user")]
    ClientOfAnotherUser,
    #[error("an update needs an UpdatePath and no proposals by value")]
    NotAnUpdate,
    #[error("an update changes who the client is")]
    SuccessorMismatch,
    #[error("an external join needs a NewMemberCommit sender")]
    NotExternal,
    #[error("the joiner's user is not in the group")]
    JoinerNotOfAMember,
    #[error("deleting the group removes every member but the committer")]
    NotEveryoneRemoved,
    #[error("a re-initialization commits a ReInit proposal")]
    NoReInit,
    #[error("the re-initialization's group is not another group on this hub")]
    ReInitTarget,
    #[error("a self remove is a single Remove proposal for its sender")]
    NotASelfRemove,
    #[error("the operation needs exactly one Welcome")]
    WelcomeCount,
    #[error("{0:?} adds nobody")]
    NothingAdded(DSRequestType),
    #[error("{0:?} removes nobody")]
    NothingRemoved(DSRequestType),
}

/// Which operation of the draft carries a member's commit, or `None` if none does (a commit
/// mixing additions and removals by value, or committing other proposals by value).
pub fn classify_commit(shape: &CommitShape) -> Option<DSRequestType> {
    if shape.external {
        return Some(DSRequestType::ExternalJoin);
    }
    if shape.reinit_group.is_some() {
        return Some(DSRequestType::ReInitializeGroup);
    }
    let all = |kind: ProposalType| shape.by_value.iter().all(|found| *found == kind);
    if shape.by_value.is_empty() {
        // Only proposals by reference: judged by what they are.
        let adds = shape.by_reference.contains(&ProposalType::Add);
        let removes = shape.by_reference.contains(&ProposalType::Remove);
        return Some(match (adds, removes) {
            (true, _) => add_kind(shape),
            (false, true) => DSRequestType::RemoveUsers,
            (false, false) if shape.path => DSRequestType::UpdateClient,
            (false, false) => return None,
        });
    }
    if all(ProposalType::Add) {
        return Some(add_kind(shape));
    }
    if all(ProposalType::Remove) {
        let own = shape.users_before.get(&shape.committer_user);
        let own_clients = shape
            .removed_by_value
            .iter()
            .all(|(leaf, _)| own.is_some_and(|leaves| leaves.contains(leaf)));
        return Some(if own_clients {
            DSRequestType::RemoveClients
        } else {
            DSRequestType::RemoveUsers
        });
    }
    None
}

fn add_kind(shape: &CommitShape) -> DSRequestType {
    if !shape.added_users.is_empty()
        && shape
            .added_users
            .iter()
            .all(|user| shape.users_before.contains_key(user))
    {
        DSRequestType::AddClients
    } else {
        DSRequestType::AddUsers
    }
}

/// The draft's validation rules of `operation` for a staged commit with `welcomes` Welcome
/// messages. Welcomes: the operations that add members take exactly one (the one MLS makes
/// for a commit), which the hub fans out to every gateway with members among its recipients.
pub fn check_commit(
    operation: DSRequestType,
    shape: &CommitShape,
    welcomes: usize,
) -> Result<(), OperationError> {
    use DSRequestType as Op;
    let only = |kind: ProposalType, what: &'static str| {
        if shape.by_value.iter().all(|found| *found == kind) {
            Ok(())
        } else {
            Err(OperationError::OnlyProposals(operation, what))
        }
    };
    let by_reference_only = |kinds: &[ProposalType], what: &'static str| {
        if shape.by_reference.iter().all(|found| kinds.contains(found)) {
            Ok(())
        } else {
            Err(OperationError::OnlyProposals(operation, what))
        }
    };
    let same_credential = || {
        if shape.credential_changed {
            Err(OperationError::CredentialChanged)
        } else {
            Ok(())
        }
    };
    let welcome = |needed: bool| {
        if (welcomes == 1) == needed && welcomes <= 1 {
            Ok(())
        } else {
            Err(OperationError::WelcomeCount)
        }
    };
    match operation {
        Op::AddUsers | Op::AddClients => {
            only(ProposalType::Add, "Add proposals")?;
            // "with the possible exception of Remove proposals" by reference.
            by_reference_only(
                &[ProposalType::Add, ProposalType::Remove],
                "Add proposals and Removes by reference",
            )?;
            same_credential()?;
            if shape.added_users.is_empty() {
                return Err(OperationError::NothingAdded(operation));
            }
            if operation == Op::AddUsers {
                if shape
                    .added_users
                    .iter()
                    .any(|user| shape.users_before.contains_key(user))
                {
                    return Err(OperationError::UserAlreadyMember);
                }
            } else {
                let first = shape.added_users.first();
                if first.is_none()
                    || shape.added_users.iter().any(|user| Some(user) != first)
                    || !first.is_some_and(|user| shape.users_before.contains_key(user))
                {
                    return Err(OperationError::NotClientsOfOneMember);
                }
            }
            welcome(true)
        }
        Op::RemoveUsers | Op::RemoveClients | Op::DeleteGroup => {
            only(ProposalType::Remove, "Remove proposals")?;
            by_reference_only(&[ProposalType::Remove], "Remove proposals")?;
            same_credential()?;
            welcome(false)?;
            if shape.removed_by_value.is_empty()
                && !shape.by_reference.contains(&ProposalType::Remove)
            {
                return Err(OperationError::NothingRemoved(operation));
            }
            match operation {
                Op::RemoveUsers => {
                    for (_, user) in &shape.removed_by_value {
                        let all_clients = shape.users_before.get(user).is_some_and(|leaves| {
                            leaves.iter().all(|leaf| {
                                shape.removed_by_value.iter().any(|(gone, _)| gone == leaf)
                            })
                        });
                        if !all_clients {
                            return Err(OperationError::PartialUserRemoval);
                        }
                    }
                    Ok(())
                }
                Op::RemoveClients => {
                    if shape
                        .removed_by_value
                        .iter()
                        .any(|(_, user)| *user != shape.committer_user)
                    {
                        return Err(OperationError::ClientOfAnotherUser);
                    }
                    Ok(())
                }
                _ => {
                    let everyone_else = shape.users_before.values().flatten().all(|leaf| {
                        Some(*leaf) == shape.committer_leaf
                            || shape.removed_by_value.iter().any(|(gone, _)| gone == leaf)
                    });
                    if everyone_else {
                        Ok(())
                    } else {
                        Err(OperationError::NotEveryoneRemoved)
                    }
                }
            }
        }
        Op::UpdateClient => {
            if !shape.path || !shape.by_value.is_empty() || shape.external {
                return Err(OperationError::NotAnUpdate);
            }
            // "A client is a valid successor of another client if their client identifiers
            // are equal" (architecture draft, "Identity Providers").
            if shape.committer_renamed {
                return Err(OperationError::SuccessorMismatch);
            }
            welcome(false)
        }
        Op::ExternalJoin => {
            if !shape.external {
                return Err(OperationError::NotExternal);
            }
            if !shape.users_before.contains_key(&shape.committer_user) {
                return Err(OperationError::JoinerNotOfAMember);
            }
            // openmls leaves who an external commit removes to the application: only the
            // joiner's own user's clients (a client resyncing replaces its old leaf).
            let allowed = [
                ProposalType::ExternalInit,
                ProposalType::Remove,
                ProposalType::PreSharedKey,
            ];
            if !shape.by_value.iter().all(|kind| allowed.contains(kind)) {
                return Err(OperationError::OnlyProposals(
                    operation,
                    "ExternalInit, Remove and PreSharedKey proposals",
                ));
            }
            if shape
                .removed_by_value
                .iter()
                .any(|(_, user)| *user != shape.committer_user)
            {
                return Err(OperationError::ClientOfAnotherUser);
            }
            welcome(false)
        }
        Op::ReInitializeGroup => {
            if shape.reinit_group.is_none() {
                return Err(OperationError::NoReInit);
            }
            only(ProposalType::Reinit, "a ReInit proposal")?;
            by_reference_only(&[ProposalType::Reinit], "a ReInit proposal")?;
            same_credential()?;
            welcome(false)
        }
        // Ours: a commit the draft has no operation for, judged by the hub as its own
        // clients' commits are (in staging), with the rules no forwarded commit escapes: at
        // most the one Welcome MLS makes, an external joiner removes only its own user's
        // clients (RFC 9420, section 12.4.3.2; openmls leaves it to the application), and a
        // changed credential names the same client (the valid successor).
        Op::Commit => {
            if welcomes > 1 {
                return Err(OperationError::WelcomeCount);
            }
            if shape.external
                && shape
                    .removed_by_value
                    .iter()
                    .any(|(_, user)| *user != shape.committer_user)
            {
                return Err(OperationError::ClientOfAnotherUser);
            }
            if shape.committer_renamed {
                return Err(OperationError::SuccessorMismatch);
            }
            Ok(())
        }
        other => Err(OperationError::NotAGroupOperation(other)),
    }
}

/// A self remove ("Self remove a client from a group"): a single Remove proposal whose
/// target is its sender.
pub fn check_self_remove(shape: &ProposalShape) -> Result<(), OperationError> {
    if shape.proposal_type == ProposalType::Remove
        && shape.sender_leaf.is_some()
        && shape.removed_leaf == shape.sender_leaf
    {
        Ok(())
    } else {
        Err(OperationError::NotASelfRemove)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> CommitShape {
        // alice (leaves 0 and 2), carol@b (leaf 1); alice commits from leaf 0.
        CommitShape {
            committer: "alice-phone".into(),
            committer_user: "alice".into(),
            committer_leaf: Some(0),
            path: true,
            users_before: BTreeMap::from([
                ("alice".into(), vec![0, 2]),
                ("carol@b.localhost".into(), vec![1]),
            ]),
            ..CommitShape::default()
        }
    }

    #[test]
    fn adding_a_new_user_is_add_users_and_a_known_one_add_clients() {
        let mut shape = group();
        shape.by_value = vec![ProposalType::Add];
        shape.added_users = vec!["dave@c.localhost".into()];
        assert_eq!(classify_commit(&shape), Some(DSRequestType::AddUsers));
        assert_eq!(check_commit(DSRequestType::AddUsers, &shape, 1), Ok(()));
        assert_eq!(
            check_commit(DSRequestType::AddClients, &shape, 1),
            Err(OperationError::NotClientsOfOneMember)
        );
        assert_eq!(
            check_commit(DSRequestType::AddUsers, &shape, 0),
            Err(OperationError::WelcomeCount)
        );
        shape.added_users = vec!["carol@b.localhost".into()];
        assert_eq!(classify_commit(&shape), Some(DSRequestType::AddClients));
        assert_eq!(
            check_commit(DSRequestType::AddUsers, &shape, 1),
            Err(OperationError::UserAlreadyMember)
        );
    }

    #[test]
    fn an_add_commit_holds_only_adds_by_value() {
        let mut shape = group();
        shape.by_value = vec![ProposalType::Add, ProposalType::Remove];
        shape.added_users = vec!["dave@c.localhost".into()];
        shape.removed_by_value = vec![(1, "carol@b.localhost".into())];
        assert_eq!(classify_commit(&shape), None);
        assert!(matches!(
            check_commit(DSRequestType::AddUsers, &shape, 1),
            Err(OperationError::OnlyProposals(..))
        ));
        // A pending Remove by reference is allowed beside the Adds.
        shape.by_value = vec![ProposalType::Add];
        shape.by_reference = vec![ProposalType::Remove];
        shape.removed_by_value.clear();
        assert_eq!(check_commit(DSRequestType::AddUsers, &shape, 1), Ok(()));
    }

    #[test]
    fn removals_by_value_take_whole_users_or_own_clients() {
        let mut shape = group();
        shape.by_value = vec![ProposalType::Remove];
        shape.removed_by_value = vec![(2, "alice".into())];
        assert_eq!(classify_commit(&shape), Some(DSRequestType::RemoveClients));
        assert_eq!(
            check_commit(DSRequestType::RemoveClients, &shape, 0),
            Ok(())
        );
        assert_eq!(
            check_commit(DSRequestType::RemoveUsers, &shape, 0),
            Err(OperationError::PartialUserRemoval)
        );
        shape.removed_by_value = vec![(1, "carol@b.localhost".into())];
        assert_eq!(classify_commit(&shape), Some(DSRequestType::RemoveUsers));
        assert_eq!(check_commit(DSRequestType::RemoveUsers, &shape, 0), Ok(()));
        assert_eq!(
            check_commit(DSRequestType::RemoveClients, &shape, 0),
            Err(OperationError::ClientOfAnotherUser)
        );
        assert_eq!(
            check_commit(DSRequestType::DeleteGroup, &shape, 0),
            Err(OperationError::NotEveryoneRemoved)
        );
        shape.removed_by_value.push((2, "alice".into()));
        assert_eq!(check_commit(DSRequestType::DeleteGroup, &shape, 0), Ok(()));
    }

    #[test]
    fn no_commit_changes_the_senders_credential_but_an_update() {
        let mut shape = group();
        shape.credential_changed = true;
        assert_eq!(classify_commit(&shape), Some(DSRequestType::UpdateClient));
        assert_eq!(check_commit(DSRequestType::UpdateClient, &shape, 0), Ok(()));
        shape.by_value = vec![ProposalType::Remove];
        shape.removed_by_value = vec![(1, "carol@b.localhost".into())];
        assert_eq!(
            check_commit(DSRequestType::RemoveUsers, &shape, 0),
            Err(OperationError::CredentialChanged)
        );
        assert_eq!(
            check_commit(DSRequestType::UpdateClient, &shape, 0),
            Err(OperationError::NotAnUpdate)
        );
    }

    #[test]
    fn an_external_join_is_by_a_client_of_a_member_user() {
        let mut shape = group();
        shape.external = true;
        shape.committer_leaf = None;
        shape.by_value = vec![ProposalType::ExternalInit];
        assert_eq!(classify_commit(&shape), Some(DSRequestType::ExternalJoin));
        assert_eq!(check_commit(DSRequestType::ExternalJoin, &shape, 0), Ok(()));
        shape.committer_user = "mallory@c.localhost".into();
        assert_eq!(
            check_commit(DSRequestType::ExternalJoin, &shape, 0),
            Err(OperationError::JoinerNotOfAMember)
        );
        assert_eq!(
            check_commit(DSRequestType::UpdateClient, &group(), 0),
            Ok(())
        );
        assert_eq!(
            check_commit(DSRequestType::ExternalJoin, &group(), 0),
            Err(OperationError::NotExternal)
        );
    }

    /// Our `ds_commit` carries what the draft's operations refuse (a new user's external
    /// join, adds and removes together), never what no commit may do.
    #[test]
    fn a_commit_of_ours_keeps_the_rules_no_commit_escapes() {
        let mut shape = group();
        shape.by_value = vec![ProposalType::Add, ProposalType::Remove];
        shape.removed_by_value = vec![(0, "alice".into())];
        shape.added_users = vec!["erin@c.localhost".into()];
        assert_eq!(check_commit(DSRequestType::Commit, &shape, 1), Ok(()));
        assert_eq!(
            check_commit(DSRequestType::Commit, &shape, 2),
            Err(OperationError::WelcomeCount)
        );
        let mut joiner = group();
        joiner.external = true;
        joiner.committer_leaf = None;
        joiner.committer_user = "mallory@b.localhost".into();
        joiner.by_value = vec![ProposalType::ExternalInit];
        assert_eq!(check_commit(DSRequestType::Commit, &joiner, 0), Ok(()));
        joiner.by_value.push(ProposalType::Remove);
        joiner.removed_by_value = vec![(0, "alice".into())];
        assert_eq!(
            check_commit(DSRequestType::Commit, &joiner, 0),
            Err(OperationError::ClientOfAnotherUser)
        );
        let mut renamed = group();
        renamed.path = true;
        renamed.credential_changed = true;
        renamed.committer_renamed = true;
        assert_eq!(
            check_commit(DSRequestType::Commit, &renamed, 0),
            Err(OperationError::SuccessorMismatch)
        );
    }

    #[test]
    fn an_external_join_removes_only_its_own_users_clients() {
        let mut shape = group();
        shape.external = true;
        shape.committer_leaf = None;
        shape.committer_user = "carol@b.localhost".into();
        shape.by_value = vec![ProposalType::ExternalInit, ProposalType::Remove];
        shape.removed_by_value = vec![(1, "carol@b.localhost".into())];
        assert_eq!(check_commit(DSRequestType::ExternalJoin, &shape, 0), Ok(()));
        shape.removed_by_value = vec![(0, "alice".into())];
        assert_eq!(
            check_commit(DSRequestType::ExternalJoin, &shape, 0),
            Err(OperationError::ClientOfAnotherUser)
        );
        shape.removed_by_value.clear();
        shape.by_value = vec![ProposalType::ExternalInit, ProposalType::Add];
        assert!(matches!(
            check_commit(DSRequestType::ExternalJoin, &shape, 0),
            Err(OperationError::OnlyProposals(..))
        ));
    }

    #[test]
    fn an_update_keeps_the_client_and_a_reinit_commits_only_the_reinit() {
        let mut shape = group();
        shape.credential_changed = true;
        shape.committer_renamed = true;
        assert_eq!(
            check_commit(DSRequestType::UpdateClient, &shape, 0),
            Err(OperationError::SuccessorMismatch)
        );
        let mut shape = group();
        shape.reinit_group = Some(vec![9]);
        shape.by_value = vec![ProposalType::Reinit];
        assert_eq!(
            check_commit(DSRequestType::ReInitializeGroup, &shape, 0),
            Ok(())
        );
        shape.by_value.push(ProposalType::Remove);
        shape.removed_by_value = vec![(1, "carol@b.localhost".into())];
        assert!(matches!(
            check_commit(DSRequestType::ReInitializeGroup, &shape, 0),
            Err(OperationError::OnlyProposals(..))
        ));
    }

    #[test]
    fn a_self_remove_targets_its_sender() {
        let mut shape = ProposalShape {
            proposal_type: ProposalType::Remove,
            sender_leaf: Some(1),
            removed_leaf: Some(1),
            sender: Some("carol@b.localhost".into()),
        };
        assert_eq!(check_self_remove(&shape), Ok(()));
        shape.removed_leaf = Some(0);
        assert_eq!(
            check_self_remove(&shape),
            Err(OperationError::NotASelfRemove)
        );
        shape.removed_leaf = None;
        shape.proposal_type = ProposalType::Update;
        assert_eq!(
            check_self_remove(&shape),
            Err(OperationError::NotASelfRemove)
        );
    }

    #[test]
    fn an_add_or_remove_operation_changes_someone() {
        let shape = group();
        assert_eq!(
            check_commit(DSRequestType::AddUsers, &shape, 0),
            Err(OperationError::NothingAdded(DSRequestType::AddUsers))
        );
        assert_eq!(
            check_commit(DSRequestType::RemoveUsers, &shape, 0),
            Err(OperationError::NothingRemoved(DSRequestType::RemoveUsers))
        );
    }

    #[test]
    fn only_group_changes_are_commit_operations() {
        assert_eq!(
            check_commit(DSRequestType::SendMessage, &group(), 0),
            Err(OperationError::NotAGroupOperation(
                DSRequestType::SendMessage
            ))
        );
    }
}
