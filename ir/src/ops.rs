//! The op table: every op kiln knows, declared once.
//!
//! Elementwise ops are rows of the [`unary_ops!`] and [`binary_ops!`] tables below: name, the
//! dtypes they accept, and their reference semantics on floats and integers. Structured ops
//! (reductions, contraction, shape ops) are variants of [`Op`] with their attributes. For every
//! op, [`Op::infer`] is the type rule; the interpreter, printer, parser, verifier and every
//! lowering match on [`Op`] exhaustively, so a new row cannot compile until each stage handles
//! it, and [`Op::catalog`] lists one instance of each so that tests cover it the moment it exists.

use crate::func::Func;
use crate::types::{check_shape, format_shape, DType, Literal, TensorType};
use std::sync::Arc;

/// What a kind of op does, for cost models, printing and test generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// Produces a tensor from attributes alone.
    Source,
    Elementwise,
    Reduction,
    Contraction,
    /// Moves or copies elements without arithmetic.
    Shape,
    /// Runs functions of its own ([`Bodies`]).
    Control,
    /// Orders elements by their values ([`Op::Argsort`]): O(n log n) comparisons per row.
    Sort,
}

/// Which dtypes an elementwise op accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// f32 and f64.
    Float,
    /// Integers and floats.
    Numeric,
    /// Every dtype, bool included.
    Any,
    /// Integers and bools: the bitwise ops.
    Bits,
    /// Integers: shifts, integer quotients.
    Int,
}

impl Domain {
    pub fn accepts(self, dtype: DType) -> bool {
        match self {
            Domain::Float => dtype.is_float(),
            Domain::Numeric => dtype.is_numeric(),
            Domain::Any => true,
            Domain::Bits => !dtype.is_float(),
            Domain::Int => dtype.is_int(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Domain::Float => "a float type (f32 or f64)",
            Domain::Numeric => "a numeric type (an integer or a float)",
            Domain::Any => "any type",
            Domain::Bits => "an integer or bool type",
            Domain::Int => "an integer type (u8, i32, u32 or i64)",
        }
    }
}

/// Declares [`Float`] with the one-argument functions the op table's float semantics use, each
/// the standard library's function of the same name on f32 and f64, and `erf`, which the
/// standard library lacks: the `libm` crate's f64 erf (a port of musl's, within 1 ulp), rounded
/// once for f32 as kiln's lowering computes it.
macro_rules! float_trait {
    (@impl $t:ty, $erf:expr; $($method:ident),*) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            $(fn $method(self) -> Self { <$t>::$method(self) })*
            fn erf(self) -> Self { ($erf)(self) }
            fn erf_inv(self) -> Self {
                // ±1 gives ±MAX, as XLA's ErfInv (and so JAX's).
                if <$t>::abs(self) == 1.0 { self * <$t>::MAX } else { erf_inv_f64(self as f64) as $t }
            }
            fn powf(self, e: Self) -> Self { <$t>::powf(self, e) }
            fn is_nan(self) -> bool { <$t>::is_nan(self) }
            fn is_sign_negative(self) -> bool { <$t>::is_sign_negative(self) }
        }
    };
    ($($method:ident),*) => {
        /// Floating-point element types the interpreter computes in, so that float semantics
        /// are written once for f32 and f64.
        pub trait Float:
            Copy
            + PartialOrd
            + std::ops::Neg<Output = Self>
            + std::ops::Add<Output = Self>
            + std::ops::Sub<Output = Self>
            + std::ops::Mul<Output = Self>
            + std::ops::Div<Output = Self>
            + std::ops::Rem<Output = Self>
        {
            const ZERO: Self;
            const ONE: Self;
            $(fn $method(self) -> Self;)*
            fn erf(self) -> Self;
            fn erf_inv(self) -> Self;
            fn powf(self, e: Self) -> Self;
            fn is_nan(self) -> bool;
            fn is_sign_negative(self) -> bool;
        }

        float_trait!(@impl f32, |x: f32| libm::erf(f64::from(x)) as f32; $($method),*);
        float_trait!(@impl f64, libm::erf; $($method),*);
    };
}

float_trait!(exp, exp_m1, ln, ln_1p, sqrt, tanh, sin, cos, abs, floor, ceil, round_ties_even, trunc);

/// The inverse error function's approximations of M. Giles ("Approximating the erfinv
/// function", GPU Computing Gems 2011) as XLA writes them (ErfInv32 and ErfInv64, which JAX's
/// `lax.erf_inv` runs): erfinv(x) = p(w') x with w = -log1p(-x²) and p a polynomial in w' per
/// range of w, highest coefficient first. f32: for w < 5 in w' = w - 2.5, else in
/// w' = sqrt(w) - 3.
pub const ERF_INV_F32: [(f64, [f64; 9]); 2] = [
    (
        5.0,
        [
            2.81022636e-08,
            3.43273939e-07,
            -3.5233877e-06,
            -4.39150654e-06,
            0.00021858087,
            -0.00125372503,
            -0.00417768164,
            0.246640727,
            1.50140941,
        ],
    ),
    (
        f64::INFINITY,
        [
            -0.000200214257,
            0.000100950558,
            0.00134934322,
            -0.00367342844,
            0.00573950773,
            -0.0076224613,
            0.00943887047,
            1.00167406,
            2.83297682,
        ],
    ),
];

/// f64 (see [`ERF_INV_F32`]): for w < 6.25, 23 coefficients in w' = w - 3.125; for w < 16,
/// 19 in w' = sqrt(w) - 3.25; else 17 in w' = sqrt(w) - 5. The digits are XLA's, kept as
/// written there so that the table can be checked against it.
#[allow(clippy::excessive_precision)]
pub const ERF_INV_F64: [&[f64]; 3] = [
    &[
        -3.6444120640178196996e-21,
        -1.685059138182016589e-19,
        1.2858480715256400167e-18,
        1.115787767802518096e-17,
        -1.333171662854620906e-16,
        2.0972767875968561637e-17,
        6.6376381343583238325e-15,
        -4.0545662729752068639e-14,
        -8.1519341976054721522e-14,
        2.6335093153082322977e-12,
        -1.2975133253453532498e-11,
        -5.4154120542946279317e-11,
        1.051212273321532285e-09,
        -4.1126339803469836976e-09,
        -2.9070369957882005086e-08,
        4.2347877827932403518e-07,
        -1.3654692000834678645e-06,
        -1.3882523362786468719e-05,
        0.0001867342080340571352,
        -0.00074070253416626697512,
        -0.0060336708714301490533,
        0.24015818242558961693,
        1.6536545626831027356,
    ],
    &[
        2.2137376921775787049e-09,
        9.0756561938885390979e-08,
        -2.7517406297064545428e-07,
        1.8239629214389227755e-08,
        1.5027403968909827627e-06,
        -4.013867526981545969e-06,
        2.9234449089955446044e-06,
        1.2475304481671778723e-05,
        -4.7318229009055733981e-05,
        6.8284851459573175448e-05,
        2.4031110387097893999e-05,
        -0.0003550375203628474796,
        0.00095328937973738049703,
        -0.0016882755560235047313,
        0.0024914420961078508066,
        -0.0037512085075692412107,
        0.005370914553590063617,
        1.0052589676941592334,
        3.0838856104922207635,
    ],
    &[
        -2.7109920616438573243e-11,
        -2.5556418169965252055e-10,
        1.5076572693500548083e-09,
        -3.7894654401267369937e-09,
        7.6157012080783393804e-09,
        -1.4960026627149240478e-08,
        2.9147953450901080826e-08,
        -6.7711997758452339498e-08,
        2.2900482228026654717e-07,
        -9.9298272942317002539e-07,
        4.5260625972231537039e-06,
        -1.9681778105531670567e-05,
        7.5995277030017761139e-05,
        -0.00021503011930044477347,
        -0.00013871931833623122026,
        1.0103004648645343977,
        4.8499064014085844221,
    ],
];

