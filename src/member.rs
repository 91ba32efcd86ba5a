//! An MLS client as an application's user device runs it (openmls, a basic credential,
//! plaintext handshake messages): the members of `demo` and of `bench`'s commit scenarios.
//! Not the gateway's own: the gateway never holds group secrets.

use mimi_client::Commit;
use mimi_wire::groups::JoinInfo;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls::treesync::RatchetTreeIn;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

pub(crate) const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

pub(crate) type MemberResult<T> = Result<T, String>;

pub(crate) fn fail(what: impl std::fmt::Display) -> String {
    what.to_string()
}

/// One MLS client and its group, as an application's user device runs it.
pub(crate) struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    group: Option<MlsGroup>,
}

fn capabilities() -> Capabilities {
    Capabilities::new(None, None, Some(&[]), None, Some(&[CredentialType::Basic]))
}

fn serialize(message: &MlsMessageOut) -> MemberResult<Vec<u8>> {
    message.tls_serialize_detached().map_err(fail)
}

impl Member {
    /// `handle@domain`, a `basic_with_domains` identity.
    pub(crate) fn new(handle: &str, domain: &str) -> MemberResult<Member> {
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).map_err(fail)?;
        let name = format!("{handle}@{domain}");
        Ok(Member {
            credential: CredentialWithKey {
                credential: BasicCredential::new(name.into_bytes()).into(),
                signature_key: signer.public().into(),
            },
            provider: OpenMlsRustCrypto::default(),
            signer,
            group: None,
        })
    }

    pub(crate) fn key_package(&self) -> MemberResult<Vec<u8>> {
        let bundle = KeyPackage::builder()
            .key_package_lifetime(Lifetime::new(86_400))
            .leaf_node_capabilities(capabilities())
            .build(SUITE, &self.provider, &self.signer, self.credential.clone())
            .map_err(fail)?;
        serialize(&MlsMessageOut::from(bundle.key_package().clone()))
    }

    pub(crate) fn group_info(&self) -> MemberResult<Vec<u8>> {
        let group = self.group.as_ref().ok_or_else(|| fail("not in a group"))?;
        let info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .map_err(fail)?;
        serialize(&info)
    }

    pub(crate) fn tree(&self) -> MemberResult<Vec<u8>> {
        let group = self.group.as_ref().ok_or_else(|| fail("not in a group"))?;
        RatchetTreeIn::from(group.export_ratchet_tree())
            .tls_serialize_detached()
            .map_err(fail)
    }

    pub(crate) fn create_group(&mut self) -> MemberResult<(Vec<u8>, Vec<u8>)> {
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(SUITE)
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(false)
            .capabilities(capabilities())
            .build();
        self.group = Some(
            MlsGroup::new(
                &self.provider,
                &self.signer,
                &config,
                self.credential.clone(),
            )
            .map_err(fail)?,
        );
        Ok((self.group_info()?, self.tree()?))
    }

    /// A commit adding `key_package`, merged: (commit, Welcome, GroupInfo of the new epoch).
    pub(crate) fn add(&mut self, key_package: &[u8]) -> MemberResult<Commit> {
        self.add_all(&[key_package.to_vec()])
    }

    /// A commit adding every one of `key_packages`, merged.
    pub(crate) fn add_all(&mut self, key_packages: &[Vec<u8>]) -> MemberResult<Commit> {
        let key_packages = key_packages
            .iter()
            .map(|bytes| {
                let MlsMessageBodyIn::KeyPackage(key_package) =
                    MlsMessageIn::tls_deserialize_exact(bytes)
                        .map_err(fail)?
                        .extract()
                else {
                    return Err(fail("not a key package"));
                };
                key_package
                    .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .map_err(fail)
            })
            .collect::<MemberResult<Vec<_>>>()?;
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        let (commit, welcome, _) = group
            .add_members(provider, signer, &key_packages)
            .map_err(fail)?;
        group.merge_pending_commit(provider).map_err(fail)?;
        Ok(Commit {
            commit: serialize(&commit)?,
            welcome: Some(serialize(&welcome)?),
            group_info: Some(self.group_info()?),
        })
    }

    /// A self-update commit, merged, and the GroupInfo of the epoch it makes.
    pub(crate) fn self_update(&mut self) -> MemberResult<(Vec<u8>, Vec<u8>)> {
        let commit = self.update_pending()?.commit;
        let group_info = self
            .confirm()?
            .ok_or_else(|| fail("no GroupInfo after the commit"))?;
        Ok((commit, group_info))
    }

    /// The group's id.
    pub(crate) fn group_id(&self) -> MemberResult<Vec<u8>> {
        let group = self.group.as_ref().ok_or_else(|| fail("not in a group"))?;
        Ok(group.group_id().as_slice().to_vec())
    }

    /// A pending self-update commit (merged by `confirm`, dropped by `discard`).
    pub(crate) fn update_pending(&mut self) -> MemberResult<Commit> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        let bundle = group
            .self_update(provider, signer, LeafNodeParameters::default())
            .map_err(fail)?;
        let (commit, _, _) = bundle.into_contents();
        let commit = serialize(&commit)?;
        // The GroupInfo of the epoch the commit makes is exported once it is merged
        // (`confirm`).
        Ok(Commit {
            commit,
            group_info: None,
            welcome: None,
        })
    }

    pub(crate) fn confirm(&mut self) -> MemberResult<Option<Vec<u8>>> {
        let provider = &self.provider;
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        group.merge_pending_commit(provider).map_err(fail)?;
        Ok(Some(self.group_info()?))
    }

    pub(crate) fn discard(&mut self) -> MemberResult<()> {
        let provider = &self.provider;
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        group.clear_pending_commit(provider.storage()).map_err(fail)
    }

    pub(crate) fn remove(&mut self, leaf: u32) -> MemberResult<Commit> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        let (commit, _, _) = group
            .remove_members(provider, signer, &[LeafNodeIndex::new(leaf)])
            .map_err(fail)?;
        group.merge_pending_commit(provider).map_err(fail)?;
        Ok(Commit {
            commit: serialize(&commit)?,
            welcome: None,
            group_info: Some(self.group_info()?),
        })
    }

    /// A self-update proposal, to be committed by reference.
    pub(crate) fn propose_update(&mut self) -> MemberResult<Vec<u8>> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        let (proposal, _) = group
            .propose_self_update(provider, signer, LeafNodeParameters::default())
            .map_err(fail)?;
        serialize(&proposal)
    }

    /// A commit of the pending proposals (by reference), merged.
    pub(crate) fn commit_pending(&mut self) -> MemberResult<Commit> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        let (commit, _, _) = group
            .commit_to_pending_proposals(provider, signer)
            .map_err(fail)?;
        group.merge_pending_commit(provider).map_err(fail)?;
        Ok(Commit {
            commit: serialize(&commit)?,
            welcome: None,
            group_info: Some(self.group_info()?),
        })
    }

    /// Joins by external commit from the GroupInfo and tree a gateway served.
    pub(crate) fn join_external(&mut self, group_info: &[u8], tree: &[u8]) -> MemberResult<Commit> {
        let MlsMessageBodyIn::GroupInfo(group_info) =
            MlsMessageIn::tls_deserialize_exact(group_info)
                .map_err(fail)?
                .extract()
        else {
            return Err(fail("not a GroupInfo"));
        };
        let tree = RatchetTreeIn::tls_deserialize_exact(tree).map_err(fail)?;
        let provider = &self.provider;
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .build();
        let (group, bundle) = MlsGroup::external_commit_builder()
            .with_ratchet_tree(tree)
            .with_config(config)
            .build_group(provider, group_info, self.credential.clone())
            .map_err(fail)?
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(capabilities())
                    .build(),
            )
            .load_psks(provider.storage())
            .map_err(fail)?
            .build(provider.rand(), provider.crypto(), &self.signer, |_| true)
            .map_err(fail)?
            .finalize(provider)
            .map_err(fail)?;
        self.group = Some(group);
        let (commit, _, _) = bundle.into_contents();
        Ok(Commit {
            commit: serialize(&commit)?,
            welcome: None,
            group_info: Some(self.group_info()?),
        })
    }

    pub(crate) fn join(&mut self, join: &JoinInfo) -> MemberResult<()> {
        let MlsMessageBodyIn::Welcome(welcome) =
            MlsMessageIn::tls_deserialize_exact(join.welcome.as_slice())
                .map_err(fail)?
                .extract()
        else {
            return Err(fail("not a Welcome"));
        };
        let tree = join
            .ratchet_tree
            .as_ref()
            .ok_or_else(|| fail("no ratchet tree served"))?;
        let tree = RatchetTreeIn::tls_deserialize_exact(tree.as_slice()).map_err(fail)?;
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .build();
        let group = StagedWelcome::new_from_welcome(&self.provider, &config, welcome, Some(tree))
            .map_err(fail)?
            .into_group(&self.provider)
            .map_err(fail)?;
        self.group = Some(group);
        Ok(())
    }

    /// Processes a handshake message the gateway served (a commit is merged).
    pub(crate) fn apply(&mut self, packet: &[u8]) -> MemberResult<()> {
        let message = MlsMessageIn::tls_deserialize_exact(packet)
            .map_err(fail)?
            .try_into_protocol_message()
            .map_err(fail)?;
        let provider = &self.provider;
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        // Its own proposal a member holds already.
        if let ProtocolMessage::PublicMessage(public) = &message
            && matches!(public.sender(), Sender::Member(leaf) if *leaf == group.own_leaf_index())
        {
            return Ok(());
        }
        let processed = group.process_message(provider, message).map_err(fail)?;
        match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                group.merge_staged_commit(provider, *staged).map_err(fail)
            }
            ProcessedMessageContent::ProposalMessage(proposal) => group
                .store_pending_proposal(provider.storage(), *proposal)
                .map_err(fail),
            _ => Err(fail("not a handshake message")),
        }
    }

    pub(crate) fn send(&mut self, text: &str) -> MemberResult<Vec<u8>> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        serialize(
            &group
                .create_message(provider, signer, text.as_bytes())
                .map_err(fail)?,
        )
    }

    pub(crate) fn read(&mut self, packet: &[u8]) -> MemberResult<String> {
        let message = MlsMessageIn::tls_deserialize_exact(packet)
            .map_err(fail)?
            .try_into_protocol_message()
            .map_err(fail)?;
        let provider = &self.provider;
        let group = self.group.as_mut().ok_or_else(|| fail("not in a group"))?;
        match group
            .process_message(provider, message)
            .map_err(fail)?
            .into_content()
        {
            ProcessedMessageContent::ApplicationMessage(message) => {
                String::from_utf8(message.into_bytes()).map_err(fail)
            }
            _ => Err(fail("not an application message")),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.group
            .as_ref()
            .map_or(0, |group| group.epoch().as_u64())
    }

    pub(crate) fn secret(&self) -> MemberResult<Vec<u8>> {
        let group = self.group.as_ref().ok_or_else(|| fail("not in a group"))?;
        group
            .export_secret(self.provider.crypto(), "demo", &[], 32)
            .map_err(fail)
    }
}
