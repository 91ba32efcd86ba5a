//! The applications this gateway serves (MIMI Back-end Architecture, "Applications"): each
//! has an id, an identity provider built from its `IdentityConfiguration`, and may be listed
//! publicly at `GET /apps` with the key-package limits its clients must meet.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mimi_wire::registry::{ApplicationConfiguration, KeyPackageLimits, X509DeviceHandleRange};
use uuid::Uuid;

use crate::config::{ApplicationConfig, Config, ConfigError, IdentityProviderKind};
use crate::identity::{BasicProvider, IdentityProvider, X509Provider, X509Settings};
use crate::mls::key_package::MemberRules;

pub struct Application {
    pub id: Uuid,
    pub public: bool,
    pub identity: Arc<dyn IdentityProvider>,
    /// The key-package limits published with the configuration (`key_packages.*`).
    pub key_package_limits: KeyPackageLimits,
}

impl Application {
    /// What the application requires of every member's key package and credential, on a
    /// gateway configured by `config`.
    pub fn member_rules<'s>(&'s self, config: &'s Config) -> MemberRules<'s> {
        MemberRules {
            max_lifetime_secs: config.key_packages.max_lifetime_secs,
            identity: self.identity.as_ref(),
            domain: &config.domain,
            federated: self.federates(),
        }
    }

    /// Whether clients of other gateways can be named: the identity provider has domains.
    pub fn federates(&self) -> bool {
        self.identity.configuration().supports_domains.0
    }

    /// The configuration peers see.
    pub fn configuration(&self) -> ApplicationConfiguration {
        ApplicationConfiguration {
            id: *self.id.as_bytes(),
            identity_configuration: self.identity.configuration(),
            key_package_limits: self.key_package_limits.clone(),
        }
    }
}

#[derive(Default)]
pub struct Applications {
    by_id: BTreeMap<Uuid, Application>,
}

impl Applications {
    /// Builds every configured application, loading X.509 trust roots; the error names the
    /// field. The configuration must have passed `Config::validate`.
    pub fn from_config(config: &Config) -> Result<Applications, ConfigError> {
        let mut by_id = BTreeMap::new();
        let key_package_limits = KeyPackageLimits {
            max_lifetime_secs: config.key_packages.max_lifetime_secs,
            max_per_queue: u32::try_from(config.key_packages.max_per_queue).unwrap_or(u32::MAX),
            cipher_suites: crate::mls::key_package::SUPPORTED_CIPHER_SUITES.to_vec(),
        };
        for (index, application) in config.applications.iter().enumerate() {
            let identity =
                identity_provider(&format!("applications[{index}].identity"), application)?;
            by_id.insert(
                application.id,
                Application {
                    id: application.id,
                    public: application.public,
                    identity,
                    key_package_limits: key_package_limits.clone(),
                },
            );
        }
        Ok(Applications { by_id })
    }

    pub fn get(&self, id: &Uuid) -> Option<&Application> {
        self.by_id.get(id)
    }

    pub fn contains(&self, id: &Uuid) -> bool {
        self.by_id.contains_key(id)
    }

    /// Every configured application's id.
    pub fn ids(&self) -> impl Iterator<Item = &Uuid> {
        self.by_id.keys()
    }

    /// The applications `GET /apps` lists, in id order.
    pub fn public(&self) -> impl Iterator<Item = &Application> {
        self.by_id.values().filter(|application| application.public)
    }
}

fn identity_provider(
    field: &str,
    application: &ApplicationConfig,
) -> Result<Arc<dyn IdentityProvider>, ConfigError> {
    let identity = &application.identity;
    let invalid = |field: String, reason: String| ConfigError::Invalid { field, reason };
    match identity.provider {
        IdentityProviderKind::Basic => Ok(Arc::new(BasicProvider::default())),
        IdentityProviderKind::BasicWithDomains => Ok(Arc::new(BasicProvider::with_domains())),
        IdentityProviderKind::X509 => {
            let range = identity.device_handle_range.ok_or_else(|| {
                invalid(
                    format!("{field}.device_handle_range"),
                    "required for x509".into(),
                )
            })?;
            let mut roots = Vec::new();
            for (index, path) in identity.trust_roots.iter().enumerate() {
                let loaded = load_roots(path)
                    .map_err(|reason| invalid(format!("{field}.trust_roots[{index}]"), reason))?;
                roots.extend(loaded);
            }
            let settings = X509Settings {
                device_handle_range: X509DeviceHandleRange {
                    start: range.start,
                    end: range.end,
                },
                account_handle_offset: identity.account_handle_offset,
                domain_name_offset: identity.domain_name_offset,
            };
            let provider = X509Provider::new(
                settings,
                identity.supports_accounts,
                identity.supports_domains,
                &roots,
            )
            .map_err(|reason| invalid(field.to_owned(), reason))?;
            Ok(Arc::new(provider))
        }
    }
}

fn load_roots(path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject as _;
    let roots = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{}: {error}", path.display()))?;
    if roots.is_empty() {
        return Err(format!("{}: no certificate in file", path.display()));
    }
    Ok(roots)
}
