//! Stage snapshots: every program in tests/stages/ is built for the CPU (x86-64-v3) and the
//! GPU (sm_80) with `--dump-after all`, and the module after each code generation stage is an
//! insta snapshot, `stages__<program>-<target>-<NN>-<stage>.snap` (NN the stage's place in
//! the pipeline), as MLIR's lit tests keep a pass's input and output together. A change to a
//! stage shows as a diff of exactly the stages it changes; `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test --test stages`) blesses the new output after review.

use kiln::{build, Options, Source};
use std::path::Path;

/// The targets each program is built for: (snapshot name, target triple, CPU).
const TARGETS: &[(&str, &str, &str)] =
    &[("cpu", "x86_64-unknown-linux-gnu", "x86-64-v3"), ("gpu", "nvptx64-nvidia-cuda", "sm_80")];

#[test]
fn every_stage_of_every_program_matches_its_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stages");
    let mut programs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kn"))
        .collect();
    programs.sort();
    assert!(programs.len() >= 2, "tests/stages holds the stage programs");
    for path in &programs {
        let source = Source::read(path).unwrap();
        let stem = source.default_module_name();
        for &(name, triple, cpu) in TARGETS {
            let target = kiln_codegen::Target::new(Some(triple), Some(cpu)).unwrap();
            let gpu = target.arch.is_gpu();
            let options = Options { target, emit: vec![], dump_after: vec!["all".into()], ..Options::default() };
            let out = build(&source, &options).unwrap_or_else(|e| panic!("{}", e.render(false)));
            let stages = kiln_codegen::stage_names(gpu);
            // The IR steps' dumps come first; then one dump per stage, in pipeline order.
            let dumps: Vec<&(String, String)> = out.dumps.iter().filter(|(n, _)| !n.ends_with(".kir")).collect();
            let names: Vec<&str> =
                dumps.iter().map(|(n, _)| n.trim_start_matches("after-").split('.').next().unwrap()).collect();
            assert_eq!(names, stages, "{stem} on {name}: the stages run are the stages listed");
            for (i, ((_, text), stage)) in dumps.iter().zip(stages).enumerate() {
                insta::assert_snapshot!(format!("{stem}-{name}-{i:02}-{stage}"), text);
            }
        }
    }
}

/// `-O0` runs every stage too, the optimizing ones (fuse, schedule, prefetch,
/// outline-parallel) leaving the module as they found it.
#[test]
fn optimizing_stages_change_nothing_at_o0() {
    let source = Source::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stages/softmax.kn")).unwrap();
    let options = Options { opt_level: 0, emit: vec![], dump_after: vec!["all".into()], ..Options::default() };
    let out = build(&source, &options).unwrap();
    let after = |stage: &str| &out.dumps.iter().find(|(n, _)| n == &format!("after-{stage}.mlir")).unwrap().1;
    for (before, stage) in [("emit", "fuse"), ("prepare", "schedule"), ("plan-workspace", "prefetch")] {
        assert_eq!(after(before), after(stage), "{stage} at -O0");
    }
    assert_eq!(after("prefetch"), after("outline-parallel"));
}

/// A stage name that does not exist is a usage error that lists the names.
#[test]
fn unknown_stage_names_are_refused_with_the_list() {
    let source = Source { name: "m.kn".into(), text: "fn f(x: f32[2]) -> f32[2] { x }\nexport f;\n".into() };
    let options = Options { dump_after: vec!["bufferise".into()], ..Options::default() };
    let message = build(&source, &options).unwrap_err().render(false);
    assert!(message.contains("unknown step `bufferise`") && message.contains("plan-workspace"), "{message}");
}
