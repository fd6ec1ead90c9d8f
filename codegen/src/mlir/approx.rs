//! Transcendental functions as plain `arith`/`math` arithmetic, so that the loops holding them
//! vectorize (a libm call per element does not: MLIR 22 offers no polynomial approximation
//! pass through its C API) and run where there is no libm (GPUs). Every special value is
//! handled: NaN propagates, overflow gives infinity, underflow gives subnormals and zero.
//!
//! f32 uses Cephes' range reductions and minimax polynomials (`expf`, `logf`, `tanhf`, `sinf`,
//! `cosf`, S. L. Moshier); f64 uses the same reductions with Taylor series long enough for the
//! reduced range (the terms are 1/k!, 1/(2k+1): no tabulated constants to trust). Where each is
//! used, and the bounds tests/accuracy.rs asserts against the correctly rounded result:
//!
//! - f32 exp, log, tanh (2 ulp) and sigmoid (4 ulp) on every target (measured: 1, 1, 1, 3 ulp);
//! - f32 sin and cos (2 ulp for |x| <= π/4, 1.2e-7 absolute up to 8192) and pow
//!   (3 + 2 |y ln x| ulp: exp amplifies the rounding of y ln x), and every f64 function (exp 2
//!   ulp, log and sigmoid 3, tanh 6, sin and cos 2 within π/4 and 1e-15 absolute up to 1000, pow
//!   3 + 3 |y ln x|: log's f64 error is larger relative to its ulp), on targets without libm (`Target::libm` false: GPUs); CPU targets call libm for
//!   those.

use super::Body;
use kiln_ir::{DType, Literal};

/// A float format: its MLIR types and IEEE fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fmt {
    ty: &'static str,
    int: &'static str,
    dtype: DType,
    int_dtype: DType,
    /// Mantissa bits (without the implicit one).
    mantissa: i64,
    bias: i64,
    /// The sign and mantissa bits, as a signed integer of the format's width.
    sign_and_mantissa: i64,
}

pub(super) const F32: Fmt = Fmt {
    ty: "f32",
    int: "i32",
    dtype: DType::F32,
    int_dtype: DType::I32,
    mantissa: 23,
    bias: 127,
    sign_and_mantissa: 0x807f_ffff_u32 as i32 as i64,
};
pub(super) const F64: Fmt = Fmt {
    ty: "f64",
    int: "i64",
    dtype: DType::F64,
    int_dtype: DType::I64,
    mantissa: 52,
    bias: 1023,
    sign_and_mantissa: 0x800f_ffff_ffff_ffff_u64 as i64,
};

impl Fmt {
    pub(super) fn of(dtype: DType) -> Fmt {
        if dtype == DType::F64 {
            F64
        } else {
            F32
        }
    }

    /// ln 2 in two parts, the first with few bits so that n ln 2 is exact for the n in range.
    fn ln2(self) -> (f64, f64) {
        if self == F32 {
            (0.693359375, -2.12194440e-4)
        } else {
            (0.693_145_751_953_125, 1.428_606_820_309_417_3e-6)
        }
    }
}

/// 1/k! for k = from..=to, highest first (Horner's order).
fn inverse_factorials(from: u32, to: u32) -> Vec<f64> {
    (from..=to).rev().map(|k| 1.0 / (1..=k).map(f64::from).product::<f64>()).collect()
}

impl Body {
    fn f(&mut self, fmt: Fmt, v: f64) -> String {
        self.constant(Literal::Float(fmt.dtype, v))
    }

    fn i(&mut self, fmt: Fmt, v: i64) -> String {
        self.constant(Literal::Int(fmt.int_dtype, v))
    }

    fn fop(&mut self, fmt: Fmt, name: &str, a: &str, b: &str) -> String {
        self.op(format!("arith.{name} {a}, {b} : {}", fmt.ty))
    }

    fn iop(&mut self, fmt: Fmt, name: &str, a: &str, b: &str) -> String {
        self.op(format!("arith.{name} {a}, {b} : {}", fmt.int))
    }

    fn fun(&mut self, fmt: Fmt, name: &str, a: &str) -> String {
        self.op(format!("math.{name} {a} : {}", fmt.ty))
    }

