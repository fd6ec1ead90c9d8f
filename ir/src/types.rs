//! Element types, tensor types and scalar literals.

use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Bool,
    U8,
    I32,
    U32,
    I64,
    /// IEEE binary16 and bfloat16: stored in 2 bytes, computed in f32 (see [`DType::is_half`]).
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    /// Every element type.
    pub const ALL: [DType; 9] =
        [DType::Bool, DType::U8, DType::I32, DType::U32, DType::I64, DType::F16, DType::BF16, DType::F32, DType::F64];

    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Size of one element in bytes, as stored in buffers passed to compiled code (bool is one
    /// byte, 0 or 1).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::Bool | DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    /// Width in bits of the values (1 for bool, which is stored in a byte).
    pub fn bits(self) -> u32 {
        match self {
            DType::Bool => 1,
            d => 8 * d.size_bytes() as u32,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// The 16-bit floats, which every op but data movement computes in f32, rounding its
    /// result back as XLA does (`half::widened`).
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// Signed and unsigned integers.
    pub fn is_int(self) -> bool {
        matches!(self, DType::U8 | DType::I32 | DType::U32 | DType::I64)
    }

    /// The unsigned integers, whose division, comparison, widening and conversion to floats
    /// read the bits as a value in [0, 2^bits).
    pub fn is_unsigned(self) -> bool {
        matches!(self, DType::U8 | DType::U32)
    }

    /// `v` wrapped to this integer dtype's range (modulo 2^bits), as kiln holds integer values
    /// in i64: sign-extended for signed types, zero-extended for unsigned ones.
    pub fn wrap(self, v: i64) -> i64 {
        match self {
            DType::U8 => v as u8 as i64,
            DType::U32 => v as u32 as i64,
            DType::I32 => v as i32 as i64,
            _ => v,
        }
    }

    /// The range of an integer dtype's values.
    pub fn int_range(self) -> (i64, i64) {
        match self {
            DType::U8 => (0, u8::MAX as i64),
            DType::U32 => (0, u32::MAX as i64),
            DType::I32 => (i32::MIN as i64, i32::MAX as i64),
            _ => (i64::MIN, i64::MAX),
        }
    }

    /// Integers and floats: the types arithmetic is defined on.
    pub fn is_numeric(self) -> bool {
        self.is_int() || self.is_float()
    }

    /// The C type used for this dtype in generated headers.
    pub fn c_type(self) -> &'static str {
        match self {
            DType::Bool | DType::U8 => "uint8_t",
            DType::I32 => "int32_t",
            DType::U32 => "uint32_t",
            // The bits (C has no portable 16-bit float type).
            DType::F16 | DType::BF16 => "uint16_t",
            DType::I64 => "int64_t",
            DType::F32 => "float",
            DType::F64 => "double",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest number of elements a tensor may have (2^40): keeps every byte size and index
/// computation far from 64-bit overflow.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// The largest rank a tensor may have.
pub const MAX_RANK: usize = 16;

/// A tensor type with a static shape; rank 0 is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>) -> Self {
        TensorType { dtype, shape }
    }

    pub fn scalar(dtype: DType) -> Self {
        TensorType { dtype, shape: vec![] }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn size_bytes(&self) -> usize {
        self.num_elements() * self.dtype.size_bytes()
    }

    pub fn with_dtype(&self, dtype: DType) -> Self {
        TensorType { dtype, shape: self.shape.clone() }
    }
}

/// Checks that a shape is one kiln accepts: rank at most [`MAX_RANK`], every dimension at least
/// 1 and at most [`MAX_ELEMENTS`] elements in all. Returns a lowercase reason otherwise, which
/// always starts with [`SHAPE_LIMIT`] so that callers can tell limit violations apart.
pub fn check_shape(shape: &[usize]) -> Result<(), String> {
    if shape.len() > MAX_RANK {
        return Err(format!("{SHAPE_LIMIT}rank {} exceeds the maximum of {MAX_RANK}", shape.len()));
    }
    if let Some(axis) = shape.iter().position(|&d| d == 0) {
        return Err(format!("{SHAPE_LIMIT}dimension {axis} is zero; tensors must not be empty"));
    }
    let mut n: u64 = 1;
    for &d in shape {
        n = n.saturating_mul(d as u64);
        if n > MAX_ELEMENTS {
            return Err(format!("{SHAPE_LIMIT}more than 2^40 elements in {}", format_shape(shape)));
        }
    }
    Ok(())
}

/// The start of every message of [`check_shape`].
pub const SHAPE_LIMIT: &str = "invalid shape: ";

/// `[2, 3]` for a shape.
pub fn format_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, format_shape(&self.shape))
    }
}

