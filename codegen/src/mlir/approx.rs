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
//! - f32 erf on every target (1 ulp: fdlibm's rational forms, computed in f64);
//! - f32 sin and cos (2 ulp for |x| <= π/4, 1.2e-7 absolute at any magnitude: Payne and
//!   Hanek's exact reduction) and pow (1 ulp: computed in f64), and every f64 function (exp
//!   2 ulp, log and sigmoid 3, tanh 6, sin and cos 2 within π/4 and 1e-15 absolute at any
//!   magnitude, pow 3 + 3 |y ln x|: exp amplifies the rounding of y ln x, erf 2), on targets
//!   without libm (`Target::libm` false: GPUs); CPU targets call libm for those.

use super::Body;
use kiln_ir::{DType, Literal, UnaryOp};

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

/// The bits of 2/π after the point, in 64-bit words, after one word of zeros (Payne and
/// Hanek's reduction, [`Body::octant`], reads a window at any exponent); the first 53 bits are
/// `FRAC_2_PI`'s mantissa, a test checks. Computed with exact integer arithmetic
/// (Machin's formula); they agree with fdlibm's `ipio2`.
const TWO_OVER_PI: [u64; 19] = [
    0x0000000000000000,
    0xa2f9836e4e441529,
    0xfc2757d1f534ddc0,
    0xdb6295993c439041,
    0xfe5163abdebbc561,
    0xb7246e3a424dd2e0,
    0x06492eea09d1921c,
    0xfe1deb1cb129a73e,
    0xe88235f52ebb4484,
    0xe99c7026b45f7e41,
    0x3991d639835339f4,
    0x9c845f8bbdf9283b,
    0x1ff897ffde05980f,
    0xef2f118b5a0a6d1f,
    0x6d367ecf27cb09b7,
    0x4f463f669e5fea2d,
    0x7527bac7ebe5f17b,
    0x3d0739f78a5292ea,
    0x6bfb5fb11f8d5d08,
];

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
        let y = self.exp_of_finite(fmt, &clamped, true);
        self.keep_nan(fmt, x, &y)
    }

    /// exp(x) for a finite x within [`Self::exp`]'s clamps, as that function computes it. With
    /// `extremes`, 2^n is applied in two halves, for results that are subnormal or near
    /// overflow; without, x must keep the result normal (2^n a normal number).
    fn exp_of_finite(&mut self, fmt: Fmt, clamped: &str, extremes: bool) -> String {
        let (log2e, half) = (self.f(fmt, std::f64::consts::LOG2_E), self.f(fmt, 0.5));
        let t = self.mul_add(fmt, clamped, &log2e, &half);
        let n = self.fun(fmt, "floor", &t);
        let (c1, c2) = fmt.ln2();
        let (c1, c2) = (self.f(fmt, c1), self.f(fmt, c2));
        let nc1 = self.fop(fmt, "mulf", &n, &c1);
        let r = self.fop(fmt, "subf", clamped, &nc1);
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
        if !extremes {
            let scale = self.pow2(fmt, &ni);
            return self.fop(fmt, "mulf", &y, &scale);
        }
        let one_i = self.i(fmt, 1);
        let n1 = self.iop(fmt, "shrsi", &ni, &one_i);
        let n2 = self.iop(fmt, "subi", &ni, &n1);
        let (s1, s2) = (self.pow2(fmt, &n1), self.pow2(fmt, &n2));
        let y = self.fop(fmt, "mulf", &y, &s1);
        self.fop(fmt, "mulf", &y, &s2)
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

    /// tanh(x). f32: for |x| < 0.625, |x| + |x|^3 P(x^2) (Cephes); beyond, 1 - 2 / (e + 1)
    /// with e = exp(2 min(|x|, 9.5)): tanh has rounded to 1 by 9.5 (tanh(9.02) does), and the
    /// cap keeps e normal, so the exponential needs no clamps or subnormal scaling; x's sign
    /// is applied once. f64: e / (e + 2) with e = expm1(2|x|) (its Taylor series to u^13
    /// below ln 2 / 2, exp - 1 above), signed, and ±1 beyond 20. NaN propagates.
    pub(super) fn tanh(&mut self, fmt: Fmt, x: &str) -> String {
        let a = self.fun(fmt, "absf", x);
        let one = self.f(fmt, 1.0);
        let two = self.f(fmt, 2.0);
        let r = if fmt == F32 {
            let z = self.fop(fmt, "mulf", &a, &a);
            let p = self.horner(
                fmt,
                &z,
                &[-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1],
            );
            let pz = self.fop(fmt, "mulf", &p, &z);
            let small = self.mul_add(fmt, &pz, &a, &a);
            let cap = self.f(fmt, 9.5);
            let capped = self.fop(fmt, "minimumf", &a, &cap);
            let twice = self.fop(fmt, "addf", &capped, &capped);
            let e = self.exp_of_finite(fmt, &twice, false);
            let e1 = self.fop(fmt, "addf", &e, &one);
            let q = self.fop(fmt, "divf", &two, &e1);
            let large = self.fop(fmt, "subf", &one, &q);
            let threshold = self.f(fmt, 0.625);
            let is_small = self.fop(fmt, "cmpf olt,", &a, &threshold);
            let magnitude = self.select(fmt, &is_small, &small, &large);
            // |x| + |x|^3 P(x^2) is +0 at x = -0: the sign makes tanh(-0) = -0.
            self.op(format!("math.copysign {magnitude}, {x} : {}", fmt.ty))
        } else {
            let twice = self.fop(fmt, "addf", &a, &a);
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
            let threshold = self.f(fmt, 20.0);
            let is_small = self.fop(fmt, "cmpf olt,", &a, &threshold);
            self.select(fmt, &is_small, &r, &signed_one)
        };
        self.keep_nan(fmt, x, &r)
    }

    fn int_test(&mut self, fmt: Fmt, value: &str, bits: i64) -> String {
        let mask = self.i(fmt, bits);
        let masked = self.iop(fmt, "andi", value, &mask);
        let zero = self.i(fmt, 0);
        self.op(format!("arith.cmpi ne, {masked}, {zero} : {}", fmt.int))
    }

    /// Whether `x`'s sign bit is set (true for -0 and negative NaNs, where `x < 0` is false).
    fn sign_bit(&mut self, fmt: Fmt, x: &str) -> String {
        let bits = self.op(format!("arith.bitcast {x} : {} to {}", fmt.ty, fmt.int));
        let zero = self.i(fmt, 0);
        self.op(format!("arith.cmpi slt, {bits}, {zero} : {}", fmt.int))
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

    /// (sin |x|, cos |x|): |x| = j π/4 + z with j even and z in [-π/4, π/4] (by
    /// [`Body::octant`] beyond π/4), then sin and cos of z (f32: Cephes' minimax polynomials;
    /// f64: Taylor series to z^19 and z^18), swapped and negated by the octant j.
    fn quadrant(&mut self, fmt: Fmt, x: &str) -> (String, String) {
        let a = self.fun(fmt, "absf", x);
        let wide = if fmt == F64 { a.clone() } else { self.op(format!("arith.extf {a} : f32 to f64")) };
        let (j, z) = self.octant(&wide, if fmt == F64 { TWO_OVER_PI.len() } else { 5 });
        let (j, z) = if fmt == F64 {
            (j, z)
        } else {
            (self.op(format!("arith.trunci {j} : i64 to i32")), self.op(format!("arith.truncf {z} : f64 to f32")))
        };
        let pi_4 = self.f(fmt, std::f64::consts::FRAC_PI_4);
        let small = self.fop(fmt, "cmpf ole,", &a, &pi_4);
        let zero = self.i(fmt, 0);
        let j = self.op(format!("arith.select {small}, {zero}, {j} : {}", fmt.int));
        let z = self.select(fmt, &small, &a, &z);
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

    /// Payne and Hanek's exact reduction of a finite f64 `a` >= 2^-10: the even octant j
    /// nearest to a 4/π (an i64, meaningful mod 8) and z = a - j π/4 (f64, in [-π/4, π/4]),
    /// accurate to 2^-72 absolute however large `a` is.
    ///
    /// With a = M 2^e (M the 53-bit integer mantissa), y = a 4/π mod 8 is
    /// M (2^(e+1) 2/π) mod 8, which needs only the 128 bits of 2/π around 2^(-e-1) (the
    /// window W, 3 bits above the point and 125 below: higher bits give multiples of 8,
    /// lower ones less than 2^-72): y 2^125 = M W mod 2^128, in i128. The window is cut from
    /// [`TWO_OVER_PI`] by an index (a chain of selects: no memory, so the same code runs on
    /// every target) and two shifts.
    /// `words` is how much of the table the input's exponents reach: 5 words for a value
    /// widened from f32 (e <= 75), all 19 for f64 (e <= 971).
    fn octant(&mut self, a: &str, words: usize) -> (String, String) {
        let i64c = |b: &mut Body, v: i64| b.constant(Literal::Int(DType::I64, v));
        let bits = self.op(format!("arith.bitcast {a} : f64 to i64"));
        let (c52, c63, exp_mask, frac_mask, one52) =
            (i64c(self, 52), i64c(self, 63), i64c(self, 0x7ff), i64c(self, (1 << 52) - 1), i64c(self, 1 << 52));
        let biased = self.op(format!("arith.shrui {bits}, {c52} : i64"));
        let biased = self.op(format!("arith.andi {biased}, {exp_mask} : i64"));
        // n = e + 62 with e = biased - 1075: the window starts n + 1 bits into the table
        // (whose first word is zero padding, for exponents below -1).
        let offset = i64c(self, 62 - 1075);
        let n = self.op(format!("arith.addi {biased}, {offset} : i64"));
        let fraction = self.op(format!("arith.andi {bits}, {frac_mask} : i64"));
        let m = self.op(format!("arith.ori {fraction}, {one52} : i64"));
        let six = i64c(self, 6);
        let word = self.op(format!("arith.shrsi {n}, {six} : i64"));
        let shift = self.op(format!("arith.andi {n}, {c63} : i64"));
        let words = &TWO_OVER_PI[..words];
        let t: Vec<String> = (0..3)
            .map(|k| {
                let k = i64c(self, k);
                let index = self.op(format!("arith.addi {word}, {k} : i64"));
                words.iter().enumerate().fold(i64c(self, 0), |acc, (i, &w)| {
                    let (i, w) = (i64c(self, i as i64), i64c(self, w as i64));
                    let hit = self.op(format!("arith.cmpi eq, {index}, {i} : i64"));
                    self.op(format!("arith.select {hit}, {w}, {acc} : i64"))
                })
            })
            .collect();
        // (t[k] << shift) | (t[k+1] >> (64 - shift)), with no shift by 64.
        let back = self.op(format!("arith.subi {c63}, {shift} : i64"));
        let one = i64c(self, 1);
        let mut halves = vec![];
        for k in 0..2 {
            let high = self.op(format!("arith.shli {}, {shift} : i64", t[k]));
            let low = self.op(format!("arith.shrui {}, {one} : i64", t[k + 1]));
            let low = self.op(format!("arith.shrui {low}, {back} : i64"));
            let half = self.op(format!("arith.ori {high}, {low} : i64"));
            halves.push(self.op(format!("arith.extui {half} : i64 to i128")));
        }
        let c64 = self.op("arith.constant 64 : i128".into());
        let c125 = self.op("arith.constant 125 : i128".into());
        let high = self.op(format!("arith.shli {}, {c64} : i128", halves[0]));
        let window = self.op(format!("arith.ori {high}, {} : i128", halves[1]));
        let m = self.op(format!("arith.extui {m} : i64 to i128"));
        let y = self.op(format!("arith.muli {m}, {window} : i128"));
        // j = the even integer nearest y; d = y - j, in [-1, 1) (j = 8 wraps to 0).
        let octant = self.op(format!("arith.shrui {y}, {c125} : i128"));
        let octant = self.op(format!("arith.trunci {octant} : i128 to i64"));
        let odd = self.op(format!("arith.addi {octant}, {one} : i64"));
        let even = i64c(self, -2);
        let j = self.op(format!("arith.andi {odd}, {even} : i64"));
        let jw = self.op(format!("arith.extui {j} : i64 to i128"));
        let jw = self.op(format!("arith.shli {jw}, {c125} : i128"));
        let d = self.op(format!("arith.subi {y}, {jw} : i128"));
        let zero = self.op("arith.constant 0 : i128".into());
        let negative = self.op(format!("arith.cmpi slt, {d}, {zero} : i128"));
        let minus = self.op(format!("arith.subi {zero}, {d} : i128"));
        let d = self.op(format!("arith.select {negative}, {minus}, {d} : i128"));
        // |d| 2^125 as two unsigned words, each converted exactly enough: |d| = hi 2^-61 + lo 2^-125.
        let hi = self.op(format!("arith.shrui {d}, {c64} : i128"));
        let hi = self.op(format!("arith.trunci {hi} : i128 to i64"));
        let lo = self.op(format!("arith.trunci {d} : i128 to i64"));
        let hi = self.op(format!("arith.uitofp {hi} : i64 to f64"));
        let lo = self.op(format!("arith.uitofp {lo} : i64 to f64"));
        let (s61, s125) = (self.f(F64, 2f64.powi(-61)), self.f(F64, 2f64.powi(-125)));
        let lo = self.fop(F64, "mulf", &lo, &s125);
        let d = self.mul_add(F64, &hi, &s61, &lo);
        let pi_4 = self.f(F64, std::f64::consts::FRAC_PI_4);
        let z = self.fop(F64, "mulf", &d, &pi_4);
        (j, self.negate_if(F64, &negative, &z))
    }

    /// sin(x) by [`Body::quadrant`], odd in x.
    pub(super) fn sin(&mut self, fmt: Fmt, x: &str) -> String {
        let (s, _) = self.quadrant(fmt, x);
        // Odd in x, -0 included: sin(-0) = -0.
        let negative = self.sign_bit(fmt, x);
        let s = self.negate_if(fmt, &negative, &s);
        self.nan_unless_finite(fmt, x, &s)
    }

    /// cos(x) by [`Body::quadrant`], even in x.
    pub(super) fn cos(&mut self, fmt: Fmt, x: &str) -> String {
        let (_, c) = self.quadrant(fmt, x);
        self.nan_unless_finite(fmt, x, &c)
    }

    /// erf(x), odd in x (-0 included), from fdlibm's `s_erf.c` (Sun Microsystems, 1993): its
    /// rational minimax approximations (errors below 2^-57) on |x| in [0, 0.84375): x + x
    /// R(x^2); [0.84375, 1.25): c + P(s)/Q(s) with s = |x| - 1 and c = erf(1) rounded to 24 bits;
    /// [1.25, 6): 1 - erfc, erfc(x) = exp(-z^2 - 0.5625) exp((z - x)(z + x) + R(1/x^2)) / x
    /// with z = x cut to its top 21 bits (so z^2 is exact) and one of two rational forms either
    /// side of 1/0.35; beyond 6, 1. Every piece is computed and the right one selected (the
    /// loop vectorizes; the largest piece is a Horner chain whose coefficients are selected).
    /// f32 is computed in f64 and rounded once. NaN falls through every comparison to the
    /// first piece, which propagates it.
    pub(super) fn erf(&mut self, fmt: Fmt, x: &str) -> String {
        if fmt == F32 {
            let wide = self.op(format!("arith.extf {x} : f32 to f64"));
            let wide = self.erf(F64, &wide);
            return self.op(format!("arith.truncf {wide} : f64 to f32"));
        }
        let one = self.f(fmt, 1.0);
        let a = self.fun(fmt, "absf", x);
        let a2 = self.fop(fmt, "mulf", &a, &a);
        let rational = |b: &mut Body, v: &str, p: &[f64], q: &[f64]| {
            let (p, q) = (b.horner(fmt, v, p), b.horner(fmt, v, q));
            b.fop(fmt, "divf", &p, &q)
        };
        // |x| < 0.84375
        let pp = [
            -2.3763016656650163e-05,
            -0.005770270296489442,
            -0.02848174957559851,
            -0.3250421072470015,
            0.12837916709551256,
        ];
        let qq = [
            -3.960228278775368e-06,
            0.00013249473800432164,
            0.005081306281875766,
            0.0650222499887673,
            0.39791722395915535,
            1.0,
        ];
        let y = rational(self, &a2, &pp, &qq);
        let small = self.mul_add(fmt, &a, &y, &a);
        // 0.84375 <= |x| < 1.25
        let pa = [
            -0.002166375594868791,
            0.035478304325618236,
            -0.11089469428239668,
            0.31834661990116175,
            -0.3722078760357013,
            0.41485611868374833,
            -0.0023621185607526594,
        ];
        let qa = [
            0.011984499846799107,
            0.01363708391202905,
            0.12617121980876164,
            0.07182865441419627,
            0.540397917702171,
            0.10642088040084423,
            1.0,
        ];
        let s1 = self.fop(fmt, "subf", &a, &one);
        let pq = rational(self, &s1, &pa, &qa);
        let erx = self.f(fmt, 8.450_629_115_104_675e-1);
        let mid = self.fop(fmt, "addf", &erx, &pq);
        // 1.25 <= |x| < 6: R/S of w = 1/x^2, below or above 1/0.35 (the shorter form padded
        // with a leading zero).
        let w = self.fop(fmt, "divf", &one, &a2);
        let cut = self.f(fmt, 1.0 / 0.35);
        let below = self.fop(fmt, "cmpf olt,", &a, &cut);
        let ra = [
            -9.814329344169145,
            -81.2874355063066,
            -184.60509290671104,
            -162.39666946257347,
            -62.375332450326006,
            -10.558626225323291,
            -0.6938585727071818,
            -0.009864944034847148,
        ];
        let rb = [
            0.0,
            -483.5191916086514,
            -1025.0951316110772,
            -637.5664433683896,
            -160.63638485582192,
            -17.757954917754752,
            -0.799283237680523,
            -0.0098649429247001,
        ];
        let sa = [
            -0.0604244152148581,
            6.570249770319282,
            108.63500554177944,
            429.00814002756783,
            645.3872717332679,
            434.56587747522923,
            137.65775414351904,
            19.651271667439257,
            1.0,
        ];
        let sb = [
            0.0,
            -22.44095244658582,
            474.52854120695537,
            2553.0504064331644,
            3199.8582195085955,
            1536.729586084437,
            325.7925129965739,
            30.33806074348246,
            1.0,
        ];
        let r = self.horner_either(fmt, &below, &w, &ra, &rb);
        let q = self.horner_either(fmt, &below, &w, &sa, &sb);
        let rs = self.fop(fmt, "divf", &r, &q);
        let bits = self.op(format!("arith.bitcast {a} : f64 to i64"));
        let high = self.i(fmt, -1 << 32);
        let bits = self.iop(fmt, "andi", &bits, &high);
        let z = self.op(format!("arith.bitcast {bits} : i64 to f64"));
        let zz = self.fop(fmt, "mulf", &z, &z);
        let nzz = self.op(format!("arith.negf {zz} : f64"));
        let c = self.f(fmt, 0.5625);
        let e1 = self.fop(fmt, "subf", &nzz, &c);
        let e1 = self.exp(fmt, &e1);
        let (d, sum) = (self.fop(fmt, "subf", &z, &a), self.fop(fmt, "addf", &z, &a));
        let e2 = self.fop(fmt, "mulf", &d, &sum);
        let e2 = self.fop(fmt, "addf", &e2, &rs);
        let e2 = self.exp(fmt, &e2);
        let erfc = self.fop(fmt, "mulf", &e1, &e2);
        let erfc = self.fop(fmt, "divf", &erfc, &a);
        let large = self.fop(fmt, "subf", &one, &erfc);
        let mut r = small;
        for (from, piece) in [(0.84375, mid), (1.25, large), (6.0, one)] {
            let from = self.f(fmt, from);
            let beyond = self.fop(fmt, "cmpf oge,", &a, &from);
            r = self.select(fmt, &beyond, &piece, &r);
        }
        self.op(format!("math.copysign {r}, {x} : f64"))
    }

    /// Horner's rule over `a`'s coefficients where `cond` holds and `b`'s elsewhere (of the
    /// same length): one chain whose coefficients are selected.
    fn horner_either(&mut self, fmt: Fmt, cond: &str, x: &str, a: &[f64], b: &[f64]) -> String {
        let coefficient = |body: &mut Body, k: usize| {
            let (ca, cb) = (body.f(fmt, a[k]), body.f(fmt, b[k]));
            body.select(fmt, cond, &ca, &cb)
        };
        let mut acc = coefficient(self, 0);
        for k in 1..a.len() {
            let c = coefficient(self, k);
            acc = self.mul_add(fmt, &acc, x, &c);
        }
        acc
    }

    /// erfinv(x) by Giles' polynomials as XLA evaluates them ([`kiln_ir::ops::ERF_INV_F32`],
    /// [`kiln_ir::ops::ERF_INV_F64`]): w = -log1p(-x²), each range's polynomial by Horner's
    /// rule in its own variable, the one of x's range chosen, times x; ±MAX at ±1.
    pub(super) fn erf_inv(&mut self, fmt: Fmt, x: &str) -> String {
        let xx = self.fop(fmt, "mulf", x, x);
        let negated = self.op(format!("arith.negf {xx} : {}", fmt.ty));
        let l = self.unary(UnaryOp::Log1p, &negated, fmt.dtype);
        let w = self.op(format!("arith.negf {l} : {}", fmt.ty));
        let root = self.fun(fmt, "sqrt", &w);
        // (upper bound of w, coefficients, whether the variable is sqrt(w) rather than w, shift)
        let ranges: Vec<(f64, &[f64], bool, f64)> = if fmt == F32 {
            let [low, high] = &kiln_ir::ops::ERF_INV_F32;
            vec![(low.0, &low.1[..], false, 2.5), (high.0, &high.1[..], true, 3.0)]
        } else {
            let [low, mid, high] = kiln_ir::ops::ERF_INV_F64;
            vec![(6.25, low, false, 3.125), (16.0, mid, true, 3.25), (f64::INFINITY, high, true, 5.0)]
        };
        let mut result: Option<String> = None;
        for &(bound, coefficients, on_root, shift) in ranges.iter().rev() {
            let s = self.f(fmt, shift);
            let v = self.fop(fmt, "subf", if on_root { &root } else { &w }, &s);
            let p = self.horner(fmt, &v, coefficients);
            result = Some(match result {
                None => p,
                Some(above) => {
                    let b = self.f(fmt, bound);
                    let below = self.fop(fmt, "cmpf olt,", &w, &b);
                    self.select(fmt, &below, &p, &above)
                }
            });
        }
        let y = self.fop(fmt, "mulf", &result.expect("at least one range"), x);
        let max = self.f(fmt, if fmt == F32 { f32::MAX as f64 } else { f64::MAX });
        let one = self.f(fmt, 1.0);
        let a = self.fun(fmt, "absf", x);
        let edge = self.fop(fmt, "cmpf oeq,", &a, &one);
        let extreme = self.fop(fmt, "mulf", x, &max);
        self.select(fmt, &edge, &extreme, &y)
    }

    /// fmod(a, b) without libm (GPUs): r = fma(-trunc(a / b), b, a), then b's magnitude
    /// added or taken away once where the rounded quotient was an integer off (r of the other
    /// sign than a, or not below |b|); a where b is infinite and a finite (an infinite a gives
    /// NaN, as the quotient does). Exact while |a / b| < 2^53;
    /// beyond, the quotient itself is not exact (the CPU's libm fmod is). f32 runs in f64 in
    /// steps, each an exact fmod by |b| 2^k that leaves less than 2^51 |b| (six cover every
    /// pair of f32s), so it is exact for every f32 operand.
    pub(super) fn remainder(&mut self, fmt: Fmt, a: &str, b: &str) -> String {
        if fmt == F32 {
            let wide = |this: &mut Self, x: &str| this.op(format!("arith.extf {x} : f32 to f64"));
            let (mut r, wb) = (wide(self, a), wide(self, b));
            let bits = self.op(format!("arith.bitcast {wb} : f64 to i64"));
            let magnitude_mask = self.constant(Literal::Int(DType::I64, i64::MAX));
            let magnitude = self.op(format!("arith.andi {bits}, {magnitude_mask} : i64"));
            let divisor = self.op(format!("arith.bitcast {magnitude} : i64 to f64"));
            // |b| 2^(51 k) for k = 5 down to 1: each stays below 2^1022 (|b| < 2^128).
            for k in (1..=5).rev() {
                let scale = self.f(F64, 2f64.powi(51 * k));
                let scaled = self.fop(F64, "mulf", &divisor, &scale);
                r = self.remainder(F64, &r, &scaled);
            }
            let r = self.remainder(F64, &r, &wb);
            return self.op(format!("arith.truncf {r} : f64 to f32"));
        }
        let t = fmt.ty;
        let q = self.fop(fmt, "divf", a, b);
        let whole = self.fun(fmt, "trunc", &q);
        let negated = self.op(format!("arith.negf {whole} : {t}"));
        let r = self.op(format!("math.fma {negated}, {b}, {a} : {t}"));
        let step = self.op(format!("math.copysign {b}, {a} : {t}"));
        let zero = self.f(fmt, 0.0);
        let r_negative = self.fop(fmt, "cmpf olt,", &r, &zero);
        let a_negative = self.fop(fmt, "cmpf olt,", a, &zero);
        let r_nonzero = self.fop(fmt, "cmpf one,", &r, &zero);
        let flipped = self.op(format!("arith.xori {r_negative}, {a_negative} : i1"));
        let under = self.op(format!("arith.andi {flipped}, {r_nonzero} : i1"));
        let added = self.fop(fmt, "addf", &r, &step);
        let r = self.select(fmt, &under, &added, &r);
        let (ar, ab) = (self.fun(fmt, "absf", &r), self.fun(fmt, "absf", b));
        let over = self.fop(fmt, "cmpf oge,", &ar, &ab);
        let taken = self.fop(fmt, "subf", &r, &step);
        let r = self.select(fmt, &over, &taken, &r);
        let inf = self.f(fmt, f64::INFINITY);
        let b_infinite = self.fop(fmt, "cmpf oeq,", &ab, &inf);
        let a_finite = self.fun(fmt, "absf", a);
        let a_finite = self.fop(fmt, "cmpf one,", &a_finite, &inf);
        let a_kept = self.op(format!("arith.andi {b_infinite}, {a_finite} : i1"));
        self.select(fmt, &a_kept, a, &r)
    }

    /// pow(x, y) = ±exp(y log|x|) with C's special cases: pow(x, 0) = pow(1, y) = 1, pow(-1, ±inf)
    /// = 1, a finite negative base needs an integer exponent (NaN otherwise; pow(-inf, y) is
    /// exp(y log inf), +inf or +0, for a fractional y), and an odd exponent keeps x's sign
    /// (-0 included). Error within 3 + 3 |y ln x| ulp in f64: exp turns the absolute error of
    /// y ln x (log's error plus the product's half ulp, relative to |y ln x|) into a relative
    /// error of the result, up to three times as many of its ulps. f32 is computed in f64 and rounded once: |y ln x| is at
    /// most 150 where an f32 result is neither 0 nor infinite, so the f64 error stays below
    /// 2^-44 relative and the result is within 1 ulp (correctly rounded but for ties so close
    /// that the f64 error decides them). Done in f32, the same amplification cost up to 300 ulp,
    /// and a sin or cos of the result turned that into absolute error.
    pub(super) fn pow(&mut self, fmt: Fmt, x: &str, y: &str) -> String {
        if fmt == F32 {
            let (wx, wy) =
                (self.op(format!("arith.extf {x} : f32 to f64")), self.op(format!("arith.extf {y} : f32 to f64")));
            let wide = self.pow(F64, &wx, &wy);
            return self.op(format!("arith.truncf {wide} : f64 to f32"));
        }
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
        // An odd power keeps the sign of x, -0 included: pow(-0, 3) = -0, pow(-0, -3) = -inf.
        let sign = self.sign_bit(fmt, x);
        let flip = self.op(format!("arith.andi {sign}, {odd} : i1"));
        let r = self.negate_if(fmt, &flip, &r);
        let fractional = self.fop(fmt, "cmpf one,", &fl, y);
        let inf = self.f(fmt, f64::INFINITY);
        let finite = self.fop(fmt, "cmpf one,", &a, &inf);
        let invalid = self.op(format!("arith.andi {negative}, {fractional} : i1"));
        let invalid = self.op(format!("arith.andi {invalid}, {finite} : i1"));
        let nan = self.f(fmt, f64::NAN);
        let r = self.select(fmt, &invalid, &nan, &r);
        let one = self.f(fmt, 1.0);
        let unit = self.fop(fmt, "cmpf oeq,", &a, &one);
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

#[cfg(test)]
mod tests {
    use super::TWO_OVER_PI;

    /// The table's first 53 bits are 2/π's f64 mantissa (2/π = 0.101000101...b: the mantissa
    /// starts at the first bit, rounded at the 53rd).
    #[test]
    fn the_table_of_two_over_pi_starts_with_its_f64_value() {
        let bits = std::f64::consts::FRAC_2_PI.to_bits();
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        let leading = TWO_OVER_PI[1] >> 11;
        let round_up = (TWO_OVER_PI[1] >> 10) & 1;
        assert_eq!(mantissa, leading + round_up);
        assert_eq!(TWO_OVER_PI[0], 0);
    }
}
