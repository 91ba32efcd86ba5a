//! The X.509 identity provider (architecture draft, "X.509 Identity Provider"): credentials
//! are certificate chains, validated per RFC 5280 against the application's trust roots (by
//! rustls-webpki: signatures up the chain, validity at the message time, basic constraints
//! and path length), and handles derived from subject Common Names:
//!
//! ```text
//! fn identifier(CertificateChain cert_chain, uint8 start, uint8 end)   // draft 002
//!     joins the Common Names of cert_chain[start...end] with ":", refusing a missing
//!     Common Name and any containing "@", "/", "#", "$" or ":".
//! device_handle := identifier(chain, range.start, range.end)
//! account       := identifier(chain, account_handle_offset, account_handle_offset)
//! domain        := identifier(chain, domain_name_offset, domain_name_offset)
//! client_handle := account + "/" + device_handle   if accounts are supported
//!                  device_handle                   otherwise
//! ```
//!
//! Offsets count from the leaf (0) towards the root.

use std::time::Duration;

use mimi_wire::codec::WireBool;
use mimi_wire::registry::{
    IdentityConfiguration, IdentityProviderType, X509DeviceHandleRange, X509Parameters,
    check_handle,
};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use tls_codec::VLBytes;
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{
    ApplicationContext, ClientIdentity, Credential, CredentialType, Identity, IdentityError,
    IdentityProvider,
};

/// Characters a Common Name used in an identifier must not contain.
const FORBIDDEN: [char; 5] = ['@', '/', '#', '$', ':'];

/// The provider's settings, already checked against the draft's parameter rules.
#[derive(Debug, Clone)]
pub struct X509Settings {
    pub device_handle_range: X509DeviceHandleRange,
    pub account_handle_offset: Option<u8>,
    pub domain_name_offset: Option<u8>,
}

