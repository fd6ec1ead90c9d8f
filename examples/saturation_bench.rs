//! Benchmarks of equality saturation (run with `cargo run --example saturation_bench [n]`):
//!
//! 1. optimizing a random 2000-instruction program with the default limits, timed;
//! 2. `(A @ B) @ v` for n x n matrices (default n = 1024), compiled without and with
//!    `--fast-math` (which lets saturation reassociate the chain into `A @ (B @ v)`), each
//!    object timed in the same run; the ratio is the figure.

use kiln::{Options, OutputKind, Source};
use kiln_ir::gen::Rng;
use kiln_ir::{BinaryOp, DType, Func, Op, Span, TensorType, UnaryOp};
use kiln_runtime::{Bundle, TensorMut, TensorRef};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1024);

    let mut f = live_program(2000);
    let before = f.insts.len();
    let start = Instant::now();
    let report = kiln_passes::saturate::saturate(&mut f, &Default::default());
    println!(
        "saturate a {before}-instruction program: {:.3} s, stopped by {} after {} iterations ({} e-nodes), {} -> {} instructions, cost {:.0} -> {:.0}",
        start.elapsed().as_secs_f64(),
        report.stop,
        report.iterations,
        report.nodes,
        before,
        f.insts.len(),
        report.cost_before,
        report.cost_after
    );

    let src = format!(
        "fn chain(a: f32[{n}, {n}], b: f32[{n}, {n}], v: f32[{n}]) -> f32[{n}] {{ (a @ b) @ v }}\nexport chain;\n"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let a: Vec<f32> = (0..n * n).map(|i| ((i % 7) as f32 - 3.0) / 8.0).collect();
    let v: Vec<f32> = (0..n).map(|i| ((i % 5) as f32 - 2.0) / 4.0).collect();
    let mut times = vec![];
    for fast_math in [false, true] {
        let mut options = Options { output: OutputKind::Shared, ..Options::default() };
        options.saturate.fast_math = fast_math;
        let source = Source { name: "chain.kn".into(), text: src.clone() };
        let out = kiln::build(&source, &options).unwrap_or_else(|e| panic!("{}", e.render(false)));
        let sub = dir.path().join(if fast_math { "fast" } else { "exact" });
        kiln::write_output(&out, &sub).expect("write bundle");
        let bundle = Bundle::open(&sub.join("chain.json")).expect("open bundle");
        let mut y = vec![0f32; n];
        let runs = if fast_math { 200 } else { 1 };
        let start = Instant::now();
        for _ in 0..runs {
            bundle
                .call_typed(
                    "chain",
                    &[TensorRef::F32(&a), TensorRef::F32(&a), TensorRef::F32(&v)],
                    &mut [TensorMut::F32(&mut y)],
                )
                .expect("call");
        }
        let t = start.elapsed().as_secs_f64() / runs as f64;
        println!("(A @ B) @ v, n = {n}, {}: {:.6} s per call", if fast_math { "--fast-math" } else { "IEEE-exact" }, t);
        times.push(t);
    }
    println!("speedup from reassociation: {:.0}x", times[0] / times[1]);
}

/// A program of `n` live instructions over f32[64]: each combines the previous value with an
/// earlier one (or a constant), so nothing is dead and every rule has material.
fn live_program(n: usize) -> Func {
    let mut rng = Rng::new(2026);
    let ty = TensorType::new(DType::F32, vec![64]);
    let mut f = Func::new("big", Span::default());
    let mut pool = vec![f.add_param("x", ty.clone(), Span::default()), f.add_param("y", ty.clone(), Span::default())];
    let one = f.push(Op::Const(kiln_ir::Literal::Float(DType::F32, 1.0)), vec![], Span::default()).unwrap();
    let ones = f.push(Op::Broadcast { shape: vec![64], dims: vec![] }, vec![one], Span::default()).unwrap();
    pool.push(ones);
    while f.insts.len() < n {
        let prev = *pool.last().unwrap();
        let other = rng.pick(&pool);
        let (op, args) = match rng.below(8) {
            0 => (Op::Binary(BinaryOp::Add), vec![prev, other]),
            1 => (Op::Binary(BinaryOp::Mul), vec![other, prev]),
            2 => (Op::Binary(BinaryOp::Sub), vec![prev, other]),
            3 => (Op::Binary(BinaryOp::Max), vec![prev, other]),
            4 => (Op::Unary(UnaryOp::Tanh), vec![prev]),
            5 => (Op::Unary(UnaryOp::Neg), vec![prev]),
            6 => (Op::Binary(BinaryOp::Mul), vec![prev, ones]),
            _ => (Op::Binary(BinaryOp::Add), vec![other, prev]),
        };
        pool.push(f.push(op, args, Span::default()).unwrap());
    }
    f.results.push(*pool.last().unwrap());
    f.result_names.push("out0".into());
    f
}
