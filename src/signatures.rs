//! Ed25519 verification of signed-request envelopes (`mimi-wire::signing`; DESIGN.md, "Request
//! authentication") and of the MLS signatures a commit carries (`mls::crypto`), batched
//! across the requests waiting at the same moment (issue 17, "Ed25519"): a batch of 16 costs
//! about half of 16 single verifications.
//!
//! Requests hand their signatures to a few verifier tasks (one per runtime worker). A verifier
//! takes whatever is queued when it is free, up to [`MAX_BATCH`], and never waits for more: an
//! idle gateway verifies each signature alone, at once, as before; a busy one verifies in
//! batches. A batch that fails is verified again one signature at a time, so one bad
//! signature costs its batch's honest requests nothing but time.
//!
//! Batch verification is made as strict as `verify_strict` everywhere it can be checked per
//! signature: `s` canonical (`verify_batch` itself), `R` canonical and not of small order, the
//! key not of small order ([`strictly_formed`]). One difference remains, by the nature of a
//! batch: a signature whose equation is off by a point of small order (which only the key's
//! holder can make, never a forger) may pass in a batch where alone it fails. Forgery and
//! replay are refused either way: the request id is inside the signed content.

use std::sync::{Arc, OnceLock};

use ed25519_dalek::{Signature, VerifyingKey};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::metrics::Metrics;

/// Most signatures in one batch: past 16 the saving per signature hardly grows, and a batch
/// holds its worker for its whole time (16 x ~20 us).
pub const MAX_BATCH: usize = 16;

/// Signatures waiting for a verifier; a request past this waits to hand its own in (each
/// holds its body already, under the body budget, so this bounds nothing new).
const QUEUE: usize = 1024;

/// A signature to verify: `key`'s over `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub message: Vec<u8>,
    pub signature: Signature,
    pub key: VerifyingKey,
}

/// A request's signatures to verify (at most [`MAX_BATCH`]), and where its answer goes:
/// whether all of them hold.
struct Job {
    signed: Vec<Signed>,
    answer: oneshot::Sender<bool>,
}

/// Verifies request signatures, in batches when several wait at once (`auth.batch_verification`;
/// off: each where it is asked, with `verify_strict`). The verifier tasks are started with the
/// first signature, on the runtime that verifies it.
pub struct SignatureVerifier {
    batched: bool,
    metrics: Arc<Metrics>,
    jobs: OnceLock<mpsc::Sender<Job>>,
}

impl SignatureVerifier {
    /// Counts what it verifies, and how, in `metrics` (`mimi_signatures_verified_total`).
    pub fn new(batched: bool, metrics: Arc<Metrics>) -> SignatureVerifier {
        SignatureVerifier {
            batched,
            metrics,
            jobs: OnceLock::new(),
        }
    }

    /// Whether signatures go to the verifier tasks, to be batched (`auth.batch_verification`).
    pub fn batched(&self) -> bool {
        self.batched
    }

    /// Whether `signature` is `key`'s over `message`, as strict as described above.
    pub async fn verify(&self, message: Vec<u8>, signature: Signature, key: VerifyingKey) -> bool {
        self.verify_all(vec![Signed {
            message,
            signature,
            key,
        }])
        .await
    }

    /// Whether every one of `signed` holds, as strict as described above: handed in together,
    /// so they share batches (with whatever else waits) when batching is on. A large set (a
    /// commit adding many members) goes in jobs of at most [`MAX_BATCH`], so no batch holds a
    /// runtime worker longer than one of requests' does.
    pub async fn verify_all(&self, signed: Vec<Signed>) -> bool {
        if signed.is_empty() {
            return true;
        }
        if !self.batched {
            return self.verify_here(&signed);
        }
        let jobs = self
            .jobs
            .get_or_init(|| start_verifiers(self.metrics.clone()));
        let mut answers = Vec::with_capacity(signed.len().div_ceil(MAX_BATCH));
        let mut signed = signed.into_iter().peekable();
        while signed.peek().is_some() {
            let chunk: Vec<Signed> = signed.by_ref().take(MAX_BATCH).collect();
            let (answer, answered) = oneshot::channel();
            match jobs
                .send(Job {
                    signed: chunk,
                    answer,
                })
                .await
            {
                Ok(()) => answers.push(answered),
                // No verifier is left (its runtime ended): verify here.
                Err(mpsc::error::SendError(job)) => {
                    if !self.verify_here(&job.signed) {
                        return false;
                    }
                }
            }
        }
        for answered in answers {
            // No answer: the verifier went away with the job (its runtime is shutting down).
            if !answered.await.unwrap_or(false) {
                return false;
            }
        }
        true
    }

