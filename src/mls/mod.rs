//! MLS as the gateway sees it (openmls 0.9, as a server: `../shared/OPENMLS.md`): the crypto
//! provider, credentials turned into the identity providers' view, and key package
//! validation (architecture draft, "Key Package Validation").

pub mod group;
pub mod group_info;
pub mod group_state;
pub mod key_package;
pub mod operations;

use openmls::prelude::{Credential as MlsCredential, CredentialType};
use openmls_rust_crypto::OpenMlsRustCrypto;
use tls_codec::{DeserializeBytes, VLBytes};

use crate::identity::Credential;

/// The crypto provider for validation. Stateless for what the gateway does with it.
pub fn crypto() -> OpenMlsRustCrypto {
    OpenMlsRustCrypto::default()
}

/// An MLS credential as the identity providers see it. An X.509 credential carries
/// `Certificate certificates<V>` (RFC 9420, section 5.3); one that does not decode exactly
/// becomes an empty chain, which the X.509 provider refuses.
pub fn credential(credential: &MlsCredential) -> Credential {
    match credential.credential_type() {
        CredentialType::Basic => Credential::Basic {
            identity: credential.serialized_content().to_vec(),
        },
        CredentialType::X509 => {
            let chain =
                Vec::<VLBytes>::tls_deserialize_exact_bytes(credential.serialized_content())
                    .map(|certificates| certificates.into_iter().map(Vec::from).collect())
                    .unwrap_or_default();
            Credential::X509 { chain }
        }
        other => Credential::Other {
            credential_type: u16::from(other),
        },
    }
}
