//! Identity providers (architecture draft, "Identity Providers"): the X.509 provider on real
//! certificate chains made with rcgen (leaf / intermediate / root), and the Basic provider.

use mimi_gateway::identity::{
    ApplicationContext, BasicProvider, Credential, Identity, IdentityError, IdentityProvider,
    X509Provider, X509Settings,
};
use mimi_wire::registry::X509DeviceHandleRange;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::support::now;

/// A CA or leaf certificate with its key.
struct Cert {
    der: Vec<u8>,
    params: CertificateParams,
    key: KeyPair,
}

fn params(common_name: Option<&str>, ca: Option<BasicConstraints>) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    if let Some(common_name) = common_name {
        name.push(DnType::CommonName, common_name);
    }
    // Distinct subjects even without a Common Name.
    name.push(
        DnType::OrganizationName,
        format!("org-{}", rand::random::<u32>()),
    );
    params.distinguished_name = name;
    let today = OffsetDateTime::now_utc();
    params.not_before = today - Duration::days(1);
    params.not_after = today + Duration::days(1);
    match ca {
        Some(constraints) => {
            params.is_ca = IsCa::Ca(constraints);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        }
        None => params.key_usages = vec![KeyUsagePurpose::DigitalSignature],
    }
    params
}

fn root(common_name: &str) -> Cert {
    let params = params(Some(common_name), Some(BasicConstraints::Unconstrained));
    let key = KeyPair::generate().unwrap();
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Cert { der, params, key }
}

fn issue(issuer: &Cert, params: CertificateParams) -> Cert {
    let key = KeyPair::generate().unwrap();
    let issuer_handle = Issuer::from_params(&issuer.params, &issuer.key);
    let der = params
        .signed_by(&key, &issuer_handle)
        .unwrap()
        .der()
        .to_vec();
    Cert { der, params, key }
}

/// root "example.com" -> intermediate "alice" -> leaf "phone".
struct Chain {
    root: Cert,
    intermediate: Cert,
    leaf: Cert,
}

impl Chain {
    fn new() -> Chain {
        Chain::with_leaf(params(Some("phone"), None))
    }

    fn with_leaf(leaf: CertificateParams) -> Chain {
        let root = root("example.com");
        let intermediate = issue(
            &root,
            params(Some("alice"), Some(BasicConstraints::Unconstrained)),
        );
        let leaf = issue(&intermediate, leaf);
        Chain {
            root,
            intermediate,
            leaf,
        }
    }

    fn credential(&self) -> Credential {
        Credential::X509 {
            chain: vec![
                self.leaf.der.clone(),
                self.intermediate.der.clone(),
                self.root.der.clone(),
            ],
        }
    }

    fn signature_key(&self) -> Vec<u8> {
        self.leaf.key.public_key_raw().to_vec()
    }
}

fn provider(
    chain: &Chain,
    range: (u8, u8),
    account: Option<u8>,
    domain: Option<u8>,
) -> X509Provider {
    let settings = X509Settings {
        device_handle_range: X509DeviceHandleRange {
            start: range.0,
            end: range.1,
        },
        account_handle_offset: account,
        domain_name_offset: domain,
    };
    let roots = [CertificateDer::from(chain.root.der.clone())];
    X509Provider::new(settings, account.is_some(), domain.is_some(), &roots).unwrap()
}

fn at(seconds: u64) -> ApplicationContext {
    ApplicationContext {
        msg_timestamp: seconds,
    }
}

/// "X.509 Identifiers": device handle from the range, `account/device` with accounts, the
/// domain from its offset.
#[test]
fn handles_are_derived_for_each_setting() {
    let chain = Chain::new();
    let credential = chain.credential();
    let key = chain.signature_key();
    let identity = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let cases = [
        ((0, 0), None, None, "phone", None, None),
        ((0, 1), None, None, "phone:alice", None, None),
        ((0, 2), None, None, "phone:alice:example.com", None, None),
        ((0, 0), Some(1), None, "alice/phone", Some("alice"), None),
        ((0, 0), None, Some(2), "phone", None, Some("example.com")),
        (
            (0, 0),
            Some(1),
            Some(2),
            "alice/phone",
            Some("alice"),
            Some("example.com"),
        ),
        ((1, 1), None, Some(2), "alice", None, Some("example.com")),
    ];
    for (range, account, domain, handle, expected_account, expected_domain) in cases {
        let provider = provider(&chain, range, account, domain);
        let named = provider.validate(&identity, &at(now())).unwrap();
        assert_eq!(named.handle, handle, "{range:?} {account:?} {domain:?}");
        assert_eq!(named.account.as_deref(), expected_account);
        assert_eq!(named.domain.as_deref(), expected_domain);
        assert_eq!(provider.client_handle(&identity).unwrap(), handle);
        assert_eq!(
            provider.client_account(&identity).unwrap().as_deref(),
            expected_account
        );
        assert_eq!(
            provider.client_domain(&identity).unwrap().as_deref(),
            expected_domain
        );
    }
}

