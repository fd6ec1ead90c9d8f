//! f32 transcendental functions as plain `arith`/`math` arithmetic, so that the loops holding
//! them vectorize (a libm call per element does not: MLIR 22 offers no polynomial
//! approximation pass through its C API). The polynomials and range reductions are Cephes'
//! (`expf`, `logf`, `tanhf`, S. L. Moshier). Every special value is handled: NaN propagates,
//! overflow gives infinity, underflow gives subnormals and zero.
//!
//! Error bounds against the correctly rounded result, asserted over every f32 exponent and the
//! special values by tests/accuracy.rs: exp, log and tanh 2 ulp, sigmoid 4 ulp (the largest
//! errors measured over 12M inputs were 1, 1, 1 and 3 ulp). sin, cos and pow call libm on CPU
//! targets; GPU targets, which have no libm, use the polynomials below (sin and cos within 2 ulp
//! for |x| <= π/4 and 1.2e-7 absolute up to 8192, pow within 3 + 2 |y ln x| ulp: exp amplifies the rounding of y ln x). f64 functions call libm (CPU) or are
//! refused (GPU).

use super::Body;
use kiln_ir::{DType, Literal};

const T: &str = "f32";

impl Body {
    fn f(&mut self, v: f64) -> String {
        self.constant(Literal::Float(DType::F32, v))
    }

    fn i(&mut self, v: i64) -> String {
        self.constant(Literal::Int(DType::I32, v))
    }

    fn fop(&mut self, name: &str, a: &str, b: &str) -> String {
        self.op(format!("arith.{name} {a}, {b} : {T}"))
    }

    fn iop(&mut self, name: &str, a: &str, b: &str) -> String {
        self.op(format!("arith.{name} {a}, {b} : i32"))
    }

    /// `a * b + c`.
    fn mul_add(&mut self, a: &str, b: &str, c: &str) -> String {
        let p = self.fop("mulf", a, b);
        self.fop("addf", &p, c)
    }

    /// `c[0] x^(n-1) + ... + c[n-1]` by Horner's rule.
    fn horner(&mut self, x: &str, coefficients: &[f64]) -> String {
        let mut acc = self.f(coefficients[0]);
        for &c in &coefficients[1..] {
            let c = self.f(c);
            acc = self.mul_add(&acc, x, &c);
        }
        acc
    }

    fn select(&mut self, cond: &str, a: &str, b: &str) -> String {
        self.op(format!("arith.select {cond}, {a}, {b} : {T}"))
    }

    /// `x` where `x` is NaN, `value` elsewhere.
    fn keep_nan(&mut self, x: &str, value: &str) -> String {
        let nan = self.op(format!("arith.cmpf uno, {x}, {x} : {T}"));
        self.select(&nan, x, value)
    }

    /// 2^n for integer `n` in [-126, 127], from its bits.
    fn pow2(&mut self, n: &str) -> String {
        let bias = self.i(127);
        let biased = self.iop("addi", n, &bias);
        let shift = self.i(23);
        let bits = self.iop("shli", &biased, &shift);
        self.op(format!("arith.bitcast {bits} : i32 to {T}"))
    }

