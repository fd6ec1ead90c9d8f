//! kiln-ir: the typed SSA intermediate representation at the center of kiln.
//!
//! Owns: the op table ([`ops`]), compositions of ops that several stages build ([`compose`]),
//! element and tensor types ([`types`]), SSA functions ([`func`]), the text printer and parser ([`text`]), the verifier ([`verify`]), the reference
//! interpreter ([`interp`]) and the diagnostic type every stage reports errors with ([`diag`]).
//!
//! May depend on: std only. Every other compiler crate depends on this one.
//!
//! Guarantees: a [`func::Module`] that passed [`verify::verify_module`] is well typed (every
//! instruction's stored type is what its op's type rule infers from its operands), in SSA form
//! (each value defined once, before use) and has no empty tensors; the interpreter defines the
//! meaning of every such module and is the oracle all compiled code is tested against.

pub mod compose;
pub mod diag;
pub mod func;
pub mod gen;
pub mod half;
pub mod interp;
pub mod ops;
pub mod text;
pub mod types;
pub mod verify;

pub use diag::{Diagnostic, Label, Severity, Span};
pub use func::{Func, Inst, Module, Param, Value};
pub use ops::{BinaryOp, Constant, ConvWindow, Op, OpClass, ReduceKind, ScatterKind, UnaryOp};
pub use types::{DType, Literal, TensorType};