    /// `a * b + c`, contractible: one fused multiply-add where the target has one (the
    /// polynomials' bounds hold either way; a fused step rounds once instead of twice).
    fn mul_add(&mut self, fmt: Fmt, a: &str, b: &str, c: &str) -> String {
        let p = self.op(format!("arith.mulf {a}, {b} fastmath<contract> : {}", fmt.ty));
        self.op(format!("arith.addf {p}, {c} fastmath<contract> : {}", fmt.ty))
    }

    /// `c[0] x^(n-1) + ... + c[n-1]` by Horner's rule.
    fn horner(&mut self, fmt: Fmt, x: &str, coefficients: &[f64]) -> String {
        let mut acc = self.f(fmt, coefficients[0]);
        for &c in &coefficients[1..] {
            let c = self.f(fmt, c);
            acc = self.mul_add(fmt, &acc, x, &c);
        }
        acc
    }

    fn select(&mut self, fmt: Fmt, cond: &str, a: &str, b: &str) -> String {
        self.op(format!("arith.select {cond}, {a}, {b} : {}", fmt.ty))
    }

    /// `x` where `x` is NaN, `value` elsewhere.
    fn keep_nan(&mut self, fmt: Fmt, x: &str, value: &str) -> String {
        let nan = self.fop(fmt, "cmpf uno,", x, x);
        self.select(fmt, &nan, x, value)
    }

    /// 2^n for an integer `n` within the normal exponents, from its bits.
    fn pow2(&mut self, fmt: Fmt, n: &str) -> String {
        let bias = self.i(fmt, fmt.bias);
        let biased = self.iop(fmt, "addi", n, &bias);
        let shift = self.i(fmt, fmt.mantissa);
        let bits = self.iop(fmt, "shli", &biased, &shift);
        self.op(format!("arith.bitcast {bits} : {} to {}", fmt.int, fmt.ty))
    }

    /// exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln 2 / 2, ln 2 / 2] (ln 2
    /// in two parts: n ln 2 loses nothing). f32: exp(r) = 1 + r + r^2 P(r), Cephes' minimax;
    /// f64: the Taylor series to r^13 (error below 2^-60 on the range). x is first clamped to
    /// where the result is neither 0 nor infinity anyway; 2^n is applied in two halves so that
    /// subnormal and near-overflow results are rounded once.
    pub(super) fn exp(&mut self, fmt: Fmt, x: &str) -> String {
        let (lo, hi) = if fmt == F32 { (-104.0, 89.0) } else { (-746.0, 710.0) };
        let (lo, hi) = (self.f(fmt, lo), self.f(fmt, hi));
        let clamped = self.fop(fmt, "maximumf", x, &lo);
        let clamped = self.fop(fmt, "minimumf", &clamped, &hi);
        let (log2e, half) = (self.f(fmt, std::f64::consts::LOG2_E), self.f(fmt, 0.5));
        let t = self.mul_add(fmt, &clamped, &log2e, &half);
        let n = self.fun(fmt, "floor", &t);
        let (c1, c2) = fmt.ln2();
        let (c1, c2) = (self.f(fmt, c1), self.f(fmt, c2));
        let nc1 = self.fop(fmt, "mulf", &n, &c1);
        let r = self.fop(fmt, "subf", &clamped, &nc1);
        let nc2 = self.fop(fmt, "mulf", &n, &c2);
        let r = self.fop(fmt, "subf", &r, &nc2);
        let y = if fmt == F32 {
            let p = self.horner(
                fmt,
                &r,
                &[1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1],
            );
            let r2 = self.fop(fmt, "mulf", &r, &r);
            let one = self.f(fmt, 1.0);
            let y = self.mul_add(fmt, &p, &r2, &r);
            self.fop(fmt, "addf", &y, &one)
        } else {
            let mut terms = inverse_factorials(2, 13);
            terms.extend([1.0, 1.0]);
            self.horner(fmt, &r, &terms)
        };
        let ni = self.op(format!("arith.fptosi {n} : {} to {}", fmt.ty, fmt.int));
        let one_i = self.i(fmt, 1);
        let n1 = self.iop(fmt, "shrsi", &ni, &one_i);
        let n2 = self.iop(fmt, "subi", &ni, &n1);
        let (s1, s2) = (self.pow2(fmt, &n1), self.pow2(fmt, &n2));
        let y = self.fop(fmt, "mulf", &y, &s1);
        let y = self.fop(fmt, "mulf", &y, &s2);
        self.keep_nan(fmt, x, &y)
    }