    /// exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln 2 / 2, ln 2 / 2] (ln 2
    /// in two parts, the first exact in few bits, so n ln 2 loses nothing); exp(r) = 1 + r +
    /// r^2 P(r). x is first clamped to [-104, 89], beyond which the result is 0 or infinity
    /// anyway; 2^n is applied in two halves so that subnormal and near-overflow results are
    /// rounded once.
    pub(super) fn exp_f32(&mut self, x: &str) -> String {
        let (lo, hi) = (self.f(-104.0), self.f(89.0));
        let clamped = self.fop("maximumf", x, &lo);
        let clamped = self.fop("minimumf", &clamped, &hi);
        let (log2e, half) = (self.f(std::f64::consts::LOG2_E), self.f(0.5));
        let t = self.mul_add(&clamped, &log2e, &half);
        let n = self.op(format!("math.floor {t} : {T}"));
        let (c1, c2) = (self.f(0.693359375), self.f(-2.12194440e-4));
        let nc1 = self.fop("mulf", &n, &c1);
        let r = self.fop("subf", &clamped, &nc1);
        let nc2 = self.fop("mulf", &n, &c2);
        let r = self.fop("subf", &r, &nc2);
        let p = self.horner(
            &r,
            &[1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1],
        );
        let r2 = self.fop("mulf", &r, &r);
        let one = self.f(1.0);
        let y = self.mul_add(&p, &r2, &r);
        let y = self.fop("addf", &y, &one);
        let ni = self.op(format!("arith.fptosi {n} : {T} to i32"));
        let one_i = self.i(1);
        let n1 = self.iop("shrsi", &ni, &one_i);
        let n2 = self.iop("subi", &ni, &n1);
        let (s1, s2) = (self.pow2(&n1), self.pow2(&n2));
        let y = self.fop("mulf", &y, &s1);
        let y = self.fop("mulf", &y, &s2);
        self.keep_nan(x, &y)
    }

    /// log(x) = e ln 2 + log(1 + m), x = 2^e (1 + m) with 1 + m in [sqrt(1/2), sqrt(2)); log(1 + m)
    /// = m - m^2 / 2 + m^3 P(m). Subnormal x is scaled by 2^23 first. log(0) = -inf,
    /// log(inf) = inf, log of a negative number or NaN is NaN.
    pub(super) fn log_f32(&mut self, x: &str) -> String {
        let smallest_normal = self.f(f32::MIN_POSITIVE as f64);
        let subnormal = self.fop("cmpf olt,", x, &smallest_normal);
        let scale = self.f(8388608.0);
        let scaled = self.fop("mulf", x, &scale);
        let xs = self.select(&subnormal, &scaled, x);
        let (zero_i, minus23) = (self.i(0), self.i(-23));
        let adjust = self.op(format!("arith.select {subnormal}, {minus23}, {zero_i} : i32"));
        // frexp: xs = m 2^e with m in [0.5, 1).
        let bits = self.op(format!("arith.bitcast {xs} : {T} to i32"));
        let (shift, mask) = (self.i(23), self.i(0xff));
        let biased = self.iop("shrui", &bits, &shift);
        let biased = self.iop("andi", &biased, &mask);
        let bias = self.i(126);
        let e = self.iop("subi", &biased, &bias);
        let e = self.iop("addi", &e, &adjust);
        let (mantissa, half_exponent) = (self.i(0x807f_ffff_u32 as i32 as i64), self.i(0x3f00_0000));
        let mbits = self.iop("andi", &bits, &mantissa);
        let mbits = self.iop("ori", &mbits, &half_exponent);
        let m = self.op(format!("arith.bitcast {mbits} : i32 to {T}"));
        // m < sqrt(1/2): e -= 1, m = 2m - 1; otherwise m = m - 1.
        let sqrth = self.f(std::f64::consts::FRAC_1_SQRT_2);
        let low = self.fop("cmpf olt,", &m, &sqrth);
        let one = self.f(1.0);
        let doubled = self.fop("addf", &m, &m);
        let m = self.select(&low, &doubled, &m);
        let m = self.fop("subf", &m, &one);
        let one_i = self.i(1);
        let e_low = self.iop("subi", &e, &one_i);
        let e = self.op(format!("arith.select {low}, {e_low}, {e} : i32"));
        let fe = self.op(format!("arith.sitofp {e} : i32 to {T}"));
        let z = self.fop("mulf", &m, &m);
        let p = self.horner(
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
        let y = self.fop("mulf", &p, &m);
        let y = self.fop("mulf", &y, &z);
        let c2 = self.f(-2.12194440e-4);
        let y = self.mul_add(&fe, &c2, &y);
        let half = self.f(-0.5);
        let y = self.mul_add(&z, &half, &y);
        let r = self.fop("addf", &m, &y);
        let c1 = self.f(0.693359375);
        let r = self.mul_add(&fe, &c1, &r);
        // Special values: 0 (either sign), +inf, negative numbers; NaN last.
        let (zero, inf, nan) = (self.f(0.0), self.f(f64::INFINITY), self.f(f64::NAN));
        let neg_inf = self.f(f64::NEG_INFINITY);
        let is_zero = self.fop("cmpf oeq,", x, &zero);
        let r = self.select(&is_zero, &neg_inf, &r);
        let is_inf = self.fop("cmpf oeq,", x, &inf);
        let r = self.select(&is_inf, &inf, &r);
        let negative = self.fop("cmpf olt,", x, &zero);
        let r = self.select(&negative, &nan, &r);
        self.keep_nan(x, &r)
    }

    /// tanh(x): for |x| < 0.625, x + x^3 P(x^2); beyond, sign(x) (1 - 2 / (exp(2|x|) + 1)),
    /// which saturates to +-1 once exp overflows. NaN propagates through exp.
    pub(super) fn tanh_f32(&mut self, x: &str) -> String {
        let z = self.fop("mulf", x, x);
        let p = self
            .horner(&z, &[-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1]);
        let pz = self.fop("mulf", &p, &z);
        let small = self.mul_add(&pz, x, x);
        let a = self.op(format!("math.absf {x} : {T}"));
        let twice = self.fop("addf", &a, &a);
        let e = self.exp_f32(&twice);
        let (one, two) = (self.f(1.0), self.f(2.0));
        let e1 = self.fop("addf", &e, &one);
        let q = self.fop("divf", &two, &e1);
        let large = self.fop("subf", &one, &q);
        let large = self.op(format!("math.copysign {large}, {x} : {T}"));
        let threshold = self.f(0.625);
        let is_small = self.fop("cmpf olt,", &a, &threshold);
        self.select(&is_small, &small, &large)
    }
}

/// π/4 in three parts, the first two exact in few bits (Cephes' DP1, DP2, DP3).
const PI_4: [f64; 3] = [0.78515625, 2.418_756_484_985_351_6e-4, 3.774_894_977_445_941e-8];

impl Body {
    fn iop_test(&mut self, value: &str, bits: i64) -> String {
        let mask = self.i(bits);
        let masked = self.iop("andi", value, &mask);
        let zero = self.i(0);
        self.op(format!("arith.cmpi ne, {masked}, {zero} : i32"))
    }

