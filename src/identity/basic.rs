//! The Basic identity provider (architecture draft, "Basic Identity Provider"): basic
//! credentials only, always valid, the handle is the identity itself. No accounts, no
//! domains. The identity must be a valid handle (UTF-8, 1-255 bytes, no control characters)
//! so that it can be registered.

use mimi_wire::codec::WireBool;
use mimi_wire::registry::{IdentityConfiguration, IdentityProviderType, check_handle};
use tls_codec::VLBytes;

use super::{
    ApplicationContext, ClientIdentity, Credential, CredentialType, Identity, IdentityError,
    IdentityProvider,
};

#[derive(Debug, Default)]
pub struct BasicProvider;

impl IdentityProvider for BasicProvider {
    fn configuration(&self) -> IdentityConfiguration {
        IdentityConfiguration {
            identity_provider_type: IdentityProviderType::Basic,
            supports_accounts: WireBool(false),
            supports_domains: WireBool(false),
            parameters: VLBytes::new(Vec::new()),
        }
    }

    fn supported_credentials(&self) -> &'static [CredentialType] {
        &[CredentialType::Basic]
    }

    fn describe(&self, identity: &Identity<'_>) -> Result<ClientIdentity, IdentityError> {
        super::require_supported(self, identity.credential)?;
        let Credential::Basic { identity: bytes } = identity.credential else {
            return Err(IdentityError::UnsupportedCredential(
                identity.credential.credential_type().code_point(),
            ));
        };
        let handle = String::from_utf8(bytes.clone())
            .map_err(|_| IdentityError::InvalidHandle("identity is not UTF-8".into()))?;
        check_handle(&handle).map_err(|error| IdentityError::InvalidHandle(error.to_string()))?;
        Ok(ClientIdentity {
            handle,
            account: None,
            domain: None,
        })
    }

    fn validate(
        &self,
        identity: &Identity<'_>,
        _context: &ApplicationContext,
    ) -> Result<ClientIdentity, IdentityError> {
        self.describe(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(identity: &[u8]) -> Credential {
        Credential::Basic {
            identity: identity.to_vec(),
        }
    }

    #[test]
    fn handle_is_the_identity_and_always_valid() {
        let credential = basic(b"alice@phone");
        let identity = Identity {
            signature_key: b"k",
            credential: &credential,
        };
        let named = BasicProvider
            .validate(&identity, &ApplicationContext { msg_timestamp: 0 })
            .unwrap();
        assert_eq!(
            named,
            ClientIdentity {
                handle: "alice@phone".into(),
                account: None,
                domain: None
            }
        );
    }

    #[test]
    fn only_basic_credentials() {
        let credential = Credential::X509 { chain: vec![] };
        let identity = Identity {
            signature_key: b"k",
            credential: &credential,
        };
        assert_eq!(
            BasicProvider.describe(&identity),
            Err(IdentityError::UnsupportedCredential(2))
        );
    }

    #[test]
    fn successor_has_the_same_identity() {
        let (a, b) = (basic(b"alice"), basic(b"bob"));
        let alice = Identity {
            signature_key: b"k1",
            credential: &a,
        };
        let alice_again = Identity {
            signature_key: b"k2",
            credential: &a,
        };
        let bob = Identity {
            signature_key: b"k1",
            credential: &b,
        };
        assert!(BasicProvider.valid_successor(&alice, &alice_again).unwrap());
        assert!(!BasicProvider.valid_successor(&alice, &bob).unwrap());
    }
}