/// erfinv in f64 by [`ERF_INV_F64`] (within a few ulp): the reference for both float types.
pub fn erf_inv_f64(x: f64) -> f64 {
    let w = -(-x * x).ln_1p();
    let (coefficients, shifted) = if w < 6.25 {
        (ERF_INV_F64[0], w - 3.125)
    } else if w < 16.0 {
        (ERF_INV_F64[1], w.sqrt() - 3.25)
    } else {
        (ERF_INV_F64[2], w.sqrt() - 5.0)
    };
    coefficients.iter().fold(0.0, |p, &c| p * shifted + c) * x
}

/// IEEE 754-2019 `maximum`: NaN propagates and +0 is greater than -0 (jax.numpy.maximum).
pub fn float_max<T: Float>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        if a.is_nan() {
            a
        } else {
            b
        }
    } else if a > b || (a == b && b.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// IEEE 754-2019 `minimum`: NaN propagates and -0 is less than +0 (jax.numpy.minimum).
pub fn float_min<T: Float>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        if a.is_nan() {
            a
        } else {
            b
        }
    } else if a < b || (a == b && a.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// The `smooth` column of the op tables (see [`UnaryOp::smooth_above`]).
macro_rules! smooth {
    (reals) => {
        None
    };
    ((above $b:literal)) => {
        Some($b)
    };
}

/// Declares the unary elementwise ops: `Variant "name" domain syntax smooth, float semantics,
/// integer semantics` (integer semantics wrap; `none` for float-only ops). `syntax` is `call`
/// for a builtin function of the language named `name` (its signature, lowering and the
/// README's list follow from this row) or `prefix` for an operator. `smooth` is where the
/// derivative exists, so where derivative tests draw their inputs: `reals` (but for isolated
/// kinks, such as abs's at 0) or `(above b)` for the open interval (b, inf).
macro_rules! unary_ops {
    ($($variant:ident $name:literal $domain:ident $syntax:ident $smooth:tt, |$x:ident| $float:expr, $int:tt;)*) => {
        /// Unary elementwise ops.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum UnaryOp { $($variant),* }

        impl UnaryOp {
            pub const ALL: &'static [UnaryOp] = &[$(UnaryOp::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(UnaryOp::$variant => $name),* }
            }

            pub fn domain(self) -> Domain {
                match self { $(UnaryOp::$variant => Domain::$domain),* }
            }

            /// Whether the language calls it as a builtin function `name(x)`.
            pub fn is_builtin(self) -> bool {
                match self { $(UnaryOp::$variant => unary_ops!(@call $syntax)),* }
            }

            /// The op the builtin function `name` stands for, if any.
            pub fn builtin(name: &str) -> Option<UnaryOp> {
                Self::ALL.iter().copied().find(|op| op.is_builtin() && op.name() == name)
            }

            /// The lower end of the open interval where the op is smooth, if it is not smooth
            /// on all the reals (but for isolated kinks).
            pub fn smooth_above(self) -> Option<f64> {
                match self { $(UnaryOp::$variant => smooth!($smooth)),* }
            }

            /// Reference semantics on a float.
            pub fn eval_float<T: Float>(self, x: T) -> T {
                match self { $(UnaryOp::$variant => { let $x = x; $float }),* }
            }

            /// Reference semantics on an integer (computed in i64, wrapped by the caller to the
            /// element width).
            pub fn eval_int(self, x: i64) -> i64 {
                match self { $(UnaryOp::$variant => unary_ops!(@int $int x)),* }
            }
        }
    };
    (@int none $x:ident) => { unreachable!("float-only op applied to an integer {}", $x) };
    (@int (|$i:ident| $e:expr) $x:ident) => { { let $i = $x; $e } };
    (@call call) => { true };
    (@call prefix) => { false };
}

unary_ops! {
    Neg     "neg"     Numeric prefix reals,        |x| -x,                (|i| i.wrapping_neg());
    Abs     "abs"     Numeric call   reals,        |x| x.abs(),           (|i| i.wrapping_abs());
    Exp     "exp"     Float   call   reals,        |x| x.exp(),           none;
    // expm1(x) = e^x - 1, accurate near 0 where e^x - 1 cancels
    Expm1   "expm1"   Float   call   reals,        |x| x.exp_m1(),        none;
    Log     "log"     Float   call   (above 0.0),  |x| x.ln(),            none;
    // log1p(x) = log(1 + x), accurate near 0 where 1 + x rounds
    Log1p   "log1p"   Float   call   (above -1.0), |x| x.ln_1p(),         none;
    Sqrt    "sqrt"    Float   call   (above 0.0),  |x| x.sqrt(),          none;
    // rsqrt(x) = 1 / sqrt(x)
    Rsqrt   "rsqrt"   Float   call   (above 0.0),  |x| T::ONE / x.sqrt(), none;
    Tanh    "tanh"    Float   call   reals,        |x| x.tanh(),          none;
    // sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, with e = exp(-|x|) <= 1:
    // never overflows, and keeps full relative accuracy down to the smallest subnormal.
    Sigmoid "sigmoid" Float   call   reals,        |x| sigmoid(x),        none;
    Sin     "sin"     Float   call   reals,        |x| x.sin(),           none;
    Cos     "cos"     Float   call   reals,        |x| x.cos(),           none;
    // erf(x) = 2/sqrt(pi) times the integral of exp(-t^2) from 0 to x (the Gauss error function)
    Erf     "erf"     Float   call   reals,        |x| x.erf(),           none;
    // erfinv(x): the y in (-1, 1)'s preimage with erf(y) = x; NaN outside [-1, 1], ±MAX at ±1
    // (XLA's, see ERF_INV_F32).
    ErfInv  "erfinv"  Float   call   (above -1.0), |x| x.erf_inv(),       none;
    // Rounding to an integral value (identity on integers, as jax.numpy): toward -inf, toward
    // +inf, to the nearest with halves to even (numpy's round), toward 0. Exact.
    Floor   "floor"   Numeric call   reals,        |x| x.floor(),         (|i| i);
    Ceil    "ceil"    Numeric call   reals,        |x| x.ceil(),          (|i| i);
    Round   "round"   Numeric call   reals,        |x| x.round_ties_even(), (|i| i);
    Trunc   "trunc"   Numeric call   reals,        |x| x.trunc(),         (|i| i);
    // sign(x) = -1, 0 or 1 by the sign of x: NaN for NaN, and x itself for ±0.
    Sign    "sign"    Numeric call   reals,        |x| float_sign(x),     (|i| i.signum());
}

/// sign(x) on floats (see the `Sign` row).
fn float_sign<T: Float>(x: T) -> T {
    if x > T::ZERO {
        T::ONE
    } else if x < T::ZERO {
        -T::ONE
    } else {
        x
    }
}

/// The logistic function, as every lowering computes it (see the `Sigmoid` row).
fn sigmoid<T: Float>(x: T) -> T {
    let e = (-x.abs()).exp();
    let s = T::ONE / (T::ONE + e);
    if x < T::ZERO {
        e * s
    } else {
        s
    }
}

