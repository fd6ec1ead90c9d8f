//! GPU code generation, with no GPU: every example and every program under tests/run and
//! tests/rewrites compiles for sm_80 and sm_90 into PTX kernels and launch plans; ptxas accepts
//! every kernel when it is available (KILN_PTXAS, which scripts/test.sh sets up from PyPI's
//! nvidia-cuda-nvcc; without it that check is skipped with a message); builds are reproducible.
//! GPU bundles are verified by kiln-runtime's GPU loader and run on a GPU when there is one.

mod common;

use kiln::{build, Options, Source};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example and test programs, and the loops, scans, conditionals, indexing by data and
/// ops checked against JAX.
fn programs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = ["loops", "indexing", "ops"].map(|f| root.join(format!("tests/fixtures/{f}.kn"))).to_vec();
    for dir in ["examples", "tests/run", "tests/rewrites"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "kn") {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}

fn ptxas() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("KILN_PTXAS")?);
    path.is_file().then_some(path)
}

/// Runs ptxas for `gpu` on one kernel's PTX (written under `dir`); its complaint on failure.
fn ptxas_check(ptxas: &Path, dir: &Path, name: &str, ptx: &[u8], gpu: &str) -> Result<(), String> {
    let file = dir.join(name);
    std::fs::write(&file, ptx).unwrap();
    let run =
        Command::new(ptxas).arg(format!("-arch={gpu}")).arg(&file).arg("-o").arg(dir.join("k.cubin")).output().unwrap();
    if run.status.success() {
        Ok(())
    } else {
        Err(format!("ptxas rejects {name} ({gpu}): {}", String::from_utf8_lossy(&run.stderr)))
    }
}

/// Build options for one GPU.
fn gpu_options(gpu: &str) -> Options {
    Options { target: kiln_codegen::Target::new(Some("nvptx64-nvidia-cuda"), Some(gpu)).unwrap(), ..Options::default() }
}

/// Builds `source` for `gpu` into `dir` and opens its bundle as the runtime does.
fn gpu_bundle(source: &Source, gpu: &str, dir: &Path) -> Result<kiln_runtime::gpu::GpuBundle, String> {
    let out = build(source, &gpu_options(gpu)).map_err(|e| e.render(false))?;
    kiln::write_output(&out, dir).map_err(|e| e.render(false))?;
    let manifest = dir.join(format!("{}.json", source.default_module_name()));
    kiln_runtime::gpu::GpuBundle::open(&manifest).map_err(|e| e.to_string())
}

/// Runs every function of `bundle`, built from `source`, on the emulator against the
/// interpreter.
fn agrees_on_the_emulator(
    source: &Source,
    bundle: kiln_runtime::gpu::GpuBundle,
    rng: &mut kiln_ir::gen::Rng,
) -> Result<(), String> {
    let executor = kiln_runtime::gpu::GpuExecutor::emulated(bundle, None).map_err(|e| e.to_string())?;
    assert!(executor.is_emulated());
    let module = kiln::check(source, &source.default_module_name()).map_err(|e| e.render(false))?;
    let scale = common::input_scale(&source.text)?;
    agrees_with_interpreter(&executor, &module, rng, scale)
}

/// examples/mlp.kn.
fn mlp() -> Source {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mlp.kn");
    Source { name: "mlp.kn".into(), text: std::fs::read_to_string(path).unwrap() }
}