impl X509Settings {
    /// The draft's validity rules for `X509Parameters`; the error names the field.
    pub fn check(
        &self,
        supports_accounts: bool,
        supports_domains: bool,
    ) -> Result<(), (&'static str, String)> {
        let range = self.device_handle_range;
        if range.end < range.start {
            return Err((
                "device_handle_range",
                format!("end {} is before start {}", range.end, range.start),
            ));
        }
        match (supports_accounts, self.account_handle_offset) {
            (true, None) => {
                return Err((
                    "account_handle_offset",
                    "required when supports_accounts is true".into(),
                ));
            }
            (false, Some(_)) => {
                return Err((
                    "account_handle_offset",
                    "only allowed when supports_accounts is true".into(),
                ));
            }
            (true, Some(offset)) if offset <= range.end => {
                return Err((
                    "account_handle_offset",
                    format!("must be after the device handle range (end {})", range.end),
                ));
            }
            _ => {}
        }
        match (supports_domains, self.domain_name_offset) {
            (true, None) => {
                return Err((
                    "domain_name_offset",
                    "required when supports_domains is true".into(),
                ));
            }
            (false, Some(_)) => {
                return Err((
                    "domain_name_offset",
                    "only allowed when supports_domains is true".into(),
                ));
            }
            (true, Some(offset)) if offset <= range.end => {
                return Err((
                    "domain_name_offset",
                    format!("must be after the device handle range (end {})", range.end),
                ));
            }
            (true, Some(offset))
                if self
                    .account_handle_offset
                    .is_some_and(|account| offset <= account) =>
            {
                return Err((
                    "domain_name_offset",
                    "must be after the account handle offset".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

pub struct X509Provider {
    settings: X509Settings,
    supports_accounts: bool,
    supports_domains: bool,
    anchors: Vec<TrustAnchor<'static>>,
}

/// MLS credentials need no particular extended key usage: any (well-formed) EKU is fine.
struct AnyExtendedKeyUsage;

impl ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for purpose in iter {
            purpose?;
        }
        Ok(())
    }
}

impl X509Provider {
    /// `trust_roots` are DER certificates. Settings must have passed [`X509Settings::check`].
    pub fn new(
        settings: X509Settings,
        supports_accounts: bool,
        supports_domains: bool,
        trust_roots: &[CertificateDer<'_>],
    ) -> Result<X509Provider, String> {
        settings
            .check(supports_accounts, supports_domains)
            .map_err(|(field, reason)| format!("{field}: {reason}"))?;
        let anchors = trust_roots
            .iter()
            .map(|root| webpki::anchor_from_trusted_cert(root).map(|anchor| anchor.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("trust root: {error}"))?;
        if anchors.is_empty() {
            return Err("at least one trust root is required".into());
        }
        Ok(X509Provider {
            settings,
            supports_accounts,
            supports_domains,
            anchors,
        })
    }

    fn chain<'c>(&self, credential: &'c Credential) -> Result<&'c [Vec<u8>], IdentityError> {
        super::require_supported(self, credential)?;
        match credential {
            Credential::X509 { chain } if !chain.is_empty() => Ok(chain),
            Credential::X509 { .. } => Err(IdentityError::InvalidChain("empty chain".into())),
            other => Err(IdentityError::UnsupportedCredential(
                other.credential_type().code_point(),
            )),
        }
    }

    /// The draft's `identifier(cert_chain, start, end)`.
    fn identifier(
        chain: &[X509Certificate<'_>],
        start: u8,
        end: u8,
    ) -> Result<String, IdentityError> {
        let mut names = Vec::new();
        for offset in usize::from(start)..=usize::from(end) {
            let certificate = chain
                .get(offset)
                .ok_or(IdentityError::MissingCommonName(offset))?;
            let common_name = certificate
                .subject()
                .iter_common_name()
                .next()
                .and_then(|name| name.as_str().ok())
                .filter(|name| !name.is_empty())
                .ok_or(IdentityError::MissingCommonName(offset))?;
            if common_name.contains(FORBIDDEN) {
                return Err(IdentityError::ForbiddenCharacter(offset));
            }
            names.push(common_name.to_owned());
        }
        Ok(names.join(":"))
    }
}

fn parse(chain: &[Vec<u8>]) -> Result<Vec<X509Certificate<'_>>, IdentityError> {
    chain
        .iter()
        .enumerate()
        .map(|(offset, der)| match X509Certificate::from_der(der) {
            Ok(([], certificate)) => Ok(certificate),
            Ok(_) => Err(IdentityError::InvalidChain(format!(
                "certificate {offset} has trailing bytes"
            ))),
            Err(error) => Err(IdentityError::InvalidChain(format!(
                "certificate {offset}: {error}"
            ))),
        })
        .collect()
}

impl IdentityProvider for X509Provider {
    fn configuration(&self) -> IdentityConfiguration {
        let parameters = X509Parameters {
            device_handle_range: self.settings.device_handle_range,
            account_handle_offset: self.settings.account_handle_offset,
            domain_name_offset: self.settings.domain_name_offset,
        };
        IdentityConfiguration {
            identity_provider_type: IdentityProviderType::X509,
            supports_accounts: WireBool(self.supports_accounts),
            supports_domains: WireBool(self.supports_domains),
            // Three small integers and two presence bytes: encoding cannot fail.
            parameters: VLBytes::new(mimi_wire::encode(&parameters).unwrap_or_default()),
        }
    }

    fn supported_credentials(&self) -> &'static [CredentialType] {
        &[CredentialType::X509]
    }

    fn describe(&self, identity: &Identity<'_>) -> Result<ClientIdentity, IdentityError> {
        let chain = parse(self.chain(identity.credential)?)?;
        let range = self.settings.device_handle_range;
        let device = Self::identifier(&chain, range.start, range.end)?;
        // X509Settings::check guarantees each offset is present exactly when its flag is set.
        let account = self
            .settings
            .account_handle_offset
            .map(|offset| Self::identifier(&chain, offset, offset))
            .transpose()?;
        let domain = self
            .settings
            .domain_name_offset
            .map(|offset| Self::identifier(&chain, offset, offset))
            .transpose()?;
        let handle = match &account {
            Some(account) => format!("{account}/{device}"),
            None => device,
        };
        check_handle(&handle).map_err(|error| IdentityError::InvalidHandle(error.to_string()))?;
        Ok(ClientIdentity {
            handle,
            account,
            domain,
        })
    }

    fn validate(
        &self,
        identity: &Identity<'_>,
        context: &ApplicationContext,
    ) -> Result<ClientIdentity, IdentityError> {
        // `chain` refuses an empty chain, so the leaf at index 0 exists.
        let chain = self.chain(identity.credential)?;
        let leaf_der = CertificateDer::from(chain[0].as_slice());
        let leaf = EndEntityCert::try_from(&leaf_der)
            .map_err(|error| IdentityError::InvalidChain(error.to_string()))?;
        let intermediates: Vec<CertificateDer<'_>> = chain[1..]
            .iter()
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        let time = UnixTime::since_unix_epoch(Duration::from_secs(context.msg_timestamp));
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            time,
            AnyExtendedKeyUsage,
            None,
            None,
        )
        .map_err(|error| IdentityError::InvalidChain(error.to_string()))?;
        let leaf_certificate = parse(&chain[..1])?;
        let leaf_key = leaf_certificate
            .first()
            .map(|leaf| leaf.public_key().subject_public_key.data.as_ref());
        if leaf_key != Some(identity.signature_key) {
            return Err(IdentityError::KeyMismatch);
        }
        self.describe(identity)
    }
}