/// Declares the binary elementwise ops: `Variant "name" domain result smooth, float semantics,
/// integer semantics`. `result` is `same` (the operand dtype) or `bool` (comparisons); `smooth`
/// is as for unary ops, for both operands (away from poles such as division's at b = 0).
macro_rules! binary_ops {
    ($($variant:ident $name:literal $domain:ident $result:ident $smooth:tt,
       |$a:ident, $b:ident| $float:expr, $int:tt;)*) => {
        /// Binary elementwise ops; both operands have the same type.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum BinaryOp { $($variant),* }

        impl BinaryOp {
            pub const ALL: &'static [BinaryOp] = &[$(BinaryOp::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(BinaryOp::$variant => $name),* }
            }

            pub fn domain(self) -> Domain {
                match self { $(BinaryOp::$variant => Domain::$domain),* }
            }

            /// True for comparisons, whose result is bool.
            pub fn is_comparison(self) -> bool {
                match self { $(BinaryOp::$variant => binary_ops!(@cmp $result)),* }
            }

            /// The lower end of the open interval where both operands keep the op smooth, if
            /// not all the reals (see [`UnaryOp::smooth_above`]).
            pub fn smooth_above(self) -> Option<f64> {
                match self { $(BinaryOp::$variant => smooth!($smooth)),* }
            }

            /// Reference semantics on floats; comparisons return 1 or 0.
            pub fn eval_float<T: Float>(self, a: T, b: T) -> T {
                match self { $(BinaryOp::$variant => { let ($a, $b) = (a, b); binary_ops!(@float $result $float) }),* }
            }

            /// Reference semantics on integers of `bits` bits (and bools as 0 and 1, of 1 bit),
            /// sign-extended to i64 (the caller wraps the result to the element width);
            /// comparisons return 1 or 0.
            pub fn eval_int(self, a: i64, b: i64, bits: u32) -> i64 {
                match self { $(BinaryOp::$variant => binary_ops!(@int $int a b bits)),* }
            }
        }
    };
    (@cmp same) => { false };
    (@cmp bool) => { true };
    (@float same $e:expr) => { $e };
    (@float bool $e:expr) => { if $e { T::ONE } else { T::ZERO } };
    (@int none $a:ident $b:ident $w:ident) => { unreachable!("float-only op applied to integers {} {}", $a, $b) };
    (@int (|$x:ident, $y:ident| $e:expr) $a:ident $b:ident $w:ident) => { { let ($x, $y) = ($a, $b); $e } };
    (@int (|$x:ident, $y:ident, $z:ident| $e:expr) $a:ident $b:ident $w:ident) => {
        { let ($x, $y, $z) = ($a, $b, $w); $e }
    };
}

/// The float semantics of the integer-only ops, which the type rules never give floats.
fn integer_only<T: Float>(_: T, _: T) -> T {
    unreachable!("an integer-only op applied to floats")
}

/// a << b on `bits`-bit integers: 0 once b reaches the width (or is negative), as XLA's.
fn shift_left(a: i64, b: i64, bits: u32) -> i64 {
    if (0..bits as i64).contains(&b) {
        a.wrapping_shl(b as u32)
    } else {
        0
    }
}

/// a >> b filling with the top bit of a's `bits`-bit pattern (its sign, read as signed): all
/// top bits once b reaches the width.
fn shift_right_arithmetic(a: i64, b: i64, bits: u32) -> i64 {
    let a = wrap_to(a, bits);
    if (0..bits as i64).contains(&b) {
        a >> b
    } else if a < 0 {
        -1
    } else {
        0
    }
}

/// a >> b filling with zeros, on the `bits`-bit pattern of a: 0 once b reaches the width.
fn shift_right_logical(a: i64, b: i64, bits: u32) -> i64 {
    let pattern = if bits >= 64 { a as u64 } else { (a as u64) & ((1u64 << bits) - 1) };
    if (0..bits as i64).contains(&b) {
        (pattern >> b) as i64
    } else {
        0
    }
}

binary_ops! {
    Add "add" Numeric same reals,       |a, b| a + b,           (|a, b| a.wrapping_add(b));
    Sub "sub" Numeric same reals,       |a, b| a - b,           (|a, b| a.wrapping_sub(b));
    Mul "mul" Numeric same reals,       |a, b| a * b,           (|a, b| a.wrapping_mul(b));
    // True division (jax.numpy.true_divide); the frontend converts integers to floats first.
    Div "div" Float   same reals,       |a, b| a / b,           none;
    // NaN-propagating maximum and minimum (IEEE 754-2019 maximum/minimum).
    Max "max" Numeric same reals,       |a, b| float_max(a, b), (|a, b| a.max(b));
    Min "min" Numeric same reals,       |a, b| float_min(a, b), (|a, b| a.min(b));
    // pow(a, b) = exp(b log a): smooth in b where a > 0.
    Pow "pow" Float   same (above 0.0), |a, b| a.powf(b),       none;
    // Comparisons are ordered for floats (false when either side is NaN) except `ne`, which is
    // true when either side is NaN; bools compare as 0 < 1.
    Eq  "eq"  Any     bool reals,       |a, b| a == b,          (|a, b| (a == b) as i64);
    Ne  "ne"  Any     bool reals,       |a, b| a != b,          (|a, b| (a != b) as i64);
    Lt  "lt"  Any     bool reals,       |a, b| a < b,           (|a, b| (a < b) as i64);
    Le  "le"  Any     bool reals,       |a, b| a <= b,          (|a, b| (a <= b) as i64);
    Gt  "gt"  Any     bool reals,       |a, b| a > b,           (|a, b| (a > b) as i64);
    Ge  "ge"  Any     bool reals,       |a, b| a >= b,          (|a, b| (a >= b) as i64);
    // The remainder of truncating division, with a's sign (C's fmod, lax.rem): a - b trunc(a/b).
    // Integers: a where b is 0 and 0 where b is -1, as XLA's.
    Rem "rem" Numeric same reals,       |a, b| a % b,           (|a, b| if b == 0 { a } else { a.wrapping_rem(b) });
    // Truncating integer division (lax.div on integers): all ones (-1 if signed) where b is 0, as XLA's; the
    // quotient of the most negative value by -1 wraps to itself.
    Quot "quot" Int   same reals,       |a, b| integer_only(a, b), (|a, b, w| if b == 0 { -1 } else { wrap_to(a.wrapping_div(b), w) });
    // Bitwise and, or and xor (logical on bools).
    And "and" Bits    same reals,       |a, b| integer_only(a, b), (|a, b| a & b);
    Or  "or"  Bits    same reals,       |a, b| integer_only(a, b), (|a, b| a | b);
    Xor "xor" Bits    same reals,       |a, b| integer_only(a, b), (|a, b| a ^ b);
    // Shifts by b bits: left, right filling with the sign bit, right filling with zeros (on the
    // element's bit pattern); a shift by the width or more gives 0 (all sign bits for the
    // arithmetic one), as XLA's.
    Shl  "shift_left"             Int same reals, |a, b| integer_only(a, b), (|a, b, w| shift_left(a, b, w));
    Shr  "shift_right_arithmetic" Int same reals, |a, b| integer_only(a, b), (|a, b, w| shift_right_arithmetic(a, b, w));
    ShrU "shift_right_logical"    Int same reals, |a, b| integer_only(a, b), (|a, b, w| shift_right_logical(a, b, w));
}

/// `v` wrapped to a `bits`-bit signed integer, sign-extended.
fn wrap_to(v: i64, bits: u32) -> i64 {
    if bits >= 64 {
        v
    } else {
        (v << (64 - bits)) >> (64 - bits)
    }
}

/// How a scatter combines an update with the element it lands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScatterKind {
    /// `x.at[idx].add(v)`: updates landing on one element are all added.
    Add,
    /// `x.at[idx].set(v)`: the last update in idx's row-major order wins.
    Set,
    /// `x.at[idx].max(v)`.
    Max,
    /// `x.at[idx].min(v)`.
    Min,
    /// `x.at[idx].multiply(v)`: updates landing on one element all multiply it.
    Mul,
}

impl ScatterKind {
    pub const ALL: [ScatterKind; 5] =
        [ScatterKind::Add, ScatterKind::Set, ScatterKind::Max, ScatterKind::Min, ScatterKind::Mul];

