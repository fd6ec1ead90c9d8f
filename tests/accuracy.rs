//! Reductions are accurate at any size: the compiled sum of 2^26 f32 ones is exactly 2^26
//! (an f32 accumulator stops at 2^24), and sums of random data stay within 1e-6 relative of an
//! f64 reference. kiln's own f32 transcendental functions (codegen/src/mlir/approx.rs) stay
//! within their documented ulp bounds of the correctly rounded result over every exponent and
//! every special value.

mod common;

use kiln_ir::gen::Rng;
use kiln_ir::interp::{Data, Tensor};

fn load(src: &str) -> common::Loaded {
    load_for(src, &kiln_codegen::Target::default())
}

fn load_for(src: &str, target: &kiln_codegen::Target) -> common::Loaded {
    let module = kiln_frontend::compile_source(src, "acc").unwrap_or_else(|d| panic!("{d:?}"));
    common::compile_and_load_for(&module, 2, target)
}

/// A CPU target whose code uses kiln's own transcendental functions throughout, as a GPU's does.
fn without_libm() -> kiln_codegen::Target {
    kiln_codegen::Target { libm: false, ..Default::default() }
}

// The C library's erf (glibc's: within 1 ulp), a reference independent of the interpreter's
// (the `libm` crate's).
unsafe extern "C" {
    #[link_name = "erf"]
    safe fn c_erf(x: f64) -> f64;
}

fn erf(x: f64) -> f64 {
    c_erf(x)
}

fn scalar(t: &Tensor) -> f64 {
    t.data.get_f64(0)
}

#[test]
fn sum_of_two_to_the_26_ones_is_exact() {
    let loaded = load(
        "fn flat(x: f32[67108864]) -> f32 { sum(x) }\n\
         fn square(x: f32[8192, 8192]) -> (f32, f32[8192]) { (sum(x), sum(x, axis=0)) }\n\
         export flat;\nexport square;\n",
    );
    let ones = Tensor::new(vec![1 << 26], Data::F32(vec![1.0; 1 << 26]));
    assert_eq!(scalar(&loaded.call("flat", std::slice::from_ref(&ones))[0]), 67108864.0);
    let square = Tensor::new(vec![8192, 8192], ones.data);
    let r = loaded.call("square", &[square]);
    assert_eq!(scalar(&r[0]), 67108864.0);
    assert!(matches!(&r[1].data, Data::F32(v) if v.iter().all(|&x| x == 8192.0)));
}

#[test]
fn random_sums_are_within_1e6_of_f64() {
    let loaded = load(
        "fn total(x: f32[16777216]) -> (f32, f32) { (sum(x), mean(x)) }\n\
         fn rows(x: f32[512, 32768]) -> f32[512] { sum(x, axis=1) }\n\
         export total;\nexport rows;\n",
    );
    let mut rng = Rng::new(common::seed());
    let v: Vec<f32> = (0..1 << 24).map(|_| rng.unit() as f32).collect();
    let exact: f64 = v.iter().map(|&x| x as f64).sum();
    let r = loaded.call("total", &[Tensor::new(vec![1 << 24], Data::F32(v.clone()))]);
    let rel = |a: f64, e: f64| ((a - e) / e).abs();
    assert!(rel(scalar(&r[0]), exact) < 1e-6, "sum {} vs {exact}", scalar(&r[0]));
    assert!(rel(scalar(&r[1]), exact / (1 << 24) as f64) < 1e-6, "mean");
    let r = loaded.call("rows", &[Tensor::new(vec![512, 32768], Data::F32(v.clone()))]);
    let Data::F32(sums) = &r[0].data else { panic!() };
    for (i, &s) in sums.iter().enumerate() {
        let e: f64 = v[i * 32768..(i + 1) * 32768].iter().map(|&x| x as f64).sum();
        assert!(rel(s as f64, e) < 1e-6, "row {i}: {s} vs {e}");
    }
}

/// Distance in units in the last place: the number of f32 values between `a` and `b` (0 when
/// both are NaN or both are the same infinity; the maximum when only one is NaN).
fn ulps(a: f32, b: f32) -> u64 {
    distance(a.is_nan(), b.is_nan(), a.to_bits() as u64, b.to_bits() as u64, 1 << 31)
}

/// [`ulps`] for f64.
fn ulps64(a: f64, b: f64) -> u64 {
    distance(a.is_nan(), b.is_nan(), a.to_bits(), b.to_bits(), 1 << 63)
}

