//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`, minimised) and the inputs that
//! once broke a property (`fuzz/regressions/<target>/`) through the checks their targets run,
//! on stable, as part of `cargo test`. `scripts/fuzz` grows the corpora on nightly.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("readable corpus directory").path()).collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let check = berth_fuzz_checks::TARGETS.iter().find(|(name, _)| *name == target).expect("a known target").1;
    let corpus = inputs(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty: nothing would be replayed");
    for file in corpus.iter().chain(&inputs(&fuzz_dir().join("regressions").join(target))) {
        let data = std::fs::read(file).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} breaks a property (see the panic above)", file.display());
    }
}

#[test]
fn every_target_has_a_test_here() {
    let names: Vec<&str> = berth_fuzz_checks::TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["manifest", "names", "ranges", "sigv4", "ecr_json", "lifecycle", "iam_policy"]);
}

#[test]
fn manifest() {
    replay("manifest");
}

#[test]
fn names() {
    replay("names");
}

#[test]
fn ranges() {
    replay("ranges");
}

#[test]
fn sigv4() {
    replay("sigv4");
}

#[test]
fn ecr_json() {
    replay("ecr_json");
}

#[test]
fn lifecycle() {
    replay("lifecycle");
}

#[test]
fn iam_policy() {
    replay("iam_policy");
}