    pub fn name(self) -> &'static str {
        match self {
            ScatterKind::Add => "scatter_add",
            ScatterKind::Set => "scatter_set",
            ScatterKind::Max => "scatter_max",
            ScatterKind::Min => "scatter_min",
            ScatterKind::Mul => "scatter_mul",
        }
    }

    /// The binary op that combines the element with an update (none for `Set`).
    pub fn combiner(self) -> Option<BinaryOp> {
        match self {
            ScatterKind::Add => Some(BinaryOp::Add),
            ScatterKind::Set => None,
            ScatterKind::Max => Some(BinaryOp::Max),
            ScatterKind::Min => Some(BinaryOp::Min),
            ScatterKind::Mul => Some(BinaryOp::Mul),
        }
    }
}

/// How a reduction combines elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceKind {
    Sum,
    Max,
    Min,
    Prod,
}

impl ReduceKind {
    pub const ALL: [ReduceKind; 4] = [ReduceKind::Sum, ReduceKind::Max, ReduceKind::Min, ReduceKind::Prod];

    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Max => "reduce_max",
            ReduceKind::Min => "reduce_min",
            ReduceKind::Prod => "reduce_prod",
        }
    }

    /// The binary op that combines two partial results.
    pub fn combiner(self) -> BinaryOp {
        match self {
            ReduceKind::Sum => BinaryOp::Add,
            ReduceKind::Max => BinaryOp::Max,
            ReduceKind::Min => BinaryOp::Min,
            ReduceKind::Prod => BinaryOp::Mul,
        }
    }

    /// The identity element of the combiner for `dtype`.
    pub fn identity(self, dtype: DType) -> Literal {
        match (self, dtype) {
            (ReduceKind::Sum, d) => Literal::of_i64(d, 0),
            (ReduceKind::Prod, d) => Literal::of_i64(d, 1),
            (ReduceKind::Max, d) if d.is_int() => Literal::Int(d, d.int_range().0),
            (ReduceKind::Max, d) => Literal::of_f64(d, f64::NEG_INFINITY),
            (ReduceKind::Min, d) if d.is_int() => Literal::Int(d, d.int_range().1),
            (ReduceKind::Min, d) => Literal::of_f64(d, f64::INFINITY),
        }
    }
}

/// The window of a 2-D convolution, XLA's ConvGeneralDilated with fixed layouts: input
/// `[N, H, W, C]`, kernel `[KH, KW, C, F]`, result `[N, OH, OW, F]`. Along each spatial axis
/// the input is dilated (`lhs_dilation - 1` zeros between neighbours), padded with `pad_lo`
/// and `pad_hi` zeros (a negative amount removes elements instead), and the kernel, its taps
/// `rhs_dilation` apart, slides over the result by `stride`:
///
/// y[n, i, j, f] = Σ_{p, q, c} xp[n, i·stride_0 + p·rhs_dilation_0, j·stride_1 + q·rhs_dilation_1, c] · w[p, q, c, f]
///
/// where xp is the dilated, padded input. Both transposes of a convolution (the cotangents of
/// its input and kernel) are convolutions of this form with the attributes exchanged, so the
/// op is closed under differentiation to any order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvWindow {
    pub stride: [usize; 2],
    pub pad_lo: [i64; 2],
    pub pad_hi: [i64; 2],
    pub lhs_dilation: [usize; 2],
    pub rhs_dilation: [usize; 2],
}

impl ConvWindow {
    /// The window of `conv2d(x, w, stride, padding, dilation)` in the language: the same
    /// padding on both sides, an undilated input.
    pub fn new(stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2]) -> ConvWindow {
        let padding = padding.map(|p| p as i64);
        ConvWindow { stride, pad_lo: padding, pad_hi: padding, lhs_dilation: [1, 1], rhs_dilation: dilation }
    }

    /// `(len - 1) · dilation + 1`: the extent of `len` elements `dilation` apart.
    pub fn dilated(len: usize, dilation: usize) -> i128 {
        (len as i128 - 1) * dilation as i128 + 1
    }

    /// The length of spatial axis `a` of the dilated, padded input of length `input`.
    pub fn padded_len(&self, a: usize, input: usize) -> i128 {
        Self::dilated(input, self.lhs_dilation[a]) + self.pad_lo[a] as i128 + self.pad_hi[a] as i128
    }

    /// The result's length along spatial axis `a`, or None when the dilated kernel does not
    /// fit in the padded input.
    pub fn out_len(&self, a: usize, input: usize, kernel: usize) -> Option<usize> {
        let room = self.padded_len(a, input) - Self::dilated(kernel, self.rhs_dilation[a]);
        (room >= 0).then(|| usize::try_from(room / self.stride[a] as i128 + 1).unwrap_or(usize::MAX))
    }

    /// The input element that result position `o` and kernel tap `k` read along spatial axis
    /// `a` (input length `input`), or None where they read padding or a dilation zero.
    pub fn source(&self, a: usize, o: usize, k: usize, input: usize) -> Option<usize> {
        let u = o as i128 * self.stride[a] as i128 + k as i128 * self.rhs_dilation[a] as i128 - self.pad_lo[a] as i128;
        let d = self.lhs_dilation[a] as i128;
        (u >= 0 && u % d == 0 && u / d < input as i128).then(|| (u / d) as usize)
    }
}

/// The functions an op runs (a conditional's two branches, a loop's body), shared by the
/// instructions that take its results (see [`Op::Cond`], [`Op::Loop`]). Two `Bodies` are equal
/// when their text forms are: the text is kept as the key of comparisons and hashes, so that
/// equal conditionals and loops are merged like any op.
#[derive(Clone, Debug)]
pub struct Bodies(Arc<BodiesInner>);

#[derive(Debug)]
struct BodiesInner {
    funcs: Vec<Func>,
    key: String,
}

impl Bodies {
    pub fn new(funcs: Vec<Func>) -> Bodies {
        let key = funcs.iter().map(crate::text::print_func).collect();
        Bodies(Arc::new(BodiesInner { funcs, key }))
    }

    /// The functions, in order: a conditional's true branch, then its false one; a loop's body.
    pub fn funcs(&self) -> &[Func] {
        &self.0.funcs
    }

    /// The branch a conditional runs when its predicate is `taken`.
    pub fn branch(&self, taken: bool) -> &Func {
        &self.0.funcs[usize::from(!taken)]
    }

    /// The bodies with `f` applied to each.
    pub fn map<E>(&self, f: impl FnMut(&Func) -> Result<Func, E>) -> Result<Bodies, E> {
        Ok(Bodies::new(self.0.funcs.iter().map(f).collect::<Result<_, E>>()?))
    }
}

impl PartialEq for Bodies {
    fn eq(&self, other: &Bodies) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.key == other.0.key
    }
}

impl Eq for Bodies {}

impl std::hash::Hash for Bodies {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl PartialOrd for Bodies {
    fn partial_cmp(&self, other: &Bodies) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bodies {
    fn cmp(&self, other: &Bodies) -> std::cmp::Ordering {
        self.0.key.cmp(&other.0.key)
    }
}

/// Tensor data known when compiling: weights loaded from a file (`load` in the language). Its
/// bytes are row-major and little-endian; a hash of them, made once, identifies it cheaply
/// (equal data are equal ops, so the e-graph and value numbering share them).
#[derive(Clone, Debug)]
pub struct Constant(Arc<ConstantData>);

#[derive(Debug)]
struct ConstantData {
    ty: TensorType,
    bytes: Vec<u8>,
    hash: u64,
}

impl Constant {
    /// The constant of type `ty` whose elements are `bytes`, or an error when their sizes differ.
    pub fn new(ty: TensorType, bytes: Vec<u8>) -> Result<Constant, String> {
        if bytes.len() != ty.size_bytes() {
            return Err(format!("{ty} takes {} bytes, got {}", ty.size_bytes(), bytes.len()));
        }
        use std::hash::{Hash, Hasher};
        // SipHash with its fixed default keys: the same bytes hash alike in every run.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        bytes.hash(&mut h);
        Ok(Constant(Arc::new(ConstantData { ty, bytes, hash: h.finish() })))
    }