    fn negate_if(&mut self, cond: &str, x: &str) -> String {
        let negated = self.op(format!("arith.negf {x} : {T}"));
        self.select(cond, &negated, x)
    }

    /// NaN where `x` is infinite or NaN, `value` elsewhere.
    fn nan_unless_finite(&mut self, x: &str, value: &str) -> String {
        let a = self.op(format!("math.absf {x} : {T}"));
        let inf = self.f(f64::INFINITY);
        let finite = self.fop("cmpf olt,", &a, &inf);
        let nan = self.f(f64::NAN);
        self.select(&finite, value, &nan)
    }

    /// (sin |x|, cos |x|): |x| = j π/4 + z with j even and z in [-π/4, π/4] (π/4 in three
    /// parts), then the minimax polynomials of Cephes' sinf and cosf on z, swapped and negated
    /// by the octant j. j comes from |x| capped at 2^24 · π/4; the reduction is accurate while
    /// j π/4 is representable exactly enough (|x| up to about 8192; beyond, larger errors).
    fn quadrant(&mut self, x: &str) -> (String, String) {
        let a = self.op(format!("math.absf {x} : {T}"));
        let four_over_pi = self.f(4.0 / std::f64::consts::PI);
        let t = self.fop("mulf", &a, &four_over_pi);
        let cap = self.f(16777216.0);
        let t = self.fop("minimumf", &t, &cap);
        let j = self.op(format!("arith.fptosi {t} : {T} to i32"));
        let (one, even) = (self.i(1), self.i(-2));
        let j = self.iop("addi", &j, &one);
        let j = self.iop("andi", &j, &even);
        let y = self.op(format!("arith.sitofp {j} : i32 to {T}"));
        let mut z = a;
        for part in PI_4 {
            let c = self.f(part);
            let yc = self.fop("mulf", &y, &c);
            z = self.fop("subf", &z, &yc);
        }
        let zz = self.fop("mulf", &z, &z);
        let sp = self.horner(&zz, &[-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1]);
        let sp = self.fop("mulf", &sp, &zz);
        let sin = self.mul_add(&sp, &z, &z);
        let cp = self.horner(&zz, &[2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2]);
        let cp = self.fop("mulf", &cp, &zz);
        let cp = self.fop("mulf", &cp, &zz);
        let half = self.f(-0.5);
        let cp = self.mul_add(&zz, &half, &cp);
        let one_f = self.f(1.0);
        let cos = self.fop("addf", &cp, &one_f);
        // Octant bits of j: 2 swaps sine and cosine, 4 negates.
        let swap = self.iop_test(&j, 2);
        let negate = self.iop_test(&j, 4);
        let s = self.select(&swap, &cos, &sin);
        let c = self.select(&swap, &sin, &cos);
        let s = self.negate_if(&negate, &s);
        // cos(z + π/2) = -sin(z): the swapped cosine is negated once more.
        let flip = self.op(format!("arith.xori {negate}, {swap} : i1"));
        let c = self.negate_if(&flip, &c);
        (s, c)
    }