/// A scalar constant of a given dtype. Float values are stored as f64 holding a value
/// representable in the dtype (an f32 literal is rounded to f32 when it is made).
#[derive(Clone, Copy, Debug)]
pub enum Literal {
    Bool(bool),
    Int(DType, i64),
    Float(DType, f64),
}

impl Literal {
    pub fn dtype(&self) -> DType {
        match *self {
            Literal::Bool(_) => DType::Bool,
            Literal::Int(d, _) | Literal::Float(d, _) => d,
        }
    }

    /// The literal `value` converted to `dtype` with the same rules as the `convert` op.
    pub fn of_f64(dtype: DType, value: f64) -> Literal {
        match dtype {
            DType::Bool => Literal::Bool(value != 0.0),
            DType::U8 => Literal::Int(dtype, value as u8 as i64),
            DType::I32 => Literal::Int(dtype, value as i32 as i64),
            DType::U32 => Literal::Int(dtype, value as u32 as i64),
            DType::I64 => Literal::Int(dtype, value as i64),
            DType::F16 | DType::BF16 | DType::F32 => Literal::Float(dtype, round_float(dtype, value)),
            DType::F64 => Literal::Float(dtype, value),
        }
    }

    /// The literal `value` converted to `dtype`, wrapping integers like the `convert` op.
    pub fn of_i64(dtype: DType, value: i64) -> Literal {
        match dtype {
            DType::Bool => Literal::Bool(value != 0),
            DType::U8 | DType::I32 | DType::U32 | DType::I64 => Literal::Int(dtype, dtype.wrap(value)),
            DType::F16 | DType::BF16 | DType::F32 => Literal::Float(dtype, round_float(dtype, value as f64)),
            DType::F64 => Literal::Float(dtype, value as f64),
        }
    }

    pub fn as_f64(&self) -> f64 {
        match *self {
            Literal::Bool(b) => b as i64 as f64,
            Literal::Int(_, v) => v as f64,
            Literal::Float(_, v) => v,
        }
    }
}

/// `v` rounded to the float dtype `d` as the `convert` op rounds: to nearest, ties to even; a
/// 16-bit float through f32 first (as every conversion to one does).
pub fn round_float(d: DType, v: f64) -> f64 {
    match d {
        DType::F32 => v as f32 as f64,
        DType::F16 => f64::from(half::f16::from_f32(v as f32)),
        DType::BF16 => f64::from(half::bf16::from_f32(v as f32)),
        _ => v,
    }
}

/// Bitwise equality, so that NaN literals compare equal to themselves and -0.0 differs from 0.0.
impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Literal::Bool(a), Literal::Bool(b)) => a == b,
            (Literal::Int(d, a), Literal::Int(e, b)) => d == e && a == b,
            (Literal::Float(d, a), Literal::Float(e, b)) => d == e && a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

impl Eq for Literal {}

impl Literal {
    /// A key that orders and hashes literals bitwise, consistently with `==`.
    fn key(&self) -> (u8, DType, u64) {
        match *self {
            Literal::Bool(b) => (0, DType::Bool, b as u64),
            Literal::Int(d, v) => (1, d, v as u64),
            Literal::Float(d, v) => (2, d, v.to_bits()),
        }
    }
}

impl std::hash::Hash for Literal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl PartialOrd for Literal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Literal {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(_, v) => write!(f, "{v}"),
            Literal::Float(_, v) => f.write_str(&format_float(v)),
        }
    }
}

/// Formats a float so that it reads back exactly and always looks like a float: `1.0`,
/// `2.5e-8`, `inf`, `-inf`, `nan`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        let s = format!("{v:?}");
        if s.contains(['.', 'e', 'E']) {
            s
        } else {
            format!("{s}.0")
        }
    }
}