    pub fn ty(&self) -> &TensorType {
        &self.0.ty
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }
}

impl PartialEq for Constant {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash && self.0.ty == other.0.ty && self.0.bytes == other.0.bytes)
    }
}

impl Eq for Constant {}

impl std::hash::Hash for Constant {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.ty.hash(state);
        self.0.hash.hash(state);
    }
}

impl PartialOrd for Constant {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Constant {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |c: &Constant| (c.0.ty.dtype, c.0.ty.shape.clone(), c.0.hash);
        key(self).cmp(&key(other)).then_with(|| self.0.bytes.cmp(&other.0.bytes))
    }
}

/// An op with its attributes. Every op's result type follows from its attributes and operand
/// types alone ([`Op::infer`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// A scalar constant.
    Const(Literal),
    /// A tensor constant: data known when compiling.
    Data(Constant),
    /// `iota[shape, axis]`: element (i_0, ..., i_n) is i_axis.
    Iota {
        dtype: DType,
        shape: Vec<usize>,
        axis: usize,
    },
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `select(pred, a, b)`: a where pred is true, else b; all three of one shape.
    Select,
    /// Elementwise conversion to `to`: floats to integers truncate toward zero and saturate
    /// (NaN becomes 0), integers wrap, anything to bool is `x != 0`.
    Convert {
        to: DType,
    },
    /// Elementwise reinterpretation of each element's bits as `to`, a non-bool dtype of the
    /// same width (lax.bitcast_convert_type): f32 with i32 and u32, f64 with i64.
    Bitcast {
        to: DType,
    },
    /// Reduces over `axes` (sorted, distinct), removing them from the shape.
    Reduce {
        kind: ReduceKind,
        axes: Vec<usize>,
    },
    /// `[b.., m, k] x [b.., k, n] -> [b.., m, n]`, batch dimensions equal.
    Dot,
    /// `[N, H, W, C] x [KH, KW, C, F] -> [N, OH, OW, F]`, see [`ConvWindow`].
    Conv(ConvWindow),
    /// Row-major reshape to `shape` (same element count).
    Reshape {
        shape: Vec<usize>,
    },
    /// Result dimension i is operand dimension perm[i].
    Transpose {
        perm: Vec<usize>,
    },
    /// Operand dimension i becomes result dimension dims[i] (increasing); operand dimensions
    /// of size 1 stretch to any size (StableHLO broadcast_in_dim).
    Broadcast {
        shape: Vec<usize>,
        dims: Vec<usize>,
    },
    /// Result element i along each axis is operand element start + i * step.
    Slice {
        start: Vec<usize>,
        step: Vec<i64>,
        shape: Vec<usize>,
    },
    /// Joins the operands along `axis`; other dimensions equal.
    Concat {
        axis: usize,
    },
    /// `dynamic_slice(x, starts...)`: the window of `sizes` of x from `starts`, one integer
    /// scalar per axis known when the program runs, each clamped into [0, dim - size] so that
    /// the window lies inside x (lax.dynamic_slice).
    DynamicSlice {
        sizes: Vec<usize>,
    },
    /// `dynamic_update_slice(x, update, starts...)`: x with the window of update's shape from
    /// `starts` (clamped as [`Op::DynamicSlice`]'s) replaced by update
    /// (lax.dynamic_update_slice).
    DynamicUpdateSlice,
    /// `gather(x, idx)` along `axis`: the slices of x at the integer indices idx (of any
    /// shape), laid out in idx's shape: result[a.., i.., b..] = x[a.., idx[i..], b..], of shape
    /// x.shape[..axis] ++ idx.shape ++ x.shape[axis + 1..]. A negative index counts from the
    /// end; indices still outside [0, n) clamp into it (numpy indexing `x[idx]` as jax.numpy
    /// does it).
    Gather {
        axis: usize,
    },
    /// `scatter(x, idx, updates)` along `axis`: x with each slice of updates (shaped as
    /// `gather(x, idx)`'s result) combined by `kind` into the slice of x that its index names,
    /// in idx's row-major order. A negative index counts from the end; updates whose index is
    /// still outside [0, n) are dropped (jax.numpy's `x.at[idx].add(v)` and its kin).
    Scatter {
        axis: usize,
        kind: ScatterKind,
    },
    /// `argsort(keys)`: the positions that sort each row (the last axis) of the integer
    /// `keys` ascending, or descending; equal keys keep their order (a stable sort). Positions
    /// are i32, or i64 for rows longer than i32 counts. The frontend maps floats and bools to
    /// integer keys of lax.sort's order first (frontend/src/sort.rs).
    Argsort {
        descending: bool,
    },
    /// `cond(p, xs...)`: result `result` of the branch the scalar bool `p` picks, applied to
    /// `xs` (lax.cond). Only that branch runs. A conditional with several results is several
    /// instructions, one per result, with equal branches and operands: they run as one.
    Cond {
        branches: Bodies,
        result: usize,
    },
    /// `loop(lo, hi, inits..., xs...)`: the body run for i = lo, lo + 1, ..., hi - 1 (not at all
    /// when hi <= lo), each run taking (i, carries..., xs...) to the next carries, the first
    /// carries being `inits`; result `result` of the last carries (lax.fori_loop). lo and hi
    /// are integer scalars of one dtype, the index's. A loop with k carries is k instructions
    /// with equal bodies and operands: they run as one. With `checkpoint`, reverse mode saves
    /// only the carries entering each run and recomputes the rest (see [`Op::Scan`]).
    Loop {
        body: Bodies,
        checkpoint: bool,
        result: usize,
    },
    /// `while(inits..., xs...)`: starting from `inits`, while the first function (the
    /// condition, from (carries..., xs...) to a scalar bool) holds, the second (the body, from
    /// the same to the next carries) runs; result `result` of the carries that fail the
    /// condition (lax.while_loop). A loop with k carries is k instructions, run as one.
    While {
        bodies: Bodies,
        result: usize,
    },
    /// `scan(inits..., xs..., captured...)`: the body run once per row of the `scanned`
    /// arrays xs (all of one leading length n >= 1), from the first row to the last (the last
    /// to the first when `reverse`), each run taking (carries..., rows of xs..., captured...)
    /// to (next carries..., ys...), the first carries being `inits` (`carries` of them).
    /// Results: the last carries, then each y stacked along a new leading axis, the y of row t
    /// at t (lax.scan). A scan with k results is k instructions, run as one. `checkpoint`
    /// asks reverse mode to save only the carries entering each row and recompute the rest
    /// (jax.checkpoint of the body); it changes no value.
    Scan {
        body: Bodies,
        carries: usize,
        scanned: usize,
        reverse: bool,
        checkpoint: bool,
        result: usize,
    },
}

