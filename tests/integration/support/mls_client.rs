//! Real MLS clients for the tests, built with openmls: key packages with basic or X.509
//! credentials, chosen lifetimes, cipher suites and the last-resort extension.

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use tls_codec::VLBytes;

pub const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

pub struct MlsClient {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub credential: CredentialWithKey,
}

impl MlsClient {
    /// A client with a basic credential naming `identity`.
    pub fn basic(identity: &str) -> MlsClient {
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        MlsClient {
            provider: OpenMlsRustCrypto::default(),
            signer,
            credential,
        }
    }

    /// A client with an X.509 credential: `chain` (DER, leaf first) certifying the Ed25519
    /// key whose 32-byte seed is `seed`.
    pub fn x509(chain: &[Vec<u8>], seed: &[u8; 32]) -> MlsClient {
        let public = ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes()
            .to_vec();
        let signer =
            SignatureKeyPair::from_raw(SignatureScheme::ED25519, seed.to_vec(), public.clone());
        // RFC 9420, section 5.3: `Certificate certificates<V>`, each `opaque cert_data<V>`.
        // openmls writes the outer length prefix itself, so the content is the entries.
        let content: Vec<u8> = chain
            .iter()
            .flat_map(|der| VLBytes::new(der.clone()).tls_serialize_detached().unwrap())
            .collect();
        let credential = CredentialWithKey {
            credential: Credential::new(CredentialType::X509, content),
            signature_key: public.into(),
        };
        MlsClient {
            provider: OpenMlsRustCrypto::default(),
            signer,
            credential,
        }
    }

    /// A key package as an MLSMessage, valid for `lifetime_secs` from now (openmls starts it
    /// an hour in the past).
    pub fn key_package(&self, lifetime_secs: u64) -> Vec<u8> {
        self.key_package_with(SUITE, lifetime_secs, false)
    }

    pub fn key_package_with(
        &self,
        suite: Ciphersuite,
        lifetime_secs: u64,
        last_resort: bool,
    ) -> Vec<u8> {
        let mut builder = KeyPackage::builder().key_package_lifetime(Lifetime::new(lifetime_secs));
        if last_resort {
            // The extension must be among the leaf's capabilities for the package to be valid.
            builder = builder
                .mark_as_last_resort()
                .leaf_node_capabilities(capabilities(&[ExtensionType::LastResort]));
        } else {
            builder = builder.leaf_node_capabilities(capabilities(&[]));
        }
        let bundle = builder
            .build(suite, &self.provider, &self.signer, self.credential.clone())
            .unwrap();
        MlsMessageOut::from(bundle.key_package().clone())
            .tls_serialize_detached()
            .unwrap()
    }
}

/// Leaf capabilities: openmls' defaults, both credential types (a group's members must all
/// support every credential type in use) and `extensions`.
pub fn capabilities(extensions: &[ExtensionType]) -> Capabilities {
    Capabilities::new(
        None,
        None,
        Some(extensions),
        None,
        Some(&[CredentialType::Basic, CredentialType::X509]),
    )
}

/// The KeyPackageRef of a key package MLSMessage.
pub fn key_package_ref(bytes: &[u8]) -> Vec<u8> {
    use openmls::prelude::tls_codec::Deserialize as _;
    let message = MlsMessageIn::tls_deserialize_exact(bytes).unwrap();
    let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else {
        panic!("not a key package")
    };
    let provider = OpenMlsRustCrypto::default();
    let key_package = key_package
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    key_package
        .hash_ref(provider.crypto())
        .unwrap()
        .as_slice()
        .to_vec()
}
