//! Test support: compile IR to a shared library, load it, and call its entry points on
//! tensors; random seeds per run.
#![allow(dead_code)]

use kiln_ir::interp::{compare_where, Data, Tensor, Tolerance};
use kiln_ir::{BinaryOp, Module, Op};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The seed of this run (see `kiln_ir::gen::test_seed`).
pub fn seed() -> u64 {
    kiln_ir::gen::test_seed()
}

/// A compiled module loaded as a shared library.
pub struct Loaded {
    pub module: Module,
    lib: libloading::Library,
    _dir: tempfile::TempDir,
}

/// Compiles a verified module with the default target at `opt`; see [`compile_and_load_for`].
pub fn compile_and_load(module: &Module, opt: u8) -> Loaded {
    compile_and_load_for(module, opt, &kiln_codegen::Target::default())
}

/// Compiles a verified module for a host `target` at `opt`, links it into a shared
/// library with the system C compiler and loads it.
pub fn compile_and_load_for(module: &Module, opt: u8, target: &kiln_codegen::Target) -> Loaded {
    kiln_ir::verify::verify_module(module).expect("test modules verify");
    let artifacts = kiln_codegen::compile(module, target, opt, Default::default()).unwrap_or_else(|e| {
        let path = std::env::temp_dir().join(format!("kiln-failed-{}.mlir", module.name));
        let _ = std::fs::write(&path, kiln_codegen::front::emitted(module, target).map(|e| e.text).unwrap_or_default());
        panic!("codegen failed: {e}\n(MLIR written to {})\n{}", path.display(), kiln_ir::text::print_module(module))
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let obj: PathBuf = dir.path().join("m.o");
    let so: PathBuf = dir.path().join("libm.so");
    std::fs::write(&obj, &artifacts.object).expect("write object");
    let status = Command::new("cc").arg("-shared").arg("-o").arg(&so).arg(&obj).arg("-lm").status().expect("run cc");
    assert!(status.success(), "linking failed");
    let lib = unsafe { libloading::Library::new(&so) }.expect("load library");
    Loaded { module: module.clone(), lib, _dir: dir }
}

impl Loaded {
    /// Runs the module's parallel loops on kiln-runtime's pool (see `kiln_runtime::pool`).
    pub fn use_pool(&self) {
        let symbol = format!("{}_set_parallel_for\0", self.module.name);
        let set: libloading::Symbol<unsafe extern "C" fn(kiln_runtime::pool::ParallelFor)> =
            unsafe { self.lib.get(symbol.as_bytes()) }.expect("every module exports its parallel-for setter");
        unsafe { set(kiln_runtime::pool::kiln_parallel_for) };
    }

    /// Calls exported function `name` on `args` and returns its results.
    pub fn call(&self, name: &str, args: &[Tensor]) -> Vec<Tensor> {
        let func = self.module.func(name).expect("function exists");
        let symbol = format!("{}_{}\0", self.module.name, name);
        let f: libloading::Symbol<*const std::ffi::c_void> =
            unsafe { self.lib.get(symbol.as_bytes()) }.expect("symbol");
        let mut inputs: Vec<Vec<u8>> = args.iter().map(|a| a.data.to_bytes()).collect();
        let mut outputs: Vec<Vec<u8>> = func.result_types().iter().map(|t| vec![0xA5u8; t.size_bytes()]).collect();
        let mut ptrs: Vec<*mut std::ffi::c_void> = inputs.iter_mut().map(|b| b.as_mut_ptr().cast()).collect();
        ptrs.extend(outputs.iter_mut().map(|b| b.as_mut_ptr().cast()));
        // No workspace: the entry point allocates its own.
        ptrs.push(std::ptr::null_mut());
        let status = unsafe { kiln_runtime::entry::call(*f, &ptrs) }.expect("callable");
        assert_eq!(status, 0, "entry point returned {status}");
        outputs
            .iter()
            .zip(func.result_types())
            .map(|(bytes, ty)| Tensor::new(ty.shape.clone(), Data::from_bytes(ty.dtype, bytes).expect("size")))
            .collect()
    }
}

/// What is compared, which sets the tolerance against the interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// One elementwise or shape op: every element within 1e-5 of itself (f32; 1e-12 f64).
    Elementwise,
    /// One op that sums (reductions, dot): within 1e-5 of the result's largest magnitude.
    Reduction,
    /// A whole program: f32 rounding compounds across ops and sums with cancellation can
    /// lose digits relative to the interpreter's f64 accumulation, so 1e-4 of the largest
    /// magnitude among the results and the inputs (a result may be the difference of two
    /// values as large as the inputs; 1e-12 for f64, whose accumulation order matches).
    Program,
    /// A whole program on a target without libm (GPUs): kiln's f64 functions are within a
    /// few ulp, not correctly rounded like libm's, and later ops amplify that (pow, sin of a
    /// large value): 1e-9 of the largest magnitude (as for `Program`) for f64, 1e-4 for f32.
    ProgramWithoutLibm,
}

impl Check {
    /// The check of one op's instance.
    pub fn of(op: &kiln_ir::Op) -> Check {
        if matches!(op.class(), kiln_ir::OpClass::Elementwise | kiln_ir::OpClass::Shape) {
            Check::Elementwise
        } else {
            Check::Reduction
        }
    }
}

/// `instances` random instances of every op of the table, as one module, with the op each
/// function instantiates. A new op is covered the moment it appears in `Op::catalog`.
pub fn op_instances(
    rng: &mut kiln_ir::gen::Rng,
    instances: usize,
    keep: impl Fn(&kiln_ir::Op) -> bool,
) -> (Module, Vec<(String, kiln_ir::Op)>) {
    let mut funcs = vec![];
    let mut cases = vec![];
    for (i, template) in kiln_ir::Op::catalog().iter().enumerate().filter(|(_, t)| keep(t)) {
        for k in 0..instances {
            let name = format!("{}_{k}_{i}", template.name());
            funcs.push(kiln_ir::gen::single_op_func(rng, template, &name));
            cases.push((name, template.clone()));
        }
    }
    (Module { name: "ops".into(), funcs }, cases)
}

/// Random inputs of an instance of `op`: with NaN, infinities and huge values everywhere
/// except sums, dot products and convolutions, whose rounding differs legitimately once
/// values overflow.
pub fn op_inputs(rng: &mut kiln_ir::gen::Rng, f: &kiln_ir::Func, op: &kiln_ir::Op) -> Vec<Tensor> {
    use kiln_ir::{Op, ReduceKind};
    let specials = !matches!(op, Op::Dot | Op::Conv(_) | Op::Reduce { kind: ReduceKind::Sum, .. });
    kiln_ir::gen::arguments(rng, f, specials)
}

pub fn tolerance(dtype: kiln_ir::DType, check: Check, args: &[Tensor]) -> Tolerance {
    // The largest finite float among the inputs: what a program's rounding errors scale with.
    let operands = args
        .iter()
        .filter(|a| a.data.dtype().is_float())
        .flat_map(|a| (0..a.data.len()).map(|i| a.data.get_f64(i)))
        .filter(|x| x.is_finite())
        .fold(0.0f64, |m, x| m.max(x.abs()));
    let rtol = rtol(dtype, check);
    match check {
        Check::Elementwise => Tolerance::Elementwise(rtol),
        Check::Reduction => Tolerance::Scaled(rtol),
        Check::Program | Check::ProgramWithoutLibm => Tolerance::Program { rtol, operands },
    }
}

/// The relative error `check` allows in `dtype`. A 16-bit float is computed in f32 and rounded
/// (as JAX computes it): an f32 result within an f32 ulp or two of a point where rounding to 16
/// bits changes (kiln's f32 functions are not correctly rounded, the interpreter's are) rounds
/// one 16-bit ulp away, so one op may differ by one ulp of the type (2^-10 of the value for
/// f16, 2^-7 for bf16), and a program by a few.
fn rtol(dtype: kiln_ir::DType, check: Check) -> f64 {
    let program = matches!(check, Check::Program | Check::ProgramWithoutLibm);
    match dtype {
        kiln_ir::DType::F64 if check == Check::ProgramWithoutLibm => 1e-9,
        kiln_ir::DType::F64 => 1e-12,
        kiln_ir::DType::F16 | kiln_ir::DType::BF16 => {
            let ulp = if dtype == kiln_ir::DType::F16 { 2f64.powi(-10) } else { 2f64.powi(-7) };
            if program {
                4.0 * ulp
            } else {
                ulp
            }
        }
        _ if program => 1e-4,
        _ => 1e-5,
    }
}

/// The interpreter's results of `f` on `args`, each with the elements that are well
/// conditioned under `check`: those the interpreter gives again, within the tolerance, when
/// the float results of every op that correct implementations may compute differently
/// ([`kiln_ir::Op::inexact`]: kiln's functions where there is no libm, another summation
/// order) are moved by up to a hundredth of the tolerance, in runs that move every two such ops
/// apart both ways round and six runs that move each element randomly, and equality holds
/// between values that close. The others (a comparison of two nearly equal values, a difference of nearly equal
/// values, a sine of a huge argument) depend on
/// rounding, not on the compiler: whole programs are compared on the well conditioned elements
/// only, single ops on all.
pub fn reference(f: &kiln_ir::Func, args: &[Tensor], check: Check) -> Vec<(Tensor, Vec<bool>)> {
    let expected = kiln_ir::interp::run(f, args);
    let mut stable: Vec<Vec<bool>> = expected.iter().map(|e| vec![true; e.data.len()]).collect();
    if matches!(check, Check::Program | Check::ProgramWithoutLibm) {
        let mut rng = kiln_ir::gen::Rng::new(f.name.bytes().fold(7, |h, b| h.wrapping_mul(31) + b as u64));
        // Runs 2k and 2k + 1 move op j up where bit k of j is set (down where it is clear),
        // and the other way: every two ops move apart in some run, both ways round. The last
        // runs move each element by a random fraction of the step, either way: elements of
        // one op compared with each other, and functions (a cosine of a huge value) that two
        // points would not show.
        let bits = (usize::BITS - f.insts.len().leading_zeros()) as usize;
        for run in 0..2 * bits + 6 {
            let mut op = 0;
            let moved = kiln_ir::interp::run_with(f, args, |o, operands, t| {
                op += 1;
                let by = || match run / 2 {
                    k if k < bits => {
                        if ((op - 1) >> k & 1 == 1) == (run % 2 == 0) {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                    _ => rng.unit() * 2.0 - 1.0,
                };
                perturb(o, operands, t, |dtype| rtol(dtype, check) / 100.0, run % 2 == 0, by);
            });
            for ((e, m), s) in expected.iter().zip(&moved).zip(&mut stable) {
                let agree = kiln_ir::interp::agreement(e, m, tolerance(e.data.dtype(), check, args));
                s.iter_mut().zip(agree).for_each(|(s, a)| *s &= a);
            }
        }
    }
    expected.into_iter().zip(stable).collect()
}

/// How many of [`perturb`]'s moves apart values near a discontinuity may be.
const NEAR: f64 = 16.0;

/// One op's result in a perturbed run of [`reference`], with floats moved by up to `step` of
/// their type (relative). Where values within [`NEAR`] such moves (several ops' worth) decide a
/// discontinuity, the result is taken on its other side: nearly equal values compare equal
/// when `snap_equal` (in the other runs, equal values moved apart compare unequal), a negative
/// base to a power that close to an integer. An op correct implementations may
/// compute differently then has each value x moved to x (1 + by() step), but for a function's
/// values 0 and ±1: its special cases (exp 0 = 1, cos 0 = 1, pow(x, 0) = 1, log 1 = 0), which
/// every implementation gives exactly.
fn perturb(
    o: &Op,
    operands: &[&Tensor],
    t: &mut Tensor,
    step: impl Fn(kiln_ir::DType) -> f64,
    snap_equal: bool,
    mut by: impl FnMut() -> f64,
) {
    let float = operands.first().is_some_and(|a| a.data.dtype().is_float());
    let operand = |k: usize, i: usize| operands[k].data.get_f64(i);
    if let (Op::Binary(b @ (BinaryOp::Eq | BinaryOp::Ne)), Data::Bool(v), true) = (o, &mut t.data, float && snap_equal)
    {
        let step = step(operands[0].data.dtype());
        for (i, r) in v.iter_mut().enumerate() {
            let (x, y) = (operand(0, i), operand(1, i));
            let near = x == y || (x - y).abs() <= NEAR * step * x.abs().max(y.abs());
            *r = near == (*b == BinaryOp::Eq);
        }
        return;
    }
    if !o.inexact() {
        return;
    }
    let step = step(t.data.dtype());
    let snap = |i: usize, x: f64| match o {
        Op::Binary(BinaryOp::Pow) if operand(0, i) < 0.0 => {
            let (base, exponent) = (operand(0, i), operand(1, i));
            let n = exponent.round();
            let near = n != exponent && (exponent - n).abs() <= NEAR * step * exponent.abs();
            if near {
                base.powf(n)
            } else {
                x
            }
        }
        _ => x,
    };
    let special = |x: f64| matches!(o, Op::Unary(_) | Op::Binary(_)) && [0.0, 1.0].contains(&x.abs());
    let mut shift = |i: usize, x: f64| {
        let x = snap(i, x);
        if special(x) {
            x
        } else {
            x * (1.0 + by() * step)
        }
    };
    match &mut t.data {
        Data::F32(v) => v.iter_mut().enumerate().for_each(|(i, x)| *x = shift(i, *x as f64) as f32),
        Data::F64(v) => v.iter_mut().enumerate().for_each(|(i, x)| *x = shift(i, *x)),
        _ => {}
    }
}

/// How many result elements a comparison judged, of how many (the others were ill
/// conditioned: see [`reference`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compared {
    pub judged: usize,
    pub elements: usize,
}

impl std::ops::AddAssign for Compared {
    fn add_assign(&mut self, other: Compared) {
        self.judged += other.judged;
        self.elements += other.elements;
    }
}

impl Compared {
    /// Fails unless at least half the elements were judged: a module of random programs must
    /// be mostly well conditioned, or its comparison says little.
    pub fn mostly_judged(self) -> Result<(), String> {
        if self.judged * 2 >= self.elements {
            Ok(())
        } else {
            Err(format!("only {} of {} result elements are well conditioned", self.judged, self.elements))
        }
    }
}

/// Compares `actual`, the compiled results of `func` on `args`, with the interpreter's under
/// `check`, on the elements [`reference`] finds well conditioned.
pub fn compare_results(
    func: &kiln_ir::Func,
    args: &[Tensor],
    actual: &[Tensor],
    check: Check,
) -> Result<Compared, String> {
    let mut compared = Compared::default();
    for (i, ((e, stable), a)) in reference(func, args, check).iter().zip(actual).enumerate() {
        compare_where(e, a, tolerance(e.data.dtype(), check, args), stable).map_err(|m| format!("result {i}: {m}"))?;
        compared += Compared { judged: stable.iter().filter(|&&s| s).count(), elements: stable.len() };
    }
    Ok(compared)
}

/// Runs `name` compiled and interpreted on `args` and checks that they agree.
pub fn check_against_interpreter(
    loaded: &Loaded,
    name: &str,
    args: &[Tensor],
    check: Check,
) -> Result<Compared, String> {
    check_against(loaded, loaded.module.func(name).expect("function exists"), args, check)
}

/// Runs the compiled function named like `func` and checks it against `func` interpreted
/// (which may be the program before optimization).
pub fn check_against(loaded: &Loaded, func: &kiln_ir::Func, args: &[Tensor], check: Check) -> Result<Compared, String> {
    let actual = loaded.call(&func.name, args);
    compare_results(func, args, &actual, check)
        .map_err(|m| format!("`{}` {m}\n{}", func.name, kiln_ir::text::print_func(func)))
}

/// Compiles `module`, runs every function on random inputs compiled and interpreted, and fails
/// with every disagreement, or when most results are ill conditioned.
pub fn check_module(module: &Module, rng: &mut kiln_ir::gen::Rng) {
    let loaded = compile_and_load(module, 2);
    let mut failures = vec![];
    let mut compared = Compared::default();
    for f in &module.funcs {
        let args: Vec<_> = kiln_ir::gen::arguments(rng, f, false);
        match check_against_interpreter(&loaded, &f.name, &args, Check::Program) {
            Ok(c) => compared += c,
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    compared.mostly_judged().unwrap();
}

/// The newest `libkiln_runtime*.a` Cargo built: a dependency's static library stays in
/// `deps/` under a hashed name unless the runtime itself was built as a root.
pub fn runtime_archive(target_dir: &Path) -> PathBuf {
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = [target_dir.to_path_buf(), target_dir.join("deps")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("libkiln_runtime") && name.ends_with(".a")
        })
        .map(|p| (std::fs::metadata(&p).and_then(|m| m.modified()).unwrap(), p))
        .collect();
    candidates.sort();
    candidates.pop().expect("cargo builds libkiln_runtime.a with the runtime crate").1
}

/// Compiles the C program `source` as `dir`/main.c (with `dir` on the include path, then
/// `flags`, then -lm), runs it with `args` and returns what it printed, asserting that it
/// compiled and exited with 0.
pub fn run_c(dir: &Path, source: &str, flags: &[std::ffi::OsString], args: &[&Path]) -> String {
    std::fs::write(dir.join("main.c"), source).unwrap();
    let exe = dir.join("main");
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(dir.join("main.c"))
        .arg("-I")
        .arg(dir)
        .args(flags)
        .arg("-lm")
        .output()
        .unwrap();
    assert!(out.status.success(), "compile: {}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&exe).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "run: {stdout}{}", String::from_utf8_lossy(&run.stderr));
    stdout
}

/// [`run_c`] for a program that uses kiln_runtime.h, linked with libkiln_runtime.a.
pub fn run_c_with_runtime(dir: &Path, source: &str, arg: &Path) -> String {
    let target_dir = Path::new(env!("CARGO_BIN_EXE_kiln")).parent().unwrap();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/include");
    let flags = ["-I".into(), include.into(), runtime_archive(target_dir).into(), "-ldl".into(), "-lpthread".into()];
    run_c(dir, source, &flags, &[arg])
}

/// The scale of a program's random float inputs: its header line `// input scale: S` (among
/// the comment lines it starts with), or 1.
pub fn input_scale(text: &str) -> Result<f64, String> {
    let header = text.lines().take_while(|l| l.starts_with("//"));
    match header.filter_map(|l| l.strip_prefix("// input scale: ")).next() {
        Some(s) => s.trim().parse().map_err(|_| format!("a bad input scale `{s}`")),
        None => Ok(1.0),
    }
}

/// Whether a program's header lets the suites run it in the interpreter: not when it says
/// `// not interpreted: REASON` (a model whose every call costs the interpreter minutes,
/// checked another way, as the reason says).
pub fn interpreted(text: &str) -> bool {
    !text.lines().take_while(|l| l.starts_with("//")).any(|l| l.starts_with("// not interpreted: "))
}

/// `t` times `scale`, if it is a float array.
pub fn scaled(t: &Tensor, scale: f64) -> Tensor {
    let data = match &t.data {
        Data::F32(v) => Data::F32(v.iter().map(|&x| (f64::from(x) * scale) as f32).collect()),
        Data::F64(v) => Data::F64(v.iter().map(|&x| x * scale).collect()),
        other => other.clone(),
    };
    Tensor::new(t.shape.clone(), data)
}
