//! Derivatives through the language: exported and composed transformations agree with finite
//! differences computed in f64 by the interpreter.

mod common;

use kiln_ir::gen::Rng;
use kiln_ir::interp::{run, Data, Tensor};
use kiln_ir::DType;

const SOURCE: &str = "
fn model(x: f64[6, 3], w: f64[3, 2], b: f64[2]) -> f64 {
    let h = tanh(x @ w + b);
    mean(h * h) + 0.1 * sum(w * w) + sum(sigmoid(b) * exp(-b))
}
fn hvp(x: f64[6, 3], w: f64[3, 2], b: f64[2], v: f64[3, 2]) -> f64[3, 2] {
    let (_, hv) = jvp(grad(model, wrt=w))(x, w, b, x * 0, v, b * 0);
    hv
}
fn cube(x: f64) -> f64 { x * x * sin(x) }
fn second(x: f64) -> f64 { grad(grad(cube))(x) }
export model;
export value_and_grad(model, wrt=[w, b]) as train;
export hvp;
export second;
export grad(cube) as first;
";

fn random(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape.to_vec(), Data::F64((0..n).map(|_| 2.0 * rng.unit() - 1.0).collect()))
}

fn values(t: &Tensor) -> Vec<f64> {
    (0..t.data.len()).map(|i| t.data.get_f64(i)).collect()
}

fn shifted(t: &Tensor, i: usize, h: f64) -> Tensor {
    let mut v = values(t);
    v[i] += h;
    Tensor::new(t.shape.clone(), Data::F64(v))
}

fn axpy(t: &Tensor, a: f64, d: &Tensor) -> Tensor {
    Tensor::new(t.shape.clone(), Data::F64(values(t).iter().zip(values(d)).map(|(x, y)| x + a * y).collect()))
}

/// Checks each coordinate of `grad` against central differences of `loss` around `at`.
fn check_gradient(loss: impl Fn(&Tensor) -> f64, at: &Tensor, grad: &[f64], what: &str) {
    let h = 1e-6;
    for (i, &g) in grad.iter().enumerate() {
        let fd = (loss(&shifted(at, i, h)) - loss(&shifted(at, i, -h))) / (2.0 * h);
        assert_close(g, fd, &format!("{what}[{i}]"));
    }
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!((actual - expected).abs() <= 1e-6 * (1.0 + expected.abs()), "{what}: {actual} vs {expected}");
}

#[test]
fn gradients_hessian_vector_products_and_second_derivatives_match_finite_differences() {
    let source = kiln::Source { name: "ad.kn".into(), text: SOURCE.into() };
    let module = kiln::check(&source, "ad").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let f = |name: &str| module.func(name).unwrap();
    let mut rng = Rng::new(common::seed());
    let (x, w, b) = (random(&mut rng, &[6, 3]), random(&mut rng, &[3, 2]), random(&mut rng, &[2]));
    let h = 1e-5;
    // value_and_grad: every coordinate of both gradients against central differences.
    let out = run(f("train"), &[x.clone(), w.clone(), b.clone()]);
    let loss = |w: &Tensor, b: &Tensor| values(&run(f("model"), &[x.clone(), w.clone(), b.clone()])[0])[0];
    assert_close(values(&out[0])[0], loss(&w, &b), "value");
    for i in 0..6 {
        let fd = (loss(&shifted(&w, i, h), &b) - loss(&shifted(&w, i, -h), &b)) / (2.0 * h);
        assert_close(values(&out[1])[i], fd, &format!("d/dw[{i}]"));
    }
    for i in 0..2 {
        let fd = (loss(&w, &shifted(&b, i, h)) - loss(&w, &shifted(&b, i, -h))) / (2.0 * h);
        assert_close(values(&out[2])[i], fd, &format!("d/db[{i}]"));
    }
    // Hessian-vector product (jvp of grad) against differences of the gradient.
    let v = random(&mut rng, &[3, 2]);
    let hv = run(f("hvp"), &[x.clone(), w.clone(), b.clone(), v.clone()]);
    let grad_w = |w: &Tensor| values(&run(f("train"), &[x.clone(), w.clone(), b.clone()])[1]);
    let (gp, gm) = (grad_w(&axpy(&w, h, &v)), grad_w(&axpy(&w, -h, &v)));
    for i in 0..6 {
        assert_close(values(&hv[0])[i], (gp[i] - gm[i]) / (2.0 * h), &format!("Hv[{i}]"));
    }
    // grad of grad: d²/dx² (x² sin x) = 2 sin x + 4 x cos x - x² sin x.
    for x in [-1.3, 0.2, 2.5] {
        let s = Tensor::new(vec![], Data::F64(vec![x]));
        let expected = 2.0 * f64::sin(x) + 4.0 * x * f64::cos(x) - x * x * f64::sin(x);
        assert_close(values(&run(f("second"), &[s])[0])[0], expected, "second derivative");
    }
}

