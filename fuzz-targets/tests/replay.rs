//! Every fuzz target, briefly, in the test command: on its seeds, on the inputs that once
//! broke it (fuzz/regressions/<target>/), and on mutations of its seeds. A failing input is
//! written to target/fuzz-failures/<target>-<n> so that `cargo fuzz run <target> FILE`
//! or this test reproduces it. scripts/fuzz.sh runs the same targets under libFuzzer.

use kiln_fuzz_targets::{regressions, seeds, Mutator, Outcome, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Mutations per target in the test command.
const MUTATIONS: usize = 3_000;

fn replay(name: &str) {
    let target = TARGETS.iter().find(|t| t.name == name).expect("a target");
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "`{name}` has seeds");
    let seed = kiln_ir::gen::test_seed();
    let mut mutator = Mutator::new(seed);
    let mut rng = kiln_ir::gen::Rng::new(seed);
    let regressions = regressions(name);
    let mutated = (0..MUTATIONS).map(|_| {
        let (a, b) = (rng.below(seeds.len()), rng.below(seeds.len()));
        mutator.mutate(&seeds[a], &seeds[b])
    });
    let inputs = seeds.iter().cloned().chain(regressions.into_iter().map(|r| r.1)).chain(mutated);
    let mut failures = vec![];
    let (mut accepted, mut refused) = (0, 0);
    for (n, input) in inputs.enumerate() {
        match catch_unwind(AssertUnwindSafe(|| (target.run)(&input))) {
            Ok(Outcome::Accepted) => accepted += 1,
            Ok(Outcome::Refused) => refused += 1,
            Err(_) => {
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("{name}-{n}"));
                std::fs::write(&path, &input).unwrap();
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "`{name}` failed on {} inputs, written to:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{name}: {accepted} inputs accepted, {refused} refused");
    // Every seed is accepted (seeds of error filetests aside), and mutations reach refusals:
    // a target that refuses everything, or accepts everything, checks nothing deep.
    assert!(accepted >= seeds_accepted(name, &seeds), "`{name}`: fewer inputs accepted than seeds");
    assert!(refused > MUTATIONS / 10, "`{name}`: only {refused} of {MUTATIONS} mutations refused");
}

/// How many of the seeds the target accepts: at least one for every target, all of them but
/// for `source`, whose seeds include the error filetests.
fn seeds_accepted(name: &str, seeds: &[Vec<u8>]) -> usize {
    let target = TARGETS.iter().find(|t| t.name == name).unwrap();
    let accepted = seeds.iter().filter(|s| (target.run)(s) == Outcome::Accepted).count();
    assert!(accepted > 0, "`{name}` accepts none of its seeds");
    if name != "source" {
        assert_eq!(accepted, seeds.len(), "`{name}` refuses some of its seeds");
    }
    accepted
}

#[test]
fn source() {
    replay("source");
}

#[test]
fn ir_text() {
    replay("ir_text");
}

#[test]
fn manifest() {
    replay("manifest");
}

#[test]
fn call() {
    replay("call");
}

#[test]
fn onnx() {
    replay("onnx");
}

#[test]
fn every_target_is_replayed_here_and_built_by_the_fuzz_harness() {
    let here = include_str!("replay.rs");
    let harness =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml")).unwrap();
    for t in TARGETS {
        assert!(here.contains(&format!("replay(\"{}\")", t.name)), "tests/replay.rs replays `{}`", t.name);
        assert!(harness.contains(&format!("name = \"{}\"", t.name)), "fuzz/Cargo.toml builds `{}`", t.name);
    }
}
