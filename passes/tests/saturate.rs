//! Equality saturation preserves meaning bit for bit (without fast-math), each IEEE-unsafe
//! identity fires with fast-math and never without, matrix chains are reassociated by cost,
//! and runs are bounded and deterministic.

use kiln_ir::gen::{self, Rng};
use kiln_ir::interp::{run, Data};
use kiln_ir::text::{parse_module, print_func};
use kiln_ir::Func;
use kiln_passes::saturate::{saturate, Options};
use kiln_passes::stats::func_stats;

/// Bitwise equality of results, any NaN matching any NaN.
fn same_bits(a: &Data, b: &Data) -> bool {
    match (a, b) {
        (Data::F32(x), Data::F32(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
        }
        (Data::F64(x), Data::F64(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
        }
        _ => a == b,
    }
}

fn func(text: &str) -> Func {
    parse_module(text).unwrap_or_else(|d| panic!("{d:?}")).funcs.remove(0)
}

fn optimized(f: &Func, fast_math: bool) -> Func {
    let mut g = f.clone();
    saturate(&mut g, &Options { fast_math, ..Options::default() });
    kiln_ir::verify::verify_func(&g).unwrap();
    g
}

#[test]
fn random_programs_keep_their_results_bit_for_bit() {
    let mut rng = Rng::new(gen::test_seed());
    let mut changed = 0;
    for i in 0..150 {
        let f = gen::random_func(&mut rng, 4 + i % 30, "p");
        let g = optimized(&f, false);
        changed += (print_func(&g) != print_func(&f)) as usize;
        for _ in 0..2 {
            let args: Vec<_> = gen::arguments(&mut rng, &f, true);
            let (a, b) = (run(&f, &args), run(&g, &args));
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    same_bits(&x.data, &y.data),
                    "saturation changed a result\nbefore:\n{}\nafter:\n{}",
                    print_func(&f),
                    print_func(&g)
                );
            }
        }
    }
    eprintln!("{changed} of 150 programs were rewritten");
    assert!(changed >= 15, "only {changed} of 150 random programs were rewritten: the test would prove little");
}

#[test]
fn fast_math_rewrites_stay_within_tolerance() {
    let mut rng = Rng::new(gen::test_seed());
    for i in 0..60 {
        let f = gen::random_func(&mut rng, 4 + i % 20, "p");
        // Comparisons turn rounding differences into jumps; this check is about continuous code.
        if f.insts.iter().any(|inst| matches!(inst.op, kiln_ir::Op::Binary(b) if b.is_comparison())) {
            continue;
        }
        let g = optimized(&f, true);
        let args: Vec<_> = gen::arguments(&mut rng, &f, false);
        // Fast-math assumes finite arithmetic: where the reference is finite, the rewritten
        // program agrees to rounding (reassociated sums of random data).
        for (x, y) in run(&f, &args).iter().zip(&run(&g, &args)) {
            let n = x.data.len();
            let scale = (0..n).map(|i| x.data.get_f64(i)).filter(|v| v.is_finite()).fold(1.0f64, |m, v| m.max(v.abs()));
            for i in 0..n {
                let (r, a) = (x.data.get_f64(i), y.data.get_f64(i));
                if r.is_finite() && (a - r).abs() > 1e-3 * scale {
                    panic!("element {i}: {a} vs {r}\nbefore:\n{}\nafter:\n{}", print_func(&f), print_func(&g));
                }
            }
        }
    }
}