    /// log(x) = e ln 2 + log(1 + t), x = 2^e (1 + t) with 1 + t in [sqrt(1/2), sqrt(2));
    /// log(1 + t) = head + tail: f32 t + (t^3 P(t) - t^2 / 2) (Cephes' minimax); f64 2f + 2f s
    /// Q(s), f = t / (t + 2), s = f^2, the atanh series to s^11. Subnormal x is scaled into the
    /// normal range first. log(0) = -inf, log(inf) = inf, log of a negative number or NaN is NaN.
    pub(super) fn log(&mut self, fmt: Fmt, x: &str) -> String {
        let (t, it) = (fmt.ty, fmt.int);
        let smallest_normal = self.f(fmt, if fmt == F32 { f32::MIN_POSITIVE as f64 } else { f64::MIN_POSITIVE });
        let subnormal = self.fop(fmt, "cmpf olt,", x, &smallest_normal);
        let scale = self.f(fmt, (2f64).powi(fmt.mantissa as i32));
        let scaled = self.fop(fmt, "mulf", x, &scale);
        let xs = self.select(fmt, &subnormal, &scaled, x);
        let (zero_i, minus) = (self.i(fmt, 0), self.i(fmt, -fmt.mantissa));
        let adjust = self.op(format!("arith.select {subnormal}, {minus}, {zero_i} : {it}"));
        // frexp: xs = m 2^e with m in [0.5, 1).
        let bits = self.op(format!("arith.bitcast {xs} : {t} to {it}"));
        let (shift, mask) = (self.i(fmt, fmt.mantissa), self.i(fmt, 2 * fmt.bias + 1));
        let biased = self.iop(fmt, "shrui", &bits, &shift);
        let biased = self.iop(fmt, "andi", &biased, &mask);
        let bias = self.i(fmt, fmt.bias - 1);
        let e = self.iop(fmt, "subi", &biased, &bias);
        let e = self.iop(fmt, "addi", &e, &adjust);
        // Keep the sign and mantissa, set the exponent of [0.5, 1).
        let (mantissa, half_exponent) =
            (self.i(fmt, fmt.sign_and_mantissa), self.i(fmt, (fmt.bias - 1) << fmt.mantissa));
        let mbits = self.iop(fmt, "andi", &bits, &mantissa);
        let mbits = self.iop(fmt, "ori", &mbits, &half_exponent);
        let m = self.op(format!("arith.bitcast {mbits} : {it} to {t}"));
        // m < sqrt(1/2): e -= 1, t = 2m - 1; otherwise t = m - 1.
        let sqrth = self.f(fmt, std::f64::consts::FRAC_1_SQRT_2);
        let low = self.fop(fmt, "cmpf olt,", &m, &sqrth);
        let one = self.f(fmt, 1.0);
        let doubled = self.fop(fmt, "addf", &m, &m);
        let m = self.select(fmt, &low, &doubled, &m);
        let m = self.fop(fmt, "subf", &m, &one);
        let one_i = self.i(fmt, 1);
        let e_low = self.iop(fmt, "subi", &e, &one_i);
        let e = self.op(format!("arith.select {low}, {e_low}, {e} : {it}"));
        let fe = self.op(format!("arith.sitofp {e} : {it} to {t}"));
        let (head, tail) = if fmt == F32 {
            let z = self.fop(fmt, "mulf", &m, &m);
            let p = self.horner(
                fmt,
                &m,
                &[
                    7.0376836292e-2,
                    -1.1514610310e-1,
                    1.1676998740e-1,
                    -1.2420140846e-1,
                    1.4249322787e-1,
                    -1.6668057665e-1,
                    2.0000714765e-1,
                    -2.4999993993e-1,
                    3.3333331174e-1,
                ],
            );
            let y = self.fop(fmt, "mulf", &p, &m);
            let y = self.fop(fmt, "mulf", &y, &z);
            let half = self.f(fmt, -0.5);
            (m, self.mul_add(fmt, &z, &half, &y))
        } else {
            let two = self.f(fmt, 2.0);
            let denominator = self.fop(fmt, "addf", &m, &two);
            let f = self.fop(fmt, "divf", &m, &denominator);
            let f2 = self.fop(fmt, "addf", &f, &f);
            let s = self.fop(fmt, "mulf", &f, &f);
            let q: Vec<f64> = (1..=11).rev().map(|k| 1.0 / (2 * k + 1) as f64).collect();
            let q = self.horner(fmt, &s, &q);
            let fs = self.fop(fmt, "mulf", &f2, &s);
            (f2, self.fop(fmt, "mulf", &fs, &q))
        };
        let (c1, c2) = fmt.ln2();
        let c2 = self.f(fmt, c2);
        let y = self.mul_add(fmt, &fe, &c2, &tail);
        let r = self.fop(fmt, "addf", &head, &y);
        let c1 = self.f(fmt, c1);
        let r = self.mul_add(fmt, &fe, &c1, &r);
        // Special values: 0 (either sign), +inf, negative numbers; NaN last.
        let (zero, inf, nan) = (self.f(fmt, 0.0), self.f(fmt, f64::INFINITY), self.f(fmt, f64::NAN));
        let neg_inf = self.f(fmt, f64::NEG_INFINITY);
        let is_zero = self.fop(fmt, "cmpf oeq,", x, &zero);
        let r = self.select(fmt, &is_zero, &neg_inf, &r);
        let is_inf = self.fop(fmt, "cmpf oeq,", x, &inf);
        let r = self.select(fmt, &is_inf, &inf, &r);
        let negative = self.fop(fmt, "cmpf olt,", x, &zero);
        let r = self.select(fmt, &negative, &nan, &r);
        self.keep_nan(fmt, x, &r)
    }