#[test]
fn compiled_gradients_agree_with_interpreted_gradients() {
    let source = kiln::Source { name: "ad.kn".into(), text: SOURCE.into() };
    let module = kiln::check(&source, "ad").unwrap();
    let loaded = common::compile_and_load(&module, 2);
    let mut rng = Rng::new(common::seed());
    for f in &module.funcs {
        let args: Vec<Tensor> = f.params.iter().map(|p| random(&mut rng, &p.ty.shape)).collect();
        common::check_against_interpreter(&loaded, &f.name, &args, common::Check::Program).unwrap();
    }
}

#[test]
fn mlp_backward_pass_costs_at_most_three_times_the_forward_pass() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mlp.kn");
    let mut module = kiln::check(&kiln::Source::read(&path).unwrap(), "mlp").unwrap();
    kiln_passes::run_pipeline(&mut module, &Default::default()).unwrap();
    let flops = |name: &str| kiln_passes::stats::func_stats(module.func(name).unwrap()).flops;
    let (forward, train) = (flops("loss"), flops("train_step"));
    eprintln!(
        "loss: {forward} flops, train_step: {train} flops (backward {:.2}x forward)",
        (train - forward) as f64 / forward as f64
    );
    assert!(train - forward <= 3 * forward, "backward {} flops vs forward {forward}", train - forward);
    // The derivative program reuses the forward values: it has exactly the forward's two dot
    // products plus three for the gradients (none for the input x, which is not differentiated).
    assert_eq!(kiln_passes::stats::func_stats(module.func("train_step").unwrap()).ops["dot"], 5);
}

/// The inputs of examples/c/main.c (and of scripts/jax_fixture.py): scale · sin(0.37 i + 1.7 seed).
fn pattern(shape: &[usize], seed: f64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        Data::F32((0..n).map(|i| (scale * (0.37 * i as f64 + 1.7 * seed).sin()) as f32).collect()),
    )
}

#[test]
fn mlp_gradient_agrees_with_jax() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/mlp_jax.json")).unwrap()).unwrap();
    let module = kiln::check(&kiln::Source::read(&root.join("examples/mlp.kn")).unwrap(), "mlp").unwrap();
    let args = vec![
        pattern(&[16, 32], 1.0, 1.0),
        Tensor::new(vec![16], Data::I32((0..16).map(|i| (i * 7) % 10).collect())),
        pattern(&[32, 64], 2.0, 0.3),
        pattern(&[64], 3.0, 0.1),
        pattern(&[64, 10], 4.0, 0.3),
        pattern(&[10], 5.0, 0.1),
    ];
    let loaded = common::compile_and_load(&module, 2);
    for (how, out) in [
        ("interpreted", run(module.func("train_step").unwrap(), &args)),
        ("compiled", loaded.call("train_step", &args)),
    ] {
        let loss = values(&out[0])[0];
        let expected = fixture["loss"].as_f64().unwrap();
        assert!((loss - expected).abs() <= 1e-5 * expected, "{how} loss {loss} vs JAX {expected}");
        for (k, name) in ["w1", "b1", "w2", "b2"].iter().enumerate() {
            let jax: Vec<f64> =
                fixture["grads"][name].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let ours = values(&out[k + 1]);
            assert_eq!(ours.len(), jax.len(), "{name}");
            let scale = jax.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (i, (a, e)) in ours.iter().zip(&jax).enumerate() {
                assert!((a - e).abs() <= 1e-5 * scale, "{how} d/d{name}[{i}]: {a} vs JAX {e}");
            }
        }
    }
}

/// Scans (forward and reversed, over tuples of arrays, with tuple carries and ys), a fold over
/// rows, a counted loop (RK4, plain and checkpointed) and a conditional give JAX's values and gradients (lax.scan,
/// lax.fori_loop, lax.cond: tests/fixtures/loops_jax.json), interpreted and compiled, and the
/// gradients match central differences.
#[test]
fn loops_and_their_gradients_agree_with_jax() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/loops_jax.json")).unwrap()).unwrap();
    let module = kiln::check(&kiln::Source::read(&root.join("tests/fixtures/loops.kn")).unwrap(), "loops")
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let loaded = common::compile_and_load(&module, 2);
    let functions = fixture["functions"].as_object().unwrap();
    assert_eq!(functions.len(), 8, "every function of loops.kn has JAX's figures");
    for (name, expected) in functions {
        let args: Vec<Tensor> = expected["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let shape: Vec<usize> =
                    i["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                let p = pattern(&shape, i["seed"].as_f64().unwrap(), i["scale"].as_f64().unwrap());
                Tensor::new(p.shape, p.data.convert(kiln_ir::DType::F64))
            })
            .collect();
        let f = module.func(&format!("d_{name}")).unwrap();
        for (how, out) in [("interpreted", run(f, &args)), ("compiled", loaded.call(&format!("d_{name}"), &args))] {
            let (value, jax) = (values(&out[0])[0], expected["value"].as_f64().unwrap());
            assert!((value - jax).abs() <= 1e-12 * jax.abs().max(1.0), "{how} {name}: {value} vs JAX {jax}");
            for (k, grad) in expected["grads"].as_array().unwrap().iter().enumerate() {
                let jax: Vec<f64> = grad.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                let ours = values(&out[k + 1]);
                assert_eq!(ours.len(), jax.len(), "{name}: gradient {k}");
                let scale = jax.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                for (i, (a, e)) in ours.iter().zip(&jax).enumerate() {
                    assert!((a - e).abs() <= 1e-10 * scale, "{how} {name}: gradient {k} [{i}]: {a} vs JAX {e}");
                }
            }
        }
        let primal = module.func(name).unwrap();
        let grads = run(f, &args);
        for k in 0..args.len() {
            let loss = |x: &Tensor| {
                let mut at = args.clone();
                at[k] = x.clone();
                values(&run(primal, &at)[0])[0]
            };
            check_gradient(loss, &args[k], &values(&grads[k + 1]), &format!("{name}: gradient {k}"));
        }
    }
}