/// Validity is judged at `X509ApplicationContext.msg_timestamp`.
#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let chain = Chain::new();
    let (credential, key) = (chain.credential(), chain.signature_key());
    let identity = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let provider = provider(&chain, (0, 0), None, None);
    assert!(provider.validate(&identity, &at(now())).is_ok());
    for (when, what) in [
        (now() - 3 * 86_400, "not yet valid"),
        (now() + 3 * 86_400, "expired"),
    ] {
        let error = provider.validate(&identity, &at(when)).unwrap_err();
        assert!(
            matches!(error, IdentityError::InvalidChain(_)),
            "{what}: {error}"
        );
    }
}

#[test]
fn a_chain_to_an_untrusted_root_is_refused() {
    let chain = Chain::new();
    let other = Chain::new();
    let (credential, key) = (chain.credential(), chain.signature_key());
    let identity = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let error = provider(&other, (0, 0), None, None)
        .validate(&identity, &at(now()))
        .unwrap_err();
    assert!(matches!(error, IdentityError::InvalidChain(_)), "{error}");
}

#[test]
fn a_broken_signature_is_refused() {
    let chain = Chain::new();
    let mut leaf = chain.leaf.der.clone();
    let last = leaf.len() - 1;
    leaf[last] ^= 0x01;
    let credential = Credential::X509 {
        chain: vec![leaf, chain.intermediate.der.clone()],
    };
    let key = chain.signature_key();
    let identity = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let error = provider(&chain, (0, 0), None, None)
        .validate(&identity, &at(now()))
        .unwrap_err();
    assert!(matches!(error, IdentityError::InvalidChain(_)), "{error}");
}

/// Basic constraints: a leaf (not a CA) cannot issue, and a CA's path length holds.
#[test]
fn basic_constraints_and_path_length_are_enforced() {
    let chain = Chain::new();
    let below_leaf = issue(&chain.leaf, params(Some("tablet"), None));
    let credential = Credential::X509 {
        chain: vec![
            below_leaf.der.clone(),
            chain.leaf.der.clone(),
            chain.intermediate.der.clone(),
        ],
    };
    let key = below_leaf.key.public_key_raw().to_vec();
    let identity = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let error = provider(&chain, (0, 0), None, None)
        .validate(&identity, &at(now()))
        .unwrap_err();
    assert!(
        matches!(error, IdentityError::InvalidChain(_)),
        "leaf as issuer: {error}"
    );

    let root = root("example.com");
    let constrained = issue(
        &root,
        params(Some("org"), Some(BasicConstraints::Constrained(0))),
    );
    let sub = issue(
        &constrained,
        params(Some("team"), Some(BasicConstraints::Unconstrained)),
    );
    let leaf = issue(&sub, params(Some("phone"), None));
    let credential = Credential::X509 {
        chain: vec![leaf.der.clone(), sub.der.clone(), constrained.der.clone()],
    };
    let key = leaf.key.public_key_raw().to_vec();
    let identity = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let roots = [CertificateDer::from(root.der.clone())];
    let settings = X509Settings {
        device_handle_range: X509DeviceHandleRange { start: 0, end: 0 },
        account_handle_offset: None,
        domain_name_offset: None,
    };
    let provider = X509Provider::new(settings, false, false, &roots).unwrap();
    let error = provider.validate(&identity, &at(now())).unwrap_err();
    assert!(
        matches!(error, IdentityError::InvalidChain(_)),
        "path length 0 exceeded: {error}"
    );
}

#[test]
fn forbidden_characters_in_common_names_are_refused() {
    for character in ['@', '/', '#', '$', ':'] {
        let chain = Chain::with_leaf(params(Some(&format!("ph{character}one")), None));
        let (credential, key) = (chain.credential(), chain.signature_key());
        let identity = Identity {
            signature_key: &key,
            credential: &credential,
        };
        let error = provider(&chain, (0, 0), None, None)
            .validate(&identity, &at(now()))
            .unwrap_err();
        assert_eq!(error, IdentityError::ForbiddenCharacter(0), "{character}");
        assert_eq!(
            error.code(),
            mimi_wire::ErrorCode::ForbiddenCommonNameCharacter
        );
    }
}

#[test]
fn missing_common_names_are_refused() {
    let chain = Chain::with_leaf(params(None, None));
    let (credential, key) = (chain.credential(), chain.signature_key());
    let identity = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let error = provider(&chain, (0, 0), None, None)
        .validate(&identity, &at(now()))
        .unwrap_err();
    assert_eq!(error, IdentityError::MissingCommonName(0));
    assert_eq!(error.code(), mimi_wire::ErrorCode::MissingCommonName);

    // A range reaching past the chain has no certificate, so no Common Name, to use.
    let chain = Chain::new();
    let credential = Credential::X509 {
        chain: vec![chain.leaf.der.clone(), chain.intermediate.der.clone()],
    };
    let key = chain.signature_key();
    let identity = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let error = provider(&chain, (0, 0), None, Some(2))
        .validate(&identity, &at(now()))
        .unwrap_err();
    assert_eq!(error, IdentityError::MissingCommonName(2));
}

