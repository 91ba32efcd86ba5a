//! The crypto provider the gateway validates MLS with: openmls' `RustCrypto`, and a deferring
//! form of it for commits (issue 17, "Ed25519"). Deferring, an Ed25519 signature check
//! (RFC 9420, 5.1.2 `VerifyWithLabel`) decodes the key and the signature as `RustCrypto`
//! does, and writes the check down instead of making it; the caller verifies all of them
//! afterwards in one batch with other requests' (`crate::signatures`) and throws the work
//! away unless every one holds.
//!
//! That is the same outcome as checking each at once because openmls stops at the first
//! signature that fails (every `verify_signature` of openmls 0.9 ends in `?` or an error):
//! answering "valid" only lets it go on to work whose result is then dropped. Other
//! signature schemes are checked at once.

use std::sync::Mutex;

use ed25519_dalek::{Signature, VerifyingKey};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::{
    AeadType, Ciphersuite, CryptoError, ExporterSecret, HashType, HpkeCiphertext, HpkeConfig,
    HpkeKeyPair, KemOutput, SignatureScheme,
};
use tls_codec::SecretVLBytes;

use crate::signatures::Signed;

/// `RustCrypto`, checking Ed25519 signatures at once ([`Crypto::checking`]) or writing them
/// down for later ([`Crypto::deferring`]).
pub struct Crypto {
    inner: RustCrypto,
    deferred: Option<Mutex<Vec<Signed>>>,
}

impl Crypto {
    /// Every signature checked where openmls asks.
    pub fn checking() -> Crypto {
        Crypto {
            inner: RustCrypto::default(),
            deferred: None,
        }
    }

    /// Ed25519 signatures written down for [`Crypto::take_deferred`], answered as valid.
    pub fn deferring() -> Crypto {
        Crypto {
            inner: RustCrypto::default(),
            deferred: Some(Mutex::new(Vec::new())),
        }
    }

    /// The signatures written down so far, which the work done since holds only if they do.
    pub fn take_deferred(&self) -> Vec<Signed> {
        self.deferred
            .as_ref()
            .map(|deferred| std::mem::take(&mut *lock(deferred)))
            .unwrap_or_default()
    }
}

fn lock(deferred: &Mutex<Vec<Signed>>) -> std::sync::MutexGuard<'_, Vec<Signed>> {
    // A panic while pushing leaves nothing half-done in a Vec: its content is still whole.
    deferred
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl OpenMlsCrypto for Crypto {
    fn verify_signature(
        &self,
        alg: SignatureScheme,
        data: &[u8],
        pk: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        let Some(deferred) = self.deferred.as_ref() else {
            return self.inner.verify_signature(alg, data, pk, signature);
        };
        if alg != SignatureScheme::ED25519 {
            return self.inner.verify_signature(alg, data, pk, signature);
        }
        // What RustCrypto refuses before its `verify_strict`, refused the same way here.
        let key = VerifyingKey::try_from(pk).map_err(|_| CryptoError::CryptoLibraryError)?;
        let signature =
            Signature::from_slice(signature).map_err(|_| CryptoError::CryptoLibraryError)?;
        lock(deferred).push(Signed {
            message: data.to_vec(),
            signature,
            key,
        });
        Ok(())
    }

    fn supports(&self, ciphersuite: Ciphersuite) -> Result<(), CryptoError> {
        self.inner.supports(ciphersuite)
    }

    fn supported_ciphersuites(&self) -> Vec<Ciphersuite> {
        self.inner.supported_ciphersuites()
    }

    fn hkdf_extract(
        &self,
        hash_type: HashType,
        salt: &[u8],
        ikm: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hkdf_extract(hash_type, salt, ikm)
    }

    fn hmac(
        &self,
        hash_type: HashType,
        key: &[u8],
        message: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hmac(hash_type, key, message)
    }

    fn hkdf_expand(
        &self,
        hash_type: HashType,
        prk: &[u8],
        info: &[u8],
        okm_len: usize,
    ) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hkdf_expand(hash_type, prk, info, okm_len)
    }

    fn hash(&self, hash_type: HashType, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.hash(hash_type, data)
    }

    fn aead_encrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        data: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.inner.aead_encrypt(alg, key, data, nonce, aad)
    }

    fn aead_decrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        ct_tag: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.inner.aead_decrypt(alg, key, ct_tag, nonce, aad)
    }

    fn signature_key_gen(&self, alg: SignatureScheme) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        self.inner.signature_key_gen(alg)
    }

    fn sign(&self, alg: SignatureScheme, data: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.sign(alg, data, key)
    }

    fn hpke_seal(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        aad: &[u8],
        ptxt: &[u8],
    ) -> Result<HpkeCiphertext, CryptoError> {
        self.inner.hpke_seal(config, pk_r, info, aad, ptxt)
    }

    fn hpke_open(
        &self,
        config: HpkeConfig,
        input: &HpkeCiphertext,
        sk_r: &[u8],
        info: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.inner.hpke_open(config, input, sk_r, info, aad)
    }

    fn hpke_setup_sender_and_export(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<(KemOutput, ExporterSecret), CryptoError> {
        self.inner.hpke_setup_sender_and_export(
            config,
            pk_r,
            info,
            exporter_context,
            exporter_length,
        )
    }

    fn hpke_setup_receiver_and_export(
        &self,
        config: HpkeConfig,
        enc: &[u8],
        sk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<ExporterSecret, CryptoError> {
        self.inner.hpke_setup_receiver_and_export(
            config,
            enc,
            sk_r,
            info,
            exporter_context,
            exporter_length,
        )
    }

    fn derive_hpke_keypair(
        &self,
        config: HpkeConfig,
        ikm: &[u8],
    ) -> Result<HpkeKeyPair, CryptoError> {
        self.inner.derive_hpke_keypair(config, ikm)
    }
}