/// Indexing by data (x[idx] with arrays on any axes, take, take_along_axis, `.at[...]` reads
/// and updates, dynamic slices, `None` and `...`) gives jax.numpy's results and gradients
/// (tests/fixtures/indexing_jax.json), interpreted and compiled, negative and out-of-bounds
/// indices included; the gradients match central differences.
#[test]
fn indexing_and_its_gradients_agree_with_jax() {
    agrees_with_jax_fixture("indexing", 23, &[]);
}

/// jax.nn and jax.numpy ops (gelu in both forms, silu, softplus, clip, var, std, stack,
/// squeeze, expand_dims, flip, tril, triu, eye, the roundings and sign, argmax and argmin with
/// NaNs, isnan, isfinite, the logical ops, cumulative sums, products, maxima and minima, pad in
/// three modes, reductions with where= and initial=, einsum, remainder, floor_divide, fmod,
/// the bitwise ops and shifts at every amount, prod with zeros, erfinv) give JAX's results and
/// gradients
/// (tests/fixtures/ops_jax.json), interpreted and compiled; the gradients match central
/// differences.
#[test]
fn ops_and_their_gradients_agree_with_jax() {
    agrees_with_jax_fixture("ops", 39, &[("half_math", 8e-3)]);
}

/// jax.random's keys, bits and draws from the same seeds (tests/fixtures/random_jax.json),
/// interpreted and compiled: the same numbers, bit for bit (f32 draws are exact in f64, so
/// the 1e-12 tolerance is equality), but for normal draws, which pass uniform bits that agree
/// through erfinv: XLA's f32 evaluation errs by a few ulp, the interpreter's by less than one.
#[test]
fn random_numbers_are_jax_bit_for_bit() {
    agrees_with_jax_fixture("random", 9, &[("normals", 1e-6)]);
}

/// Checks every function of tests/fixtures/<stem>.kn against <stem>_jax.json (written by
/// scripts/jax_fixture.py): its result, and where the fixture has them the gradients of
/// energy(result) that `d_<name>` computes, to 1e-12 relative; those gradients also against
/// central differences.
fn agrees_with_jax_fixture(stem: &str, count: usize, tolerances: &[(&str, f64)]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let json = root.join(format!("tests/fixtures/{stem}_jax.json"));
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let source = kiln::Source::read(&root.join(format!("tests/fixtures/{stem}.kn"))).unwrap();
    let module = kiln::check(&source, stem).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let loaded = common::compile_and_load(&module, 2);
    let functions = fixture["functions"].as_object().unwrap();
    assert_eq!(functions.len(), count, "every function of {stem}.kn has JAX's figures");
    let list =
        |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    for (name, expected) in functions {
        let mut floats = vec![];
        let args: Vec<Tensor> = expected["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(k, i)| {
                let shape: Vec<usize> =
                    i["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                let whole = |v: &serde_json::Value| -> Vec<i64> {
                    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
                };
                let integers = [("ints", DType::I32), ("i64s", DType::I64), ("u32s", DType::U32), ("u8s", DType::U8)];
                match integers.iter().find_map(|&(key, dtype)| Some((i.get(key)?, dtype))) {
                    Some((v, dtype)) => Tensor::new(shape, Data::I64(whole(v)).convert(dtype)),
                    None => {
                        floats.push(k);
                        let p = pattern(&shape, i["seed"].as_f64().unwrap(), i["scale"].as_f64().unwrap());
                        Tensor::new(p.shape, p.data.convert(kiln_ir::DType::F64))
                    }
                }
            })
            .collect();
        let rtol = tolerances.iter().find(|t| t.0 == name).map_or(1e-12, |t| t.1);
        let close = |a: &[f64], e: &[f64], what: &str| {
            assert_eq!(a.len(), e.len(), "{what}");
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                assert!((x - y).abs() <= rtol * y.abs().max(1.0), "{what}[{i}]: {x} vs JAX {y}");
            }
        };
        let f = module.func(name).unwrap();
        for (how, value) in [("interpreted", run(f, &args)), ("compiled", loaded.call(name, &args))] {
            close(&values(&value[0]), &list(&expected["value"]), &format!("{how} {name}"));
        }
        let grads = expected["grads"].as_array().unwrap();
        if grads.is_empty() {
            continue;
        }
        let d = format!("d_{name}");
        let df = module.func(&d).unwrap();
        let out = run(df, &args);
        for (how, out) in [("interpreted", &out), ("compiled", &loaded.call(&d, &args))] {
            for (k, g) in grads.iter().enumerate() {
                close(&values(&out[k + 1]), &list(g), &format!("{how} {name}: gradient {k}"));
            }
        }
        for (g, &k) in floats.iter().enumerate() {
            let loss = |x: &Tensor| {
                let mut at = args.clone();
                at[k] = x.clone();
                values(&run(df, &at)[0])[0]
            };
            check_gradient(loss, &args[k], &values(&out[g + 1]), &format!("{name}: gradient {g}"));
        }
    }
}

