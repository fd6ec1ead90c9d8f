//! The runtime loads verified bundles and calls them with checked buffers: thousands of
//! mutated manifests, libraries and argument sets are each refused with an error or run
//! correctly, never crash.

mod common;

use kiln_ir::gen::{self, Rng};
use kiln_runtime::{Bundle, Error};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds examples/mlp.kn as a shared-library bundle in a fresh directory.
fn bundle_dir() -> tempfile::TempDir {
    bundle_dir_with(&[])
}

/// Builds examples/mlp.kn as a shared-library bundle with extra `kiln build` arguments.
fn bundle_dir_with(args: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mlp.kn");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("build")
        .arg(model)
        .args(["--output-kind", "shared", "-o"])
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// Edits the manifest at `path` as a builder that believed the edit would write it: the
/// requirements section is recomputed, so only the check the edit aims at can refuse it.
fn rewrite_consistently(path: &Path, edit: impl FnOnce(&mut kiln_codegen::manifest::Manifest)) {
    let mut m: kiln_codegen::manifest::Manifest = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut m);
    m.requirements = Some(kiln_codegen::manifest::requirements(m.kind, &m.target, &m.functions));
    std::fs::write(path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn module() -> kiln_ir::Module {
    module_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mlp.kn"))
}

fn module_of(source: &Path) -> kiln_ir::Module {
    let src = std::fs::read_to_string(source).unwrap();
    kiln_frontend::compile_source_with(&src, "mlp", &kiln::Autodiff).unwrap()
}

/// Calls `loss` through the bundle on random inputs and checks it against the interpreter.
fn check_loss(bundle: &Bundle, rng: &mut Rng) {
    check_loss_of(bundle, &module(), rng)
}

/// [`check_loss`] against the interpreter of `module`.
fn check_loss_of(bundle: &Bundle, module: &kiln_ir::Module, rng: &mut Rng) {
    let f = module.func("loss").unwrap();
    let args: Vec<_> = gen::arguments(rng, f, false);
    let inputs: Vec<Vec<u8>> = args.iter().map(|a| a.data.to_bytes()).collect();
    let input_refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut out = vec![0u8; 4];
    bundle.call("loss", &input_refs, &mut [&mut out]).unwrap();
    let expected = kiln_ir::interp::run(f, &args)[0].data.get_f64(0) as f32;
    let actual = f32::from_ne_bytes(out.try_into().unwrap());
    assert!((actual - expected).abs() <= 1e-5 * expected.abs().max(1.0), "{actual} vs {expected}");
}

#[test]
fn loads_and_calls_a_verified_bundle() {
    let dir = bundle_dir();
    let bundle = Bundle::open(&dir.path().join("mlp.json")).unwrap();
    assert_eq!(
        bundle.functions().iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["loss", "predict", "train_step"]
    );
    check_loss(&bundle, &mut Rng::new(common::seed()));
    // Wrong calls are refused before they reach compiled code.
    let f = bundle.function("loss").unwrap();
    let mut good: Vec<Vec<u8>> = f.params.iter().map(|p| vec![0u8; p.bytes]).collect();
    let refs = |v: &Vec<Vec<u8>>| -> Vec<Vec<u8>> { v.clone() };
    let mut out = vec![0u8; 4];
    let call = |inputs: &Vec<Vec<u8>>, out: &mut Vec<u8>, name: &str| {
        let r: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        bundle.call(name, &r, &mut [out.as_mut_slice()])
    };
    assert!(matches!(call(&good, &mut out, "nope"), Err(Error::Argument(_))));
    let mut short = refs(&good);
    short[0].pop();
    assert!(matches!(call(&short, &mut out, "loss"), Err(Error::Argument(_))));
    let mut fewer = refs(&good);
    fewer.pop();
    assert!(matches!(call(&fewer, &mut out, "loss"), Err(Error::Argument(_))));
    let mut small_out = vec![0u8; 3];
    assert!(matches!(call(&good, &mut small_out, "loss"), Err(Error::Argument(_))));
    good[1] = vec![0u8; 64];
    assert_eq!(call(&good, &mut out, "loss"), Ok(()));
}

/// A bundle read into memory (`read_bundle`, as the Python package pickles it) opens as it does
/// from its directory, with the same checks: a missing, changed or extra-large file is refused.
#[test]
fn bundles_open_from_memory_with_the_same_checks() {
    use kiln_runtime::{read_bundle, Files, OpenOptions};
    let dir = bundle_dir();
    let (manifest, files) = read_bundle(&dir.path().join("mlp.json")).unwrap();
    assert_eq!(manifest, "mlp.json");
    assert_eq!(files.keys().collect::<Vec<_>>(), ["libmlp.so", "mlp.h", "mlp.json", "mlp.rs"]);
    assert_eq!(kiln_runtime::bundle::kind(Files::Memory(&manifest, &files)), Ok(kiln_runtime::bundle::Kind::Shared));
    let open = |files: &std::collections::BTreeMap<String, Vec<u8>>| {
        Bundle::load(Files::Memory(&manifest, files), &OpenOptions::default())
    };
    check_loss(&open(&files).unwrap(), &mut Rng::new(common::seed()));
    let mut missing = files.clone();
    missing.remove("mlp.h");
    assert!(matches!(open(&missing), Err(Error::Integrity(m)) if m.contains("`mlp.h`: no such file")));
    let mut changed = files.clone();
    changed.get_mut("libmlp.so").unwrap()[100] ^= 1;
    assert!(matches!(open(&changed), Err(Error::Integrity(m)) if m.contains("SHA-256")));
    let mut longer = files.clone();
    longer.get_mut("mlp.rs").unwrap().push(b'\n');
    assert!(matches!(open(&longer), Err(Error::Integrity(_))));
    let mut no_manifest = files.clone();
    no_manifest.remove("mlp.json");
    assert!(matches!(open(&no_manifest), Err(Error::Io(_))));
}

#[test]
fn refuses_other_kinds_versions_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mlp.kn");
    for (args, expect) in [
        (vec!["--output-kind", "static"], "Target"),
        (
            vec![
                "--target",
                "aarch64-unknown-linux-gnu",
                "--output-kind",
                "shared",
                "--linker",
                "aarch64-linux-gnu-gcc",
            ],
            "Target",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("build")
            .arg(&model)
            .args(&args)
            .arg("-o")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let err = Bundle::open(&dir.path().join("mlp.json")).unwrap_err();
        assert!(format!("{err:?}").starts_with(expect), "{args:?}: {err:?}");
    }
}

/// One random change to a text: flip, delete, duplicate or replace a span of characters.
fn mutate_text(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return String::from("{");
    }
    let at = rng.below(chars.len());
    match rng.below(5) {
        0 => chars.truncate(at),
        1 => {
            chars.remove(at);
        }
        2 => {
            let c = chars[at];
            chars.insert(at, c);
        }
        3 => chars[at] = rng.pick(&['0', '1', '9', '"', '{', ']', ',', '-', 'x', ' ']),
        _ => {
            // A digit changed: shapes, sizes, versions and hashes.
            let digits: Vec<usize> = (0..chars.len()).filter(|&i| chars[i].is_ascii_digit()).collect();
            if !digits.is_empty() {
                let i = rng.pick(&digits);
                chars[i] = char::from(b'0' + rng.below(10) as u8);
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn thousands_of_mutated_bundles_are_refused_or_run_correctly() {
    let dir = bundle_dir();
    let manifest_path: PathBuf = dir.path().join("mlp.json");
    let original = std::fs::read_to_string(&manifest_path).unwrap();
    let library = std::fs::read(dir.path().join("libmlp.so")).unwrap();
    let mut rng = Rng::new(common::seed());
    let (mut refused, mut loaded) = (0, 0);
    for i in 0..2000 {
        // Mostly manifest mutations; every tenth case corrupts the library instead.
        if i % 10 == 9 {
            let mut lib = library.clone();
            let at = rng.below(lib.len());
            lib[at] ^= 1 << rng.below(8);
            std::fs::write(dir.path().join("libmlp.so"), &lib).unwrap();
            std::fs::write(&manifest_path, &original).unwrap();
        } else {
            std::fs::write(dir.path().join("libmlp.so"), &library).unwrap();
            let mut text = original.clone();
            for _ in 0..1 + rng.below(3) {
                text = mutate_text(&mut rng, &text);
            }
            std::fs::write(&manifest_path, text).unwrap();
        }
        match Bundle::open(&manifest_path) {
            Err(_) => refused += 1,
            Ok(bundle) => {
                loaded += 1;
                check_loss(&bundle, &mut rng);
            }
        }
    }
    eprintln!("{refused} mutated bundles refused, {loaded} loaded and ran correctly");
    assert!(refused > 1500, "most mutations must be refused ({refused} refused, {loaded} loaded)");
    // A manifest that consistently claims another shape is refused by the ABI check.
    std::fs::write(dir.path().join("libmlp.so"), &library).unwrap();
    std::fs::write(&manifest_path, &original).unwrap();
    rewrite_consistently(&manifest_path, |m| {
        let x = &mut m.functions[0].params[0];
        assert_eq!((x.shape.as_slice(), x.bytes), (&[16u64, 32][..], 2048), "the forged parameter");
        (x.shape, x.bytes) = (vec![16, 64], 4096);
    });
    assert!(matches!(Bundle::open(&manifest_path), Err(Error::Library(m)) if m.contains("ABI")));
}

const C_PROGRAM: &str = r#"#include <stdio.h>
#include <string.h>
#include "kiln_runtime.h"
#include "mlp.h"
int main(int argc, char **argv) {
    char err[512];
    if (argc < 2) return 2;
    kiln_bundle *b = kiln_bundle_open(argv[1], err, sizeof err);
    if (!b) { printf("open failed: %s\n", err); return 1; }
    static float x[MLP_LOSS_X_SIZE], w1[MLP_LOSS_W1_SIZE], b1[MLP_LOSS_B1_SIZE], w2[MLP_LOSS_W2_SIZE], b2[MLP_LOSS_B2_SIZE];
    static int32_t labels[MLP_LOSS_LABELS_SIZE];
    float loss = -1;
    const void *in[6] = {x, labels, w1, b1, w2, b2};
    size_t in_bytes[6] = {sizeof x, sizeof labels, sizeof w1, sizeof b1, sizeof w2, sizeof b2};
    void *out[1] = {&loss};
    size_t out_bytes[1] = {sizeof loss};
    if (kiln_bundle_call(b, "loss", in, in_bytes, 6, out, out_bytes, 1, err, sizeof err)) { printf("call failed: %s\n", err); return 1; }
    printf("loss %.6f\n", loss);
    in_bytes[0] -= 1;
    int32_t status = kiln_bundle_call(b, "loss", in, in_bytes, 6, out, out_bytes, 1, err, sizeof err);
    printf("short buffer: %d %s\n", status, err);
    status = kiln_bundle_call(b, "nope", in, in_bytes, 6, out, out_bytes, 1, err, sizeof err);
    printf("unknown function: %d %s\n", status, err);
    kiln_bundle_close(b);
    printf("missing: %s\n", kiln_bundle_open("/nonexistent/m.json", err, sizeof err) ? "opened" : err);
    return 0;
}
"#;

#[test]
fn c_api_opens_and_calls_a_bundle() {
    let dir = bundle_dir();
    let stdout = common::run_c_with_runtime(dir.path(), C_PROGRAM, &dir.path().join("mlp.json"));
    assert!(stdout.contains("loss 2.302585"), "{stdout}");
    assert!(stdout.contains("short buffer: 1 bad arguments: `x` of `loss` needs 2048 bytes, got 2047"), "{stdout}");
    assert!(stdout.contains("unknown function: 1 bad arguments: no function `nope`"), "{stdout}");
    assert!(stdout.contains("missing: cannot read the bundle"), "{stdout}");
}

#[test]
fn workspace_size_is_exact_and_nothing_outside_it_is_touched() {
    let dir = bundle_dir();
    let bundle = Bundle::open(&dir.path().join("mlp.json")).unwrap();
    let module = module();
    let mut rng = Rng::new(common::seed());
    for name in ["loss", "predict", "train_step"] {
        let f = bundle.function(name).unwrap();
        let n = f.workspace_bytes;
        assert!(n > 0, "`{name}` has intermediate results");
        let func = module.func(name).unwrap();
        let args: Vec<_> = gen::arguments(&mut rng, func, false);
        let inputs: Vec<Vec<u8>> = args.iter().map(|a| a.data.to_bytes()).collect();
        let input_refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let expected = kiln_ir::interp::run(func, &args);
        let mut outputs: Vec<Vec<u8>> = f.results.iter().map(|r| vec![0u8; r.bytes]).collect();
        // The workspace sits between canaries inside a larger buffer.
        let mut fenced = vec![0xA5u8; n + 256];
        let start = 64 + fenced[64..].as_ptr().align_offset(64) + 64;
        {
            let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
            let ws = &mut fenced[start..start + n];
            bundle.call_with_workspace(name, &input_refs, &mut outs, ws).unwrap();
        }
        assert!(fenced[..start].iter().all(|&b| b == 0xA5), "`{name}` wrote before its workspace");
        assert!(fenced[start + n..].iter().all(|&b| b == 0xA5), "`{name}` wrote after its workspace");
        assert!(fenced[start..start + n].iter().any(|&b| b != 0xA5), "`{name}` used its workspace");
        for (i, (e, bytes)) in expected.iter().zip(&outputs).enumerate() {
            let actual = kiln_ir::interp::Tensor::new(
                e.shape.clone(),
                kiln_ir::interp::Data::from_bytes(e.data.dtype(), bytes).unwrap(),
            );
            kiln_ir::interp::compare(e, &actual, kiln_ir::interp::Tolerance::Scaled(1e-5))
                .unwrap_or_else(|m| panic!("`{name}` result {i}: {m}"));
        }
        // One byte less, or a misaligned workspace, is refused before the call.
        let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        let short = bundle.call_with_workspace(name, &input_refs, &mut outs, &mut fenced[start..start + n - 1]);
        assert!(matches!(short, Err(Error::Argument(m)) if m.contains("workspace")));
        let misaligned =
            bundle.call_with_workspace(name, &input_refs, &mut outs, &mut fenced[start + 1..start + n + 1]);
        assert!(matches!(misaligned, Err(Error::Argument(m)) if m.contains("aligned")));
    }
}

#[test]
fn typed_calls_check_dtypes() {
    use kiln_runtime::{TensorMut, TensorRef};
    let dir = bundle_dir();
    let bundle = Bundle::open(&dir.path().join("mlp.json")).unwrap();
    let (x, w1, b1, w2, b2) = (vec![0f32; 512], vec![0f32; 2048], vec![0f32; 64], vec![0f32; 640], vec![0f32; 10]);
    let labels = vec![0i32; 16];
    let mut loss = [0f32];
    let inputs = [
        TensorRef::F32(&x),
        TensorRef::I32(&labels),
        TensorRef::F32(&w1),
        TensorRef::F32(&b1),
        TensorRef::F32(&w2),
        TensorRef::F32(&b2),
    ];
    bundle.call_typed("loss", &inputs, &mut [TensorMut::F32(&mut loss)]).unwrap();
    assert!((loss[0] - 10f32.ln()).abs() < 1e-6);
    // Labels as f32 have the right byte count but the wrong dtype.
    let as_float = vec![0f32; 16];
    let wrong = [
        TensorRef::F32(&x),
        TensorRef::F32(&as_float),
        TensorRef::F32(&w1),
        TensorRef::F32(&b1),
        TensorRef::F32(&w2),
        TensorRef::F32(&b2),
    ];
    let err = bundle.call_typed("loss", &wrong, &mut [TensorMut::F32(&mut loss)]).unwrap_err();
    assert_eq!(err, Error::Argument("`labels` of `loss` is i32, got f32".into()));
}

#[test]
fn thousands_of_argument_sets_are_refused_or_run_correctly() {
    use kiln_runtime::{TensorMut, TensorRef};
    let dir = bundle_dir();
    let bundle = Bundle::open(&dir.path().join("mlp.json")).unwrap();
    let mut rng = Rng::new(common::seed());
    let f = bundle.function("loss").unwrap();
    let (mut refused, mut ran) = (0, 0);
    for _ in 0..3000 {
        // Start from the right element counts, then perturb counts, sizes and dtypes.
        let mut counts: Vec<usize> = f.params.iter().map(|p| p.bytes / p.dtype.size() as usize).collect();
        let mut dtypes: Vec<kiln_runtime::DType> = f.params.iter().map(|p| p.dtype).collect();
        match rng.below(4) {
            0 => {
                let i = rng.below(counts.len());
                counts[i] = rng.below(counts[i] * 2 + 2);
            }
            1 => {
                let i = rng.below(dtypes.len());
                dtypes[i] = rng.pick(&[
                    kiln_runtime::DType::F32,
                    kiln_runtime::DType::I32,
                    kiln_runtime::DType::F64,
                    kiln_runtime::DType::Bool,
                ]);
            }
            2 if rng.chance(0.5) => {
                counts.pop();
            }
            _ => {}
        }
        // u64 words keep every view aligned for any element type.
        let buffers: Vec<(kiln_runtime::DType, usize, Vec<u64>)> =
            dtypes.iter().zip(&counts).map(|(&d, &n)| (d, n, vec![0u64; n + 1])).collect();
        let inputs: Vec<TensorRef> = buffers.iter().map(typed).collect();
        let mut loss = vec![0f32; if rng.chance(0.05) { 2 } else { 1 }];
        match bundle.call_typed("loss", &inputs, &mut [TensorMut::F32(&mut loss)]) {
            Ok(()) => {
                ran += 1;
                assert!((loss[0] - 10f32.ln()).abs() < 1e-6, "zero inputs give log(10)");
            }
            Err(Error::Argument(_)) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(refused > 1000 && ran > 300, "{refused} refused, {ran} ran");
}

/// A typed view of `n` zeroed elements.
fn typed((d, n, words): &(kiln_runtime::DType, usize, Vec<u64>)) -> kiln_runtime::TensorRef<'_> {
    use kiln_runtime::{DType, TensorRef};
    fn cast<T>(words: &[u64], n: usize) -> &[T] {
        // SAFETY (test): `words` holds at least n elements of any type of at most 8 bytes, is
        // aligned for all of them, and zeroed bytes are valid values of each.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), n) }
    }
    match d {
        DType::Bool => TensorRef::Bool(cast(words, *n)),
        DType::U8 => TensorRef::U8(cast(words, *n)),
        DType::I32 => TensorRef::I32(cast(words, *n)),
        DType::U32 => TensorRef::U32(cast(words, *n)),
        DType::F16 => TensorRef::F16(cast(words, *n)),
        DType::BF16 => TensorRef::BF16(cast(words, *n)),
        DType::I64 => TensorRef::I64(cast(words, *n)),
        DType::F32 => TensorRef::F32(cast(words, *n)),
        DType::F64 => TensorRef::F64(cast(words, *n)),
    }
}

/// #17 A.12: an output size of SIZE_MAX aborted the host (a slice was made before the size
/// check); a thread count of 100,000 left hundreds of threads and a panic behind and reported
/// 100,000; a listed file replaced by a FIFO hung the open, and a link to /dev/zero exhausted
/// memory. Each is now refused or bounded.
#[test]
fn hostile_sizes_thread_counts_and_files_are_refused() {
    use kiln_runtime::capi::{kiln_bundle_call, kiln_bundle_close, kiln_bundle_open, kiln_set_threads};
    use std::ffi::{c_void, CString};
    let dir = bundle_dir();
    let manifest = CString::new(dir.path().join("mlp.json").to_str().unwrap()).unwrap();
    let mut error = [0 as std::ffi::c_char; 256];
    let bundle = unsafe { kiln_bundle_open(manifest.as_ptr(), error.as_mut_ptr(), error.len()) };
    assert!(!bundle.is_null());
    let module = module();
    let f = module.func("loss").unwrap();
    let args = gen::arguments(&mut Rng::new(1), f, false);
    let inputs: Vec<Vec<u8>> = args.iter().map(|a| a.data.to_bytes()).collect();
    let input_ptrs: Vec<*const c_void> = inputs.iter().map(|b| b.as_ptr().cast()).collect();
    let input_bytes: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut out = [0u8; 4];
    let (outputs, output_bytes) = ([out.as_mut_ptr().cast::<c_void>()], [usize::MAX]);
    let name = CString::new("loss").unwrap();
    let status = unsafe {
        kiln_bundle_call(
            bundle,
            name.as_ptr(),
            input_ptrs.as_ptr(),
            input_bytes.as_ptr(),
            inputs.len(),
            outputs.as_ptr(),
            output_bytes.as_ptr(),
            1,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    assert_eq!(status, 1);
    let message = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
    assert!(message.contains("larger than any buffer"), "{message}");
    unsafe { kiln_bundle_close(bundle) };

    let threads = kiln_set_threads(100_000);
    assert!((2..=kiln_runtime::pool::MAX_THREADS).contains(&threads), "{threads}");
    assert_eq!(kiln_runtime::pool::threads(), threads);
    assert_eq!(kiln_set_threads(1), 1);

    let library = dir.path().join("libmlp.so");
    std::fs::remove_file(&library).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &library).unwrap();
    let Err(refused) = Bundle::open(&dir.path().join("mlp.json")) else { panic!("a link to /dev/zero opened") };
    assert!(refused.to_string().contains("not a regular file"), "{refused}");
    std::fs::remove_file(&library).unwrap();
    let made = Command::new("mkfifo").arg(&library).status().unwrap();
    assert!(made.success());
    let Err(refused) = Bundle::open(&dir.path().join("mlp.json")) else { panic!("a FIFO opened") };
    assert!(refused.to_string().contains("not a regular file"), "{refused}");
}

/// #17 A.10: only the triple's architecture was compared (`x86_64-pc-windows-msvc` opened),
/// and a bundle needing CPU features this machine lacks opened and died of SIGILL at the first
/// call. The whole triple must be this machine's, and the features of the psABI level or
/// recorded with the bundle must be present.
#[test]
fn bundles_for_other_systems_or_missing_cpu_features_are_refused() {
    let dir = bundle_dir();
    let path = dir.path().join("mlp.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let edit = |field: fn(&mut kiln_codegen::manifest::TargetInfo) -> &mut String, to: &str| {
        std::fs::write(&path, &original).unwrap();
        rewrite_consistently(&path, |m| *field(&mut m.target) = to.to_string());
        Bundle::open(&path).err().map(|e| e.to_string())
    };
    let refused = edit(|t| &mut t.triple, "x86_64-pc-windows-msvc").expect("another system is refused");
    assert!(refused.contains("built for x86_64-pc-windows-msvc"), "{refused}");
    // A feature this machine lacks, recorded as a native build would record it.
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        // AMD's sse4a and tbm, Intel's avx512fp16: no machine has all three.
        let lacking = [("sse4a", has!("sse4a")), ("tbm", has!("tbm")), ("avx512fp16", has!("avx512fp16"))]
            .into_iter()
            .find(|(_, present)| !present)
            .map(|(name, _)| name)
            .expect("this machine has every candidate feature: add one it lacks to the list");
        let refused = edit(|t| &mut t.features, &format!("+avx2,+{lacking}")).expect("refused");
        assert!(refused.contains(&format!("needs {lacking}")), "{refused}");
        // The default level, x86-64-v3, is met by every machine that runs this test suite.
        assert!(edit(|t| &mut t.features, "+avx2").is_none());
    }
}

/// #17 A.11: a function with more than 31 arguments built, but its bundle was refused at open
/// (an 8-layer MLP's value_and_grad has 35). Libraries now export a packed entry point per
/// function, arguments in one array, which the runtime calls whatever the arity.
#[test]
fn functions_of_any_arity_are_called_through_packed_entry_points() {
    const N: usize = 40;
    let params: Vec<String> = (0..N).map(|i| format!("p{i}: f32[2]")).collect();
    let sum: Vec<String> = (0..N).map(|i| format!("p{i} * {}.0", i + 1)).collect();
    let src = format!(
        "fn wide({}) -> (f32[2], f32[2]) {{\n    ({}, p0)\n}}\nexport wide;\n",
        params.join(", "),
        sum.join(" + ")
    );
    let dir = tempfile::tempdir().unwrap();
    let bundle = build_and_open(dir.path(), "wide", &src);
    let inputs: Vec<Vec<u8>> =
        (0..N).map(|i| [1.0f32, i as f32].iter().flat_map(|v| v.to_ne_bytes()).collect()).collect();
    let input_refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    bundle.call("wide", &input_refs, &mut [&mut a, &mut b]).unwrap();
    let floats = |bytes: &[u8]| bytes.chunks(4).map(|c| f32::from_ne_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
    let expected0: f32 = (1..=N).map(|k| k as f32).sum();
    let expected1: f32 = (0..N).map(|i| i as f32 * (i + 1) as f32).sum();
    assert_eq!(floats(&a), [expected0, expected1]);
    assert_eq!(floats(&b), [1.0, 0.0]);
}

/// #17 A.9: the library was hashed, then opened again by path: a bare manifest name made
/// dlopen search the library path, a file swapped after the check ran unverified, and reopening
/// a rebuilt bundle returned the old code (dlopen shares a path's library). The runtime now
/// loads exactly the verified bytes, from an in-memory file of its own.
#[test]
fn a_bundle_runs_exactly_the_bytes_that_were_verified() {
    let dir = tempfile::tempdir().unwrap();
    let build = |factor: f32| {
        build_and_open(dir.path(), "m", &format!("fn f(x: f32[4]) -> f32[4] {{ x * {factor:?} }}\nexport f;\n"))
    };
    let run = |bundle: &Bundle| {
        let x: Vec<u8> = [1.0f32; 4].iter().flat_map(|v| v.to_ne_bytes()).collect();
        let mut y = [0u8; 16];
        bundle.call("f", &[&x], &mut [&mut y]).unwrap();
        f32::from_ne_bytes(y[..4].try_into().unwrap())
    };
    let first = build(2.0);
    let second = build(3.0);
    assert_eq!((run(&first), run(&second)), (2.0, 3.0));
}

/// Writes `src` as `DIR/NAME.kn`, builds it as a shared-library bundle into `DIR/out` and opens it.
fn build_and_open(dir: &Path, name: &str, src: &str) -> Bundle {
    std::fs::write(dir.join(format!("{name}.kn")), src).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir)
        .args(["build", &format!("{name}.kn"), "--output-kind", "shared", "-o", "out"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Bundle::open(&dir.join(format!("out/{name}.json"))).unwrap()
}

/// The checked-in bundles of tests/fixtures/bundles/, one per manifest version from 3 on
/// (`v3-cpu`: examples/mlp.kn as kiln 0.1 built it before requirements and provenance,
/// with the source it was built from).
fn old_bundle(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bundles").join(name)
}

/// A copy of the v3 CPU bundle whose manifest `edit` changed.
fn edited_old_bundle(edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(old_bundle("v3-cpu")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let path = dir.path().join("mlp.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    dir
}

/// #17 D: the compatibility policy of docs/artifact-format.md. Every bundle from manifest
/// version 3 on opens and runs; fields a runtime does not know are ignored; a newer major
/// version (or one older than 3) is refused with a message naming both versions.
#[test]
fn bundles_from_version_3_on_open_and_newer_versions_are_refused_by_name() {
    let dir = old_bundle("v3-cpu");
    let bundle = Bundle::open(&dir.join("mlp.json")).expect("a version 3 bundle opens");
    check_loss_of(&bundle, &module_of(&dir.join("mlp.kn")), &mut Rng::new(common::seed()));
    let added = edited_old_bundle(|m| {
        m["scheduling_hints"] = serde_json::json!({ "priority": 3 });
        m["functions"][0]["cost"] = serde_json::json!(12.5);
        m["target"]["vendor_notes"] = serde_json::json!("ignored");
    });
    Bundle::open(&added.path().join("mlp.json")).expect("fields a runtime does not know are ignored");
    let newest = kiln_runtime::bundle::VERSION;
    for (version, says) in [
        (newest + 1, format!("version {}, newer than this runtime's {newest}", newest + 1)),
        (2, format!("opens versions 3 to {newest}")),
    ] {
        let dir = edited_old_bundle(|m| m["version"] = serde_json::json!(version));
        match Bundle::open(&dir.path().join("mlp.json")) {
            Err(Error::Version(m)) => assert!(m.contains(&says), "{m}"),
            other => panic!("version {version} must be refused, got {:?}", other.err()),
        }
    }
}

/// The version 5 bundle (tests/fixtures/bundles/v5-cpu: u32 and u8 arguments, random draws)
/// opens, names its unsigned dtypes, and gives the interpreter's results through typed buffers.
#[test]
fn a_version_5_bundle_with_unsigned_arguments_runs_as_interpreted() {
    use kiln_ir::interp::{Data, Tensor};
    use kiln_runtime::{DType, TensorMut, TensorRef};
    let dir = old_bundle("v5-cpu");
    let bundle = Bundle::open(&dir.join("draws.json")).expect("a version 5 bundle opens");
    let f = bundle.function("draws").unwrap();
    let dtypes: Vec<DType> = f.params.iter().chain(&f.results).map(|a| a.dtype).collect();
    assert_eq!(dtypes, [DType::U32, DType::U8, DType::U32, DType::F32, DType::U8]);
    let src = std::fs::read_to_string(dir.join("draws.kn")).unwrap();
    let module = kiln_frontend::compile_source_with(&src, "draws", &kiln::Autodiff).unwrap();
    for seed in [0u32, 7, u32::MAX] {
        let words = [3u8, 250, 0, 128];
        let (mut keys, mut u, mut bits) = ([0u32; 4], [0f32; 6], [0u8; 4]);
        let inputs = [TensorRef::U32(&[seed]), TensorRef::U8(&words)];
        let mut outputs = [TensorMut::U32(&mut keys), TensorMut::F32(&mut u), TensorMut::U8(&mut bits)];
        bundle.call_typed("draws", &inputs, &mut outputs).unwrap();
        let args = [Tensor::new(vec![], Data::U32(vec![seed])), Tensor::new(vec![4], Data::U8(words.to_vec()))];
        let want = kiln_ir::interp::run(module.func("draws").unwrap(), &args);
        assert_eq!(want[0].data, Data::U32(keys.to_vec()), "seed {seed}");
        assert_eq!(want[1].data, Data::F32(u.to_vec()), "seed {seed}");
        assert_eq!(want[2].data, Data::U8(bits.to_vec()), "seed {seed}");
    }
}

/// #17 D: a manifest says what running it needs (target, CPU features, memory per call) and
/// how it was made (kiln and LLVM versions, flags), in a requirements section that is checked
/// against the rest; a runtime given a memory limit refuses at open a bundle whose calls need
/// more.
#[test]
fn manifests_carry_requirements_and_provenance_and_calls_fit_a_memory_limit() {
    let dir = bundle_dir_with(&["--fast-math"]);
    let path = dir.path().join("mlp.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let compiler = &json["compiler"];
    assert!(compiler["llvm"].as_str().unwrap().starts_with("22."), "{compiler}");
    let flags: Vec<&str> = compiler["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    for flag in ["-O2", "--target-cpu x86-64-v3", "--output-kind shared", "--fast-math", "--egraph-nodes 20000"] {
        assert!(flags.contains(&flag), "{flags:?} lacks {flag}");
    }
    let needs = &json["requirements"];
    assert_eq!(needs["triple"], "x86_64-unknown-linux-gnu");
    let features: Vec<&str> = needs["cpu_features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(features.contains(&"avx2") && features.contains(&"fma") && !features.contains(&"avx512f"), "{features:?}");
    let bundle = Bundle::open(&path).unwrap();
    let loss = bundle.function("loss").unwrap();
    let call_bytes: u64 =
        loss.params.iter().chain(&loss.results).map(|a| a.bytes as u64).sum::<u64>() + loss.workspace_bytes as u64;
    let listed = needs["functions"].as_array().unwrap().iter().find(|f| f["name"] == "loss").unwrap();
    let listed_bytes = ["param_bytes", "result_bytes", "workspace_bytes"].map(|k| listed[k].as_u64().unwrap());
    assert_eq!(listed_bytes.iter().sum::<u64>(), call_bytes);
    let most = needs["call_bytes"].as_u64().unwrap();
    assert!(most >= call_bytes);
    // A limit at the largest call opens; one byte less is refused, naming the function.
    let limited = |limit| {
        Bundle::open_with(&path, &kiln_runtime::OpenOptions { memory_limit: Some(limit), ..Default::default() })
    };
    limited(most).expect("calls within the limit");
    match limited(most - 1) {
        Err(Error::Limit(m)) => assert!(m.contains("more than the limit"), "{m}"),
        other => panic!("a bundle over the limit must be refused, got {:?}", other.err()),
    }
    // The section is derived from the rest: one edited alone is refused.
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen(&format!("\"call_bytes\": {most}"), "\"call_bytes\": 1", 1);
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    assert!(matches!(Bundle::open(&path), Err(Error::Manifest(m)) if m.contains("requirements")));
}

/// Runs `openssl` (installed by scripts/setup.sh) with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (scripts/setup.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// #17 C: `kiln build --sign KEY` signs the manifest with an ed25519 key made by openssl; the
/// runtime given the public key opens the bundle only with a signature that verifies (the
/// manifest lists every file's hash, so it covers them all), through Rust and C alike; and
/// openssl verifies the same signature.
#[test]
fn signed_bundles_open_only_with_a_signature_that_verifies() {
    let keys = tempfile::tempdir().unwrap();
    openssl(keys.path(), &["genpkey", "-algorithm", "ed25519", "-out", "key.pem"]);
    openssl(keys.path(), &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
    openssl(keys.path(), &["genpkey", "-algorithm", "ed25519", "-out", "other.pem"]);
    openssl(keys.path(), &["pkey", "-in", "other.pem", "-pubout", "-out", "other.pub.pem"]);
    let key = keys.path().join("key.pem");
    let dir = bundle_dir_with(&["--sign", key.to_str().unwrap()]);
    let path = dir.path().join("mlp.json");
    let signature = dir.path().join("mlp.json.sig");
    assert!(signature.is_file(), "--sign writes mlp.json.sig");
    let public = std::fs::read_to_string(keys.path().join("pub.pem")).unwrap();
    let with_key = |pem: &str| {
        Bundle::open_with(&path, &kiln_runtime::OpenOptions { public_key: Some(pem.into()), ..Default::default() })
    };
    check_loss(&with_key(&public).expect("a good signature"), &mut Rng::new(common::seed()));
    // openssl agrees: the file holds the hex of a plain ed25519 signature of the manifest.
    let hex = std::fs::read_to_string(&signature).unwrap();
    let raw: Vec<u8> =
        (0..hex.trim().len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    std::fs::write(keys.path().join("sig.bin"), raw).unwrap();
    let verified = openssl(
        keys.path(),
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "pub.pem",
            "-rawin",
            "-in",
            path.to_str().unwrap(),
            "-sigfile",
            "sig.bin",
        ],
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("Signature Verified Successfully"));
    // Another key, an edited manifest and a missing signature are refused.
    let other = std::fs::read_to_string(keys.path().join("other.pub.pem")).unwrap();
    assert!(matches!(with_key(&other), Err(Error::Signature(m)) if m.contains("does not verify")));
    assert!(matches!(with_key("not a key"), Err(Error::Signature(m)) if m.contains("public key")));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"opt_level\": 2", "\"opt_level\": 3", 1)).unwrap();
    assert!(matches!(with_key(&public), Err(Error::Signature(_))), "an edited manifest");
    std::fs::write(&path, &text).unwrap();
    std::fs::remove_file(&signature).unwrap();
    assert!(matches!(with_key(&public), Err(Error::Signature(m)) if m.contains("mlp.json.sig")));
    Bundle::open(&path).expect("without a key, a bundle needs no signature");
    // The C API: kiln_bundle_open_with checks the same.
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let c_key = std::ffi::CString::new(public).unwrap();
    let mut error = [0 as std::ffi::c_char; 256];
    // SAFETY: NUL-terminated strings and an error buffer of its stated length.
    let handle = unsafe {
        kiln_runtime::capi::kiln_bundle_open_with(c_path.as_ptr(), c_key.as_ptr(), 0, error.as_mut_ptr(), error.len())
    };
    assert!(handle.is_null(), "the signature was removed");
    // SAFETY: the runtime wrote a NUL-terminated message.
    let message = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
    assert!(message.contains("unsigned or forged bundle"), "{message}");
    // A key that is not a key file is a build error, not an unsigned bundle.
    let bad = keys.path().join("bad.pem");
    std::fs::write(&bad, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "examples/mlp.kn", "--output-kind", "shared", "--sign"])
        .arg(&bad)
        .arg("-o")
        .arg(keys.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sign: not an ed25519 private key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