#[test]
fn every_program_compiles_to_ptx_that_ptxas_accepts() {
    let ptxas = ptxas();
    if ptxas.is_none() {
        eprintln!("skipping the ptxas check: set KILN_PTXAS to a ptxas binary (scripts/test.sh does)");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut failures = vec![];
    let mut kernels = 0;
    for path in programs() {
        let source = Source {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            text: std::fs::read_to_string(&path).unwrap(),
        };
        for gpu in ["sm_80", "sm_90"] {
            let out = match build(&source, &gpu_options(gpu)) {
                Ok(out) => out,
                Err(e) => {
                    failures.push(format!("{} for {gpu}: {}", path.display(), e.render(false)));
                    continue;
                }
            };
            let manifest = out.files.iter().find(|(n, _)| n.ends_with(".json")).expect("a manifest");
            let manifest: serde_json::Value = serde_json::from_slice(&manifest.1).unwrap();
            assert_eq!(manifest["kind"], "gpu");
            for f in manifest["functions"].as_array().unwrap() {
                assert!(
                    f["launches"].as_array().is_some_and(|l| !l.is_empty()),
                    "{}: `{}` launches nothing",
                    path.display(),
                    f["name"]
                );
            }
            for (name, bytes) in out.files.iter().filter(|(n, _)| n.ends_with(".ptx")) {
                kernels += 1;
                let text = String::from_utf8_lossy(bytes);
                assert!(text.contains(&format!(".target {gpu}")) && !text.contains("__nv_"), "{name}");
                if let Some(ptxas) = &ptxas {
                    if let Err(e) = ptxas_check(ptxas, dir.path(), name, bytes, gpu) {
                        failures.push(e);
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(kernels > 0);
}

#[test]
fn gpu_builds_are_reproducible() {
    let (source, options) = (mlp(), gpu_options("sm_90"));
    assert_eq!(build(&source, &options).unwrap().files, build(&source, &options).unwrap().files);
}

/// A GPU bundle opens and is verified without a device; a memory limit below one call's needs
/// is refused before the device is touched; with no GPU the executor says so (and the test
/// stops there); on a GPU every function agrees with the interpreter.
#[test]
fn gpu_bundles_verify_and_run_or_report_no_gpu() {
    use kiln_runtime::gpu::{GpuBundle, GpuExecutor};
    let source = mlp();
    let dir = tempfile::tempdir().unwrap();
    let bundle = gpu_bundle(&source, "sm_80", dir.path()).unwrap();
    let manifest = dir.path().join("mlp.json");
    assert_eq!(bundle.functions.len(), 3);
    assert!(kiln_runtime::Bundle::open(&manifest).is_err(), "the CPU loader refuses a GPU bundle");
    let needs = bundle.functions.iter().map(|f| f.device_bytes()).max().unwrap();
    match GpuExecutor::new(bundle.clone(), 0, Some(needs - 1)) {
        Err(kiln_runtime::Error::Device(m)) => assert!(m.contains("more than the limit"), "{m}"),
        other => panic!("a plan over the memory limit must be refused, got {:?}", other.err()),
    }
    // Matrix products are library steps; one whose matrices overrun their buffers is refused.
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(bundle.functions.iter().flat_map(|f| &f.launches).any(|s| matches!(s, kiln_runtime::gpu::Step::Gemm(_))));
    // The manifest with the first product of `loss` changed by `change` is refused, the
    // message naming `why`.
    let refused = |change: &dyn Fn(&mut serde_json::Value), why: &str| {
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let steps = json["functions"][0]["launches"].as_array_mut().unwrap();
        change(&mut steps.iter_mut().find(|s| s.get("gemm").is_some()).expect("a product in `loss`")["gemm"]);
        std::fs::write(&manifest, serde_json::to_string(&json).unwrap()).unwrap();
        match GpuBundle::open(&manifest) {
            Err(kiln_runtime::Error::Manifest(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("a product that is {why} must be refused, got {other:?}"),
        }
    };
    refused(&|g| g["m"] = (g["m"].as_u64().unwrap() * 2).into(), "out of range");
    // So is one whose scratch memory is not aligned workspace.
    refused(
        &|g| g["scratch"]["workspace"]["offset"] = (g["scratch"]["workspace"]["offset"].as_u64().unwrap() - 4).into(),
        "not aligned",
    );
    std::fs::write(&manifest, text).unwrap();
    // A tampered kernel is refused.
    let ptx = dir.path().join(format!("mlp.{}.ptx", bundle.kernels[0].name));
    let original = std::fs::read(&ptx).unwrap();
    std::fs::write(&ptx, [original.as_slice(), b"\n"].concat()).unwrap();
    assert!(matches!(GpuBundle::open(&manifest), Err(kiln_runtime::Error::Integrity(_))));
    std::fs::write(&ptx, &original).unwrap();

    let executor = match GpuExecutor::new(bundle, 0, None) {
        Ok(e) => e,
        Err(kiln_runtime::Error::Device(m)) => {
            eprintln!("skipping the GPU run: {m}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut rng = kiln_ir::gen::Rng::new(kiln_ir::gen::test_seed());
    agrees_with_interpreter(&executor, &kiln::check(&source, "mlp").unwrap(), &mut rng, 1.0).unwrap();
}

/// Plans run on buffers already on the device (the runtime's, or the caller's pointers) give
/// the bytes the copying call gives; wrong counts, short buffers, foreign pointers and results
/// overlapping another buffer are refused before anything runs.
#[test]
fn plans_run_on_device_buffers_and_caller_pointers() {
    use kiln_runtime::gpu::GpuExecutor;
    let source = mlp();
    let dir = tempfile::tempdir().unwrap();
    let bundle = gpu_bundle(&source, "sm_80", dir.path()).unwrap();
    let executor = GpuExecutor::emulated(bundle, None).unwrap();
    let module = kiln::check(&source, "mlp").unwrap();
    let mut rng = kiln_ir::gen::Rng::new(kiln_ir::gen::test_seed());
    for f in &module.funcs {
        let inputs: Vec<Vec<u8>> =
            kiln_ir::gen::arguments(&mut rng, f, false).iter().map(|t| t.data.to_bytes()).collect();
        let result_bytes: Vec<usize> = f.result_types().iter().map(|t| t.size_bytes()).collect();
        let mut copied: Vec<Vec<u8>> = result_bytes.iter().map(|&n| vec![0; n]).collect();
        let ins: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        executor.call(&f.name, &ins, &mut copied.iter_mut().map(Vec::as_mut_slice).collect::<Vec<_>>()).unwrap();

        let mut buffers: Vec<_> = inputs.iter().map(|i| executor.upload(i).unwrap()).collect();
        buffers.extend(result_bytes.iter().map(|&n| executor.alloc(n).unwrap()));
        executor.call_buffers(&f.name, &buffers.iter().collect::<Vec<_>>()).unwrap();
        for (buffer, want) in buffers[inputs.len()..].iter().zip(&copied) {
            let mut got = vec![0; buffer.len()];
            executor.download(buffer, &mut got).unwrap();
            assert_eq!(&got, want, "`{}`", f.name);
        }

        let pointers: Vec<u64> = buffers.iter().map(|b| b.address()).collect();
        let refused = |pointers: &[u64], why: &str| {
            // SAFETY: the buffers are live and nothing else uses them.
            match unsafe { executor.call_pointers(&f.name, pointers) } {
                Err(kiln_runtime::Error::Argument(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("`{}` must be refused ({why}), got {other:?}", f.name),
            }
        };
        refused(&pointers[1..], "takes");
        let mut moved = pointers.clone();
        moved[0] += 4;
        refused(&moved, "needs");
        moved[0] = pointers[0];
        let last = pointers.len() - 1;
        moved[last] = 0x1234;
        refused(&moved, "is not memory");
        moved[last] = pointers[0];
        refused(&moved, "overlaps");
        // SAFETY: as above.
        unsafe { executor.call_pointers(&f.name, &pointers) }.unwrap();
        // A buffer of another device is refused, even where its address means something here.
        let other = GpuExecutor::emulated(executor.bundle().clone(), None).unwrap();
        let foreign = other.upload(&inputs[0]).unwrap();
        let mut mixed: Vec<_> = buffers.iter().collect();
        mixed[0] = &foreign;
        match executor.call_buffers(&f.name, &mixed) {
            Err(kiln_runtime::Error::Argument(m)) => assert!(m.contains("another device"), "{m}"),
            other => panic!("a foreign buffer must be refused, got {other:?}"),
        }
    }
}

const C_GPU_PROGRAM: &str = r#"#include <stdio.h>
#include <string.h>
#include "kiln_runtime.h"
#include "mlp.h"
static float x[MLP_LOSS_X_SIZE], w1[MLP_LOSS_W1_SIZE], b1[MLP_LOSS_B1_SIZE], w2[MLP_LOSS_W2_SIZE], b2[MLP_LOSS_B2_SIZE];
static int32_t labels[MLP_LOSS_LABELS_SIZE];
int main(int argc, char **argv) {
    char err[512];
    if (argc < 2) return 2;
    kiln_gpu *gpu = kiln_gpu_open(argv[1], 0, 0, 1, err, sizeof err);
    if (!gpu) { printf("open failed: %s\n", err); return 1; }
    float loss = -1;
    const void *in[6] = {x, labels, w1, b1, w2, b2};
    size_t bytes[7] = {sizeof x, sizeof labels, sizeof w1, sizeof b1, sizeof w2, sizeof b2, sizeof loss};
    void *out[1] = {&loss};
    if (kiln_gpu_call(gpu, MLP_LOSS_NAME, in, bytes, 6, out, bytes + 6, 1, err, sizeof err)) { printf("call failed: %s\n", err); return 1; }
    printf("copied loss %.6f\n", loss);
    uint64_t buffers[7];
    for (int i = 0; i < 7; i++) {
        if (kiln_gpu_alloc(gpu, bytes[i], &buffers[i], err, sizeof err)) { printf("alloc failed: %s\n", err); return 1; }
        if (i < 6 && kiln_gpu_copy_to_device(gpu, buffers[i], in[i], bytes[i], err, sizeof err)) { printf("copy failed: %s\n", err); return 1; }
    }
    if (kiln_gpu_call_device(gpu, MLP_LOSS_NAME, buffers, 7, err, sizeof err)) { printf("device call failed: %s\n", err); return 1; }
    loss = -1;
    if (kiln_gpu_copy_from_device(gpu, &loss, buffers[6], sizeof loss, err, sizeof err)) { printf("copy back failed: %s\n", err); return 1; }
    printf("device loss %.6f\n", loss);
    printf("count: %d %s\n", kiln_gpu_call_device(gpu, "loss", buffers, 6, err, sizeof err), err);
    printf("size: %d %s\n", kiln_gpu_copy_to_device(gpu, buffers[0], x, 4, err, sizeof err), err);
    kiln_gpu_free(gpu, buffers[2]);
    printf("freed: %d %s\n", kiln_gpu_call_device(gpu, "loss", buffers, 7, err, sizeof err), err);
    kiln_gpu_close(gpu);
    printf("limit: %s\n", kiln_gpu_open(argv[1], 0, 1000, 1, err, sizeof err) ? "opened" : err);
    kiln_gpu *device = kiln_gpu_open(argv[1], 0, 0, 0, err, sizeof err);
    printf("device: %s\n", device ? "opened" : err);
    kiln_gpu_close(device);
    return 0;
}
"#;

/// The C API runs a GPU bundle (here on the emulator; sizes and names from the bundle's
/// header) with host buffers and with device buffers it allocated, and refuses bad counts,
/// sizes, freed memory and a memory limit.
#[test]
fn c_api_runs_gpu_bundles() {
    let dir = tempfile::tempdir().unwrap();
    gpu_bundle(&mlp(), "sm_80", dir.path()).unwrap();
    let stdout = common::run_c_with_runtime(dir.path(), C_GPU_PROGRAM, &dir.path().join("mlp.json"));
    for want in [
        "copied loss 2.302585",
        "device loss 2.302585",
        "count: 1 bad arguments: `loss` takes 7 buffers (6 parameters, 1 results), got 6",
        "size: 1 the buffer at 0x",
        "freed: 1 bad arguments: `w1` of `loss`: 0x",
        "limit: GPU: `train_step` needs",
    ] {
        assert!(stdout.contains(want), "{want}\n{stdout}");
    }
    assert!(stdout.contains("device: opened") || stdout.contains("device: GPU: "), "{stdout}");
}

/// Calls `f` on `executor` (its GPU bundle) with `args`.
fn call(
    executor: &kiln_runtime::gpu::GpuExecutor,
    f: &kiln_ir::Func,
    args: &[kiln_ir::interp::Tensor],
) -> Result<Vec<kiln_ir::interp::Tensor>, String> {
    use kiln_ir::interp::{Data, Tensor};
    let inputs: Vec<Vec<u8>> = args.iter().map(|a| a.data.to_bytes()).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut outputs: Vec<Vec<u8>> = f.result_types().iter().map(|t| vec![0u8; t.size_bytes()]).collect();
    let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    executor.call(&f.name, &refs, &mut outs).map_err(|e| format!("`{}`: {e}", f.name))?;
    Ok(outputs
        .iter()
        .zip(f.result_types())
        .map(|(bytes, ty)| Tensor::new(ty.shape.clone(), Data::from_bytes(ty.dtype, bytes).unwrap()))
        .collect())
}

/// Runs `f` on `executor` and in the interpreter on `args` and compares them under `check`.
fn check_against_interpreter(
    executor: &kiln_runtime::gpu::GpuExecutor,
    f: &kiln_ir::Func,
    args: &[kiln_ir::interp::Tensor],
    check: common::Check,
) -> Result<common::Compared, String> {
    common::compare_results(f, args, &call(executor, f, args)?, check)
        .map_err(|e| format!("`{}` {e}\n(inputs: {args:?})", f.name))
}

/// Calls every function of `module` on `executor` (its GPU bundle) with random inputs and
/// compares the results with the interpreter's; most must be well conditioned.
fn agrees_with_interpreter(
    executor: &kiln_runtime::gpu::GpuExecutor,
    module: &kiln_ir::Module,
    rng: &mut kiln_ir::gen::Rng,
    scale: f64,
) -> Result<(), String> {
    let mut compared = common::Compared::default();
    for f in &module.funcs {
        let args: Vec<_> = kiln_ir::gen::arguments(rng, f, false).iter().map(|t| common::scaled(t, scale)).collect();
        compared += check_against_interpreter(executor, f, &args, common::Check::ProgramWithoutLibm)?;
    }
    compared.mostly_judged()
}

/// f64 dividends of `rem` brought to quotients below 2^53 where they were above: the GPU's fmod
/// is exact only there (codegen/src/mlir/approx.rs; f32 is exact everywhere).
fn exact_quotients(args: &mut [kiln_ir::interp::Tensor]) {
    let [a, b] = args else { return };
    if let (kiln_ir::interp::Data::F64(a), kiln_ir::interp::Data::F64(b)) = (&mut a.data, &b.data) {
        for (x, &y) in a.iter_mut().zip(b) {
            if (*x / y).abs() >= 2f64.powi(53) && x.is_finite() {
                *x = x.signum() * y.abs() * 12345.25;
            }
        }
    }
}

/// Every op of the table (random instances over the dtypes it accepts, with the special
/// values of the CPU's differential test), compiled for the GPU, runs on the PTX emulator like
/// the interpreter. Loops, scans, while loops and conditionals run their bodies' launches from
/// the host's side of the plan; a body is a small program of kiln's own functions (no libm),
/// compared as a program on its well conditioned elements (a sine of a huge carry is not).
#[test]
fn every_op_runs_on_the_ptx_emulator_like_the_interpreter() {
    let mut rng = kiln_ir::gen::Rng::new(common::seed());
    // Constants loaded from weights files are CPU-only for now: a GPU build refuses them
    // (`load_is_refused_on_gpu_targets`).
    let (module, cases) = common::op_instances(&mut rng, 3, |op| !matches!(op, kiln_ir::Op::Data(_)));
    let artifacts = kiln_codegen::compile(&module, &gpu_options("sm_90").target, 2, Default::default()).unwrap();
    let executor = kiln_runtime::gpu::GpuExecutor::emulated(bundle_of(&module, &artifacts), None).unwrap();
    let mut failures = vec![];
    let mut bodies = common::Compared::default();
    for (name, template) in &cases {
        let f = module.func(name).unwrap();
        let mut args = common::op_inputs(&mut rng, f, template);
        if *template == kiln_ir::Op::Binary(kiln_ir::BinaryOp::Rem) {
            exact_quotients(&mut args);
        }
        let structured = template.bodies().is_some();
        let check = if structured { common::Check::ProgramWithoutLibm } else { common::Check::of(template) };
        match check_against_interpreter(&executor, f, &args, check) {
            Ok(compared) if structured => bodies += compared,
            Ok(_) => {}
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    bodies.mostly_judged().unwrap();
}

/// Every float unary op of the table on every special value, and every binary op on every
/// pair (zeros of both signs, ±1, a fraction, huge and tiny values, infinities, NaN), in f32
/// and f64, on the emulator like the interpreter. Random inputs draw a special value for 3% of
/// the elements, so a pair of them, such as fmod(inf, inf), which the GPU's remainder gave as
/// inf rather than NaN, comes up about once in a thousand elements.
#[test]
fn elementwise_ops_on_special_values_run_on_the_ptx_emulator_like_the_interpreter() {
    use kiln_ir::interp::{Data, Tensor};
    use kiln_ir::{BinaryOp, DType, Op, UnaryOp};
    const SPECIAL: [f64; 13] = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.375,
        -2.5,
        3.0e9,
        -1.0e20,
        1.0e-30,
        f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let n = SPECIAL.len();
    // Operand k of element i: every pair of specials for binary ops, each special for unary.
    let operand = |k: usize| -> Vec<f64> { (0..n * n).map(|i| SPECIAL[if k == 0 { i / n } else { i % n }]).collect() };
    let mut funcs = vec![];
    for dtype in [DType::F32, DType::F64] {
        let ty = kiln_ir::types::TensorType::new(dtype, vec![n * n]);
        let unary = UnaryOp::ALL.iter().filter(|u| u.domain().accepts(dtype)).map(|&u| (Op::Unary(u), u.name(), 1));
        let binary = BinaryOp::ALL.iter().filter(|b| b.domain().accepts(dtype)).map(|&b| (Op::Binary(b), b.name(), 2));
        for (op, name, arity) in unary.chain(binary) {
            funcs
                .push(kiln_ir::gen::op_func(&format!("{name}_{}", dtype.name()), op, vec![ty.clone(); arity]).unwrap());
        }
    }
    let module = kiln_ir::Module { name: "specials".into(), funcs };
    let artifacts = kiln_codegen::compile(&module, &gpu_options("sm_90").target, 2, Default::default()).unwrap();
    let executor = kiln_runtime::gpu::GpuExecutor::emulated(bundle_of(&module, &artifacts), None).unwrap();
    let mut failures = vec![];
    for f in &module.funcs {
        let tensor = |v: Vec<f64>| match f.params[0].ty.dtype {
            DType::F32 => Tensor::new(vec![n * n], Data::F32(v.iter().map(|&x| x as f32).collect())),
            _ => Tensor::new(vec![n * n], Data::F64(v)),
        };
        let mut args: Vec<_> = (0..f.params.len()).map(|k| tensor(operand(k))).collect();
        let op = &f.insts[0].op;
        if *op == Op::Binary(BinaryOp::Rem) {
            exact_quotients(&mut args);
        }
        if let Err(e) = check_against_interpreter(&executor, f, &args, common::Check::of(op)) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Reductions big enough for a block of threads per output (`gpu::reduce`): rows, columns,
/// full sums in two stages, every combining operator and element type, softmax and layer
/// norm as row groups, on the emulator against the interpreter; their kernels synchronize
/// through workgroup memory.
#[test]
fn block_reductions_agree_with_the_interpreter() {
    let source = Source {
        name: "blocks.kn".into(),
        text: "fn rows(x: f32[70, 300]) -> (f32[70], f32[70], f32[70], f32[70, 300]) {\n\
               (sum(x, axis=1), max(x, axis=1), min(x, axis=1), softmax(x))\n}\n\
               fn wide(x: f64[3, 500]) -> (f64[3], f64[3], f64[3]) { (sum(x, axis=1), max(x, axis=1), mean(x, axis=1)) }\n\
               fn ints(x: i32[5, 200], y: i64[300]) -> (i32[5], i64, i32[5], i64) {\n\
               (sum(x, axis=1), sum(y), max(x, axis=1), min(y))\n}\n\
               fn full(x: f32[100000]) -> f32 { sum(x * x) }\n\
               fn cols(x: f32[300, 7]) -> f32[7] { sum(x, axis=0) }\n\
               fn soft(x: f32[70, 300]) -> f32[70, 300] { softmax(x) }\n\
               fn norm(x: f32[9, 200], g: f32[200]) -> f32[9, 200] {\n\
               let d = x - mean(x, axis=1, keepdims=true);\n\
               d / sqrt(mean(d * d, axis=1, keepdims=true) + 0.00001) * g\n}\n\
               export rows;\nexport wide;\nexport ints;\nexport full;\nexport cols;\nexport soft;\nexport norm;\n"
            .into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = gpu_bundle(&source, "sm_80", dir.path()).unwrap();
    let synchronizing = bundle.kernels.iter().filter(|k| k.ptx.contains("bar.sync"));
    assert!(synchronizing.count() >= 6, "block reductions were not used");
    // A softmax is one row group: one launch.
    assert_eq!(bundle.function("soft").unwrap().launches.len(), 1);
    // Its intermediates live in workgroup memory, so it needs no device workspace; so does a
    // layer norm's (means, deviations, variances, per-row scales).
    assert_eq!(bundle.function("soft").unwrap().workspace_bytes, 0);
    let norm = bundle.function("norm").unwrap();
    assert_eq!((norm.launches.len(), norm.workspace_bytes), (1, 0));
    let mut rng = kiln_ir::gen::Rng::new(kiln_ir::gen::test_seed());
    agrees_on_the_emulator(&source, bundle, &mut rng).unwrap();
}

/// Elementwise loops over any shape run as one linear index, 256 consecutive elements per
/// block: all grids stay within CUDA's limits (grid y was 100000 for a [4, 100000] array), and
/// the results agree with the interpreter.
#[test]
fn elementwise_launches_cover_any_shape_within_cuda_limits() {
    let source = Source {
        name: "shapes.kn".into(),
        text: "fn wide(x: f32[4, 70000]) -> f32[4, 70000] { x * 2.0 + 1.0 }\n\
               fn tall(x: f32[70000, 3], y: f32[3]) -> f32[70000, 3] { tanh(x - y) }\n\
               fn cube(x: i32[3, 5, 7]) -> i32[7, 5, 3] { transpose(x) }\n\
               export wide;\nexport tall;\nexport cube;\n"
            .into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = gpu_bundle(&source, "sm_80", dir.path()).unwrap();
    for step in bundle.functions.iter().flat_map(|f| &f.launches) {
        if let kiln_runtime::gpu::Step::Kernel(l) = step {
            assert!(l.grid[1] == 1 && l.grid[2] == 1 && l.block == [256, 1, 1], "{l:?}");
        }
    }
    let mut rng = kiln_ir::gen::Rng::new(kiln_ir::gen::test_seed());
    agrees_on_the_emulator(&source, bundle, &mut rng).unwrap();
}

/// Float products are cuBLAS steps that overwrite their output (the zero fill before them is
/// gone: the plan of a lone product is that one step) and work in scratch memory at the end of
/// the workspace, sized for the GPU and counted in the manifest's workspace. The emulator
/// hands out memory filled with NaN, so a product that accumulated into its unfilled output
/// would show.
#[test]
fn products_overwrite_their_output_and_their_scratch_is_workspace() {
    use kiln_runtime::gpu::{LaunchArg, Step};
    let source = Source {
        name: "products.kn".into(),
        text: "fn mm(a: f32[8, 16], b: f32[16, 4], c: f32[4]) -> f32[8, 4] { relu(a @ b + c) }\n\
               fn bmm(a: f64[3, 8, 16], b: f64[3, 16, 4]) -> f64[3, 8, 4] { a @ b }\n\
               fn atb(a: f32[16, 8], b: f32[16, 4]) -> f32[8, 4] { transpose(a) @ b }\n\
               export mm;\nexport bmm;\nexport atb;\n"
            .into(),
    };
    let mut rng = kiln_ir::gen::Rng::new(kiln_ir::gen::test_seed());
    for (gpu, scratch) in [("sm_80", 4u64 << 20), ("sm_90", 32 << 20)] {
        let dir = tempfile::tempdir().unwrap();
        let bundle = gpu_bundle(&source, gpu, dir.path()).unwrap();
        for f in &bundle.functions {
            let gemms: Vec<_> =
                f.launches.iter().filter_map(|s| if let Step::Gemm(g) = s { Some(g) } else { None }).collect();
            assert_eq!(gemms.len(), 1, "`{}`: {:?}", f.name, f.launches);
            let g = gemms[0];
            assert!(!g.accumulate && g.scratch_bytes == scratch, "{g:?}");
            let LaunchArg::Workspace { offset } = g.scratch else { panic!("{g:?}") };
            assert_eq!(offset + scratch, f.workspace_bytes as u64, "the scratch ends the workspace");
        }
        assert_eq!(bundle.function("bmm").unwrap().launches.len(), 1, "a product alone is one step");
        agrees_on_the_emulator(&source, bundle.clone(), &mut rng).unwrap();
        // Accumulating into the output nobody filled reads the emulator's NaNs.
        let mut accumulating = bundle;
        for f in &mut accumulating.functions {
            for step in &mut f.launches {
                if let Step::Gemm(g) = step {
                    g.accumulate = true;
                }
            }
        }
        assert!(agrees_on_the_emulator(&source, accumulating, &mut rng).is_err());
    }
}

/// The GPU benchmark's program (scripts/gpu-bench) builds into a bundle the runtime accepts
/// (launches within CUDA's limits), its product a cuBLAS step; kiln-gpu-check --bench times a
/// bundle (here on the emulator, which is all this test can say about time).
#[test]
fn the_gpu_benchmark_builds_and_the_bench_mode_times_bundles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = Source::read(&root.join("scripts/gpu-bench/bench.kn")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = gpu_bundle(&source, "sm_90", dir.path()).unwrap();
    let matmul = bundle.function("matmul").unwrap();
    assert!(matmul.launches.iter().any(|s| matches!(s, kiln_runtime::gpu::Step::Gemm(g) if g.m == 4096)));
    let check = gpu_check_program();
    gpu_bundle(&mlp(), "sm_80", dir.path()).unwrap();
    let out = Command::new(&check)
        .args(["--bench", "--emulate", "--runs", "2"])
        .arg(dir.path().join("mlp.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches(" ms, ").count(), 3, "{stdout}");
}

/// Every example and every program under tests/run and tests/rewrites, compiled for the GPU,
/// runs on the PTX emulator and agrees with the interpreter: the acceptance check of a GPU run,
/// done without a GPU (the emulator does not model the approximate instructions' error).
#[test]
fn every_program_runs_on_the_ptx_emulator_like_the_interpreter() {
    let mut rng = kiln_ir::gen::Rng::new(kiln_ir::gen::test_seed());
    let mut failures = vec![];
    for path in programs() {
        let source = Source::read(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        let bundle = gpu_bundle(&source, "sm_80", dir.path());
        let run = if common::interpreted(&source.text) {
            bundle.and_then(|b| agrees_on_the_emulator(&source, b, &mut rng))
        } else {
            bundle.map(drop)
        };
        if let Err(e) = run {
            failures.push(format!("{}: {e}", path.display()));
        }
        eprintln!("{}: {:.2} s", path.display(), start.elapsed().as_secs_f64());
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// `kiln expect` writes every argument of every function as a raw file of the right size, and
/// kiln-gpu-check (which needs only the runtime) runs the bundle against them: on the PTX
/// emulator it agrees; on a GPU it agrees; without one it exits 2 saying so.
#[test]
fn the_gpu_check_program_runs_bundles_against_expected_results() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kiln = Path::new(env!("CARGO_BIN_EXE_kiln"));
    let check = gpu_check_program();
    let dir = tempfile::tempdir().unwrap();
    let (bundle, data) = (dir.path().join("bundle"), dir.path().join("data"));
    let example = root.join("examples/mlp.kn");
    let run = |cmd: &mut Command| cmd.output().unwrap();
    let built = run(Command::new(kiln)
        .arg("build")
        .arg(&example)
        .args(["--target", "nvptx64-nvidia-cuda", "--gpu", "sm_80", "-o"])
        .arg(&bundle));
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    assert!(run(Command::new(kiln).arg("expect").arg(&example).arg("-o").arg(&data)).status.success());
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("mlp.json")).unwrap()).unwrap();
    for f in manifest["functions"].as_array().unwrap() {
        for a in f["params"].as_array().unwrap().iter().chain(f["results"].as_array().unwrap()) {
            let file = data.join(format!("{}.{}.bin", f["name"].as_str().unwrap(), a["name"].as_str().unwrap()));
            assert_eq!(std::fs::metadata(&file).unwrap().len(), a["bytes"].as_u64().unwrap(), "{}", file.display());
        }
    }
    // On the PTX emulator, on any machine.
    let out = run(Command::new(&check).arg("--emulate").arg(bundle.join("mlp.json")).arg(&data).args(["--runs", "1"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("agrees").count(), 3, "{stdout}");
    assert!(stdout.contains("(emulated)"), "{stdout}");
    let out = run(Command::new(&check).arg(bundle.join("mlp.json")).arg(&data).args(["--runs", "3"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => assert!(String::from_utf8_lossy(&out.stdout).matches("agrees").count() == 3),
        Some(2) => eprintln!("no GPU here: {stderr}"),
        code => panic!("kiln-gpu-check exited with {code:?}: {stderr}{}", String::from_utf8_lossy(&out.stdout)),
    }
}

/// Random programs over every op of the table and dtype (the generator of the differential
/// tests) compile for the GPU, ptxas accepts their kernels, and on the PTX emulator they agree
/// with the interpreter.
#[test]
fn random_programs_compile_to_ptx() {
    use kiln_ir::gen::{self, Rng};
    let mut rng = Rng::new(kiln_ir::gen::test_seed());
    let funcs: Vec<_> = (0..30).map(|i| gen::random_func(&mut rng, 4 + i % 10, &format!("p{i}"))).collect();
    let module = kiln_ir::Module { name: "rand".into(), funcs };
    let artifacts = kiln_codegen::compile(&module, &gpu_options("sm_90").target, 2, Default::default())
        .unwrap_or_else(|e| panic!("{e}\n{}", kiln_ir::text::print_module(&module)));
    assert_eq!(artifacts.launches.len(), module.funcs.len());
    assert!(artifacts.launches.iter().all(|l| !l.is_empty()));
    if let Some(ptxas) = ptxas() {
        let dir = tempfile::tempdir().unwrap();
        for k in &artifacts.kernels {
            ptxas_check(&ptxas, dir.path(), &format!("{}.ptx", k.name), k.ptx.as_bytes(), "sm_90").unwrap();
        }
    }
    let executor = kiln_runtime::gpu::GpuExecutor::emulated(bundle_of(&module, &artifacts), None).unwrap();
    agrees_with_interpreter(&executor, &module, &mut rng, 1.0)
        .unwrap_or_else(|e| panic!("{e}\n{}", kiln_ir::text::print_module(&module)));
}

/// Random programs over long rows (parameters [a, n] or [a, b, n] with n from 64 to 300), so
/// that their reductions and the ops around them take the block reductions and row groups:
/// on the emulator they agree with the interpreter.
#[test]
fn random_programs_over_long_rows_agree_on_the_emulator() {
    use kiln_ir::gen::{self, Rng};
    use kiln_ir::{Op, ReduceKind};
    let mut rng = Rng::new(kiln_ir::gen::test_seed());
    let funcs: Vec<_> = (0..16)
        .map(|i| {
            let mut shape = gen::shape(&mut rng, 1, 2);
            shape.push(64 + rng.below(237));
            let base = kiln_ir::types::TensorType::new(rng.pick(&[kiln_ir::DType::F32, kiln_ir::DType::F64]), shape);
            let mut f = gen::random_func_over(&mut rng, 4 + i % 8, &format!("p{i}"), base);
            // Its first float result reduced over its last axis, as one more result: the ops
            // producing it and the reduction make a row group.
            if let Some(&r) = f.results.iter().find(|&&r| f.ty(r).dtype.is_float() && f.ty(r).rank() > 0) {
                let kinds = [ReduceKind::Sum, ReduceKind::Max, ReduceKind::Min];
                let op = Op::Reduce { kind: rng.pick(&kinds), axes: vec![f.ty(r).rank() - 1] };
                let v = f.push(op, vec![r], Default::default()).unwrap();
                f.results.push(v);
                f.result_names.push(format!("out{}", f.results.len() - 1));
            }
            f
        })
        .collect();
    let module = kiln_ir::Module { name: "rows".into(), funcs };
    let artifacts = kiln_codegen::compile(&module, &gpu_options("sm_80").target, 2, Default::default())
        .unwrap_or_else(|e| panic!("{e}\n{}", kiln_ir::text::print_module(&module)));
    let synchronizing = artifacts.kernels.iter().filter(|k| k.ptx.contains("bar.sync")).count();
    assert!(
        synchronizing > 0,
        "no block reduction among {} kernels\n{}",
        artifacts.kernels.len(),
        kiln_ir::text::print_module(&module)
    );
    let executor = kiln_runtime::gpu::GpuExecutor::emulated(bundle_of(&module, &artifacts), None).unwrap();
    agrees_with_interpreter(&executor, &module, &mut rng, 1.0)
        .unwrap_or_else(|e| panic!("{e}\n{}", kiln_ir::text::print_module(&module)));
}

/// The GPU bundle of `module` compiled into `artifacts`, checked as the runtime checks a
/// manifest's (for modules that have no source text to build from).
fn bundle_of(module: &kiln_ir::Module, artifacts: &kiln_codegen::Artifacts) -> kiln_runtime::gpu::GpuBundle {
    use kiln_runtime::gpu::{GpuBundle, GpuKernel};
    let kernels = artifacts
        .kernels
        .iter()
        .map(|k| GpuKernel { name: k.name.clone(), entry: k.entry.clone(), ptx: k.ptx.clone() })
        .collect();
    let functions = kiln_codegen::manifest::functions(module, &artifacts.workspace, &[], &artifacts.launches);
    GpuBundle::from_plan(&module.name, "sm_90", &functions, kernels).unwrap()
}

/// kiln-gpu-check, which `cargo test --workspace` builds beside kiln: a test that needs it
/// fails when it is missing rather than passing without checking anything.
fn gpu_check_program() -> std::path::PathBuf {
    let check = Path::new(env!("CARGO_BIN_EXE_kiln")).with_file_name("kiln-gpu-check");
    assert!(check.is_file(), "{} is missing: build it with `cargo build -p kiln-runtime --bins`", check.display());
    check
}

/// #17 A.13: editing only a GPU manifest's launch plan (block sizes, buffer indices, kernel
/// names) gave garbage with status 0 on the emulator, and would read out of bounds on hardware.
/// The plan as built is a listed, hashed file of the bundle; a manifest whose plan differs is
/// refused at open.
#[test]
fn a_gpu_manifest_whose_launch_plan_was_edited_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    gpu_bundle(&mlp(), "sm_80", dir.path()).unwrap();
    let path = dir.path().join("mlp.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = original.replacen("\"block\": [\n            256", "\"block\": [\n            128", 1);
    assert_ne!(edited, original, "the plan has a block of 256 threads to edit");
    std::fs::write(&path, edited).unwrap();
    let Err(refused) = kiln_runtime::gpu::GpuBundle::open(&path) else { panic!("an edited plan opened") };
    assert!(refused.to_string().contains("launch plan differs"), "{refused}");
}

/// #17 D: the checked-in GPU bundle of manifest version 3 (tests/fixtures/bundles/v3-gpu,
/// built before requirements and provenance) opens and runs on the emulator like the
/// interpreter of the source it was built from.
#[test]
fn a_version_3_gpu_bundle_opens_and_runs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bundles/v3-gpu");
    let bundle = kiln_runtime::gpu::GpuBundle::open(&dir.join("mlp.json")).expect("a version 3 GPU bundle opens");
    let source = Source { name: "mlp.kn".into(), text: std::fs::read_to_string(dir.join("mlp.kn")).unwrap() };
    agrees_on_the_emulator(&source, bundle, &mut kiln_ir::gen::Rng::new(common::seed())).unwrap();
}

/// A version-4 bundle (loops and conditionals in its plans, built with the compiler that
/// introduced them) opens and runs like the interpreter of its source; a manifest claiming
/// version 3 for such plans is refused, and so are plans whose loop indices, reads or nesting
/// break the rules (docs/artifact-format.md).
#[test]
fn a_version_4_gpu_bundle_with_loops_opens_and_runs() {
    use kiln_codegen::manifest::{FunctionInfo, LaunchArg, Scalar, Step};
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bundles/v4-gpu");
    let bundle = kiln_runtime::gpu::GpuBundle::open(&fixture.join("steps.json")).expect("a version 4 bundle opens");
    let source = Source::read(&fixture.join("steps.kn")).unwrap();
    agrees_on_the_emulator(&source, bundle, &mut kiln_ir::gen::Rng::new(common::seed())).unwrap();

    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let manifest = dir.path().join("steps.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"version\": 4", "\"version\": 3")).unwrap();
    match kiln_runtime::gpu::GpuBundle::open(&manifest) {
        Err(kiln_runtime::Error::Version(m)) => assert!(m.contains("loops or conditionals"), "{m}"),
        other => panic!("version 3 with loops must be refused, got {:?}", other.err()),
    }

    // Plans changed in memory (a changed manifest is refused by its hashed plan file first).
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let functions: Vec<FunctionInfo> = serde_json::from_value(json["functions"].clone()).unwrap();
    let kernels: Vec<kiln_runtime::gpu::GpuKernel> = json["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| kiln_runtime::gpu::GpuKernel {
            name: k["name"].as_str().unwrap().into(),
            entry: k["entry"].as_str().unwrap().into(),
            ptx: std::fs::read_to_string(fixture.join(k["file"].as_str().unwrap())).unwrap(),
        })
        .collect();
    let refused = |change: &dyn Fn(&mut Vec<Step>), why: &str| {
        let mut changed = functions.clone();
        change(&mut changed.iter_mut().find(|f| f.name == "damped").unwrap().launches);
        match kiln_runtime::gpu::GpuBundle::from_plan("steps", "sm_80", &changed, kernels.clone()) {
            Err(kiln_runtime::Error::Manifest(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("a plan that is {why} must be refused, got {:?}", other.err()),
        }
    };
    let the_loop = |steps: &mut Vec<Step>| -> kiln_codegen::manifest::CountedLoop {
        match steps.iter().find(|s| matches!(s, Step::Loop { .. })) {
            Some(Step::Loop { r#loop }) => r#loop.clone(),
            _ => panic!("`damped` has a loop"),
        }
    };
    let set_loop = |steps: &mut Vec<Step>, l: kiln_codegen::manifest::CountedLoop| {
        let at = steps.iter().position(|s| matches!(s, Step::Loop { .. })).unwrap();
        steps[at] = Step::Loop { r#loop: l };
    };
    // The index of a loop that is not there.
    refused(
        &|steps| {
            let mut l = the_loop(steps);
            if let Step::Kernel(k) = &mut l.body[0] {
                k.args.push(LaunchArg::Index { depth: 1 });
            }
            set_loop(steps, l);
        },
        "out of range",
    );
    // A float read as a trip count, and a read past its buffer.
    refused(
        &|steps| {
            let mut l = the_loop(steps);
            l.to = Scalar::Read { at: LaunchArg::Buffer { index: 0 }, dtype: kiln_codegen::manifest::DType::F32 };
            set_loop(steps, l);
        },
        "not an integer in memory",
    );
    refused(
        &|steps| {
            let mut l = the_loop(steps);
            l.to = Scalar::Read {
                at: LaunchArg::Workspace { offset: u64::MAX - 2 },
                dtype: kiln_codegen::manifest::DType::I32,
            };
            set_loop(steps, l);
        },
        "out of range",
    );
    // Loops nested past the limit.
    refused(
        &|steps| {
            let l = the_loop(steps);
            let mut deep = Step::Loop { r#loop: l.clone() };
            for _ in 0..70 {
                deep = Step::Loop { r#loop: kiln_codegen::manifest::CountedLoop { body: vec![deep], ..l.clone() } };
            }
            steps.push(deep);
        },
        "nest deeper",
    );
}

/// A GPU build refuses weights compiled in with `load` (they would be PTX globals, which
/// neither the launch plan nor the emulator handles yet) with a diagnostic, not a failure.
#[test]
fn load_is_refused_on_gpu_targets() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = br#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&values);
    std::fs::write(dir.path().join("w.safetensors"), file).unwrap();
    let path = dir.path().join("m.kn");
    std::fs::write(&path, "fn f(x: f32[3]) -> f32[3] { x * load(\"w.safetensors\", \"w\") }\nexport f;\n").unwrap();
    let source = kiln::Source::read(&path).unwrap();
    let cpu = kiln::build(&source, &kiln::Options::default());
    assert!(cpu.is_ok(), "{}", cpu.unwrap_err());
    let err = kiln::build(&source, &gpu_options("sm_80")).unwrap_err();
    assert!(matches!(err, kiln::Error::Usage(_)), "{err}");
    assert!(err.to_string().contains("with `load` are not supported on GPU targets yet"), "{err}");
}