#[test]
fn derivative_programs_shrink_under_saturation() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, func) in
        [("examples/mlp.kn", "train_step"), ("examples/train/train.kn", "step"), ("tests/run/autodiff.kn", "hvp")]
    {
        let mut module = kiln::check(&kiln::Source::read(&root.join(file)).unwrap(), "m").unwrap();
        let report = kiln_passes::run_pipeline(&mut module, &Default::default()).unwrap();
        let r = report.saturation.iter().find(|r| r.function == func).unwrap();
        eprintln!("{file} {func}: instructions {:?}, flops {:?}", r.instructions, r.flops);
        assert!(r.instructions.1 < r.instructions.0 && r.flops.1 < r.flops.0, "{file} {func}: {r:?}");
    }
}

/// A conditional (`if` on a runtime scalar bool, nested, with tuple results) runs only its
/// taken branch, compiled as in the interpreter, and its gradient (the vjp of the taken
/// branch, run again backwards) matches central differences on both sides of each condition.
#[test]
fn conditionals_and_their_gradients_match_finite_differences() {
    const COND: &str = "
fn f(x: f64[4], w: f64[4], big: bool) -> f64 {
    let s = sum(x * w);
    if big { s * s + sum(sin(w)) } else if s > 0.0 { exp(s) } else { 0.5 * s }
}
fn g(x: f64[3], t: f64) -> (f64[3], f64[3]) {
    if t > 1.0 { (x * t, exp(x)) } else { (x, x - t) }
}
fn h(x: f64[3], t: f64) -> f64 { let (a, b) = g(x, t); sum(a * b) }
export f;
export grad(f, wrt=[w]) as df;
export g;
export h;
export value_and_grad(h, wrt=[x, t]) as dh;
";
    let source = kiln::Source { name: "cond.kn".into(), text: COND.into() };
    let module = kiln::check(&source, "cond").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let loaded = common::compile_and_load(&module, 2);
    let f = |name: &str| module.func(name).unwrap();
    let mut rng = Rng::new(common::seed());
    let scalar = |v: f64| Tensor::new(vec![], Data::F64(vec![v]));
    for big in [true, false] {
        for sign in [1.0, -1.0] {
            let x = random(&mut rng, &[4]);
            // Positive or negative s = x . w, so that every branch is taken.
            let w = axpy(&x, sign - 1.0, &x);
            let b = Tensor::new(vec![], Data::Bool(vec![big]));
            let loss = |w: &Tensor| values(&run(f("f"), &[x.clone(), w.clone(), b.clone()])[0])[0];
            let grad = values(&run(f("df"), &[x.clone(), w.clone(), b.clone()])[0]);
            check_gradient(loss, &w, &grad, &format!("big={big}, sign={sign}: d/dw"));
            for name in ["f", "df"] {
                common::check_against_interpreter(
                    &loaded,
                    name,
                    &[x.clone(), w.clone(), b.clone()],
                    common::Check::Program,
                )
                .unwrap();
            }
        }
    }
    for t in [0.5, 2.0] {
        let x = random(&mut rng, &[3]);
        let out = run(f("dh"), &[x.clone(), scalar(t)]);
        let loss = |x: &Tensor, t: f64| values(&run(f("h"), &[x.clone(), scalar(t)])[0])[0];
        check_gradient(|x| loss(x, t), &x, &values(&out[1]), &format!("t={t}: d/dx"));
        check_gradient(|t| loss(&x, values(t)[0]), &scalar(t), &values(&out[2]), &format!("t={t}: d/dt"));
        for name in ["g", "dh"] {
            common::check_against_interpreter(&loaded, name, &[x.clone(), scalar(t)], common::Check::Program).unwrap();
        }
    }
}