impl Op {
    /// The op's name in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Const(_) => "const",
            Op::Data(_) => "data",
            Op::Iota { .. } => "iota",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Select => "select",
            Op::Convert { .. } => "convert",
            Op::Bitcast { .. } => "bitcast",
            Op::Reduce { kind, .. } => kind.name(),
            Op::Dot => "dot",
            Op::Conv(_) => "conv2d",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Broadcast { .. } => "broadcast",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::DynamicSlice { .. } => "dynamic_slice",
            Op::DynamicUpdateSlice => "dynamic_update_slice",
            Op::Gather { .. } => "gather",
            Op::Scatter { kind, .. } => kind.name(),
            Op::Argsort { .. } => "argsort",
            Op::Cond { .. } => "cond",
            Op::Loop { .. } => "loop",
            Op::While { .. } => "while",
            Op::Scan { .. } => "scan",
        }
    }

    pub fn class(&self) -> OpClass {
        match self {
            Op::Const(_) | Op::Data(_) | Op::Iota { .. } => OpClass::Source,
            Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Convert { .. } | Op::Bitcast { .. } => OpClass::Elementwise,
            Op::Reduce { .. } => OpClass::Reduction,
            Op::Dot | Op::Conv(_) => OpClass::Contraction,
            Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::DynamicSlice { .. }
            | Op::DynamicUpdateSlice
            | Op::Gather { .. }
            | Op::Scatter { .. } => OpClass::Shape,
            Op::Cond { .. } | Op::Loop { .. } | Op::While { .. } | Op::Scan { .. } => OpClass::Control,
            Op::Argsort { .. } => OpClass::Sort,
        }
    }

    /// Whether two correct implementations may give different float results: functions IEEE
    /// does not require to be correctly rounded (exp, log, tanh, sigmoid, sin, cos, rsqrt,
    /// pow: libm on one target, kiln's polynomials on another), and sums, products and
    /// convolutions, whose order of accumulation is free. add, sub, mul, div and sqrt round
    /// correctly everywhere; selections and extremes return an operand, neg and abs flip a
    /// sign, shape ops move elements, and a conversion rounds as IEEE says.
    pub fn inexact(&self) -> bool {
        match self {
            Op::Unary(u) => !matches!(
                u,
                UnaryOp::Neg
                    | UnaryOp::Abs
                    | UnaryOp::Sqrt
                    | UnaryOp::Floor
                    | UnaryOp::Ceil
                    | UnaryOp::Round
                    | UnaryOp::Trunc
                    | UnaryOp::Sign
            ),
            // rem: libm's fmod on CPUs, kiln's on GPUs (exact for f32, and for f64 quotients
            // below 2^53).
            Op::Binary(b) => matches!(b, BinaryOp::Pow | BinaryOp::Rem),
            Op::Reduce { kind, .. } => matches!(kind, ReduceKind::Sum | ReduceKind::Prod),
            Op::Dot | Op::Conv(_) => true,
            op => op.bodies().is_some_and(|b| b.funcs().iter().flat_map(|f| &f.insts).any(|i| i.op.inexact())),
        }
    }

    /// Number of operands, or None for variadic ops (concat takes one or more).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Const(_) | Op::Data(_) | Op::Iota { .. } => Some(0),
            Op::Unary(_) | Op::Convert { .. } | Op::Bitcast { .. } | Op::Reduce { .. } | Op::Argsort { .. } => Some(1),
            Op::Reshape { .. } | Op::Transpose { .. } | Op::Broadcast { .. } | Op::Slice { .. } => Some(1),
            Op::Binary(_) | Op::Dot | Op::Conv(_) => Some(2),
            Op::Select | Op::Scatter { .. } => Some(3),
            Op::Gather { .. } => Some(2),
            Op::Concat { .. } | Op::Cond { .. } | Op::Loop { .. } | Op::While { .. } | Op::Scan { .. } => None,
            Op::DynamicSlice { .. } | Op::DynamicUpdateSlice => None,
        }
    }

    /// The functions the op runs: a conditional's branches, a loop's body (after a while
    /// loop's condition).
    pub fn bodies(&self) -> Option<&Bodies> {
        self.structure().map(|(bodies, _)| bodies)
    }

    /// An op with bodies: its bodies and which of its results this instruction takes.
    pub fn structure(&self) -> Option<(&Bodies, usize)> {
        match self {
            Op::Cond { branches: bodies, result }
            | Op::Loop { body: bodies, result, .. }
            | Op::While { bodies, result }
            | Op::Scan { body: bodies, result, .. } => Some((bodies, *result)),
            _ => None,
        }
    }

    /// The op with bodies `bodies`, taking result `result` (for an op with bodies; any other op
    /// is returned unchanged).
    pub fn restructured(&self, bodies: Bodies, result: usize) -> Op {
        let mut op = self.clone();
        match &mut op {
            Op::Cond { branches: b, result: r }
            | Op::Loop { body: b, result: r, .. }
            | Op::While { bodies: b, result: r }
            | Op::Scan { body: b, result: r, .. } => (*b, *r) = (bodies, result),
            _ => {}
        }
        op
    }

    /// For an op with bodies, the op taking result 0: with the operands, the key that the
    /// instructions of one loop, scan or conditional (one per result) share.
    pub fn group(&self) -> Option<Op> {
        self.structure().map(|(bodies, _)| self.restructured(bodies.clone(), 0))
    }

    /// How many results the op with bodies has (one instruction each).
    pub fn results(&self) -> usize {
        self.bodies().and_then(|b| b.funcs().last()).map_or(1, |f| f.results.len())
    }

    /// One instance of every op, with representative attributes: the list tests iterate over.
    pub fn catalog() -> Vec<Op> {
        let mut ops = vec![
            Op::Const(Literal::Float(DType::F32, 1.5)),
            Op::Data(
                Constant::new(
                    TensorType::new(DType::F32, vec![2, 3]),
                    [0.5f32, -1.0, 2.0, 0.0, 3.5, -0.25].iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
                .expect("six f32s"),
            ),
            Op::Iota { dtype: DType::I32, shape: vec![2, 3], axis: 1 },
        ];
        ops.extend(UnaryOp::ALL.iter().map(|&u| Op::Unary(u)));
        ops.extend(BinaryOp::ALL.iter().map(|&b| Op::Binary(b)));
        ops.push(Op::Select);
        ops.push(Op::Convert { to: DType::I32 });
        ops.push(Op::Bitcast { to: DType::U32 });
        ops.extend(ReduceKind::ALL.iter().map(|&kind| Op::Reduce { kind, axes: vec![1] }));
        ops.extend([
            Op::Dot,
            Op::Conv(ConvWindow {
                stride: [2, 1],
                pad_lo: [1, -1],
                pad_hi: [0, 2],
                lhs_dilation: [1, 2],
                rhs_dilation: [2, 1],
            }),
            Op::Reshape { shape: vec![6] },
            Op::Transpose { perm: vec![1, 0] },
            Op::Broadcast { shape: vec![4, 2, 3], dims: vec![1, 2] },
            Op::Slice { start: vec![0, 2], step: vec![1, -1], shape: vec![2, 2] },
            Op::Concat { axis: 0 },
        ]);
        ops.push(Op::DynamicSlice { sizes: vec![2, 1] });
        ops.push(Op::DynamicUpdateSlice);
        ops.push(Op::Gather { axis: 1 });
        ops.extend(ScatterKind::ALL.iter().map(|&kind| Op::Scatter { axis: 0, kind }));
        ops.push(Op::Argsort { descending: false });
        ops.push(crate::gen::cond_of(&TensorType::new(DType::F32, vec![2, 3])));
        ops.push(crate::gen::loop_of(&TensorType::new(DType::F32, vec![2, 3]), DType::I32, false));
        ops.push(crate::gen::while_of(&TensorType::new(DType::F32, vec![2, 3])));
        ops.push(crate::gen::scan_of(&TensorType::new(DType::F32, vec![2, 3]), false, false, 1));
        ops
    }

    /// The type rule: the result type for these operand types, or a lowercase reason why the
    /// operands are invalid.
    pub fn infer(&self, args: &[&TensorType]) -> Result<TensorType, String> {
        if let Some(n) = self.arity() {
            if args.len() != n {
                return Err(format!("`{}` takes {n} operands, got {}", self.name(), args.len()));
            }
        } else if args.is_empty() {
            return Err(format!("`{}` takes at least one operand", self.name()));
        }
        let ty = match self {
            Op::Const(lit) => TensorType::scalar(lit.dtype()),
            Op::Data(c) => c.ty().clone(),
            Op::Iota { dtype, shape, axis } => {
                check_shape(shape)?;
                check_axis(*axis, shape.len())?;
                if !dtype.is_numeric() {
                    return Err(format!("iota needs a numeric dtype, not {dtype}"));
                }
                TensorType::new(*dtype, shape.clone())
            }
            Op::Unary(u) => {
                check_domain(u.name(), u.domain(), args[0].dtype)?;
                args[0].clone()
            }
            Op::Binary(b) => {
                same_types(b.name(), args[0], args[1])?;
                check_domain(b.name(), b.domain(), args[0].dtype)?;
                if b.is_comparison() {
                    args[0].with_dtype(DType::Bool)
                } else {
                    args[0].clone()
                }
            }
            Op::Select => {
                if args[0].dtype != DType::Bool {
                    return Err(format!("select's predicate must be bool, not {}", args[0].dtype));
                }
                same_types("select", args[1], args[2])?;
                if args[0].shape != args[1].shape {
                    return Err(format!(
                        "select's predicate has shape {}, its operands {}",
                        format_shape(&args[0].shape),
                        format_shape(&args[1].shape)
                    ));
                }
                args[1].clone()
            }
            Op::Convert { to } => args[0].with_dtype(*to),
            Op::Bitcast { to } => {
                let from = args[0].dtype;
                if from == DType::Bool || *to == DType::Bool || from.size_bytes() != to.size_bytes() {
                    return Err(format!("cannot bitcast {from} to {to}: both must be non-bool types of one width"));
                }
                args[0].with_dtype(*to)
            }
            Op::Reduce { kind, axes } => {
                let x = args[0];
                if !x.dtype.is_numeric() {
                    return Err(format!("`{}` needs a numeric operand, not {}", kind.name(), x.dtype));
                }
                check_axes_sorted(axes, x.rank())?;
                let shape = x.shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d);
                TensorType::new(x.dtype, shape.collect())
            }
            Op::Dot => {
                let (a, b) = (args[0], args[1]);
                if a.dtype != b.dtype || !a.dtype.is_numeric() {
                    return Err(format!(
                        "dot needs two operands of one numeric dtype, got {} and {}",
                        a.dtype, b.dtype
                    ));
                }
                if a.rank() < 2 || a.rank() != b.rank() {
                    return Err(format!("dot needs operands of equal rank >= 2, got {a} and {b}"));
                }
                let r = a.rank();
                if a.shape[..r - 2] != b.shape[..r - 2] || a.shape[r - 1] != b.shape[r - 2] {
                    return Err(format!("dot shapes do not match: {a} and {b}"));
                }
                let mut shape = a.shape[..r - 1].to_vec();
                shape.push(b.shape[r - 1]);
                check_shape(&shape)?;
                TensorType::new(a.dtype, shape)
            }
            Op::Conv(window) => {
                let (x, w) = (args[0], args[1]);
                if x.dtype != w.dtype || !x.dtype.is_float() {
                    return Err(format!("conv2d needs two float operands of one dtype, got {x} and {w}"));
                }
                if x.rank() != 4 || w.rank() != 4 || x.shape[3] != w.shape[2] {
                    return Err(format!(
                        "conv2d needs an input [N, H, W, C] and a kernel [KH, KW, C, F], got {x} and {w}"
                    ));
                }
                if window.stride.contains(&0) || window.lhs_dilation.contains(&0) || window.rhs_dilation.contains(&0) {
                    return Err("conv2d strides and dilations must be positive".into());
                }
                let mut shape = vec![x.shape[0], 0, 0, w.shape[3]];
                for a in 0..2 {
                    shape[1 + a] = window.out_len(a, x.shape[1 + a], w.shape[a]).ok_or_else(|| {
                        format!("the kernel {w} does not fit in the padded input {x} along axis {}", 1 + a)
                    })?;
                }
                check_shape(&shape)?;
                TensorType::new(x.dtype, shape)
            }
            Op::Reshape { shape } => {
                check_shape(shape)?;
                let n: usize = shape.iter().product();
                if n != args[0].num_elements() {
                    return Err(format!(
                        "cannot reshape {} ({} elements) to {} ({n} elements)",
                        args[0],
                        args[0].num_elements(),
                        format_shape(shape)
                    ));
                }
                TensorType::new(args[0].dtype, shape.clone())
            }
            Op::Transpose { perm } => {
                let x = args[0];
                let mut seen = vec![false; x.rank()];
                if perm.len() != x.rank()
                    || perm.iter().any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
                {
                    return Err(format!("{perm:?} is not a permutation of the {} axes of {x}", x.rank()));
                }
                TensorType::new(x.dtype, perm.iter().map(|&p| x.shape[p]).collect())
            }
            Op::Broadcast { shape, dims } => {
                let x = args[0];
                check_shape(shape)?;
                if dims.len() != x.rank()
                    || dims.windows(2).any(|w| w[0] >= w[1])
                    || dims.iter().any(|&d| d >= shape.len())
                {
                    return Err(format!("broadcast dims {dims:?} do not map {x} into {}", format_shape(shape)));
                }
                for (i, &d) in dims.iter().enumerate() {
                    if x.shape[i] != 1 && x.shape[i] != shape[d] {
                        return Err(format!("cannot broadcast {x} to {}", format_shape(shape)));
                    }
                }
                TensorType::new(x.dtype, shape.clone())
            }
            Op::Slice { start, step, shape } => {
                let x = args[0];
                check_shape(shape)?;
                if start.len() != x.rank() || step.len() != x.rank() || shape.len() != x.rank() {
                    return Err(format!("slice attributes do not match the rank of {x}"));
                }
                for axis in 0..x.rank() {
                    let last = start[axis] as i128 + (shape[axis] as i128 - 1) * step[axis] as i128;
                    if step[axis] == 0 || start[axis] >= x.shape[axis] || last < 0 || last >= x.shape[axis] as i128 {
                        return Err(format!("slice of axis {axis} is out of bounds for {x}"));
                    }
                }
                TensorType::new(x.dtype, shape.clone())
            }
            Op::Concat { axis } => {
                let first = args[0];
                check_axis(*axis, first.rank())?;
                let mut total = 0usize;
                for a in args {
                    let same_rest =
                        a.rank() == first.rank() && (0..a.rank()).all(|i| i == *axis || a.shape[i] == first.shape[i]);
                    if a.dtype != first.dtype || !same_rest {
                        return Err(format!("cannot concatenate {first} and {a} along axis {axis}"));
                    }
                    total += a.shape[*axis];
                }
                let mut shape = first.shape.clone();
                shape[*axis] = total;
                check_shape(&shape)?;
                TensorType::new(first.dtype, shape)
            }
            Op::While { bodies, result } => {
                let [cond, body] = bodies.funcs() else {
                    return Err(format!("`while` has {} functions, not a condition and a body", bodies.funcs().len()));
                };
                let (params, cond_params) = (body.param_types(), cond.param_types());
                if cond.result_types() != [&TensorType::scalar(DType::Bool)] || cond_params != params {
                    return Err(format!(
                        "the condition of `while` takes ({}) and returns ({}); it must take the body's ({}) and return bool[]",
                        types_text(cond_params.iter().copied()),
                        types_text(cond.result_types().into_iter()),
                        types_text(params.iter().copied())
                    ));
                }
                carried_result("while", body, None, args, body.results.len(), *result)?
            }
            Op::DynamicSlice { sizes } => {
                let x = args[0];
                check_starts("dynamic_slice", x, &args[1..])?;
                if sizes.len() != x.rank() || sizes.iter().zip(&x.shape).any(|(&s, &d)| s == 0 || s > d) {
                    return Err(format!("a window of {} does not fit in {x}", format_shape(sizes)));
                }
                TensorType::new(x.dtype, sizes.clone())
            }
            Op::DynamicUpdateSlice => {
                let (x, update) = (args[0], args[1]);
                check_starts("dynamic_update_slice", x, &args[2..])?;
                let fits = update.rank() == x.rank() && update.shape.iter().zip(&x.shape).all(|(&s, &d)| s <= d);
                if update.dtype != x.dtype || !fits {
                    return Err(format!("an update of {update} does not fit in {x}"));
                }
                x.clone()
            }
            Op::Gather { axis } => {
                let (x, idx) = (args[0], args[1]);
                check_axis(*axis, x.rank())?;
                if !idx.dtype.is_int() {
                    return Err(format!("gather's indices must be integers, not {}", idx.dtype));
                }
                gathered(x, idx, *axis)?
            }
            Op::Scatter { axis, kind } => {
                let (x, idx, updates) = (args[0], args[1], args[2]);
                check_axis(*axis, x.rank())?;
                if !idx.dtype.is_int() {
                    return Err(format!("{}'s indices must be integers, not {}", kind.name(), idx.dtype));
                }
                if *kind != ScatterKind::Set {
                    check_domain(kind.name(), Domain::Numeric, x.dtype)?;
                }
                let expected = gathered(x, idx, *axis)?;
                if *updates != expected {
                    return Err(format!(
                        "{} of {x} at indices {idx} takes updates of {expected}, not {updates}",
                        kind.name()
                    ));
                }
                x.clone()
            }
            Op::Argsort { .. } => {
                let keys = args[0];
                check_domain("argsort", Domain::Int, keys.dtype)?;
                let Some(&n) = keys.shape.last() else {
                    return Err("argsort sorts along the last axis, and a scalar has none".into());
                };
                keys.with_dtype(if n > i32::MAX as usize { DType::I64 } else { DType::I32 })
            }
            Op::Cond { branches, result } => {
                if *args[0] != TensorType::scalar(DType::Bool) {
                    return Err(format!("the predicate of `cond` must be bool[], not {}", args[0]));
                }
                let [then, otherwise] = branches.funcs() else {
                    return Err(format!("`cond` has {} branches, not 2", branches.funcs().len()));
                };
                for (which, f) in [("true", then), ("false", otherwise)] {
                    let params = f.param_types();
                    if params != args[1..] {
                        return Err(format!(
                            "the {which} branch takes ({}) but `cond` passes ({})",
                            types_text(params.iter().copied()),
                            types_text(args[1..].iter().copied())
                        ));
                    }
                }
                let (a, b) = (then.result_types(), otherwise.result_types());
                if a != b {
                    return Err(format!(
                        "the branches return ({}) and ({})",
                        types_text(a.iter().copied()),
                        types_text(b.iter().copied())
                    ));
                }
                a.get(*result)
                    .map(|&t| t.clone())
                    .ok_or_else(|| format!("result {result} of branches with {} results", a.len()))?
            }
            Op::Loop { body, result, .. } => {
                let [f] = body.funcs() else {
                    return Err(format!("`loop` has {} bodies, not 1", body.funcs().len()));
                };
                let index = args[0];
                if !index.shape.is_empty() || !index.dtype.is_int() || args.get(1) != Some(&index) {
                    return Err(format!(
                        "the bounds of `loop` must be integer scalars of one dtype, not {}",
                        types_text(args.iter().take(2).copied())
                    ));
                }
                carried_result("loop", f, Some(index), &args[2..], f.results.len(), *result)?
            }
            Op::Scan { body, carries, scanned, result, .. } => {
                let [f] = body.funcs() else {
                    return Err(format!("`scan` has {} bodies, not 1", body.funcs().len()));
                };
                let Some(xs) = args.get(*carries..carries + scanned).filter(|xs| !xs.is_empty()) else {
                    return Err(format!(
                        "`scan` of {scanned} arrays after {carries} carries, given {} operands",
                        args.len()
                    ));
                };
                let n = xs[0].shape.first().copied();
                if xs.iter().any(|x| x.shape.is_empty() || x.shape.first().copied() != n) {
                    return Err(format!(
                        "`scan` needs arrays of one leading length, not ({})",
                        types_text(xs.iter().copied())
                    ));
                }
                let rows: Vec<TensorType> =
                    xs.iter().map(|x| TensorType::new(x.dtype, x.shape[1..].to_vec())).collect();
                let passed: Vec<&TensorType> = args[..*carries]
                    .iter()
                    .copied()
                    .chain(&rows)
                    .chain(args[carries + scanned..].iter().copied())
                    .collect();
                let y = carried_result("scan", f, None, &passed, *carries, *result)?;
                if result < carries {
                    y
                } else {
                    let stacked = TensorType::new(y.dtype, n.into_iter().chain(y.shape).collect());
                    check_shape(&stacked.shape)?;
                    stacked
                }
            }
        };
        Ok(ty)
    }
}