    /// sin(x) by [`Body::quadrant`], odd in x.
    pub(super) fn sin_f32(&mut self, x: &str) -> String {
        let (s, _) = self.quadrant(x);
        let zero = self.f(0.0);
        let negative = self.fop("cmpf olt,", x, &zero);
        let s = self.negate_if(&negative, &s);
        self.nan_unless_finite(x, &s)
    }

    /// cos(x) by [`Body::quadrant`], even in x.
    pub(super) fn cos_f32(&mut self, x: &str) -> String {
        let (_, c) = self.quadrant(x);
        self.nan_unless_finite(x, &c)
    }

    /// pow(x, y) = ±exp(y log|x|) with C's special cases: pow(x, 0) = pow(1, y) = 1, pow(-1, ±inf)
    /// = 1, a negative base needs an integer exponent (NaN otherwise) and is negative for an
    /// odd one. Error within 3 + 2 |y ln x| ulp: exp amplifies the rounding of y ln x.
    pub(super) fn pow_f32(&mut self, x: &str, y: &str) -> String {
        let a = self.op(format!("math.absf {x} : {T}"));
        let l = self.log_f32(&a);
        let p = self.fop("mulf", y, &l);
        let r = self.exp_f32(&p);
        let fl = self.op(format!("math.floor {y} : {T}"));
        let integer = self.fop("cmpf oeq,", &fl, y);
        let half = self.f(0.5);
        let h = self.fop("mulf", y, &half);
        let hf = self.op(format!("math.floor {h} : {T}"));
        let odd = self.fop("cmpf one,", &hf, &h);
        let odd = self.op(format!("arith.andi {odd}, {integer} : i1"));
        let zero = self.f(0.0);
        let negative = self.fop("cmpf olt,", x, &zero);
        let flip = self.op(format!("arith.andi {negative}, {odd} : i1"));
        let r = self.negate_if(&flip, &r);
        let invalid = self.fop("cmpf one,", &fl, y);
        let invalid = self.op(format!("arith.andi {negative}, {invalid} : i1"));
        let nan = self.f(f64::NAN);
        let r = self.select(&invalid, &nan, &r);
        let one = self.f(1.0);
        let unit = self.fop("cmpf oeq,", &a, &one);
        let inf = self.f(f64::INFINITY);
        let ay = self.op(format!("math.absf {y} : {T}"));
        let y_inf = self.fop("cmpf oeq,", &ay, &inf);
        let unit_inf = self.op(format!("arith.andi {unit}, {y_inf} : i1"));
        let r = self.select(&unit_inf, &one, &r);
        let x_one = self.fop("cmpf oeq,", x, &one);
        let y_zero = self.fop("cmpf oeq,", y, &zero);
        let trivial = self.op(format!("arith.ori {x_one}, {y_zero} : i1"));
        self.select(&trivial, &one, &r)
    }
}