/// Counted loops (`loop carries = init for i < n { ... }`, n a constant or a runtime integer)
/// run as the interpreter says, compiled, nested with conditionals, and their derivatives
/// (forward mode: a loop of the body's jvp; reverse mode: a reverse loop of the body's vjp)
/// match central differences, for several trip counts including none.
#[test]
fn counted_loops_and_their_derivatives_match_finite_differences() {
    const LOOPS: &str = "
fn euler(y: f64[3], k: f64[3], n: i32) -> f64 {
    let (y, t) = loop (y, t) = (y, 0.0) for i < n {
        let dy = -k * y + sin(t) * cast(i, f64) * 0.1;
        (y + 0.1 * dy, t + 0.1)
    };
    sum(y * y) + t
}
fn fixed(x: f64[2, 3], w: f64[3, 3]) -> f64 {
    let h = loop h = x for i < 4 { if sum(h) > 0.0 { tanh(h @ w) } else { h * 0.5 + 0.25 } };
    sum(h)
}
export euler;
export grad(euler, wrt=[y, k]) as deuler;
export fixed;
export grad(fixed, wrt=[x, w]) as dfixed;
";
    let source = kiln::Source { name: "loops.kn".into(), text: LOOPS.into() };
    let module = kiln::check(&source, "loops").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let loaded = common::compile_and_load(&module, 2);
    let f = |name: &str| module.func(name).unwrap();
    let mut rng = Rng::new(common::seed());
    for n in [0, 1, 5] {
        let (y, k) = (random(&mut rng, &[3]), random(&mut rng, &[3]));
        let count = Tensor::new(vec![], Data::I32(vec![n]));
        let loss = |y: &Tensor, k: &Tensor| values(&run(f("euler"), &[y.clone(), k.clone(), count.clone()])[0])[0];
        let grads = run(f("deuler"), &[y.clone(), k.clone(), count.clone()]);
        check_gradient(|y| loss(y, &k), &y, &values(&grads[0]), &format!("n={n}: d/dy"));
        check_gradient(|k| loss(&y, k), &k, &values(&grads[1]), &format!("n={n}: d/dk"));
        for name in ["euler", "deuler"] {
            common::check_against_interpreter(
                &loaded,
                name,
                &[y.clone(), k.clone(), count.clone()],
                common::Check::Program,
            )
            .unwrap();
        }
    }
    for sign in [1.0, -1.0] {
        let x = axpy(&random(&mut rng, &[2, 3]), sign, &Tensor::new(vec![2, 3], Data::F64(vec![1.0; 6])));
        let w = random(&mut rng, &[3, 3]);
        let loss = |x: &Tensor, w: &Tensor| values(&run(f("fixed"), &[x.clone(), w.clone()])[0])[0];
        let grads = run(f("dfixed"), &[x.clone(), w.clone()]);
        check_gradient(|x| loss(x, &w), &x, &values(&grads[0]), &format!("sign={sign}: d/dx"));
        check_gradient(|w| loss(&x, w), &w, &values(&grads[1]), &format!("sign={sign}: d/dw"));
        for name in ["fixed", "dfixed"] {
            common::check_against_interpreter(&loaded, name, &[x.clone(), w.clone()], common::Check::Program).unwrap();
        }
    }
}

/// Indexing by an integer known at run time (`xs[i]`, negative indices counting from the end
/// and others clamped, as JAX does) picks the row the reference says, compiled too, inside a
/// loop, and its gradient puts the cotangent back in that row.
#[test]
fn dynamic_indices_pick_clamped_rows_and_differentiate() {
    const INDEXED: &str = "
fn pick(xs: f64[5, 3], i: i32) -> f64[3] { xs[i] }
fn walk(xs: f64[5, 3], w: f64[3]) -> f64 {
    let s = loop s = cast(0.0, f64) for i < 5 { s + sum(tanh(xs[i] * w)) * cast(i + 1, f64) };
    s * s
}
export pick;
export walk;
export grad(walk, wrt=[xs, w]) as dwalk;
";
    let source = kiln::Source { name: "indexed.kn".into(), text: INDEXED.into() };
    let module = kiln::check(&source, "indexed").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let loaded = common::compile_and_load(&module, 2);
    let f = |name: &str| module.func(name).unwrap();
    let mut rng = Rng::new(common::seed());
    let xs = random(&mut rng, &[5, 3]);
    for i in -7..8 {
        let index = Tensor::new(vec![], Data::I32(vec![i]));
        let row = (if i < 0 { i + 5 } else { i }).clamp(0, 4) as usize;
        assert_eq!(
            values(&run(f("pick"), &[xs.clone(), index.clone()])[0]),
            values(&xs)[3 * row..3 * row + 3],
            "xs[{i}]"
        );
        common::check_against_interpreter(&loaded, "pick", &[xs.clone(), index], common::Check::Program).unwrap();
    }
    let w = random(&mut rng, &[3]);
    let loss = |xs: &Tensor, w: &Tensor| values(&run(f("walk"), &[xs.clone(), w.clone()])[0])[0];
    let grads = run(f("dwalk"), &[xs.clone(), w.clone()]);
    check_gradient(|xs| loss(xs, &w), &xs, &values(&grads[0]), "d/dxs");
    check_gradient(|w| loss(&xs, w), &w, &values(&grads[1]), "d/dw");
    for name in ["walk", "dwalk"] {
        common::check_against_interpreter(&loaded, name, &[xs.clone(), w.clone()], common::Check::Program).unwrap();
    }
}

