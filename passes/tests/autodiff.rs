//! Every differentiable op, generated from the op table: jvp agrees with central finite
//! differences computed in f64 by the interpreter, and vjp is the transpose of jvp
//! (<vjp(u), v> = <u, jvp(v)>).

use kiln_ir::gen::{self, Rng};
use kiln_ir::interp::{self, Data, Tensor};
use kiln_ir::{DType, Func, Op, TensorType, UnaryOp};
use kiln_passes::autodiff::{jvp, value_and_grad, vjp};

/// Where the op table says the op is smooth: above this bound, if any.
fn smooth_above(op: &Op) -> Option<f64> {
    match op {
        Op::Unary(u) => u.smooth_above(),
        Op::Binary(b) => b.smooth_above(),
        _ => None,
    }
}

/// A random instance of `template` whose float values are all f64 and whose result is a float,
/// or None when the op has no such instance (comparisons, iota, constants).
fn f64_instance(rng: &mut Rng, template: &Op) -> Option<Func> {
    for _ in 0..500 {
        let f = gen::single_op_func(rng, template, "f");
        let floats_ok = f.params.iter().all(|p| p.ty.dtype == DType::F64 || !p.ty.dtype.is_float());
        let result = f.ty(f.results[0]);
        if floats_ok && result.dtype == DType::F64 && f.params.iter().any(|p| p.ty.dtype == DType::F64) {
            return Some(f);
        }
    }
    None
}

/// Inputs away from kinks and poles: magnitudes in [0.5, 1.5] of either sign, or the bound of
/// the op's smooth domain plus such a magnitude.
fn input(rng: &mut Rng, ty: &TensorType, smooth_above: Option<f64>) -> Tensor {
    if ty.dtype != DType::F64 {
        return gen::tensor(rng, ty, false);
    }
    let v = (0..ty.num_elements())
        .map(|_| {
            let m = 0.5 + rng.unit();
            match smooth_above {
                Some(bound) => bound + m,
                None if rng.chance(0.5) => m,
                None => -m,
            }
        })
        .collect();
    Tensor::new(ty.shape.clone(), Data::F64(v))
}

fn direction(rng: &mut Rng, ty: &TensorType) -> Tensor {
    Tensor::new(ty.shape.clone(), Data::F64((0..ty.num_elements()).map(|_| 2.0 * rng.unit() - 1.0).collect()))
}

fn values(t: &Tensor) -> Vec<f64> {
    (0..t.data.len()).map(|i| t.data.get_f64(i)).collect()
}

fn axpy(x: &Tensor, a: f64, v: &Tensor) -> Tensor {
    let d = values(x).iter().zip(values(v)).map(|(x, v)| x + a * v).collect();
    Tensor::new(x.shape.clone(), Data::F64(d))
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    values(a).iter().zip(values(b)).map(|(x, y)| x * y).sum()
}

fn close(actual: &[f64], expected: &[f64], rtol: f64) -> Result<(), String> {
    let scale = expected.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        if (a - e).abs() > rtol * scale {
            return Err(format!("element {i}: {a} vs {e} (scale {scale})"));
        }
    }
    Ok(())
}