/// The distance between two floats' bit patterns once ordered like the numbers (sign and
/// magnitude to a signed integer, so that -0 and +0 coincide).
fn distance(a_nan: bool, b_nan: bool, a: u64, b: u64, sign: u64) -> u64 {
    if a_nan || b_nan {
        return if a_nan && b_nan { 0 } else { u64::MAX };
    }
    let ordered = |bits: u64| if bits & sign != 0 { -((bits & !sign) as i128) } else { bits as i128 };
    (ordered(a) - ordered(b)).unsigned_abs() as u64
}

/// kiln's f32 exp, log, tanh, sigmoid, expm1, log1p (the last two built on the first two) and
/// erf (computed in f64) against the correctly rounded result: within 2, 2, 2, 4, 3, 3 and 1 ulp.
#[test]
fn transcendental_functions_are_within_their_ulp_bounds() {
    const N: usize = 1 << 21;
    let loaded = load(&format!(
        "fn e(x: f32[{N}]) -> f32[{N}] {{ exp(x) }}\nfn l(x: f32[{N}]) -> f32[{N}] {{ log(x) }}\n\
         fn t(x: f32[{N}]) -> f32[{N}] {{ tanh(x) }}\nfn s(x: f32[{N}]) -> f32[{N}] {{ sigmoid(x) }}\n\
         fn m(x: f32[{N}]) -> f32[{N}] {{ expm1(x) }}\nfn p(x: f32[{N}]) -> f32[{N}] {{ log1p(x) }}\n\
         fn f(x: f32[{N}]) -> f32[{N}] {{ erf(x) }}\n\
         export e;\nexport l;\nexport t;\nexport s;\nexport m;\nexport p;\nexport f;\n"
    ));
    let mut rng = Rng::new(common::seed());
    let specials = [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, 1e-45, -1e-45, 1.0];
    // Half arbitrary bit patterns (every exponent, subnormals, NaNs), half uniform over where
    // the function is neither constant nor saturated.
    let inputs = |rng: &mut Rng, lo: f64, hi: f64| -> Vec<f32> {
        let mut v: Vec<f32> = specials.to_vec();
        v.extend((specials.len()..N).map(|i| {
            if i % 2 == 0 {
                f32::from_bits(rng.next_u64() as u32)
            } else {
                (lo + (hi - lo) * rng.unit()) as f32
            }
        }));
        v
    };
    type Reference = fn(f64) -> f64;
    let cases: [(&str, Reference, f64, f64, u64); 7] = [
        ("e", f64::exp, -104.0, 89.0, 2),
        ("l", f64::ln, 0.0, 4.0, 2),
        ("t", f64::tanh, -10.0, 10.0, 2),
        ("s", |x| 1.0 / (1.0 + (-x).exp()), -90.0, 20.0, 4),
        ("m", f64::exp_m1, -20.0, 89.0, 3),
        ("p", f64::ln_1p, -1.0, 4.0, 3),
        ("f", erf, -4.0, 4.0, 1),
    ];
    for (name, reference, lo, hi, bound) in cases {
        let x = inputs(&mut rng, lo, hi);
        let r = loaded.call(name, &[Tensor::new(vec![N], Data::F32(x.clone()))]);
        let Data::F32(y) = &r[0].data else { panic!("f32 result") };
        let (worst, at) =
            x.iter().zip(y).map(|(&x, &y)| (ulps(y, reference(x as f64) as f32), x)).max_by_key(|&(u, _)| u).unwrap();
        assert!(worst <= bound, "{name}: {worst} ulp at x = {at:e} (bound {bound})");
        eprintln!("{name}: at most {worst} ulp");
    }
}