/// A while loop (Newton's method for square roots, run until the residual is tiny) gives the
/// root, compiled as interpreted, and its derivatives through the loop, forward and reverse,
/// are the root's: d sqrt(a) / da = 1 / (2 sqrt(a)). (Reverse mode counts the steps, then
/// recomputes the carries entering each step, as for a loop whose count is known at run time.)
#[test]
fn while_loops_and_their_derivatives_match_the_calculus() {
    const NEWTON: &str = "
fn root(a: f64) -> f64 {
    let (x, _steps) = loop (x, k) = (a, 0) while abs(x * x - a) > 1e-13 * a { (0.5 * (x + a / x), k + 1) };
    x
}
export root;
export grad(root) as droot;
export jvp(root) as troot;
";
    let source = kiln::Source { name: "newton.kn".into(), text: NEWTON.into() };
    let module = kiln::check(&source, "newton").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let loaded = common::compile_and_load(&module, 2);
    let f = |name: &str| module.func(name).unwrap();
    for a in [0.25, 2.0, 9.0, 1234.5] {
        let at = Tensor::new(vec![], Data::F64(vec![a]));
        let one = Tensor::new(vec![], Data::F64(vec![1.0]));
        assert_close(values(&run(f("root"), std::slice::from_ref(&at))[0])[0], a.sqrt(), &format!("sqrt({a})"));
        let expected = 0.5 / a.sqrt();
        assert_close(values(&run(f("droot"), std::slice::from_ref(&at))[0])[0], expected, &format!("grad at {a}"));
        assert_close(values(&run(f("troot"), &[at.clone(), one.clone()])[1])[0], expected, &format!("jvp at {a}"));
        for (name, args) in [("root", vec![at.clone()]), ("droot", vec![at.clone()]), ("troot", vec![at.clone(), one])]
        {
            common::check_against_interpreter(&loaded, name, &args, common::Check::Program).unwrap();
        }
    }
}

/// The `early-exit` step: a bounded while loop (elaborated as a counted loop of max_iter
/// guarded runs, so that reverse mode sees its length) becomes a while loop with a counter
/// once differentiation is done, so it stops where its condition first fails; a loop nested
/// in another is rewritten too. Values (the loop's and its gradient's) are the interpreter's
/// for bounds below, at and above the steps the condition needs.
#[test]
fn bounded_while_loops_exit_early_once_differentiated() {
    const HALVE: &str = "
fn halve(v: f64[4], n: i32) -> f64[4] {
    loop u = v while max(abs(u)) >= 1.0 max_iter n { u * 0.5 }
}
fn rows(vs: f64[3, 4]) -> f64 {
    let total = loop t = cast(0.0, f64) for i < 3 {
        let r = loop u = vs[i] while sum(u * u) >= 0.5 max_iter 40 { u * 0.75 };
        t + sum(r)
    };
    total
}
export halve;
export rows;
export grad(rows) as drows;
";
    let source = kiln::Source { name: "halve.kn".into(), text: HALVE.into() };
    let module = kiln::check(&source, "halve").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let mut optimized = module.clone();
    kiln_passes::run_pipeline(&mut optimized, &Default::default()).unwrap();
    // Every guarded counted loop became a while loop, at any depth.
    fn count(insts: &[kiln_ir::Inst], pick: &dyn Fn(&kiln_ir::Op) -> bool) -> usize {
        insts
            .iter()
            .map(|i| {
                let inner: usize = i.op.bodies().map_or(0, |b| b.funcs().iter().map(|g| count(&g.insts, pick)).sum());
                usize::from(pick(&i.op)) + inner
            })
            .sum()
    }
    let whiles = |f: &str| count(&optimized.func(f).unwrap().insts, &|op| matches!(op, kiln_ir::Op::While { .. }));
    let guarded = |f: &str| {
        count(
            &optimized.func(f).unwrap().insts,
            &|op| matches!(op, kiln_ir::Op::Loop { body, .. } if body.funcs()[0].insts.iter().any(|i| matches!(i.op, kiln_ir::Op::Cond { .. }))),
        )
    };
    assert!(whiles("halve") >= 1 && guarded("halve") == 0, "{}", kiln_ir::text::print_module(&optimized));
    assert!(whiles("rows") >= 1 && guarded("rows") == 0, "{}", kiln_ir::text::print_module(&optimized));
    let loaded = common::compile_and_load(&optimized, 2);
    let v = Tensor::new(vec![4], Data::F64(vec![3.0, -20.0, 0.5, 7.0]));
    for n in [0, 1, 3, 5, 6, 100] {
        let args = [v.clone(), Tensor::new(vec![], Data::I32(vec![n]))];
        let expected = run(module.func("halve").unwrap(), &args);
        assert_eq!(run(optimized.func("halve").unwrap(), &args), expected, "interpreted, max_iter {n}");
        assert_eq!(loaded.call("halve", &args), expected, "compiled, max_iter {n}");
    }
    let vs = Tensor::new(vec![3, 4], Data::F64(vec![0.1, 0.2, 0.1, 0.0, 2.0, -1.0, 0.5, 3.0, 0.4, 0.4, 0.4, 0.4]));
    for name in ["rows", "drows"] {
        let args = std::slice::from_ref(&vs);
        let expected = run(module.func(name).unwrap(), args);
        assert_eq!(run(optimized.func(name).unwrap(), args), expected, "{name} interpreted");
        common::check_against_interpreter(&loaded, name, args, common::Check::Program).unwrap();
    }
}