/// The type of result `result` of the body `body` of the loop `name`, a body that takes
/// `index` (a counted loop's), then the carries (the first `carries` of its results), then
/// the other arrays it reads, given the types the loop passes it after the index, `passed`.
fn carried_result(
    name: &str,
    body: &Func,
    index: Option<&TensorType>,
    passed: &[&TensorType],
    carries: usize,
    result: usize,
) -> Result<TensorType, String> {
    let results = body.result_types();
    let params = body.param_types();
    let expected: Vec<&TensorType> = index.into_iter().chain(passed.iter().copied()).collect();
    if params != expected || results.get(..carries).is_none() || passed.get(..carries) != results.get(..carries) {
        return Err(format!(
            "the body takes ({}) and returns ({}), but `{name}` passes ({}) with {carries} carries",
            types_text(params.iter().copied()),
            types_text(results.iter().copied()),
            types_text(passed.iter().copied())
        ));
    }
    results
        .get(result)
        .map(|&t| t.clone())
        .ok_or_else(|| format!("result {result} of a loop body with {} results", results.len()))
}

/// The start operands of a dynamic slice of `x`: one integer scalar per axis.
/// The type of `gather(x, idx)` along `axis`: x's dtype, shape x.shape[..axis] ++ idx.shape ++
/// x.shape[axis + 1..].
fn gathered(x: &TensorType, idx: &TensorType, axis: usize) -> Result<TensorType, String> {
    if x.shape[axis] == 0 {
        return Err(format!("indices into an empty axis {axis} of {x}"));
    }
    let shape: Vec<usize> = x.shape[..axis].iter().chain(&idx.shape).chain(&x.shape[axis + 1..]).copied().collect();
    check_shape(&shape)?;
    Ok(TensorType::new(x.dtype, shape))
}