#[test]
fn jvp_matches_finite_differences_and_vjp_is_its_transpose() {
    let mut rng = Rng::new(gen::test_seed());
    let mut tested = 0;
    for template in Op::catalog() {
        for _ in 0..4 {
            let Some(f) = f64_instance(&mut rng, &template) else { continue };
            tested += 1;
            let bound = smooth_above(&template);
            let x: Vec<Tensor> = f.params.iter().map(|p| input(&mut rng, &p.ty, bound)).collect();
            let float: Vec<usize> = (0..f.params.len()).filter(|&i| f.params[i].ty.dtype == DType::F64).collect();
            let v: Vec<Tensor> = float.iter().map(|&i| direction(&mut rng, &f.params[i].ty)).collect();
            // Forward mode against central differences.
            let fj = jvp(&f, "f_jvp");
            kiln_ir::verify::verify_func(&fj).unwrap_or_else(|e| panic!("{e}\n{}", kiln_ir::text::print_func(&fj)));
            let mut args = x.clone();
            args.extend(v.iter().cloned());
            let out = interp::run(&fj, &args);
            let tangent = &out[1];
            let h = 1e-6;
            let shifted = |s: f64| -> Vec<f64> {
                let mut xs = x.clone();
                for (k, &i) in float.iter().enumerate() {
                    xs[i] = axpy(&x[i], s * h, &v[k]);
                }
                values(&interp::run(&f, &xs)[0])
            };
            let (plus, minus) = (shifted(1.0), shifted(-1.0));
            let fd: Vec<f64> = plus.iter().zip(&minus).map(|(p, m)| (p - m) / (2.0 * h)).collect();
            close(&values(tangent), &fd, 1e-6).unwrap_or_else(|e| {
                panic!(
                    "jvp of {} disagrees with finite differences: {e}\n{}",
                    template.name(),
                    kiln_ir::text::print_func(&f)
                )
            });
            // Reverse mode: <vjp(u), v> = <u, jvp(v)>.
            let fv = vjp(&f, "f_vjp", None);
            kiln_ir::verify::verify_func(&fv).unwrap_or_else(|e| panic!("{e}\n{}", kiln_ir::text::print_func(&fv)));
            let u = direction(&mut rng, &tangent.ty());
            let mut args = x.clone();
            args.push(u.clone());
            let cts = interp::run(&fv, &args);
            let lhs: f64 = cts[1..].iter().zip(&v).map(|(c, v)| dot(c, v)).sum();
            let rhs = dot(&u, tangent);
            assert!(
                (lhs - rhs).abs() <= 1e-9 * (1.0 + rhs.abs()),
                "vjp of {} is not the transpose of jvp: {lhs} vs {rhs}",
                template.name()
            );
        }
    }
    assert!(tested >= 60, "only {tested} instances were differentiable");
}

#[test]
fn value_and_grad_of_a_scalar_function() {
    // L(w) = sum(tanh(x @ w)) with x fixed: dL/dw = x^T (1 - tanh^2).
    let src_x = TensorType::new(DType::F64, vec![3, 4]);
    let src_w = TensorType::new(DType::F64, vec![4, 2]);
    let mut f = Func::new("loss", Default::default());
    let x = f.add_param("x", src_x.clone(), Default::default());
    let w = f.add_param("w", src_w.clone(), Default::default());
    let y = f.push(Op::Dot, vec![x, w], Default::default()).unwrap();
    let t = f.push(Op::Unary(UnaryOp::Tanh), vec![y], Default::default()).unwrap();
    let s =
        f.push(Op::Reduce { kind: kiln_ir::ReduceKind::Sum, axes: vec![0, 1] }, vec![t], Default::default()).unwrap();
    f.results.push(s);
    f.result_names.push("out0".into());
    let g = value_and_grad(&f, "loss_grad", &[1]).unwrap();
    kiln_ir::verify::verify_func(&g).unwrap();
    let mut rng = Rng::new(gen::test_seed());
    let (xv, wv) = (input(&mut rng, &src_x, None), input(&mut rng, &src_w, None));
    let out = interp::run(&g, &[xv.clone(), wv.clone()]);
    assert_eq!(values(&out[0]), values(&interp::run(&f, &[xv.clone(), wv.clone()])[0]));
    let (xs, ws) = (values(&xv), values(&wv));
    let mut expected = vec![0.0; 8];
    for i in 0..3 {
        for j in 0..2 {
            let z: f64 = (0..4).map(|k| xs[i * 4 + k] * ws[k * 2 + j]).sum();
            let d = 1.0 - z.tanh().powi(2);
            for k in 0..4 {
                expected[k * 2 + j] += xs[i * 4 + k] * d;
            }
        }
    }
    close(&values(&out[1]), &expected, 1e-12).unwrap();
    assert!(value_and_grad(&g, "bad", &[0]).is_err(), "grad needs a scalar result");
}
