//! The `commit-N` scenarios of `mimi-gateway bench` (issue 17): groups of N members on the
//! gateway (architecture draft, "Commits"), each committed to by its creator with
//! self-updates made and signed before the timed phase; one chain of uploads per group, in
//! epoch order (a group's commits are serial), the groups side by side. The floor is
//! openmls' own cost for the same commits, `PublicGroup::process_message` + `merge_commit`
//! in this process (what any server holding the group's public state pays per commit).

use std::time::{Duration, Instant};

use http::Method;
use mimi_client::Client;
use mimi_wire::groups::UploadCommitRequest;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, ProposalStore, PublicGroup,
};
use openmls::treesync::RatchetTreeIn;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;
use tls_codec::VLBytes;

use super::load::{Prepared, Signer};
use crate::member::{Member, fail};

/// The group sizes the scenarios come in: `commit-2`, `commit-100`, `commit-1000`.
pub const SIZES: [usize; 3] = [2, 100, 1000];

/// Groups committed to side by side in one run: as many as requests in flight, fewer for
/// large groups (each costs its members' key packages and one large add to prepare).
pub fn groups(members: usize, in_flight: usize) -> usize {
    let most = match members {
        0..=2 => 64,
        3..=100 => 16,
        _ => 4,
    };
    in_flight.clamp(1, most)
}

/// Commits of one run: `commits` for 2 members, fewer for larger groups (a commit to 1000
/// members costs its maker and openmls milliseconds each to prepare; a hundred of them still
/// keep the CPU times' 10 ms ticks within about 1%).
pub fn commits(members: usize, commits: usize) -> usize {
    let share = match members {
        0..=2 => 1,
        3..=100 => 4,
        _ => 10,
    };
    (commits / share).max(1)
}

/// One run's commits: per group its signed uploads in epoch order, and what openmls took for
/// the same commits.
pub struct Chains {
    pub chains: Vec<Vec<Prepared>>,
    /// `process_message` + `merge_commit` per commit, averaged.
    pub openmls_per_commit: Duration,
}

/// `groups` groups of `members` created on the gateway through `client` (all members added
/// in one commit), and `total` self-update commits among them, made, checked by openmls and
/// signed with `signer` before the timed phase. `tag` keeps runs' member names apart.
pub async fn prepare(
    client: &Client,
    signer: &Signer,
    tag: &str,
    members: usize,
    groups: usize,
    total: usize,
) -> Result<Chains, String> {
    let per_group = total.div_ceil(groups.max(1));
    let mut chains = Vec::with_capacity(groups);
    let (mut openmls, mut made) = (Duration::ZERO, 0u32);
    for index in 0..groups {
        let mut creator = Member::new(&format!("{tag}-{index}-0"), "localhost")?;
        let (group_info, tree) = creator.create_group()?;
        client
            .create_group(&group_info, &tree)
            .await
            .map_err(fail)?;
        let group_id = creator.group_id()?;
        if members > 1 {
            let packages = (1..members)
                .map(|member| {
                    Member::new(&format!("{tag}-{index}-{member}"), "localhost")?.key_package()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let added = creator.add_all(&packages)?;
            client
                .upload_commit(&group_id, &added)
                .await
                .map_err(fail)?;
        }
        let provider = OpenMlsRustCrypto::default();
        let mut public = public_group(&provider, &creator)?;
        let path = format!(
            "/apps/{}/groups/{}/epochs",
            signer.app,
            mimi_wire::groups::group_id_to_path(&group_id)
        );
        let mut chain = Vec::with_capacity(per_group);
        for _ in 0..per_group {
            let (commit, group_info) = creator.self_update()?;
            openmls += processed_in(&provider, &mut public, &commit)?;
            made += 1;
            let body = mimi_wire::encode(&UploadCommitRequest {
                version: 1,
                commit_packet: VLBytes::new(commit),
                group_info: Some(VLBytes::new(group_info)),
                welcome_packet: None,
            })
            .map_err(fail)?;
            chain.push(signer.sign(Method::PUT, &path, body)?);
        }
        chains.push(chain);
    }
    Ok(Chains {
        chains,
        openmls_per_commit: openmls / made.max(1),
    })
}

/// openmls' public view of `member`'s group at its current epoch.
fn public_group(provider: &OpenMlsRustCrypto, member: &Member) -> Result<PublicGroup, String> {
    let MlsMessageBodyIn::GroupInfo(verifiable) =
        MlsMessageIn::tls_deserialize_exact(member.group_info()?.as_slice())
            .map_err(fail)?
            .extract()
    else {
        return Err(fail("not a GroupInfo"));
    };
    let tree = RatchetTreeIn::tls_deserialize_exact(member.tree()?.as_slice()).map_err(fail)?;
    let (group, _) = PublicGroup::from_external(
        provider.crypto(),
        provider.storage(),
        tree,
        verifiable,
        ProposalStore::new(),
    )
    .map_err(fail)?;
    Ok(group)
}

/// How long openmls takes to process and merge `commit` on `group`.
fn processed_in(
    provider: &OpenMlsRustCrypto,
    group: &mut PublicGroup,
    commit: &[u8],
) -> Result<Duration, String> {
    let started = Instant::now();
    let message = MlsMessageIn::tls_deserialize_exact(commit)
        .map_err(fail)?
        .try_into_protocol_message()
        .map_err(fail)?;
    let processed = group
        .process_message(provider.crypto(), message)
        .map_err(fail)?;
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        return Err(fail("not a commit"));
    };
    group
        .merge_commit(provider.storage(), *staged)
        .map_err(fail)?;
    Ok(started.elapsed())
}
