//! Artifacts: reproducible bytes, a header that compiles as strict C99, module-prefixed
//! symbols only, and the CLI's outputs and exit codes.

mod common;

use std::path::Path;
use std::process::Command;

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

fn read_dir_sorted(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn builds_are_byte_identical_across_runs_directories_and_source_paths() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    // The same source under another directory: no path may leak into an artifact.
    let moved = b.path().join("elsewhere/deeper");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::copy(example("mlp.kn"), moved.join("mlp.kn")).unwrap();
    let s1 = kiln().arg("build").arg(example("mlp.kn")).arg("-o").arg(a.path().join("out")).status().unwrap();
    let s2 =
        kiln().current_dir(&moved).arg("build").arg("mlp.kn").arg("-o").arg(b.path().join("x/out")).status().unwrap();
    assert!(s1.success() && s2.success());
    let first = read_dir_sorted(&a.path().join("out"));
    let second = read_dir_sorted(&b.path().join("x/out"));
    let names: Vec<&str> = first.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["mlp.h", "mlp.json", "mlp.o", "mlp.rs"]);
    assert_eq!(first, second, "artifacts differ between builds");
    let third = tempfile::tempdir().unwrap();
    assert!(kiln().arg("build").arg(example("mlp.kn")).arg("-o").arg(third.path()).status().unwrap().success());
    assert_eq!(first, read_dir_sorted(third.path()));
}

/// Every optimization level gives the same bytes from run to run: at -O0, bufferization once
/// named its constant globals in an order that changed between runs (3 distinct objects of
/// examples/train in 12 builds), until the bufferize stage numbered them by first use.
#[test]
fn builds_are_byte_identical_at_every_level() {
    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/train/train.kn");
    for level in ["-O0", "-O1", "-O3"] {
        let builds: Vec<Vec<(String, Vec<u8>)>> = (0..6)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                assert!(kiln()
                    .arg("build")
                    .arg(&train)
                    .arg(level)
                    .arg("-o")
                    .arg(dir.path())
                    .status()
                    .unwrap()
                    .success());
                read_dir_sorted(dir.path())
            })
            .collect();
        assert!(builds.iter().all(|b| *b == builds[0]), "{level} builds differ");
    }
}

