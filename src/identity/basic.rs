//! The Basic identity provider (architecture draft, "Basic Identity Provider"): basic
//! credentials only, always valid, the handle is the identity itself. No accounts, no
//! domains. The identity must be a valid handle (UTF-8, 1-255 bytes, no control characters)
//! so that it can be registered.
//!
//! With domains (`basic_with_domains`, ours: `docs/decisions.md`), the identity is
//! `handle@domain` with exactly one `@`: the handle before it must be a valid handle, the
//! domain after it a DNS name, the provider's who issued the client. That is the
//! architecture draft's example flow (Alice at A adds Carol at B) without an X.509 PKI. As
//! with the plain provider, credentials are always valid: a gateway trusts its peers to name
//! only their own clients, and the domain check of key packages and group members holds them
//! to it.

use mimi_wire::codec::WireBool;
use mimi_wire::registry::{IdentityConfiguration, IdentityProviderType, check_handle};
use tls_codec::VLBytes;

use super::{
    ApplicationContext, ClientIdentity, Credential, CredentialType, Identity, IdentityError,
    IdentityProvider,
};

#[derive(Debug, Default)]
pub struct BasicProvider {
    /// Identities are `handle@domain`.
    pub domains: bool,
}

impl BasicProvider {
    pub fn with_domains() -> BasicProvider {
        BasicProvider { domains: true }
    }
}

impl IdentityProvider for BasicProvider {
    fn configuration(&self) -> IdentityConfiguration {
        IdentityConfiguration {
            identity_provider_type: if self.domains {
                IdentityProviderType::BasicWithDomains
            } else {
                IdentityProviderType::Basic
            },
            supports_accounts: WireBool(false),
            supports_domains: WireBool(self.domains),
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
        let text = std::str::from_utf8(bytes)
            .map_err(|_| IdentityError::InvalidHandle("identity is not UTF-8".into()))?;
        let (handle, domain) = if self.domains {
            // A member of another domain is named `handle@domain` among a group's members,
            // so a handle of a provider with domains never holds an `@` itself.
            let (handle, domain) = text
                .split_once('@')
                .filter(|(_, domain)| !domain.contains('@'))
                .ok_or_else(|| {
                    IdentityError::InvalidHandle("identity is not handle@domain".into())
                })?;
            // The discovery document's rule for names; IP literals are not names.
            if !mimi_well_known::is_dns_name(domain) {
                return Err(IdentityError::InvalidHandle(
                    "the domain of handle@domain is not a DNS name".into(),
                ));
            }
            (handle, Some(domain.to_ascii_lowercase()))
        } else {
            (text, None)
        };
        check_handle(handle).map_err(|error| IdentityError::InvalidHandle(error.to_string()))?;
        Ok(ClientIdentity {
            handle: handle.to_owned(),
            account: None,
            domain,
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
        let named = BasicProvider::default()
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
            BasicProvider::default().describe(&identity),
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
        assert!(
            BasicProvider::default()
                .valid_successor(&alice, &alice_again)
                .unwrap()
        );
        assert!(
            !BasicProvider::default()
                .valid_successor(&alice, &bob)
                .unwrap()
        );
    }

    #[test]
    fn with_domains_the_identity_is_handle_at_domain() {
        let provider = BasicProvider::with_domains();
        let named = |identity: &[u8]| {
            let credential = basic(identity);
            provider.describe(&Identity {
                signature_key: b"k",
                credential: &credential,
            })
        };
        assert_eq!(
            named(b"carol@B.Localhost").unwrap(),
            ClientIdentity {
                handle: "carol".into(),
                account: None,
                domain: Some("b.localhost".into()),
            }
        );
        for refused in [
            &b"a@b@c.example"[..],
            b"carol",
            b"@b.localhost",
            b"carol@",
            b"carol@127.0.0.1",
            b"carol@-b.example",
            b"carol@b..example",
            b"carol@b_x.example",
            b"\xff@b.example",
        ] {
            assert!(
                matches!(named(refused), Err(IdentityError::InvalidHandle(_))),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        let configuration = provider.configuration();
        assert_eq!(
            configuration.identity_provider_type,
            IdentityProviderType::BasicWithDomains
        );
        assert!(configuration.supports_domains.0);
    }
}