    /// Each of `signed` alone, where it is asked, until one fails.
    fn verify_here(&self, signed: &[Signed]) -> bool {
        let mut verified = 0;
        let valid = signed.iter().all(|one| {
            verified += 1;
            verify_one(one)
        });
        self.metrics.count_signatures(0, verified, None);
        valid
    }
}

fn start_verifiers(metrics: Arc<Metrics>) -> mpsc::Sender<Job> {
    let (jobs, queued) = mpsc::channel(QUEUE);
    let queued = Arc::new(Mutex::new(queued));
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    for _ in 0..workers.max(1) {
        tokio::spawn(run_verifier(queued.clone(), metrics.clone()));
    }
    jobs
}

/// Takes what is queued (waiting only for the first), verifies it, answers, again; ends when
/// the verifier is dropped.
async fn run_verifier(queued: Arc<Mutex<mpsc::Receiver<Job>>>, metrics: Arc<Metrics>) {
    loop {
        let batch = {
            let mut queued = queued.lock().await;
            let Some(first) = queued.recv().await else {
                return;
            };
            let mut signatures = first.signed.len();
            let mut batch = Vec::with_capacity(MAX_BATCH);
            batch.push(first);
            while signatures < MAX_BATCH {
                match queued.try_recv() {
                    Ok(job) => {
                        signatures += job.signed.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let verdicts = verdicts(&batch, &metrics);
        for (job, valid) in batch.into_iter().zip(verdicts) {
            // The request may have gone (its connection closed): nothing to answer.
            let _ = job.answer.send(valid);
        }
        // Let the requests just answered run before the next batch.
        tokio::task::yield_now().await;
    }
}

/// The verdict of each job (all of its signatures hold): one batch for every well-formed
/// signature of the jobs, and on its failure each alone.
fn verdicts(batch: &[Job], metrics: &Metrics) -> Vec<bool> {
    let all: Vec<(usize, &Signed)> = batch
        .iter()
        .enumerate()
        .flat_map(|(index, job)| job.signed.iter().map(move |one| (index, one)))
        .collect();
    let mut valid: Vec<bool> = all
        .iter()
        .map(|(_, one)| strictly_formed(&one.signature, &one.key))
        .collect();
    let formed: Vec<&Signed> = all
        .iter()
        .zip(&valid)
        .filter_map(|((_, one), formed)| formed.then_some(*one))
        .collect();
    let batch_passed = match formed.len() {
        0 | 1 => false,
        _ => {
            let messages: Vec<&[u8]> = formed.iter().map(|one| one.message.as_slice()).collect();
            let signatures: Vec<Signature> = formed.iter().map(|one| one.signature).collect();
            let keys: Vec<VerifyingKey> = formed.iter().map(|one| one.key).collect();
            ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
        }
    };
    let tried = (formed.len() >= 2).then_some(batch_passed);
    if batch_passed {
        metrics.count_signatures(formed.len(), 0, tried);
    } else {
        for ((_, one), valid) in all.iter().zip(valid.iter_mut()) {
            if *valid {
                *valid = verify_one(one);
            }
        }
        metrics.count_signatures(0, formed.len(), tried);
    }
    let mut verdicts = vec![true; batch.len()];
    for ((index, _), valid) in all.iter().zip(valid) {
        verdicts[*index] &= valid;
    }
    verdicts
}

fn verify_one(signed: &Signed) -> bool {
    signed
        .key
        .verify_strict(&signed.message, &signed.signature)
        .is_ok()
}

/// `2^255 - 19`, little-endian: the field's modulus; a canonical `y` is below it.
const MODULUS: [u8; 32] = {
    let mut modulus = [0xff; 32];
    modulus[0] = 0xed;
    modulus[31] = 0x7f;
    modulus
};

/// The `y` coordinates (little-endian, sign bit clear) of the points of small order: the
/// eight torsion points have these five, each with either sign of `x`
/// (`tests::the_small_order_list_is_the_eight_torsion_points` derives them from
/// curve25519-dalek). Non-canonical encodings (`y >= p`) are refused before this list.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    // 0: the two points of order 4.
    [0; 32],
    // 1: the identity.
    {
        let mut one = [0; 32];
        one[0] = 1;
        one
    },
    // p - 1: the point of order 2.
    {
        let mut minus_one = MODULUS;
        minus_one[0] = 0xec;
        minus_one
    },
    // The four points of order 8.
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// What `verify_strict` refuses and `verify_batch` does not check: `R` not canonical or of
/// small order, or the key of small order (a weak key).
fn strictly_formed(signature: &Signature, key: &VerifyingKey) -> bool {
    let mut y = *signature.r_bytes();
    y[31] &= 0x7f;
    let canonical = y.iter().rev().lt(MODULUS.iter().rev());
    canonical && !SMALL_ORDER_Y.contains(&y) && !key.is_weak()
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::traits::{Identity, IsIdentity};
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn y_of(point: &EdwardsPoint) -> [u8; 32] {
        let mut y = point.compress().to_bytes();
        y[31] &= 0x7f;
        y
    }

    #[test]
    fn the_small_order_list_is_the_eight_torsion_points() {
        // The torsion subgroup is cyclic of order 8: the multiples of one point of order 8
        // are all eight points of small order (five y coordinates: fewer if it had order 4).
        let generator = CompressedEdwardsY(SMALL_ORDER_Y[3]).decompress().unwrap();
        assert!(generator.is_small_order());
        let mut point = EdwardsPoint::identity();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..8 {
            assert!(point.is_small_order());
            seen.insert(y_of(&point));
            point += generator;
        }
        assert!(point.is_identity(), "the generator has order 8");
        let listed: std::collections::BTreeSet<[u8; 32]> = SMALL_ORDER_Y.into_iter().collect();
        assert_eq!(seen, listed);
        assert_eq!(MODULUS, {
            let mut p = [0u8; 32];
            p.copy_from_slice(
                &hex::decode("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
                    .unwrap(),
            );
            p
        });
    }

    fn signed(index: u8) -> (Vec<u8>, Signature, VerifyingKey) {
        let key = SigningKey::from_bytes(&[index; 32]);
        let message = vec![index; 100];
        (message.clone(), key.sign(&message), key.verifying_key())
    }

    fn job(message: Vec<u8>, signature: Signature, key: VerifyingKey) -> Job {
        Job {
            signed: vec![Signed {
                message,
                signature,
                key,
            }],
            answer: oneshot::channel().0,
        }
    }

    #[test]
    fn a_batch_with_one_bad_signature_refuses_only_that_one() {
        let mut batch: Vec<Job> = (1..=8)
            .map(|index| {
                let (message, signature, key) = signed(index);
                job(message, signature, key)
            })
            .collect();
        let metrics = Metrics::default();
        assert_eq!(verdicts(&batch, &metrics), vec![true; 8]);
        batch[3].signed[0].message[0] ^= 1;
        let mut expected = vec![true; 8];
        expected[3] = false;
        assert_eq!(verdicts(&batch, &metrics), expected);
        // The first batch passed; the second failed and its eight were verified alone.
        let text = metrics.render();
        assert!(text.contains("mimi_signatures_verified_total{how=\"batch\"} 8"));
        assert!(text.contains("mimi_signatures_verified_total{how=\"alone\"} 8"));
        assert!(text.contains("mimi_signature_batches_total{outcome=\"passed\"} 1"));
        assert!(text.contains("mimi_signature_batches_total{outcome=\"failed\"} 1"));
    }

    #[test]
    fn a_job_of_several_signatures_holds_only_when_all_of_them_do() {
        let several = |first: u8, bad: Option<usize>| {
            let mut job = Job {
                signed: (first..first + 3)
                    .map(|index| {
                        let (message, signature, key) = signed(index);
                        Signed {
                            message,
                            signature,
                            key,
                        }
                    })
                    .collect(),
                answer: oneshot::channel().0,
            };
            if let Some(bad) = bad {
                job.signed[bad].message.push(0);
            }
            job
        };
        let metrics = Metrics::default();
        let batch = vec![several(1, None), several(4, Some(2)), several(7, None)];
        assert_eq!(verdicts(&batch, &metrics), vec![true, false, true]);
        // One batch of nine, failed, then each of the nine alone.
        let text = metrics.render();
        assert!(text.contains("mimi_signatures_verified_total{how=\"alone\"} 9"));
        assert!(text.contains("mimi_signature_batches_total{outcome=\"failed\"} 1"));
        let batch = vec![several(1, None), several(4, None)];
        assert_eq!(verdicts(&batch, &metrics), vec![true, true]);
        assert!(
            metrics
                .render()
                .contains("mimi_signatures_verified_total{how=\"batch\"} 6")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_all_answers_for_the_whole_set_batched_or_not() {
        for batched in [true, false] {
            let metrics = Arc::new(Metrics::default());
            let verifier = SignatureVerifier::new(batched, metrics.clone());
            // 40 signatures: more than one batch's worth, the bad one in the last.
            let set = |bad: bool| -> Vec<Signed> {
                (20..60u8)
                    .map(|index| {
                        let (mut message, signature, key) = signed(index);
                        if bad && index == 57 {
                            message[0] ^= 1;
                        }
                        Signed {
                            message,
                            signature,
                            key,
                        }
                    })
                    .collect()
            };
            assert!(verifier.verify_all(set(false)).await, "batched {batched}");
            if batched {
                // In jobs of at most 16, each a batch of its own: 16, 16 and 8.
                assert!(
                    metrics
                        .render()
                        .contains("mimi_signature_batches_total{outcome=\"passed\"} 3")
                );
            }
            assert!(!verifier.verify_all(set(true)).await, "batched {batched}");
            assert!(verifier.verify_all(Vec::new()).await, "batched {batched}");
        }
    }

    #[test]
    fn small_order_and_non_canonical_r_are_refused_as_verify_strict_does() {
        let (message, signature, key) = signed(9);
        let s = signature.s_bytes();
        for y in SMALL_ORDER_Y {
            for sign in [0, 0x80] {
                let mut r = y;
                r[31] |= sign;
                let forged = Signature::from_components(r, *s);
                assert!(!strictly_formed(&forged, &key));
                assert!(key.verify_strict(&message, &forged).is_err());
            }
        }
        let mut non_canonical = MODULUS;
        non_canonical[0] += 1; // p + 1, which decompresses to the identity
        let forged = Signature::from_components(non_canonical, *s);
        assert!(!strictly_formed(&forged, &key));
        assert!(strictly_formed(&signature, &key));
    }

    #[test]
    fn a_weak_key_is_refused() {
        let weak = VerifyingKey::from_bytes(&[0; 32]).unwrap();
        assert!(weak.is_weak());
        let (_, signature, _) = signed(10);
        assert!(!strictly_formed(&signature, &weak));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_verdict() {
        let metrics = Arc::new(Metrics::default());
        let verifier = Arc::new(SignatureVerifier::new(true, metrics.clone()));
        let tasks: Vec<_> = (1..=40u8)
            .map(|index| {
                let verifier = verifier.clone();
                tokio::spawn(async move {
                    let (mut message, signature, key) = signed(index);
                    let honest = index % 5 != 0;
                    if !honest {
                        message.push(0);
                    }
                    (honest, verifier.verify(message, signature, key).await)
                })
            })
            .collect();
        for task in tasks {
            let (honest, valid) = task.await.unwrap();
            assert_eq!(honest, valid);
        }
        // Every signature was verified, in a batch or alone (how many of each depends on
        // how they arrived); the 8 bad ones were verified alone.
        let text = metrics.render();
        let count = |how: &str| -> u64 {
            let prefix = format!("mimi_signatures_verified_total{{how=\"{how}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(prefix.as_str()))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(count("batch") + count("alone") >= 40);
        assert!(count("alone") >= 8);
    }
}