    /// tanh(x). f32: for |x| < 0.625, x + x^3 P(x^2) (Cephes); beyond, 1 - 2 / (exp(2|x|) + 1).
    /// f64: e / (e + 2) with e = expm1(2|x|) (its Taylor series to u^13 below ln 2 / 2, exp - 1
    /// above). Both carry the sign of x and saturate to +-1; NaN propagates.
    pub(super) fn tanh(&mut self, fmt: Fmt, x: &str) -> String {
        let a = self.fun(fmt, "absf", x);
        let twice = self.fop(fmt, "addf", &a, &a);
        let one = self.f(fmt, 1.0);
        let two = self.f(fmt, 2.0);
        let (threshold, small, large) = if fmt == F32 {
            let z = self.fop(fmt, "mulf", x, x);
            let p = self.horner(
                fmt,
                &z,
                &[-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1],
            );
            let pz = self.fop(fmt, "mulf", &p, &z);
            let small = self.mul_add(fmt, &pz, x, x);
            let e = self.exp(fmt, &twice);
            let e1 = self.fop(fmt, "addf", &e, &one);
            let q = self.fop(fmt, "divf", &two, &e1);
            let large = self.fop(fmt, "subf", &one, &q);
            (0.625, small, self.op(format!("math.copysign {large}, {x} : {}", fmt.ty)))
        } else {
            let mut terms = inverse_factorials(2, 13);
            terms.push(1.0);
            let series = self.horner(fmt, &twice, &terms);
            let series = self.fop(fmt, "mulf", &series, &twice);
            let e = self.exp(fmt, &twice);
            let exp_minus_one = self.fop(fmt, "subf", &e, &one);
            let cut = self.f(fmt, std::f64::consts::LN_2 / 2.0);
            let below = self.fop(fmt, "cmpf olt,", &twice, &cut);
            let em = self.select(fmt, &below, &series, &exp_minus_one);
            let denominator = self.fop(fmt, "addf", &em, &two);
            let r = self.fop(fmt, "divf", &em, &denominator);
            let r = self.op(format!("math.copysign {r}, {x} : {}", fmt.ty));
            let signed_one = self.op(format!("math.copysign {one}, {x} : {}", fmt.ty));
            // Beyond 20, tanh rounds to 1 (and e / (e + 2) would be inf / inf).
            (20.0, r, signed_one)
        };
        let threshold = self.f(fmt, threshold);
        let is_small = self.fop(fmt, "cmpf olt,", &a, &threshold);
        let r = self.select(fmt, &is_small, &small, &large);
        self.keep_nan(fmt, x, &r)
    }