#[test]
fn manifest_records_hashes_shapes_and_target() {
    let dir = tempfile::tempdir().unwrap();
    assert!(kiln().arg("build").arg(example("mlp.kn")).arg("-o").arg(dir.path()).status().unwrap().success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("mlp.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "kiln-manifest");
    assert_eq!(manifest["version"], 3);
    assert_eq!(manifest["module"], "mlp");
    assert_eq!(manifest["target"]["cpu"], "x86-64-v3");
    let loss = &manifest["functions"][0];
    assert_eq!(loss["symbol"], "mlp_loss");
    assert_eq!(loss["params"][1]["dtype"], "i32");
    assert_eq!(loss["params"][0]["shape"], serde_json::json!([16, 32]));
    for file in manifest["files"].as_array().unwrap() {
        let bytes = std::fs::read(dir.path().join(file["name"].as_str().unwrap())).unwrap();
        use sha2::Digest;
        let digest: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(file["sha256"], digest.as_str());
        assert_eq!(file["bytes"], bytes.len());
    }
    assert!(manifest.to_string().find("/tmp").is_none(), "no path in the manifest");
}

#[test]
fn header_compiles_as_strict_c99_and_object_exports_only_prefixed_symbols() {
    let dir = tempfile::tempdir().unwrap();
    assert!(kiln().arg("build").arg(example("mlp.kn")).arg("-o").arg(dir.path()).status().unwrap().success());
    let c = dir.path().join("use.c");
    std::fs::write(&c, "#include \"mlp.h\"\nint main(void) { float x[MLP_LOSS_X_SIZE]; (void)x; return 0; }\n")
        .unwrap();
    compile_c("cc", &["-std=c99", "-Wextra", "-pedantic"], &c, dir.path());
    let nm = Command::new("nm").arg("-g").arg("--defined-only").arg(dir.path().join("mlp.o")).output().unwrap();
    let symbols: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(String::from))
        .collect();
    assert_eq!(
        symbols,
        [
            "mlp.kiln_abi",
            "mlp_loss",
            "mlp_loss_packed",
            "mlp_predict",
            "mlp_predict_packed",
            "mlp_set_parallel_for",
            "mlp_train_step",
            "mlp_train_step_packed"
        ]
    );
    let undefined = Command::new("nm").arg("-u").arg(dir.path().join("mlp.o")).output().unwrap();
    for line in String::from_utf8_lossy(&undefined.stdout).lines() {
        let name = line.split_whitespace().last().unwrap();
        assert!(kiln_codegen::cpu::ALLOWED_EXTERNAL.contains(&name), "undefined symbol `{name}`");
    }
}

#[test]
fn module_name_prefixes_symbols() {
    let dir = tempfile::tempdir().unwrap();
    let status = kiln()
        .arg("build")
        .arg(example("mlp.kn"))
        .args(["--module-name", "net2", "-o"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let header = std::fs::read_to_string(dir.path().join("net2.h")).unwrap();
    assert!(header.contains("int32_t net2_loss(const float* /* x */, const int32_t* /* labels */,"));
    let out = kiln().arg("build").arg(example("mlp.kn")).args(["--module-name", "2bad"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn emit_prints_every_stage() {
    for (kind, needle) in [
        ("ast", "SourceFile"),
        ("stats", "train_step: "),
        ("ir", "func @loss("),
        ("opt", "func @predict("),
        ("mlir", "linalg.generic"),
        ("llvm", "i32 @mlp_loss(ptr"),
        ("asm", "mlp_loss:"),
    ] {
        let out = kiln().arg("build").arg(example("mlp.kn")).arg(format!("--emit={kind}")).output().unwrap();
        assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(needle), "--emit={kind} lacks `{needle}`");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = kiln()
        .arg("build")
        .arg(example("mlp.kn"))
        .args(["--emit=ir,llvm,obj", "--timings", "-O3", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    for f in ["mlp.kir", "mlp.ll", "mlp.o", "mlp.h", "mlp.json"] {
        assert!(dir.path().join(f).exists(), "{f} written");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stages = kiln_codegen::stage_names(false).iter().copied();
    for step in ["parse", "elaborate", "saturate", "dce"].into_iter().chain(stages) {
        assert!(stderr.contains(&format!("  {step} ")), "--timings reports {step}: {stderr}");
    }
    let dump = kiln().arg("build").arg(example("mlp.kn")).arg("--dump-after=dce").arg("--emit=ir").output().unwrap();
    assert!(String::from_utf8_lossy(&dump.stdout).matches("func @loss(").count() == 2);
}

#[test]
fn cli_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.kn");
    std::fs::write(&bad, "fn f(x: f32[2]) -> f32[2] { x + y }\nexport f;\n").unwrap();
    let out = kiln().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[E0101]: cannot find value `y` in this scope"), "{stderr}");
    assert!(stderr.contains("bad.kn:1:33"), "{stderr}");
    assert_eq!(kiln().arg("check").arg(example("mlp.kn")).status().unwrap().code(), Some(0));
    for args in [
        vec!["build", "--emit=wat"],
        vec!["build", "--target", "riscv64-unknown-linux-gnu"],
        vec!["build", "--dump-after=nope"],
        vec!["build", "--target-cpu", "bogus"],
    ] {
        let out = kiln().args(&args).arg(example("mlp.kn")).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    }
    // A malformed command line is clap's exit code 2.
    assert_eq!(kiln().args(["build", "-O9"]).arg(example("mlp.kn")).status().unwrap().code(), Some(2));
}

#[test]
fn cross_compiles_for_aarch64_and_other_cpus() {
    let dir = tempfile::tempdir().unwrap();
    for (args, machine) in [
        (vec!["--target", "aarch64-unknown-linux-gnu"], "AArch64"),
        (vec!["--target-cpu", "x86-64-v4"], "X86-64"),
        (vec!["--target-cpu", "native"], "X86-64"),
    ] {
        let out = kiln().arg("build").arg(example("mlp.kn")).args(&args).arg("-o").arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let header = Command::new("readelf").arg("-h").arg(dir.path().join("mlp.o")).output().unwrap();
        assert!(String::from_utf8_lossy(&header.stdout).contains(machine), "{args:?}");
    }
}

/// Names that are C11, C++ or Rust keywords or C macros (tests/run/names.kn): the header
/// compiles as C99, C11 and C++17 and the Rust bindings compile, warnings as errors; argument
/// names are comments in prototypes. (Names whose generated forms collide are E0110.)
#[test]
fn header_and_bindings_survive_keywords_and_macros_as_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run/names.kn");
    assert!(kiln().arg("build").arg(&src).arg("-o").arg(dir.path()).status().unwrap().success());
    let header = std::fs::read_to_string(dir.path().join("names.h")).unwrap();
    assert!(
        header.contains(
            "int32_t names_f(const float* /* int */, const float* /* out0 */, const int32_t* /* double */, float* /* out0_ */, float* /* out1 */, void* /* workspace */);"
        ),
        "{header}"
    );
    let c = dir.path().join("use.c");
    std::fs::write(&c, "#include \"names.h\"\nint main(void) { return 0; }\n").unwrap();
    compile_c("cc", &["-std=c99"], &c, dir.path());
    compile_c("cc", &["-std=c11"], &c, dir.path());
    compile_c("c++", &["-std=c++17", "-x", "c++"], &c, dir.path());
    let lib = dir.path().join("lib.rs");
    std::fs::write(&lib, "#![deny(warnings)]\ninclude!(\"names.rs\");\n").unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "lib", "--emit", "metadata", "-o"])
        .arg(dir.path().join("libnames.rmeta"))
        .arg(&lib)
        .output()
        .unwrap();
    assert!(out.status.success(), "rustc: {}", String::from_utf8_lossy(&out.stderr));
}

/// Compiles `source` (with headers from `dir`) to an object, warnings as errors.
fn compile_c(compiler: &str, flags: &[&str], source: &Path, dir: &Path) {
    let out = Command::new(compiler)
        .args(flags)
        .args(["-Wall", "-Werror", "-c", "-o"])
        .arg(dir.join("use.o"))
        .arg(source)
        .arg("-I")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{compiler}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Builds `model` with extra kiln arguments into `dir`.
fn build_into(model: &Path, dir: &Path, args: &[&str]) {
    let out = kiln().arg("build").arg(model).args(args).arg("-o").arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Links `main.c` (written from `program`) with `libs` and runs it; returns its stdout.
fn link_and_run(dir: &Path, program: &str, libs: &[&str]) -> String {
    let mut flags: Vec<std::ffi::OsString> =
        vec![format!("-L{}", dir.display()).into(), format!("-Wl,-rpath,{}", dir.display()).into()];
    flags.extend(libs.iter().map(|l| l.into()));
    common::run_c(dir, program, &flags, &[])
}

const TWO_MODELS: &str = r#"#include <stdio.h>
#include "mlp.h"
#include "affine.h"
int main(void) {
    static float x[MLP_LOSS_X_SIZE], w1[MLP_LOSS_W1_SIZE], b1[MLP_LOSS_B1_SIZE], w2[MLP_LOSS_W2_SIZE], b2[MLP_LOSS_B2_SIZE];
    static int32_t labels[MLP_LOSS_LABELS_SIZE];
    float ax[AFFINE_LOSS_X_SIZE] = {0}, ay[AFFINE_LOSS_Y_SIZE] = {0}, aw[AFFINE_LOSS_W_SIZE] = {0}, ab = 2.0f;
    float l1, l2;
    if (mlp_loss(x, labels, w1, b1, w2, b2, &l1, NULL) || affine_loss(ax, ay, aw, &ab, &l2, NULL)) return 1;
    printf("%.6f %.6f\n", l1, l2);
    return 0;
}
"#;

#[test]
fn two_models_link_into_one_c_program_as_objects_static_and_shared_libraries() {
    let affine = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rust-build/models/affine.kn");
    for (kind, libs) in [
        ("object", vec!["mlp.o", "affine.o"]),
        ("static", vec!["-lmlp", "-laffine"]),
        ("shared", vec!["-lmlp", "-laffine"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        for model in [example("mlp.kn"), affine.clone()] {
            build_into(&model, dir.path(), &["--output-kind", kind, "--verify-reproducible"]);
        }
        let libs: Vec<String> = libs
            .iter()
            .map(|l| if l.ends_with(".o") { dir.path().join(l).display().to_string() } else { l.to_string() })
            .collect();
        let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
        // All-zero inputs: the mlp's loss is log(10), the affine loss is b^2 = 4.
        assert_eq!(link_and_run(dir.path(), TWO_MODELS, &libs), "2.302585 4.000000\n", "{kind}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("mlp.json")).unwrap()).unwrap();
        assert_eq!(manifest["kind"], kind);
    }
}

#[test]
fn cross_compiled_aarch64_example_agrees_with_the_interpreter_under_qemu() {
    for tool in ["aarch64-linux-gnu-gcc", "qemu-aarch64"] {
        let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(found, "`{tool}` is missing: run scripts/setup.sh, which installs the cross toolchain and qemu-user");
    }
    let dir = tempfile::tempdir().unwrap();
    build_into(&example("mlp.kn"), dir.path(), &["--target", "aarch64-unknown-linux-gnu"]);
    let exe = dir.path().join("mlp_demo");
    let out = Command::new("aarch64-linux-gnu-gcc")
        .args(["-std=c99", "-Wall", "-Werror", "-O2", "-static", "-o"])
        .arg(&exe)
        .arg(example("c/main.c"))
        .arg(dir.path().join("mlp.o"))
        .arg("-I")
        .arg(dir.path())
        .arg("-lm")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let run = Command::new("qemu-aarch64").arg(&exe).arg(&data).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("loss = "));
    let d = |name: &str| format!("{name}={}", data.join(format!("{name}.bin")).display());
    let eval = kiln()
        .arg("eval")
        .arg(example("mlp.kn"))
        .args(["--function", "loss"])
        .args(["x", "labels", "w1", "b1", "w2", "b2"].iter().flat_map(|n| ["--input".to_string(), d(n)]))
        .args(["--compare".to_string(), d("loss").replace("loss=", "out0=")])
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}{}",
        String::from_utf8_lossy(&eval.stdout),
        String::from_utf8_lossy(&eval.stderr)
    );
}

#[test]
fn cmake_example_builds_and_runs() {
    let found = Command::new("cmake").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "`cmake` is missing: run scripts/setup.sh, which installs it");
    let build = tempfile::tempdir().unwrap();
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cmake");
    let configure = Command::new("cmake")
        .arg("-S")
        .arg(&project)
        .arg("-B")
        .arg(build.path())
        .arg(format!("-DKILN_EXECUTABLE={}", env!("CARGO_BIN_EXE_kiln")))
        .output()
        .unwrap();
    assert!(configure.status.success(), "{}", String::from_utf8_lossy(&configure.stderr));
    let make = Command::new("cmake").arg("--build").arg(build.path()).output().unwrap();
    assert!(
        make.status.success(),
        "{}{}",
        String::from_utf8_lossy(&make.stdout),
        String::from_utf8_lossy(&make.stderr)
    );
    let run = Command::new(build.path().join("mlp_demo")).output().unwrap();
    assert!(run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stdout).starts_with("loss = 2.305"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}

#[test]
fn bench_runs_a_benchmark_against_measured_limits() {
    let out = kiln()
        .args(["bench", "--filter", "attention", "--runs", "1", "--python", "/nonexistent/python"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Copy bandwidth: ") && stdout.contains("numpy sgemm 1024^3: unavailable"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("| attention 512x64 | ") && l.contains("GFLOP/s")), "{stdout}");
}