/// Loop-invariant code motion (the `licm` step): the weights that the reverse scan of an RNN's
/// gradient transposes in every step are transposed once, before the loop, and the optimized
/// program gives the interpreter's results.
#[test]
fn loop_invariants_move_out_of_scan_gradients() {
    const RNN: &str = "
fn loss(h0: f64[2, 4], xs: f64[6, 2, 3], w: f64[4, 4], u: f64[3, 4]) -> f64 {
    let (_, hs) = scan h = h0 for x in xs { let next = tanh(h @ w + x @ u); (next, next) };
    sum(hs * hs)
}
export value_and_grad(loss, wrt=[h0, xs, w, u]) as step;
";
    let source = kiln::Source { name: "rnn.kn".into(), text: RNN.into() };
    let module = kiln::check(&source, "rnn").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let transposes_of_captured = |m: &kiln_ir::Module| -> usize {
        let mut count = 0;
        for inst in m.funcs.iter().flat_map(|f| &f.insts) {
            if let kiln_ir::Op::Scan { body, carries, scanned, .. } = &inst.op {
                let g = &body.funcs()[0];
                count += g
                    .insts
                    .iter()
                    .filter(|i| {
                        matches!(i.op, kiln_ir::Op::Transpose { .. })
                            && i.args[0].index() < g.params.len()
                            && i.args[0].index() >= carries + scanned
                    })
                    .count();
            }
        }
        count
    };
    assert!(transposes_of_captured(&module) > 0, "the reverse scan transposes the weights in its body");
    let mut optimized = module.clone();
    kiln_passes::run_pipeline(&mut optimized, &Default::default()).unwrap();
    assert_eq!(transposes_of_captured(&optimized), 0, "{}", kiln_ir::text::print_module(&optimized));
    let mut rng = Rng::new(common::seed());
    let f = module.func("step").unwrap();
    let args: Vec<Tensor> = f.params.iter().map(|p| random(&mut rng, &p.ty.shape)).collect();
    let (before, after) = (run(f, &args), run(optimized.func("step").unwrap(), &args));
    for (a, b) in before.iter().zip(&after) {
        for (x, y) in values(a).iter().zip(values(b)) {
            assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{x} vs {y}");
        }
    }
}

/// `for x in xs checkpoint` keeps only the carries entering each row for reverse mode: the
/// same gradient (interpreted, as the default scan's) in a smaller workspace, as the manifest
/// states it.
#[test]
fn checkpointed_scans_trade_workspace_for_recomputation() {
    checkpointing_trades_workspace_for_recomputation(|checkpoint| {
        format!(
            "fn loss(h0: f32[8, 32], xs: f32[16, 8, 32], w: f32[32, 32], u: f32[32, 32]) -> f32 {{
    let (_, hs) = scan h = h0 for x in xs {checkpoint} {{ let next = tanh(h @ w + x @ u); (next, next) }};
    sum(hs * hs)
}}
export value_and_grad(loss, wrt=[h0, xs, w, u]) as step;
"
        )
    });
}

/// `for i < n checkpoint` does for a counted loop what it does for a scan.
#[test]
fn checkpointed_counted_loops_trade_workspace_for_recomputation() {
    checkpointing_trades_workspace_for_recomputation(|checkpoint| {
        format!(
            "fn loss(h0: f32[8, 32], w: f32[32, 32]) -> f32 {{
    let h = loop h = h0 for i < 16 {checkpoint} {{ tanh(h @ w + cast(i, f32)) }};
    sum(h * h)
}}
export value_and_grad(loss, wrt=[h0, w]) as step;
"
        )
    });
}