    fn int_test(&mut self, fmt: Fmt, value: &str, bits: i64) -> String {
        let mask = self.i(fmt, bits);
        let masked = self.iop(fmt, "andi", value, &mask);
        let zero = self.i(fmt, 0);
        self.op(format!("arith.cmpi ne, {masked}, {zero} : {}", fmt.int))
    }

    fn negate_if(&mut self, fmt: Fmt, cond: &str, x: &str) -> String {
        let negated = self.op(format!("arith.negf {x} : {}", fmt.ty));
        self.select(fmt, cond, &negated, x)
    }

    /// NaN where `x` is infinite or NaN, `value` elsewhere.
    fn nan_unless_finite(&mut self, fmt: Fmt, x: &str, value: &str) -> String {
        let a = self.fun(fmt, "absf", x);
        let inf = self.f(fmt, f64::INFINITY);
        let finite = self.fop(fmt, "cmpf olt,", &a, &inf);
        let nan = self.f(fmt, f64::NAN);
        self.select(fmt, &finite, value, &nan)
    }

    /// (sin |x|, cos |x|): |x| = j π/4 + z with j even and z in [-π/4, π/4] (π/4 in three
    /// parts, Cephes' DP1-DP3), then sin and cos of z (f32: Cephes' minimax polynomials; f64:
    /// Taylor series to z^19 and z^18), swapped and negated by the octant j. j comes from |x|
    /// capped where the format carries no fractional turn; the reduction is accurate while
    /// j π/4 is (|x| up to about 8192 in f32; beyond, the absolute error grows).
    fn quadrant(&mut self, fmt: Fmt, x: &str) -> (String, String) {
        let a = self.fun(fmt, "absf", x);
        let four_over_pi = self.f(fmt, 4.0 / std::f64::consts::PI);
        let t = self.fop(fmt, "mulf", &a, &four_over_pi);
        let cap = self.f(fmt, (2f64).powi(fmt.mantissa as i32 + 1));
        let t = self.fop(fmt, "minimumf", &t, &cap);
        let j = self.op(format!("arith.fptosi {t} : {} to {}", fmt.ty, fmt.int));
        let (one, even) = (self.i(fmt, 1), self.i(fmt, -2));
        let j = self.iop(fmt, "addi", &j, &one);
        let j = self.iop(fmt, "andi", &j, &even);
        let y = self.op(format!("arith.sitofp {j} : {} to {}", fmt.int, fmt.ty));
        let pi_4: [f64; 3] = if fmt == F32 {
            [0.78515625, 2.418_756_484_985_351_6e-4, 3.774_894_977_445_941e-8]
        } else {
            [7.853_981_256_484_985e-1, 3.774_894_707_930_798e-8, 2.695_151_429_079_059_5e-15]
        };
        let mut z = a;
        for part in pi_4 {
            let c = self.f(fmt, part);
            let yc = self.fop(fmt, "mulf", &y, &c);
            z = self.fop(fmt, "subf", &z, &yc);
        }
        let zz = self.fop(fmt, "mulf", &z, &z);
        let (sin_terms, cos_terms): (Vec<f64>, Vec<f64>) = if fmt == F32 {
            (
                vec![-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1],
                vec![2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2],
            )
        } else {
            // sin: z + z^3 S(z^2), S = -1/3! + z^2/5! - ...; cos: 1 - z^2/2 + z^4 C(z^2), C = 1/4! - z^2/6! + ...
            let sin: Vec<f64> = (1..=9)
                .rev()
                .map(|k| if k % 2 == 1 { -1.0 } else { 1.0 } / (1..=2 * k + 1).map(f64::from).product::<f64>())
                .collect();
            let cos: Vec<f64> = (2..=9)
                .rev()
                .map(|k| if k % 2 == 1 { -1.0 } else { 1.0 } / (1..=2 * k).map(f64::from).product::<f64>())
                .collect();
            (sin, cos)
        };
        let sp = self.horner(fmt, &zz, &sin_terms);
        let sp = self.fop(fmt, "mulf", &sp, &zz);
        let sin = self.mul_add(fmt, &sp, &z, &z);
        let cp = self.horner(fmt, &zz, &cos_terms);
        let cp = self.fop(fmt, "mulf", &cp, &zz);
        let cp = self.fop(fmt, "mulf", &cp, &zz);
        let half = self.f(fmt, -0.5);
        let cp = self.mul_add(fmt, &zz, &half, &cp);
        let one_f = self.f(fmt, 1.0);
        let cos = self.fop(fmt, "addf", &cp, &one_f);
        // Octant bits of j: 2 swaps sine and cosine, 4 negates.
        let swap = self.int_test(fmt, &j, 2);
        let negate = self.int_test(fmt, &j, 4);
        let s = self.select(fmt, &swap, &cos, &sin);
        let c = self.select(fmt, &swap, &sin, &cos);
        let s = self.negate_if(fmt, &negate, &s);
        // cos(z + π/2) = -sin(z): the swapped cosine is negated once more.
        let flip = self.op(format!("arith.xori {negate}, {swap} : i1"));
        let c = self.negate_if(fmt, &flip, &c);
        (s, c)
    }