/// kiln's sin, cos and pow polynomials (the GPU's; CPU targets call libm) on a CPU target built
/// with `libm: false`: sin and cos within 2 ulp for |x| <= π/4 and 1.2e-7 absolute at any
/// magnitude (the reduction is exact), pow within 1 ulp (computed in f64) with C's special
/// cases exact.
#[test]
fn gpu_sin_cos_and_pow_polynomials_are_within_their_bounds() {
    const N: usize = 1 << 20;
    let loaded = load_for(
        &format!(
            "fn s(x: f32[{N}]) -> f32[{N}] {{ sin(x) }}\nfn c(x: f32[{N}]) -> f32[{N}] {{ cos(x) }}\n\
             fn p(x: f32[{N}], y: f32[{N}]) -> f32[{N}] {{ pow(x, y) }}\nexport s;\nexport c;\nexport p;\n"
        ),
        &without_libm(),
    );
    let mut rng = Rng::new(common::seed());
    let specials = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-30,
        8192.0,
        -8192.0,
        std::f32::consts::FRAC_PI_4,
        0.1,
        3e9,
        -3e9,
        f32::MAX,
    ];
    let x: Vec<f32> = specials
        .iter()
        .copied()
        .chain((specials.len()..N).map(|i| match i % 5 {
            // Any finite f32: every exponent, every window of the reduction's table.
            4 => f32::from_bits(rng.next_u64() as u32 & 0xf7ff_ffff),
            k => ((rng.unit() * 2.0 - 1.0) * [0.785, 10.0, 100.0, 8192.0][k]) as f32,
        }))
        .collect();
    let input = Tensor::new(vec![N], Data::F32(x.clone()));
    for (name, reference, bound) in [("s", f64::sin as fn(f64) -> f64, 2), ("c", f64::cos, 2)] {
        let r = loaded.call(name, std::slice::from_ref(&input));
        let Data::F32(y) = &r[0].data else { panic!("f32 result") };
        // Within `bound` ulp for |x| <= π/4 (no reduction); beyond, the reduced argument's
        // rounding to f32 bounds the absolute error instead: it dominates near the zeros.
        let near = x.iter().zip(y).filter(|(x, _)| x.is_nan() || x.abs() <= std::f32::consts::FRAC_PI_4);
        let (worst, at) =
            near.map(|(&x, &y)| (ulps(y, reference(x as f64) as f32), x)).max_by_key(|&(u, _)| u).unwrap();
        assert!(worst <= bound, "{name}: {worst} ulp at x = {at:e}");
        let finite = x.iter().zip(y).filter(|(x, _)| x.is_finite());
        let (error, far_at) = finite
            .map(|(&x, &y)| ((y as f64 - reference(x as f64)).abs(), x))
            .fold((0.0, 0.0), |m, e| if e.0 > m.0 { e } else { m });
        assert!(error <= 1.2e-7, "{name}: absolute error {error:e} at x = {far_at:e}");
        assert!(x.iter().zip(y).all(|(x, y)| x.is_finite() || y.is_nan()), "{name} of inf or NaN is NaN");
        eprintln!("{name}: at most {worst} ulp for |x| <= pi/4, absolute error {error:.1e} at any magnitude");
    }
    // pow: positive bases over many magnitudes, negative bases with integer exponents, and
    // C's special cases.
    let specials = [
        (0.0, -1.0),
        (0.0, 2.0),
        (-1.0, f32::INFINITY),
        (1.0, f32::NAN),
        (f32::NAN, 0.0),
        (-2.0, 0.5),
        (-2.0, 3.0),
        (-2.0, 2.0),
        (f32::INFINITY, -1.0),
        (f32::NEG_INFINITY, 0.5),
        (f32::NEG_INFINITY, -0.5),
        (f32::NEG_INFINITY, 3.0),
        (f32::NEG_INFINITY, -3.0),
        (f32::NEG_INFINITY, 2.0),
        (-0.0, 3.0),
        (-0.0, -3.0),
        (-0.0, 2.0),
        (-0.0, 0.5),
        // Near overflow and underflow, where y ln x is largest.
        (10.0, 38.5),
        (3.0, 80.7),
        (2.0, -149.0),
        (0.5, 148.5),
    ];
    let cases: Vec<(f32, f32)> = specials
        .into_iter()
        .chain((specials.len()..N).map(|i| {
            let base = (10f64.powf(rng.unit() * 8.0 - 4.0)) as f32;
            if i % 3 == 0 {
                (-base, (rng.below(17) as i64 - 8) as f32)
            } else {
                (base, ((rng.unit() * 2.0 - 1.0) * 8.0) as f32)
            }
        }))
        .collect();
    let (xs, ys): (Vec<f32>, Vec<f32>) = cases.iter().copied().unzip();
    let r = loaded.call("p", &[Tensor::new(vec![N], Data::F32(xs)), Tensor::new(vec![N], Data::F32(ys))]);
    let Data::F32(out) = &r[0].data else { panic!("f32 result") };
    let mut worst = 0;
    for (&(x, y), &got) in cases.iter().zip(out) {
        // The correctly rounded result: f64's pow is within an ulp of f64, far below f32's.
        let want = (x as f64).powf(y as f64) as f32;
        let u = ulps(got, want);
        assert!(u <= 1, "pow({x:e}, {y:e}) = {got:e}, libm {want:e}: {u} ulp");
        assert!(want != 0.0 || got.to_bits() == want.to_bits(), "pow({x:e}, {y:e}) = {got:e}, libm {want:e}");
        worst = worst.max(u);
    }
    eprintln!("pow: at most {worst} ulp");
}