fn check_starts(name: &str, x: &TensorType, starts: &[&TensorType]) -> Result<(), String> {
    if starts.len() != x.rank() || starts.iter().any(|s| !s.shape.is_empty() || !s.dtype.is_int()) {
        return Err(format!(
            "`{name}` of {x} needs {} integer scalar starts, got ({})",
            x.rank(),
            types_text(starts.iter().copied())
        ));
    }
    Ok(())
}

fn types_text<'t>(types: impl Iterator<Item = &'t TensorType>) -> String {
    types.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
}

fn check_domain(name: &str, domain: Domain, dtype: DType) -> Result<(), String> {
    if domain.accepts(dtype) {
        Ok(())
    } else {
        Err(format!("`{name}` needs {}, not {dtype}", domain.describe()))
    }
}

fn same_types(name: &str, a: &TensorType, b: &TensorType) -> Result<(), String> {
    if a == b {
        Ok(())
    } else {
        Err(format!("`{name}` needs operands of one type, got {a} and {b}"))
    }
}

fn check_axis(axis: usize, rank: usize) -> Result<(), String> {
    if axis < rank {
        Ok(())
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

fn check_axes_sorted(axes: &[usize], rank: usize) -> Result<(), String> {
    if axes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("reduction axes {axes:?} must be sorted and distinct"));
    }
    axes.iter().try_for_each(|&a| check_axis(a, rank))
}