#[test]
fn the_leaf_must_certify_the_signature_key() {
    let chain = Chain::new();
    let credential = chain.credential();
    let other_key = KeyPair::generate().unwrap().public_key_raw().to_vec();
    let identity = Identity {
        signature_key: &other_key,
        credential: &credential,
    };
    let error = provider(&chain, (0, 0), None, None)
        .validate(&identity, &at(now()))
        .unwrap_err();
    assert_eq!(error, IdentityError::KeyMismatch);
}

#[test]
fn only_x509_credentials_are_supported() {
    let chain = Chain::new();
    let basic = Credential::Basic {
        identity: b"phone".to_vec(),
    };
    let identity = Identity {
        signature_key: b"key",
        credential: &basic,
    };
    let error = provider(&chain, (0, 0), None, None)
        .validate(&identity, &at(now()))
        .unwrap_err();
    assert_eq!(error, IdentityError::UnsupportedCredential(1));
    let empty = Credential::X509 { chain: vec![] };
    let identity = Identity {
        signature_key: b"key",
        credential: &empty,
    };
    assert!(matches!(
        provider(&chain, (0, 0), None, None).describe(&identity),
        Err(IdentityError::InvalidChain(_))
    ));
}

/// "a client is a valid successor of another client if their client identifiers are equal":
/// a new leaf key for the same names succeeds; another device does not.
#[test]
fn valid_successor_compares_handles() {
    let chain = Chain::new();
    let renewed = issue(&chain.intermediate, params(Some("phone"), None));
    let tablet = issue(&chain.intermediate, params(Some("tablet"), None));
    let provider = provider(&chain, (0, 0), Some(1), None);
    let credential = chain.credential();
    let renewed_credential = Credential::X509 {
        chain: vec![renewed.der.clone(), chain.intermediate.der.clone()],
    };
    let tablet_credential = Credential::X509 {
        chain: vec![tablet.der.clone(), chain.intermediate.der.clone()],
    };
    let (key, renewed_key, tablet_key) = (
        chain.signature_key(),
        renewed.key.public_key_raw().to_vec(),
        tablet.key.public_key_raw().to_vec(),
    );
    let old = Identity {
        signature_key: &key,
        credential: &credential,
    };
    let new = Identity {
        signature_key: &renewed_key,
        credential: &renewed_credential,
    };
    let other = Identity {
        signature_key: &tablet_key,
        credential: &tablet_credential,
    };
    assert!(provider.valid_successor(&old, &new).unwrap());
    assert!(!provider.valid_successor(&old, &other).unwrap());
}

#[test]
fn basic_provider_names_the_identity() {
    let credential = Credential::Basic {
        identity: b"carol".to_vec(),
    };
    let identity = Identity {
        signature_key: b"key",
        credential: &credential,
    };
    assert_eq!(
        BasicProvider::default()
            .validate(&identity, &at(0))
            .unwrap()
            .handle,
        "carol"
    );
    let x509 = Chain::new().credential();
    let identity = Identity {
        signature_key: b"key",
        credential: &x509,
    };
    assert_eq!(
        BasicProvider::default()
            .validate(&identity, &at(0))
            .unwrap_err(),
        IdentityError::UnsupportedCredential(2)
    );
}

/// The draft's X509Parameters rules, each refused.
#[test]
fn x509_parameter_rules() {
    let check = |start, end, account, domain| {
        X509Settings {
            device_handle_range: X509DeviceHandleRange { start, end },
            account_handle_offset: account,
            domain_name_offset: domain,
        }
        .check(account.is_some(), domain.is_some())
        .map_err(|(field, _)| field)
    };
    assert_eq!(check(1, 0, None, None), Err("device_handle_range"));
    assert_eq!(check(0, 1, Some(1), None), Err("account_handle_offset"));
    assert_eq!(check(0, 1, None, Some(1)), Err("domain_name_offset"));
    assert_eq!(check(0, 0, Some(2), Some(2)), Err("domain_name_offset"));
    assert_eq!(check(0, 0, Some(2), Some(1)), Err("domain_name_offset"));
    assert_eq!(check(0, 1, Some(2), Some(3)), Ok(()));
    // Flags without offsets.
    let missing = X509Settings {
        device_handle_range: X509DeviceHandleRange { start: 0, end: 0 },
        account_handle_offset: None,
        domain_name_offset: None,
    };
    assert_eq!(
        missing.check(true, false).map_err(|(field, _)| field),
        Err("account_handle_offset")
    );
    assert_eq!(
        missing.check(false, true).map_err(|(field, _)| field),
        Err("domain_name_offset")
    );
}