/// kiln's f64 functions (GPU targets have no libm), on a CPU target built with `libm: false`,
/// against glibc: exp within 2 ulp, log and sigmoid 3, tanh 6, expm1 and log1p 4, erf 2 (measured 1, 2, 2, 4, 3, 3, 1), sin and cos within 2 ulp for
/// |x| <= π/4 and 1e-15 absolute at any magnitude, pow within 3 + 3 |y ln x| ulp (see approx.rs).
#[test]
fn f64_functions_without_libm_are_within_their_bounds() {
    const N: usize = 1 << 18;
    let loaded = load_for(
        &format!(
            "fn e(x: f64[{N}]) -> f64[{N}] {{ exp(x) }}\nfn l(x: f64[{N}]) -> f64[{N}] {{ log(x) }}\n\
             fn t(x: f64[{N}]) -> f64[{N}] {{ tanh(x) }}\nfn g(x: f64[{N}]) -> f64[{N}] {{ sigmoid(x) }}\n\
             fn s(x: f64[{N}]) -> f64[{N}] {{ sin(x) }}\nfn c(x: f64[{N}]) -> f64[{N}] {{ cos(x) }}\n\
             fn p(x: f64[{N}], y: f64[{N}]) -> f64[{N}] {{ pow(x, y) }}\n\
             fn m(x: f64[{N}]) -> f64[{N}] {{ expm1(x) }}\nfn q(x: f64[{N}]) -> f64[{N}] {{ log1p(x) }}\n\
             fn f(x: f64[{N}]) -> f64[{N}] {{ erf(x) }}\n\
             export e;\nexport l;\nexport t;\nexport g;\nexport s;\nexport c;\nexport p;\nexport m;\nexport q;\n\
             export f;\n"
        ),
        &without_libm(),
    );
    let mut rng = Rng::new(common::seed());
    let specials = [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, f64::MIN_POSITIVE, 5e-324, 1.0];
    let inputs = |rng: &mut Rng, lo: f64, hi: f64| -> Vec<f64> {
        let mut v = specials.to_vec();
        v.extend((specials.len()..N).map(|i| {
            if i % 2 == 0 {
                f64::from_bits(rng.next_u64())
            } else {
                lo + (hi - lo) * rng.unit()
            }
        }));
        v
    };
    type Reference = fn(f64) -> f64;
    let sigmoid: Reference = |x| {
        if x < 0.0 {
            let e = x.exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + (-x).exp())
        }
    };
    let cases: [(&str, Reference, f64, f64, u64); 7] = [
        ("e", f64::exp, -750.0, 712.0, 2),
        ("l", f64::ln, 0.0, 4.0, 3),
        ("t", f64::tanh, -25.0, 25.0, 6),
        ("g", sigmoid, -750.0, 40.0, 3),
        ("m", f64::exp_m1, -40.0, 712.0, 4),
        ("q", f64::ln_1p, -1.0, 4.0, 4),
        ("f", erf, -6.5, 6.5, 2),
    ];
    for (name, reference, lo, hi, bound) in cases {
        let x = inputs(&mut rng, lo, hi);
        let r = loaded.call(name, &[Tensor::new(vec![N], Data::F64(x.clone()))]);
        let Data::F64(y) = &r[0].data else { panic!("f64 result") };
        let (worst, at) = x.iter().zip(y).map(|(&x, &y)| (ulps64(y, reference(x)), x)).max_by_key(|&(u, _)| u).unwrap();
        assert!(worst <= bound, "{name}: {worst} ulp at x = {at:e} (bound {bound})");
        eprintln!("{name} (f64): at most {worst} ulp");
    }
    let x: Vec<f64> = specials
        .iter()
        .copied()
        // The double closest to a multiple of π/2 (Kahan and McDonald): sin and cos need its
        // reduction to 2^-61.
        .chain([1e22, f64::MAX, -3e9, 6381956970095103.0 * 2f64.powi(797)])
        .chain((specials.len() + 4..N).map(|i| match i % 4 {
            3 => f64::from_bits(rng.next_u64() & 0xffef_ffff_ffff_ffff),
            k => (rng.unit() * 2.0 - 1.0) * [0.785, 10.0, 1000.0][k],
        }))
        .collect();
    for (name, reference) in [("s", f64::sin as Reference), ("c", f64::cos)] {
        let r = loaded.call(name, &[Tensor::new(vec![N], Data::F64(x.clone()))]);
        let Data::F64(y) = &r[0].data else { panic!("f64 result") };
        let near = x.iter().zip(y).filter(|(x, _)| x.is_nan() || x.abs() <= std::f64::consts::FRAC_PI_4);
        let worst = near.map(|(&x, &y)| ulps64(y, reference(x))).max().unwrap();
        assert!(worst <= 2, "{name} (f64): {worst} ulp within pi/4");
        let error =
            x.iter().zip(y).filter(|(x, _)| x.is_finite()).map(|(&x, &y)| (y - reference(x)).abs()).fold(0.0, f64::max);
        assert!(error <= 1e-15, "{name} (f64): absolute error {error:e}");
        eprintln!("{name} (f64): at most {worst} ulp within pi/4, absolute error {error:.1e} at any magnitude");
    }
    let (xs, ys): (Vec<f64>, Vec<f64>) = (0..N)
        .map(|i| {
            let base = 10f64.powf(rng.unit() * 4.0 - 2.0);
            if i % 3 == 0 {
                (-base, (rng.below(17) as i64 - 8) as f64)
            } else {
                (base, (rng.unit() * 2.0 - 1.0) * 8.0)
            }
        })
        .unzip();
    let r =
        loaded.call("p", &[Tensor::new(vec![N], Data::F64(xs.clone())), Tensor::new(vec![N], Data::F64(ys.clone()))]);
    let Data::F64(out) = &r[0].data else { panic!("f64 result") };
    for ((&x, &y), &got) in xs.iter().zip(&ys).zip(out) {
        let bound = 3.0 + 3.0 * (y * x.abs().ln()).abs();
        assert!(ulps64(got, x.powf(y)) as f64 <= bound, "pow({x:e}, {y:e}) = {got:e}, libm {:e}", x.powf(y));
    }
}

