//! Regression tests for the defects a robustness probe found (issue #17, part A), one test per
//! defect: each input that made kiln panic, wrap silently, read or allocate without bound,
//! ignore an error or accept contradicting options now gets a clear error and a non-zero exit.
//! Frontend diagnostics are error filetests (tests/errors/, named in each test's comment).

mod common;

use kiln_ir::interp::{Data, Tensor};
use std::path::Path;
use std::process::{Command, Output};

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).current_dir(dir).args(args).output().expect("run kiln")
}

/// Exit code 1 (a usage error, not a crash or internal error) with `message` in stderr.
fn refused(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(message), "{stderr}");
}

const PROGRAM: &str = "fn f(x: f32[4]) -> f32[4] { x * 2.0 }\nexport f;\n";

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.kn"), PROGRAM).unwrap();
    std::fs::write(dir.path().join("x.bin"), [0u8; 16]).unwrap();
    dir
}

/// A.1: `--egraph-seconds NaN` was a panic converting to a Duration (huge slice steps and
/// `wrt=[]` are tests/run/shapes.kn's `huge_steps` and tests/errors/E0302_empty_wrt.kn).
#[test]
fn a_time_limit_that_is_not_a_number_is_refused() {
    let dir = project();
    for bad in ["NaN", "inf", "-1"] {
        let out = kiln(dir.path(), &["build", "m.kn", &format!("--egraph-seconds={bad}")]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--egraph-seconds"));
    }
}

/// A.4: `kiln check /dev/zero` and `kiln eval --input x=/dev/zero` read until memory ran out;
/// `kiln expect` and `kiln eval` aborted allocating terabytes for a legal shape.
#[test]
fn reads_and_interpreter_memory_are_bounded() {
    let dir = project();
    refused(&kiln(dir.path(), &["check", "/dev/zero"]), "larger than 16777216 bytes");
    refused(&kiln(dir.path(), &["eval", "m.kn", "--function", "f", "--input", "x=/dev/zero"]), "larger than 16 bytes");
    let huge = "fn f(x: f32[4]) -> f32[1048576, 1048576] {\n    broadcast_to(reshape(sum(x), [1, 1]), [1048576, 1048576])\n}\nexport f;\n";
    std::fs::write(dir.path().join("huge.kn"), huge).unwrap();
    refused(&kiln(dir.path(), &["expect", "huge.kn", "-o", "out"]), "more than --memory-limit 4096 MiB");
    refused(&kiln(dir.path(), &["eval", "huge.kn", "--function", "f", "--input", "x=x.bin"]), "--memory-limit");
}

/// A.7: `kiln build m.kn --emit ir > /dev/full` exited 0.
#[test]
fn a_failed_write_to_standard_output_is_an_error() {
    let dir = project();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .args(["build", "m.kn", "--emit", "ir"])
        .stdout(full)
        .output()
        .unwrap();
    refused(&out, "cannot write to standard output");
}

/// A.14: options that contradict each other, a repeated input, a file name that is not a C
/// identifier and a file that exports nothing were accepted silently (or, for a CPU name given
/// for a GPU, reported as an unsupported GPU).
#[test]
fn contradicting_options_and_silent_defaults_are_refused() {
    let dir = project();
    let d = dir.path();
    refused(&kiln(d, &["build", "m.kn", "--linker", "cc"]), "add --output-kind shared");
    refused(
        &kiln(d, &["build", "m.kn", "--target", "nvptx64-nvidia-cuda", "--output-kind", "static"]),
        "--output-kind static is for CPU targets",
    );
    refused(
        &kiln(d, &["build", "m.kn", "--target", "nvptx64-nvidia-cuda", "--target-cpu", "skylake"]),
        "give a GPU architecture with --gpu",
    );
    refused(&kiln(d, &["eval", "m.kn", "--function", "f", "--input", "x=x.bin", "--input", "x=x.bin"]), "given twice");
    std::fs::write(d.join("my-model.kn"), PROGRAM).unwrap();
    refused(&kiln(d, &["build", "my-model.kn"]), "give one with --module-name (for example `my_model`)");
    let named = kiln(d, &["build", "my-model.kn", "--module-name", "my_model", "-o", "out"]);
    assert!(named.status.success(), "{}", String::from_utf8_lossy(&named.stderr));
    std::fs::write(d.join("none.kn"), "fn f(x: f32[4]) -> f32[4] { x }\n").unwrap();
    refused(&kiln(d, &["build", "none.kn"]), "exports nothing");
    // A byte order mark and Python's `1.e5` are accepted.
    std::fs::write(d.join("bom.kn"), "\u{feff}fn f(x: f32[4]) -> f32[4] { x * 1.e1 }\nexport f;\n").unwrap();
    let bom = kiln(d, &["check", "bom.kn"]);
    assert!(bom.status.success(), "{}", String::from_utf8_lossy(&bom.stderr));
}

/// A.14: cross_entropy with an out-of-range label returned the row's logsumexp. Labels now
/// count from the end when negative and give NaN outside [-n, n), as optax's
/// softmax_cross_entropy_with_integer_labels (jnp.take_along_axis) does; compiled code agrees.
#[test]
fn cross_entropy_labels_follow_jax() {
    let src = "fn f(l: f32[4, 3], y: i32[4]) -> f32[4] { cross_entropy(l, y) }\nexport f;\n";
    let module = kiln_frontend::compile_source(src, "ce").unwrap_or_else(|d| panic!("{d:?}"));
    let logits: Vec<f32> = (0..12).map(|i| i as f32 * 0.25).collect();
    let args =
        [Tensor::new(vec![4, 3], Data::F32(logits.clone())), Tensor::new(vec![4], Data::I32(vec![1, -1, 3, -4]))];
    let lse = |row: usize| logits[3 * row..3 * row + 3].iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
    let want = [lse(0) - logits[1] as f64, lse(1) - logits[5] as f64];
    for result in [kiln_ir::interp::run(&module.funcs[0], &args), common::compile_and_load(&module, 2).call("f", &args)]
    {
        let Data::F32(got) = &result[0].data else { panic!("f32") };
        assert!((got[0] as f64 - want[0]).abs() < 1e-5 && (got[1] as f64 - want[1]).abs() < 1e-5, "{got:?}");
        assert!(got[2].is_nan() && got[3].is_nan(), "{got:?}");
    }
}

/// A.6: names whose generated forms collide made headers or bindings that did not compile, or
/// size macros that made a caller under-allocate, while the build exited 0 (keywords and
/// macros as names are tests/artifacts.rs's `header_and_bindings_survive_...`).
#[test]
fn generated_names_that_would_collide_are_e0110() {
    let cases = [
        "fn set_parallel_for(x: f32[4]) -> f32[4] { x }\nexport set_parallel_for;",
        "fn f(workspace: f32[4]) -> f32[4] { workspace }\nexport f;",
        "fn f(check: f32[4]) -> f32[4] { check }\nexport f;",
        "fn f(X: f32[4], x: f32[4]) -> f32[4] { X + x }\nexport f;",
        "fn f(x_y: f32[4]) -> f32[4] { x_y }\nfn f_x(y: f32[4]) -> f32[4] { y }\nexport f;\nexport f_x;",
        "fn f(x: f32[4]) -> f32[4] { x }\nexport f;\nexport f as f_with_workspace;",
        "fn f(x: f32[4]) -> f32[4] { x }\nexport f;\nexport f as call_f;",
        "fn f(x: f32[4]) -> f32[4] { x }\nexport f;\nexport f as f_packed;",
        "fn f(self: f32[4]) -> f32[4] { self }\nexport f;",
        "fn f(x: f32[4]) -> f32[4] { x }\nexport f as crate;",
    ];
    for text in cases {
        let source = kiln::Source { name: "m.kn".into(), text: text.into() };
        match kiln::check(&source, "m") {
            Err(e) => assert_eq!(e.diagnostic().map(|d| d.code), Some("E0110"), "{text}: {}", e.render(false)),
            other => panic!("{text}: {:?}", other.map(|_| ())),
        }
    }
    let source = kiln::Source { name: "m.kn".into(), text: PROGRAM.into() };
    match kiln::check(&source, "__m") {
        Err(e) => assert_eq!(e.diagnostic().map(|d| d.code), Some("E0110"), "{}", e.render(false)),
        other => panic!("module __m: {:?}", other.map(|_| ())),
    }
}

/// A.3: elaboration is linear in the program. A helper called twice on the same arguments at
/// every level of 32 (`f{k}(x) = f{k-1}(x) + f{k-1}(x)`) inlined 2^32 copies and aborted
/// allocating 10 GB; 3,000 chained helpers with static shapes were each elaborated again for
/// its own check (31 s). Sizes are asserted, not times: the doubling chain gives one
/// instruction per level, the helper chain two per helper. Calls nest at most 500 deep
/// (E0004), on a test thread's default stack.
#[test]
fn elaboration_is_linear_in_calls() {
    let mut doubling = String::from("fn f0(x: f32[4]) -> f32[4] { x * 2.0 }\n");
    for k in 1..32 {
        doubling += &format!("fn f{k}(x: f32[4]) -> f32[4] {{ f{}(x) + f{}(x) }}\n", k - 1, k - 1);
    }
    doubling += "export f31;\n";
    let chain_of = |n: usize| {
        let mut s = String::from("fn f0(x: f32[4]) -> f32[4] { x * 2.0 }\n");
        for k in 1..n {
            s += &format!("fn f{k}(x: f32[4]) -> f32[4] {{ f{}(x) + 1.0 }}\n", k - 1);
        }
        s + &format!("export f{};\n", n - 1)
    };
    for (text, most) in [(doubling, 40), (chain_of(500), 3 * 500)] {
        let source = kiln::Source { name: "m.kn".into(), text };
        let module = kiln::check(&source, "m").unwrap_or_else(|e| panic!("{e}"));
        let count = module.funcs[0].insts.len();
        assert!(count <= most, "{count} instructions, at most {most} expected");
    }
    let source = kiln::Source { name: "m.kn".into(), text: chain_of(502) };
    match kiln::check(&source, "m") {
        Err(e) => assert_eq!(e.diagnostic().map(|d| d.code), Some("E0004"), "{}", e.render(false)),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// F: the e-graph's wall-clock limit could change the output on a slower machine. Reaching it
/// now fails the build (exit 1) with a hint, so only the node and iteration limits decide.
#[test]
fn reaching_the_saturation_time_limit_fails_the_build() {
    let dir = project();
    refused(
        &kiln(dir.path(), &["build", "m.kn", "--egraph-seconds=0", "-o", "out"]),
        "would depend on this machine's speed",
    );
    let out = kiln(dir.path(), &["build", "m.kn", "-o", "out"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// #17 E: one run reports every error of a file (up to 50) with its warnings; warnings alone
/// do not fail a check; `--error-format json` gives one object per diagnostic with spans;
/// `kiln explain` prints the errors page built into the binary.
#[test]
fn diagnostics_come_all_at_once_as_text_or_json_and_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "two.kn",
        "fn f(x: f32[4], unused: f32[4]) -> f32[4] { x + wieght }\nfn g(x: f32[4]) -> f32[4] { nope(x) }\nexport f;\nexport g;\n",
    );
    let out = kiln(dir.path(), &["check", "two.kn"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in ["warning[W0002]", "error[E0101]", "error[E0102]", "error: 2 errors in `two.kn`"] {
        assert!(stderr.contains(expected), "{expected} in:\n{stderr}");
    }
    // The same run as JSON: one object per line, in source order, lines and columns from 1.
    let out = kiln(dir.path(), &["check", "two.kn", "--error-format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let objects: Vec<serde_json::Value> = stderr.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    let codes: Vec<&str> = objects.iter().map(|o| o["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["W0002", "E0101", "E0102"], "{stderr}");
    let span = &objects[1]["spans"][0];
    assert_eq!((span["line_start"].as_u64(), span["column_start"].as_u64()), (Some(1), Some(49)));
    assert_eq!((objects[0]["level"].as_str(), objects[1]["level"].as_str()), (Some("warning"), Some("error")));
    // Warnings alone: the check succeeds and still prints them.
    write("warn.kn", "fn f(x: f32[4]) -> f32[4] {\n    let y = x;\n    x\n}\nexport f;\n");
    let out = kiln(dir.path(), &["check", "warn.kn"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning[W0001]: unused value `y`"));
    // The run stops at 50 errors and says so.
    let body: Vec<String> = (0..60).map(|i| format!("missing{i}")).collect();
    write("many.kn", &format!("fn f(x: f32[4]) -> f32[4] {{ x + {} }}\nexport f;\n", body.join(" + ")));
    let stderr = String::from_utf8(kiln(dir.path(), &["check", "many.kn"]).stderr).unwrap();
    assert_eq!(stderr.matches("error[E0101]").count(), 50);
    assert!(stderr.contains("error: stopped after 50 errors"), "{stderr}");
    // A bad option in JSON too.
    let out = kiln(dir.path(), &["check", "absent.kn", "--error-format", "json"]);
    let object: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(object["message"].as_str().unwrap().contains("absent.kn") && object["code"].is_null());
    // Every code's page, as docs/errors has it; an unknown code is refused.
    let page = kiln(dir.path(), &["explain", "E0209"]);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/errors/E0209.md");
    assert_eq!(String::from_utf8(page.stdout).unwrap(), std::fs::read_to_string(docs).unwrap());
    let out = kiln(dir.path(), &["explain", "E0000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("W0003"), "the refusal lists the codes");
}

/// A.3: elementwise fusion grew each fused op by cloning its region, quadratic in a chain's
/// length (4,000 chained lets: 30 s in the `fuse` stage). Fusion groups now end at 128 ops, at
/// an op the emitter tags `kiln.fusion_barrier` and the stage keeps apart. A chain of 300 (two
/// barriers, two functions numbering them through the module) compiles, runs like the
/// interpreter, and its fused module holds the three groups. So does a chain where each let
/// reads the last twice (`a * 0.999 + a * a * 0.001`), which fusion merges whole once both
/// readers are in one group: counting only values read once, it got no barrier (1,000 lets:
/// 0.9 s in `fuse`, 2,000: 3.6 s).
#[test]
fn long_elementwise_chains_fuse_in_bounded_groups() {
    let chain = |name: &str, n: usize, step: &str| {
        let mut s = format!("fn {name}(x: f32[64]) -> f32[64] {{\n    let a0 = x * 0.5;\n");
        for i in 1..n {
            s += &format!("    let a{i} = {};\n", step.replace('a', &format!("a{}", i - 1)));
        }
        s + &format!("    a{}\n}}\nexport {name};\n", n - 1)
    };
    // The program checked against the interpreter, and its barriers and fused regions' ops
    // (one arith op each) after `fuse`.
    let fused = |text: String| {
        let source = kiln::Source { name: "m.kn".into(), text };
        let module = kiln::check(&source, "m").unwrap_or_else(|e| panic!("{e}"));
        common::check_module(&module, &mut kiln_ir::gen::Rng::new(common::seed()));
        let options =
            kiln::Options { module_name: Some("m".into()), dump_after: vec!["fuse".into()], ..Default::default() };
        let out = kiln::build(&source, &options).unwrap_or_else(|e| panic!("{e}"));
        let (_, fused) = out.dumps.iter().find(|(ext, _)| ext.contains("fuse")).expect("the module after fuse");
        let regions: Vec<usize> = fused
            .split("linalg.generic")
            .skip(1)
            .map(|op| op.split("linalg.yield").next().unwrap().matches("arith.").count())
            .collect();
        (fused.matches("kiln.fusion_barrier = ").count(), regions)
    };
    // Each function: 299 ops (a multiply and an add per let), two barriers, and no fused
    // region of more than 128 ops.
    let (barriers, regions) = fused(chain("f", 150, "a * 0.999 + 0.001") + &chain("g", 150, "a * 0.999 + 0.001"));
    assert_eq!(barriers, 4);
    assert!(regions.iter().all(|&n| n <= 128), "{regions:?}");
    assert!(regions.iter().filter(|&&n| n >= 100).count() >= 4, "long groups still fuse: {regions:?}");
    // 150 lets of four ops each: at least four barriers, groups of at most 128 ops.
    let (barriers, regions) = fused(chain("h", 150, "a * 0.999 + a * a * 0.001"));
    assert!(barriers >= 4, "{barriers} barriers");
    assert!(regions.iter().all(|&n| n <= 128), "{regions:?}");
}

/// A.3: LLVM's code generation of one huge function grew faster than the function (10,000
/// chained lets: 24 s in stage `object`, three times the 5,000 lets' 8.3 s). A function of more
/// than `SEGMENT_OPS` ops is now cut into segment functions (codegen/src/segment.rs). A chain
/// of 100 products, about 17,000 ops, is cut, and runs like the interpreter at -O0 and -O2.
/// Its products, all of one shape, share one schedule, matched once: a match per product
/// walked the whole module each time (600 products: 5 s in `schedule`, 1,200: 34 s).
#[test]
fn long_functions_are_cut_into_segments_that_run_like_the_interpreter() {
    let mut text = String::from("fn f(x: f32[16, 16], w: f32[16, 16]) -> f32[16, 16] {\n    let y0 = x;\n");
    for i in 1..=100 {
        text += &format!("    let y{i} = tanh(y{} @ w) + y{} * 0.5;\n", i - 1, i - 1);
    }
    text += "    y100\n}\nexport f;\n";
    let source = kiln::Source { name: "m.kn".into(), text };
    let module = kiln::check(&source, "m").unwrap_or_else(|e| panic!("{e}"));
    let mut rng = kiln_ir::gen::Rng::new(common::seed());
    for opt in [0, 2] {
        let loaded = common::compile_and_load(&module, opt);
        let args = kiln_ir::gen::arguments(&mut rng, &module.funcs[0], false);
        common::check_against_interpreter(&loaded, "f", &args, common::Check::Program).unwrap();
    }
    let options = kiln::Options {
        module_name: Some("m".into()),
        emit: vec![kiln::EmitKind::Mlir],
        dump_after: vec!["split-functions".into()],
        ..Default::default()
    };
    let out = kiln::build(&source, &options).unwrap_or_else(|e| panic!("{e}"));
    let (_, split) = out.dumps.iter().find(|(ext, _)| ext.contains("split-functions")).expect("the module after it");
    let segments = split.matches("func.func private @m_f_impl_seg").count();
    assert!(segments >= 2, "{segments} segments");
    assert_eq!(split.matches("call @m_f_impl_seg").count(), segments);
    let (_, emitted) = out.dumps.iter().find(|(ext, _)| ext == "mlir").expect("the emitted module and its schedule");
    let script = emitted.split("transform.named_sequence").nth(1).expect("a schedule");
    assert_eq!(script.matches("kiln.product_recipe = ").count(), 1, "{script}");
}

/// A scan's residual stacks are checked against kiln's shape limits: one whose residuals (here
/// exp of a 2^21-element array, at each of 2^20 rows) would not fit is checkpointed, saving
/// only its carries (a scalar); one whose carries would not fit is an error
/// (tests/errors/E0301_scan_carry_stacks.kn). Both were internal compiler errors.
#[test]
fn scan_residuals_past_the_shape_limits_are_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let program = "fn f(xs: f32[1048576, 1], w: f32[2097152]) -> f32 {
    let total = loop acc = 0.0 for x in xs { acc + sum(exp(w * x[0])) };
    total
}
export grad(f, wrt=[w]) as g;
";
    std::fs::write(dir.path().join("m.kn"), program).unwrap();
    let out = kiln(dir.path(), &["build", "m.kn", "--emit", "ir"]);
    let ir = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ir.contains("scan[") && !ir.contains("checkpoint=0"), "{ir}");
}
