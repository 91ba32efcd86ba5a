//! MLS as the gateway sees it (openmls 0.9, as a server: `../shared/OPENMLS.md`): the crypto
//! provider (and its deferring form, `provider`), credentials turned into the identity providers' view, and key package
//! validation (architecture draft, "Key Package Validation").

pub mod grease;
pub mod group;
pub mod group_info;
pub mod group_state;
pub mod key_package;
pub mod operations;
pub mod provider;
pub mod records;

use mimi_wire::codec::read_vl_entry;
use openmls::prelude::{Credential as MlsCredential, CredentialType};
use openmls_rust_crypto::OpenMlsRustCrypto;

use crate::identity::{Credential, IdentityError};

/// The crypto provider for validation. Stateless for what the gateway does with it.
pub fn crypto() -> OpenMlsRustCrypto {
    OpenMlsRustCrypto::default()
}

/// An MLS credential as the identity providers see it. An X.509 credential carries
/// `Certificate certificates<V>` with `struct { opaque cert_data<V>; } Certificate` (RFC 9420,
/// section 5.3): openmls' `serialized_content()` is the inside of that vector (openmls reads
/// its length prefix as the credential's own `VLBytes`), so it is read as a run of
/// `cert_data<V>` entries until the bytes end. Content that is not such a run is refused
/// (`MalformedCredential`), never taken for an empty chain.
pub fn credential(credential: &MlsCredential) -> Result<Credential, IdentityError> {
    Ok(match credential.credential_type() {
        CredentialType::Basic => Credential::Basic {
            identity: credential.serialized_content().to_vec(),
        },
        CredentialType::X509 => Credential::X509 {
            chain: certificates(credential.serialized_content())?,
        },
        other => Credential::Other {
            credential_type: u16::from(other),
        },
    })
}

/// The DER certificates held inside `Certificate certificates<V>`, the leaf first: a run of
/// `opaque cert_data<V>` entries, at least one, none empty.
pub fn certificates(mut content: &[u8]) -> Result<Vec<Vec<u8>>, IdentityError> {
    let malformed = |reason: &str| IdentityError::MalformedCredential(reason.to_owned());
    let mut chain = Vec::new();
    while !content.is_empty() {
        let (certificate, rest) = read_vl_entry(content)
            .ok_or_else(|| malformed("a certificate entry is truncated or its length invalid"))?;
        if certificate.is_empty() {
            return Err(malformed("a certificate entry is empty"));
        }
        chain.push(certificate.to_vec());
        content = rest;
    }
    if chain.is_empty() {
        return Err(malformed("the certificate chain is empty"));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};

    /// RFC 9420, section 5.3, written out by hand: `uint16 credential_type = x509(2)`, then
    /// `Certificate certificates<V>` holding two `opaque cert_data<V>` entries, `01 02` and
    /// `03`: `00 02 | 05 | 02 01 02 | 01 03`.
    const RFC_X509_CREDENTIAL: [u8; 8] = [0x00, 0x02, 0x05, 0x02, 0x01, 0x02, 0x01, 0x03];

    #[test]
    fn an_x509_credential_as_rfc_9420_encodes_it_is_its_chain() {
        let decoded = MlsCredential::tls_deserialize_exact(RFC_X509_CREDENTIAL).unwrap();
        assert_eq!(
            credential(&decoded).unwrap(),
            Credential::X509 {
                chain: vec![vec![1, 2], vec![3]]
            }
        );
        // And openmls writes it back byte for byte.
        assert_eq!(
            decoded.tls_serialize_detached().unwrap(),
            RFC_X509_CREDENTIAL
        );
    }

    #[test]
    fn an_x509_credential_that_does_not_decode_is_refused_not_emptied() {
        for content in [
            &[][..],                                // no certificate at all
            &[0x00][..],                            // an empty certificate
            &[0x03, 0x01][..],                      // declares 3 bytes, has 1
            &[0x40, 0x01, 0xaa][..],                // a length not in its shortest form
            &[0xc0, 0, 0, 0, 0, 0, 0, 1, 0xaa][..], // the 8-byte form MLS does not allow
            &[0x02, 0x01][..], // issue 14's `0101` cut short (tls_codec would assert)
        ] {
            let credential_in =
                MlsCredential::new(openmls::prelude::CredentialType::X509, content.to_vec());
            assert!(
                matches!(
                    credential(&credential_in),
                    Err(IdentityError::MalformedCredential(_))
                ),
                "{content:02x?}"
            );
        }
    }
}