/// Every function gives zeros the sign libm gives them (the interpreter's): the odd ones keep
/// x's (sin(-0) = tanh(-0) = -0, pow(-0, 3) = -0, pow(-0, -3) = -inf), which ulp distances
/// cannot see. With kiln's polynomials (GPUs) and on the CPU target.
#[test]
fn zeros_keep_their_sign() {
    let text = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "sin", "cos", "erf", "sqrt"]
        .iter()
        .flat_map(|f| {
            ["f32", "f64"].map(|t| format!("fn {f}_{t}(x: {t}[2]) -> {t}[2] {{ {f}(x) }}\nexport {f}_{t};\n"))
        })
        .chain(
            ["f32", "f64"]
                .map(|t| format!("fn pow_{t}(x: {t}[4], y: {t}[4]) -> {t}[4] {{ pow(x, y) }}\nexport pow_{t};\n")),
        )
        .collect::<String>();
    for target in [without_libm(), kiln_codegen::Target::default()] {
        let loaded = load_for(&text, &target);
        for f in &loaded.module.funcs {
            let f64 = f.name.ends_with("f64");
            let data =
                |v: &[f64]| if f64 { Data::F64(v.to_vec()) } else { Data::F32(v.iter().map(|&x| x as f32).collect()) };
            let args: Vec<Tensor> = if f.params.len() == 2 {
                vec![
                    Tensor::new(vec![4], data(&[-0.0, -0.0, -0.0, 0.0])),
                    Tensor::new(vec![4], data(&[3.0, -3.0, 2.0, 3.0])),
                ]
            } else {
                vec![Tensor::new(vec![2], data(&[-0.0, 0.0]))]
            };
            let want = kiln_ir::interp::run(f, &args);
            let got = loaded.call(&f.name, &args);
            let bits = |t: &Tensor| (0..t.data.len()).map(|i| t.data.get_f64(i).to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got[0]),
                bits(&want[0]),
                "{} (libm {}): {:?} for {:?}",
                f.name,
                target.libm,
                got[0].data,
                want[0].data
            );
        }
    }
}
