//! MLS clients built on an independent implementation, AWS mls-rs 0.57 (with the RustCrypto
//! provider), for the interop tests: nothing here shares code with openmls or the gateway, so
//! an encoding both got wrong together cannot pass.
//!
//! What mls-rs' defaults need for a MIMI gateway (`../shared/OPENMLS.md`): handshakes as
//! PublicMessage (its default), the ratchet tree out of band (`ratchet_tree_extension` off), a
//! GroupInfo with every commit (`allow_external_commit`, else a commit's output has none), key
//! packages valid for less than the gateway's maximum (its default is 365 days), no GREASE
//! (the `grease` feature, off by default), and an identity provider whose supported types
//! include X.509 and Basic (they become the leaf's capabilities, and openmls wants every
//! member to support every credential type in the group).

use std::time::Duration;

use mimi_wire::groups::{GroupInfoResponse, JoinInfo};
use mls_rs::client_builder::{
    BaseConfig, PaddingMode, WithCryptoProvider, WithIdentityProvider, WithMlsRules,
};
use mls_rs::error::IntoAnyError;
use mls_rs::group::{CommitEffect, ExportedTree, ReceivedMessage};
use mls_rs::identity::basic::BasicCredential;
use mls_rs::identity::x509::{CertificateChain, DerCertificate};
use mls_rs::identity::{Credential, CredentialType, SigningIdentity};
use mls_rs::mls_rules::{CommitOptions, DefaultMlsRules, EncryptionOptions};
use mls_rs::time::MlsTime;
use mls_rs::{
    CipherSuite, CipherSuiteProvider, Client, CryptoProvider, ExtensionList, Group,
    IdentityProvider, MlsMessage,
};
use mls_rs_core::crypto::{SignaturePublicKey, SignatureSecretKey};
use mls_rs_core::identity::MemberValidationContext;
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

/// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (0x0001).
const SUITE: CipherSuite = CipherSuite::CURVE25519_AES128;

/// The gateway validates credentials; the clients accept every Basic and X.509 one.
#[derive(Clone, Debug, Default)]
pub struct AcceptAll;

#[derive(Debug)]
pub struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unsupported credential")
    }
}

impl std::error::Error for Unsupported {}

impl IntoAnyError for Unsupported {
    fn into_dyn_error(self) -> Result<Box<dyn std::error::Error + Send + Sync>, Self> {
        Ok(Box::new(self))
    }
}

fn identity_of(identity: &SigningIdentity) -> Result<Vec<u8>, Unsupported> {
    match &identity.credential {
        Credential::Basic(basic) => Ok(basic.identifier.clone()),
        Credential::X509(chain) => chain
            .leaf()
            .map(|certificate| certificate.as_ref().to_vec())
            .ok_or(Unsupported),
        _ => Err(Unsupported),
    }
}

impl IdentityProvider for AcceptAll {
    type Error = Unsupported;

    fn validate_member(
        &self,
        _identity: &SigningIdentity,
        _timestamp: Option<MlsTime>,
        _context: MemberValidationContext<'_>,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn validate_external_sender(
        &self,
        _identity: &SigningIdentity,
        _timestamp: Option<MlsTime>,
        _extensions: Option<&ExtensionList>,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn identity(
        &self,
        identity: &SigningIdentity,
        _extensions: &ExtensionList,
    ) -> Result<Vec<u8>, Self::Error> {
        identity_of(identity)
    }

    fn valid_successor(
        &self,
        predecessor: &SigningIdentity,
        successor: &SigningIdentity,
        _extensions: &ExtensionList,
    ) -> Result<bool, Self::Error> {
        Ok(identity_of(predecessor)? == identity_of(successor)?)
    }

    fn supported_types(&self) -> Vec<CredentialType> {
        vec![CredentialType::BASIC, CredentialType::X509]
    }
}

type RsConfig = WithMlsRules<
    DefaultMlsRules,
    WithIdentityProvider<AcceptAll, WithCryptoProvider<RustCryptoProvider, BaseConfig>>,
>;

/// One member, an mls-rs client and, once in, its group.
pub struct RsMember {
    client: Client<RsConfig>,
    group: Option<Group<RsConfig>>,
}

fn rules() -> DefaultMlsRules {
    DefaultMlsRules::new()
        .with_commit_options(
            CommitOptions::new()
                .with_ratchet_tree_extension(false)
                .with_allow_external_commit(true),
        )
        .with_encryption_options(EncryptionOptions::new(false, PaddingMode::None))
}

impl RsMember {
    /// A client with a Basic credential naming `identity` (for `basic_with_domains`,
    /// `handle@domain`).
    pub fn basic(identity: &str) -> RsMember {
        let provider = RustCryptoProvider::default();
        let (secret, public) = provider
            .cipher_suite_provider(SUITE)
            .unwrap()
            .signature_key_generate()
            .unwrap();
        let credential = BasicCredential::new(identity.as_bytes().to_vec()).into_credential();
        RsMember::with(credential, secret, public)
    }

    /// A client with an X.509 credential: `chain` (DER, leaf first) certifying the Ed25519
    /// key whose seed is `seed`.
    pub fn x509(chain: &[Vec<u8>], seed: &[u8; 32]) -> RsMember {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let secret = SignatureSecretKey::new(key.to_keypair_bytes().to_vec());
        let public = SignaturePublicKey::new(key.verifying_key().to_bytes().to_vec());
        let chain: CertificateChain = chain.iter().cloned().map(DerCertificate::new).collect();
        RsMember::with(chain.into_credential(), secret, public)
    }