/// A fold over stacked weights that multiplies a batch by each (`h @ w` broadcasts `w` over the
/// batch, and its cotangent reads the broadcast transposed) stacks no moved copy of a weight as
/// a residual: the reverse scan moves the weight's elements again from the stacked weights,
/// which it reads anyway. The residuals are the batch-shaped values alone, and the gradient is
/// the checkpointed loop's.
#[test]
fn residuals_moved_from_rows_are_recomputed_not_stacked() {
    let program = |checkpoint: &str| kiln::Source {
        name: "stack.kn".into(),
        text: format!(
            "fn loss(x: f32[8, 16, 32], ws: f32[4, 32, 32]) -> f32 {{
    let h = loop h = x for w in ws {checkpoint} {{ tanh(h @ w) }};
    sum(h * h)
}}
export value_and_grad(loss, wrt=[x, ws]) as step;
"
        ),
    };
    let module = kiln::check(&program(""), "stack").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let f = module.func("step").unwrap();
    let stacks: Vec<Vec<usize>> = f
        .insts
        .iter()
        .enumerate()
        .filter(|(_, inst)| matches!(inst.op, kiln_ir::Op::Scan { reverse: false, .. }))
        .map(|(i, _)| f.ty(kiln_ir::Value((f.params.len() + i) as u32)).shape.clone())
        .collect();
    assert!(stacks.len() > 1, "the forward scan saves residuals: {stacks:?}");
    for shape in &stacks {
        assert!(shape.len() < 4 || shape[1..] != [8, 32, 32], "a broadcast weight stacked: {stacks:?}");
    }
    let recomputing = kiln::check(&program("checkpoint"), "stack").unwrap();
    same_gradient(f, recomputing.func("step").unwrap());
}

/// `program("checkpoint")` needs a smaller workspace than `program("")` and computes the same
/// gradient (interpreted).
fn checkpointing_trades_workspace_for_recomputation(program: impl Fn(&str) -> String) {
    let workspace = |text: String| -> (u64, kiln_ir::Module) {
        let source = kiln::Source { name: "rnn.kn".into(), text };
        let out = kiln::build(&source, &kiln::Options::default()).unwrap_or_else(|e| panic!("{}", e.render(false)));
        let manifest = out.files.iter().find(|(n, _)| n.ends_with(".json")).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.1).unwrap();
        let bytes = manifest["functions"][0]["workspace_bytes"].as_u64().unwrap();
        (bytes, kiln::check(&source, "rnn").unwrap())
    };
    let (saved, residuals) = workspace(program(""));
    let (checkpointed, recomputing) = workspace(program("checkpoint"));
    assert!(checkpointed < saved, "checkpointed {checkpointed} bytes, residuals saved {saved}");
    same_gradient(residuals.func("step").unwrap(), recomputing.func("step").unwrap());
}

/// `f` and `g` (of the same f32 parameters) give the same results, interpreted on random
/// arguments.
fn same_gradient(f: &kiln_ir::Func, g: &kiln_ir::Func) {
    let mut rng = Rng::new(common::seed());
    let args: Vec<Tensor> = f
        .params
        .iter()
        .map(|p| {
            let t = random(&mut rng, &p.ty.shape);
            Tensor::new(t.shape, t.data.convert(kiln_ir::DType::F32))
        })
        .collect();
    let (a, b) = (run(f, &args), run(g, &args));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(values(x), values(y), "the same gradient either way");
    }
}

/// `while cond max_iter n` is a counted loop of n steps whose body runs while the condition
/// holds: Newton's method so bounded gives the root when it converges in time, stops after n
/// steps when it does not, and its gradient goes through the scan rule (residuals saved,
/// linear time) to d sqrt(a) / da, compiled as interpreted.
#[test]
fn bounded_while_loops_stop_at_their_bound_and_differentiate() {
    const NEWTON: &str = "
fn root(a: f64) -> f64 {
    let (x, _) = loop (x, k) = (a, 0) while abs(x * x - a) > 1e-13 * a max_iter 60 { (0.5 * (x + a / x), k + 1) };
    x
}
fn three(a: f64) -> f64 {
    let (x, _) = loop (x, k) = (a, 0) while abs(x * x - a) > 1e-13 * a max_iter 3 { (0.5 * (x + a / x), k + 1) };
    x
}
export root;
export grad(root) as droot;
export three;
";
    let source = kiln::Source { name: "bounded.kn".into(), text: NEWTON.into() };
    let module = kiln::check(&source, "bounded").unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert!(
        module.funcs.iter().flat_map(|f| &f.insts).all(|i| !matches!(i.op, kiln_ir::Op::While { .. })),
        "a bounded while loop is a counted loop"
    );
    let loaded = common::compile_and_load(&module, 2);
    let f = |name: &str| module.func(name).unwrap();
    for a in [0.25, 2.0, 9.0, 1234.5] {
        let at = Tensor::new(vec![], Data::F64(vec![a]));
        assert_close(values(&run(f("root"), std::slice::from_ref(&at))[0])[0], a.sqrt(), &format!("sqrt({a})"));
        let expected = 0.5 / a.sqrt();
        assert_close(values(&run(f("droot"), std::slice::from_ref(&at))[0])[0], expected, &format!("grad at {a}"));
        let mut x = a;
        for _ in 0..3 {
            x = 0.5 * (x + a / x);
        }
        assert_eq!(values(&run(f("three"), std::slice::from_ref(&at))[0])[0], x, "three steps from {a}");
        for name in ["root", "droot", "three"] {
            common::check_against_interpreter(&loaded, name, std::slice::from_ref(&at), common::Check::Program)
                .unwrap();
        }
    }
}
