//! Ed25519 verification as the gateway pays it per signed request (issue 17, "Ed25519"):
//! `verify_strict` (what the gateway and the signed floor use), plain `verify`, the key
//! decoded from bytes before each `verify_strict` (what openmls' provider does), and
//! `verify_batch` over batches of 8, 16, 32 and 64 signatures (what batching concurrent
//! requests would cost per signature). Messages are of a request envelope's size; one key
//! for all, as for one application's requests. Prints microseconds per signature and the
//! machine.
//!
//! Run: `cargo bench --bench ed25519` (env `SIGNATURES`, default 4096). Bounded: each
//! measurement verifies `SIGNATURES` signatures once.

#[path = "machine.rs"]
mod machine;

use std::time::Instant;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

fn main() {
    let count: usize = std::env::var("SIGNATURES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(4096);
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = key.verifying_key();
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|index| {
            let mut message = vec![0u8; 160];
            message[..8].copy_from_slice(&(index as u64).to_le_bytes());
            message
        })
        .collect();
    let signatures: Vec<Signature> = messages.iter().map(|message| key.sign(message)).collect();
    println!("machine: {}", machine::machine());
    let per = |started: Instant| started.elapsed().as_secs_f64() * 1e6 / count as f64;

    let started = Instant::now();
    for (message, signature) in messages.iter().zip(&signatures) {
        public.verify_strict(message, signature).unwrap();
    }
    let strict = per(started);
    println!("verify_strict       {strict:6.1} us per signature");
    let started = Instant::now();
    for (message, signature) in messages.iter().zip(&signatures) {
        public.verify_strict(message, signature).unwrap();
        let _ = ed25519_dalek::Verifier::verify(&public, message, signature);
    }
    let both = per(started);
    println!("verify              {:6.1} us per signature", both - strict);
    // What openmls' crypto provider pays per signature: the verifying key decoded from its
    // 32 bytes (a point decompression) before each `verify_strict`.
    let encoded = public.to_bytes();
    let started = Instant::now();
    for (message, signature) in messages.iter().zip(&signatures) {
        let decoded = VerifyingKey::from_bytes(&encoded).unwrap();
        decoded.verify_strict(message, signature).unwrap();
    }
    let decoding = per(started);
    println!(
        "decode + verify_strict {decoding:6.1} us per signature (the key's decoding {:.1} us)",
        decoding - strict
    );
    for batch in [8, 16, 32, 64] {
        let keys: Vec<VerifyingKey> = vec![public; batch];
        let started = Instant::now();
        for (messages, signatures) in messages.chunks(batch).zip(signatures.chunks(batch)) {
            let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            ed25519_dalek::verify_batch(&messages, signatures, &keys[..messages.len()]).unwrap();
        }
        let batched = per(started);
        println!(
            "verify_batch({batch:>2})    {batched:6.1} us per signature ({:.2}x verify_strict)",
            batched / strict
        );
    }
}
