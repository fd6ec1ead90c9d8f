//! kiln-frontend: from kiln source text to verified IR.
//!
//! Owns: the lexer, the parser and AST, name and shape resolution with JAX-style type
//! promotion and numpy broadcasting, and lowering (elaboration) of every export into an IR
//! function, with helper functions inlined at each call and their shape variables inferred there.
//! Also renders diagnostics against the source with codespan-reporting.
//!
//! May depend on: kiln-ir (and a diagnostics renderer).
//!
//! Guarantees: every user error is a [`kiln_ir::Diagnostic`] with a code, never a panic; the
//! module returned by [`compile_source`] passes the IR verifier; every instruction carries the
//! span of the source expression it came from.

pub mod ast;
mod builtins;
mod elab;
mod indexing;
pub mod lexer;
pub mod parser;
mod random;
pub mod render;
mod resolve;
mod sort;
pub mod transform;

pub use builtins::names as builtin_names;
pub use elab::{broadcast_shapes, elaborate, slice_indices};
pub use render::{render_diagnostic, render_diagnostics};
pub use transform::{Differentiator, Transform};

/// What a program may read while it is compiled: the tensors of weights files, for `load`.
/// The driver reads them (safetensors files beside the program, or files given in memory);
/// the frontend only asks.
pub trait Files {
    /// The tensor `name` of the weights file `file` (as the program names it), as a constant;
    /// an error is a lowercase reason.
    fn load(&self, file: &str, name: &str) -> Result<kiln_ir::Constant, String>;
}

use kiln_ir::{Diagnostic, Module};

/// The most errors one run reports (and, separately, the most warnings); the rest of the file
/// is not checked once a run has this many.
pub const MAX_ERRORS: usize = 50;

/// Diagnostics in the order of the source (stable: those at one place keep their order), as
/// every run reports them.
pub fn in_source_order(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by_key(|d| d.primary_span().start);
    diags
}

/// Parses and elaborates a source file into a module named `module_name`; transformations
/// (`grad`, ...) are refused (E0305): [`compile_source_with`] takes the pass that applies them.
/// The error is every diagnostic of the file, warnings included, in source order.
pub fn compile_source(src: &str, module_name: &str) -> Result<Module, Vec<Diagnostic>> {
    let file = parser::parse(src)?;
    elaborate(&file, module_name, None, None).map(|(module, _warnings)| module)
}

/// Parses and elaborates a source file, applying transformations with `diff`.
pub fn compile_source_with(src: &str, module_name: &str, diff: &dyn Differentiator) -> Result<Module, Vec<Diagnostic>> {
    let file = parser::parse(src)?;
    elaborate(&file, module_name, Some(diff), None).map(|(module, _warnings)| module)
}

/// A C identifier made from a file stem: other characters become `_`, and a leading digit
/// gets a `_` in front. Used as the default module name.
pub fn module_name_from_stem(stem: &str) -> String {
    let mut name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}
