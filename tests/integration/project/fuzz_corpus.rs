//! The fuzz targets' corpora on stable (issue 14, "Fuzzing in the tree"): every seed of
//! `mimi_gateway::fuzz::seeds`, every file under `fuzz/corpus/<target>/` and every past
//! crasher under `fuzz/artifacts/<target>/` goes through its target once more, so what a
//! fuzzer found stays fixed. With `MIMI_WRITE_FUZZ_SEEDS=1` the seeds are (re)written into
//! `fuzz/corpus/` first.

use std::path::Path;

#[test]
fn seeds_corpora_and_crashers_replay_without_a_finding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = mimi_gateway::fuzz::seeds();
    let write = std::env::var_os("MIMI_WRITE_FUZZ_SEEDS").is_some();
    for (index, (target, bytes)) in seeds.iter().enumerate() {
        assert!(mimi_gateway::fuzz::TARGETS.contains(target), "{target}");
        if write {
            let dir = root.join("corpus").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{index}")), bytes).unwrap();
        }
        mimi_gateway::fuzz::run(target, bytes);
    }
    let mut replayed = 0;
    for target in mimi_gateway::fuzz::TARGETS {
        for kind in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                mimi_gateway::fuzz::run(target, &std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= seeds.len(),
        "the committed corpora are there: {replayed}"
    );
}