    fn with(
        credential: Credential,
        secret: SignatureSecretKey,
        public: SignaturePublicKey,
    ) -> RsMember {
        let client = Client::builder()
            .crypto_provider(RustCryptoProvider::default())
            .identity_provider(AcceptAll)
            .mls_rules(rules())
            // mls-rs' default, 365 days, is over the gateway's maximum.
            .key_package_lifetime(Duration::from_secs(30 * 86_400))
            .signing_identity(SigningIdentity::new(credential, public), secret, SUITE)
            .build();
        RsMember {
            client,
            group: None,
        }
    }

    fn group(&mut self) -> &mut Group<RsConfig> {
        self.group.as_mut().expect("in a group")
    }

    /// A key package as an MLSMessage.
    pub fn key_package(&self) -> Vec<u8> {
        self.client
            .generate_key_package_message(ExtensionList::default(), ExtensionList::default(), None)
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    /// The credential as it travels (RFC 9420, section 5.3).
    pub fn credential_bytes(&self) -> Vec<u8> {
        use mls_rs::mls_rs_codec::MlsEncode;
        let (identity, _) = self.client.signing_identity().unwrap();
        identity.credential.mls_encode_to_vec().unwrap()
    }

    /// Joins from a welcome and tree the gateway served.
    pub fn join(&mut self, join_info: &JoinInfo) {
        let welcome = MlsMessage::from_bytes(join_info.welcome.as_slice()).unwrap();
        let tree =
            ExportedTree::from_bytes(join_info.ratchet_tree.as_ref().unwrap().as_slice()).unwrap();
        let (group, _) = self.client.join_group(Some(tree), &welcome, None).unwrap();
        self.group = Some(group);
    }

    pub fn leaf(&self) -> u32 {
        self.group.as_ref().unwrap().current_member_index()
    }

    /// The secret every member of the epoch derives alike (the openmls members' label).
    pub fn secret(&self) -> Vec<u8> {
        self.group
            .as_ref()
            .unwrap()
            .export_secret(b"mimi test", b"", 32)
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    /// Processes a proposal or commit the gateway served (its own proposals included);
    /// answers whether a commit removed this member.
    pub fn apply(&mut self, packet: &[u8]) -> bool {
        let message = MlsMessage::from_bytes(packet).unwrap();
        match self.group().process_incoming_message(message).unwrap() {
            ReceivedMessage::Commit(description) => {
                matches!(description.effect, CommitEffect::Removed { .. })
            }
            ReceivedMessage::Proposal(_) => false,
            other => panic!("not a proposal or commit: {other:?}"),
        }
    }

    /// (commit, group info) of a commit kept pending until [`Self::confirm`] or
    /// [`Self::discard`], as a client does until the gateway answers.
    fn pending(&mut self, output: mls_rs::group::CommitOutput) -> (Vec<u8>, Vec<u8>) {
        let group_info = output
            .external_commit_group_info
            .expect("allow_external_commit gives every commit a GroupInfo");
        (
            output.commit_message.to_bytes().unwrap(),
            group_info.to_bytes().unwrap(),
        )
    }

    /// A self-update commit, pending.
    pub fn update(&mut self) -> (Vec<u8>, Vec<u8>) {
        let output = self.group().commit(Vec::new()).unwrap();
        self.pending(output)
    }

    /// A commit removing the member at `leaf` by value, pending.
    pub fn remove(&mut self, leaf: u32) -> (Vec<u8>, Vec<u8>) {
        let output = self
            .group()
            .commit_builder()
            .remove_member(leaf)
            .unwrap()
            .build()
            .unwrap();
        self.pending(output)
    }

    /// The gateway accepted the pending commit.
    pub fn confirm(&mut self) {
        self.group().apply_pending_commit().unwrap();
    }

    /// The gateway refused the pending commit.
    pub fn discard(&mut self) {
        self.group().clear_pending_commit();
    }

    /// An update proposal (a PublicMessage), for another member to commit by reference.
    pub fn propose_update(&mut self) -> Vec<u8> {
        self.group()
            .propose_update(Vec::new())
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    /// Joins by external commit from the GroupInfo and tree a gateway served: (commit, the
    /// new epoch's GroupInfo).
    pub fn join_external(&mut self, response: &GroupInfoResponse) -> (Vec<u8>, Vec<u8>) {
        let entry = &response.group_infos[0];
        let tree = ExportedTree::from_bytes(entry.ratchet_tree.as_ref().unwrap().as_slice())
            .unwrap()
            .into_owned();
        let group_info = MlsMessage::from_bytes(entry.group_info.as_slice()).unwrap();
        let (group, commit) = self
            .client
            .external_commit_builder()
            .unwrap()
            .with_tree_data(tree)
            .build(group_info)
            .unwrap();
        let info = group
            .group_info_message_allowing_ext_commit(false)
            .unwrap()
            .to_bytes()
            .unwrap();
        self.group = Some(group);
        (commit.to_bytes().unwrap(), info)
    }

    /// An application message (a PrivateMessage) carrying `text`.
    pub fn send_message(&mut self, text: &[u8]) -> Vec<u8> {
        self.group()
            .encrypt_application_message(text, Vec::new())
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    /// Decrypts another member's application message.
    pub fn read_message(&mut self, packet: &[u8]) -> Vec<u8> {
        let message = MlsMessage::from_bytes(packet).unwrap();
        match self.group().process_incoming_message(message).unwrap() {
            ReceivedMessage::ApplicationMessage(message) => message.data().to_vec(),
            other => panic!("not an application message: {other:?}"),
        }
    }

    /// Whether this member can process its own application message (mls-rs cannot: the
    /// reason the gateway skips the sender's queue).
    pub fn reads_own_message(&mut self, packet: &[u8]) -> bool {
        let message = MlsMessage::from_bytes(packet).unwrap();
        self.group().process_incoming_message(message).is_ok()
    }
}