/// Each IEEE-unsafe identity, as a program where it is the only improvement: the op that it
/// removes is gone with fast-math and still there without.
#[test]
fn each_ieee_unsafe_identity_fires_only_with_fast_math() {
    let cases = [
        ("mul-zero", "%1 = const 0.0 : f32[]\n  %2 = broadcast[dims=[]] %1 : f32[4]\n  %3 = mul %x, %2 : f32[4]", "mul"),
        ("sub-self", "%1 = sub %x, %x : f32[4]", "sub"),
        // The zero is a broadcast constant, as the frontend writes `x + 0.0` (#17 A.15).
        ("add-zero", "%1 = const 0.0 : f32[]\n  %2 = broadcast[dims=[]] %1 : f32[4]\n  %3 = add %x, %2 : f32[4]", "add"),
        ("div-self", "%1 = div %x, %x : f32[4]", "div"),
        ("exp-log", "%1 = log %x : f32[4]\n  %2 = exp %1 : f32[4]", "exp"),
        ("log-exp", "%1 = exp %x : f32[4]\n  %2 = log %1 : f32[4]", "log"),
        ("sqrt-square", "%1 = sqrt %x : f32[4]\n  %2 = mul %1, %1 : f32[4]", "sqrt"),
        ("exp-mul", "%1 = exp %x : f32[4]\n  %2 = exp %x : f32[4]\n  %3 = neg %x : f32[4]\n  %4 = exp %3 : f32[4]\n  %5 = mul %2, %4 : f32[4]", "mul"),
        (
            "add-assoc",
            "%1 = const 1.0 : f32[]\n  %2 = broadcast[dims=[]] %1 : f32[4]\n  %3 = add %x, %2 : f32[4]\n  %4 = add %3, %2 : f32[4]",
            "add %3",
        ),
        (
            "mul-assoc",
            "%1 = const 3.0 : f32[]\n  %2 = broadcast[dims=[]] %1 : f32[4]\n  %3 = mul %x, %2 : f32[4]\n  %4 = mul %3, %2 : f32[4]",
            "mul %3",
        ),
        (
            "distribute",
            "%1 = sin %x : f32[4]\n  %2 = cos %x : f32[4]\n  %3 = mul %x, %1 : f32[4]\n  %4 = mul %x, %2 : f32[4]\n  %5 = add %3, %4 : f32[4]",
            "mul %x, %2",
        ),
    ];
    for (rule, body, marker) in cases {
        let last = body.lines().last().unwrap().trim().split(' ').next().unwrap();
        let f = func(&format!("module m\nfunc @f(%x: f32[4]) -> (out0: f32[4]) {{\n  {body}\n  return {last}\n}}\n"));
        let without = print_func(&optimized(&f, false));
        let with = print_func(&optimized(&f, true));
        let count = |text: &str, op: &str| text.lines().filter(|l| l.contains(&format!(" = {op}"))).count();
        let op = marker.split(' ').next().unwrap();
        assert!(count(&with, op) < count(&print_func(&f), op), "`{rule}` did not fire with fast-math:\n{with}");
        assert_eq!(without, print_func(&optimized(&f, false)), "deterministic");
        assert!(
            count(&without, op) >= count(&print_func(&f), op).min(1),
            "`{rule}` fired without fast-math:\n{without}"
        );
    }
    // sum(broadcast(v)) over the new axis = v * 8: no reduction with fast-math, one without.
    let f = func("module m\nfunc @f(%v: f32[4]) -> (out0: f32[4]) {\n  %1 = broadcast[dims=[1]] %v : f32[8, 4]\n  %2 = reduce_sum[axes=[0]] %1 : f32[4]\n  return %2\n}\n");
    assert!(!func_stats(&optimized(&f, true)).ops.contains_key("reduce_sum"));
    assert_eq!(func_stats(&optimized(&f, false)).ops["reduce_sum"], 1);
    // sum(sum(x)) = sum over both axes: one reduction with fast-math, two without.
    let f = func("module m\nfunc @f(%x: f32[4, 5]) -> (out0: f32[]) {\n  %1 = reduce_sum[axes=[1]] %x : f32[4]\n  %2 = reduce_sum[axes=[0]] %1 : f32[]\n  return %2\n}\n");
    assert_eq!(func_stats(&optimized(&f, true)).ops["reduce_sum"], 1);
    assert_eq!(func_stats(&optimized(&f, false)).ops["reduce_sum"], 2);
}

#[test]
fn exact_identities_fire_without_fast_math_and_keep_spans() {
    let f = func(
        "module m\nfunc @f(%x: f32[2, 3]) -> (out0: f32[2, 3]) {\n  %1 = const 1.0 : f32[]\n  %2 = broadcast[dims=[]] %1 : f32[2, 3]\n  %3 = mul %x, %2 : f32[2, 3]\n  %4 = neg %3 : f32[2, 3]\n  %5 = neg %4 : f32[2, 3]\n  %6 = transpose[perm=[1, 0]] %5 : f32[3, 2]\n  %7 = transpose[perm=[1, 0]] %6 : f32[2, 3]\n  %8 = exp %7 : f32[2, 3]\n  return %8\n}\n",
    );
    let mut f = f;
    for (i, inst) in f.insts.iter_mut().enumerate() {
        inst.span = kiln_ir::Span::new(10 * i, 10 * i + 5);
    }
    let g = optimized(&f, false);
    assert_eq!(g.insts.len(), 1, "x * 1, double negation and double transpose vanish:\n{}", print_func(&g));
    assert_eq!(g.insts[0].span, f.insts[7].span, "the surviving exp keeps its span");
}

#[test]
fn matrix_chains_reassociate_under_fast_math() {
    // (A @ B) @ v for 2048 x 2048 matrices: 2n^3 + 2n^2 flops; A @ (B @ v): 4n^2.
    let f = func(
        "module m\nfunc @f(%a: f32[2048, 2048], %b: f32[2048, 2048], %v: f32[2048, 1]) -> (out0: f32[2048, 1]) {\n  %3 = dot %a, %b : f32[2048, 2048]\n  %4 = dot %3, %v : f32[2048, 1]\n  return %4\n}\n",
    );
    let before = func_stats(&f).flops;
    let after = func_stats(&optimized(&f, true)).flops;
    eprintln!("(A @ B) @ v: {before} flops; optimized: {after} flops ({:.0}x fewer)", before as f64 / after as f64);
    assert!(before >= 100 * after, "{before} vs {after}");
    assert_eq!(func_stats(&optimized(&f, false)).flops, before, "reassociation needs fast-math");
}

#[test]
fn limits_stop_the_search_and_runs_are_deterministic() {
    let mut rng = Rng::new(gen::test_seed());
    let f = gen::random_func(&mut rng, 60, "p");
    let mut g = f.clone();
    let report = saturate(&mut g, &Options { node_limit: 50, ..Options::default() });
    assert!(report.stop.starts_with("node limit") || report.stop == "saturated", "{}", report.stop);
    let once = print_func(&optimized(&f, true));
    assert_eq!(once, print_func(&optimized(&f, true)), "the same input gives the same output");
}