    /// sin(x) by [`Body::quadrant`], odd in x.
    pub(super) fn sin(&mut self, fmt: Fmt, x: &str) -> String {
        let (s, _) = self.quadrant(fmt, x);
        let zero = self.f(fmt, 0.0);
        let negative = self.fop(fmt, "cmpf olt,", x, &zero);
        let s = self.negate_if(fmt, &negative, &s);
        self.nan_unless_finite(fmt, x, &s)
    }

    /// cos(x) by [`Body::quadrant`], even in x.
    pub(super) fn cos(&mut self, fmt: Fmt, x: &str) -> String {
        let (_, c) = self.quadrant(fmt, x);
        self.nan_unless_finite(fmt, x, &c)
    }

    /// pow(x, y) = ±exp(y log|x|) with C's special cases: pow(x, 0) = pow(1, y) = 1, pow(-1, ±inf)
    /// = 1, a negative base needs an integer exponent (NaN otherwise) and is negative for an
    /// odd one. Error within 3 + 2 |y ln x| ulp in f32 and 3 + 3 |y ln x| in
    /// f64: exp turns the absolute error of y ln x (log's error plus the product's half ulp,
    /// relative to |y ln x|) into a relative error of the result, up to twice as many of its ulps.
    pub(super) fn pow(&mut self, fmt: Fmt, x: &str, y: &str) -> String {
        let a = self.fun(fmt, "absf", x);
        let l = self.log(fmt, &a);
        let p = self.fop(fmt, "mulf", y, &l);
        let r = self.exp(fmt, &p);
        let fl = self.fun(fmt, "floor", y);
        let integer = self.fop(fmt, "cmpf oeq,", &fl, y);
        let half = self.f(fmt, 0.5);
        let h = self.fop(fmt, "mulf", y, &half);
        let hf = self.fun(fmt, "floor", &h);
        let odd = self.fop(fmt, "cmpf one,", &hf, &h);
        let odd = self.op(format!("arith.andi {odd}, {integer} : i1"));
        let zero = self.f(fmt, 0.0);
        let negative = self.fop(fmt, "cmpf olt,", x, &zero);
        let flip = self.op(format!("arith.andi {negative}, {odd} : i1"));
        let r = self.negate_if(fmt, &flip, &r);
        let fractional = self.fop(fmt, "cmpf one,", &fl, y);
        let invalid = self.op(format!("arith.andi {negative}, {fractional} : i1"));
        let nan = self.f(fmt, f64::NAN);
        let r = self.select(fmt, &invalid, &nan, &r);
        let one = self.f(fmt, 1.0);
        let unit = self.fop(fmt, "cmpf oeq,", &a, &one);
        let inf = self.f(fmt, f64::INFINITY);
        let ay = self.fun(fmt, "absf", y);
        let y_inf = self.fop(fmt, "cmpf oeq,", &ay, &inf);
        let unit_inf = self.op(format!("arith.andi {unit}, {y_inf} : i1"));
        let r = self.select(fmt, &unit_inf, &one, &r);
        let x_one = self.fop(fmt, "cmpf oeq,", x, &one);
        let y_zero = self.fop(fmt, "cmpf oeq,", y, &zero);
        let trivial = self.op(format!("arith.ori {x_one}, {y_zero} : i1"));
        self.select(fmt, &trivial, &one, &r)
    }
}
