//! Every name kiln generates for a module, in one place: the C header's symbols and macros and
//! the Rust bindings' items are spelled by the functions here (header.rs and bindings.rs call
//! them), and [`check`] claims all of them before anything is emitted, so that two generated
//! names never collide and none is a name C, C++ or Rust cannot take.
//!
//! Parameter names appear in C prototypes only as comments (no keyword, macro or reserved
//! identifier can break a prototype). What remains for users' names to break, and [`check`]
//! refuses:
//! - two macros or symbols that are spelled the same once uppercased (`X` and `x` both giving
//!   `M_F_X_SIZE`; function `f` with argument `x_y` and function `f_x` with argument `y`);
//! - a Rust item name used twice (`f_with_workspace` exported beside `f`, `set_parallel_for`);
//! - an argument named like a name a binding's body uses (`workspace`, `check`, `call_f`), or
//!   two arguments of one function with the same name;
//! - a module, function or argument named `self`, `Self`, `super` or `crate`, which Rust cannot
//!   write even as a raw identifier, and a module name that C reserves (`__x`, `_X`): it starts
//!   every symbol.
//!
//! Symbols of different modules linked into one program are the linker's to check: a static
//! link refuses a duplicate (`a` exporting `b_c` and `a_b` exporting `c`); the runtime opens each
//! bundle's library on its own.

use crate::manifest::{entry_symbol, packed_entry_symbol, parallel_for_symbol};
use kiln_ir::{Module, Span};
use std::collections::BTreeMap;

/// The prefix of the C macros describing argument `arg` of the function with entry symbol
/// `sym`: `<SYM>_<ARG>`, followed by `_RANK`, `_DIM<i>` and `_SIZE`.
pub fn c_argument_macro(sym: &str, arg: &str) -> String {
    format!("{}_{}", sym.to_ascii_uppercase(), arg.to_ascii_uppercase())
}

/// The C macro of a function's workspace bytes.
pub fn c_workspace_macro(sym: &str) -> String {
    format!("{}_WORKSPACE_BYTES", sym.to_ascii_uppercase())
}

/// The C macro of a GPU function's name, as the runtime's calls take it.
pub fn c_name_macro(sym: &str) -> String {
    format!("{}_NAME", sym.to_ascii_uppercase())
}

/// The header's include guard.
pub fn header_guard(module: &str) -> String {
    format!("KILN_{}_H", module.to_ascii_uppercase())
}

/// The Rust constant holding the shape of argument `arg` of function `f`.
pub fn rust_shape_const(f: &str, arg: &str) -> String {
    format!("{}_{}_SHAPE", f.to_ascii_uppercase(), arg.to_ascii_uppercase())
}

/// The Rust constant holding function `f`'s workspace bytes.
pub fn rust_workspace_const(f: &str) -> String {
    format!("{}_WORKSPACE_BYTES", f.to_ascii_uppercase())
}

/// The Rust binding of function `f` that takes a caller's workspace.
pub fn rust_with_workspace(f: &str) -> String {
    format!("{f}_with_workspace")
}

/// The private Rust function both bindings of `f` call.
pub fn rust_call(f: &str) -> String {
    format!("call_{f}")
}

/// The items every Rust bindings module defines besides its functions' (bindings.rs): its
/// types, its length check, and the setter named as the module's symbol is without the prefix.
fn rust_items() -> impl Iterator<Item = String> {
    let setter = parallel_for_symbol("").trim_start_matches('_').to_string();
    ["Error", "Workspace", "Block", "check", "Body", "ParallelFor"].into_iter().map(String::from).chain([setter])
}

/// The argument name every binding of a function takes besides its parameters and results.
pub const RUST_WORKSPACE_ARGUMENT: &str = "workspace";

/// Names Rust cannot write, even as raw identifiers.
const NOT_RUST_IDENTIFIERS: &[&str] = &["self", "Self", "super", "crate"];

/// A user's name that would make the generated header or bindings wrong: the message, and the
/// span of the name.
#[derive(Clone, Debug)]
pub struct Clash {
    pub message: String,
    pub span: Span,
}

/// A namespace of generated names, each with what it was generated for.
#[derive(Default)]
struct Namespace(BTreeMap<String, String>);

impl Namespace {
    fn claim(&mut self, name: String, what: String, span: Span, language: &str) -> Result<(), Clash> {
        match self.0.get(&name) {
            Some(first) => Err(Clash {
                message: format!("the {language} name `{name}` would be generated twice: for {first} and for {what}"),
                span,
            }),
            None => {
                self.0.insert(name, what);
                Ok(())
            }
        }
    }
}

/// Claims every name the header, the bindings and the object of `module` define.
pub fn check(module: &Module) -> Result<(), Clash> {
    let m = &module.name;
    let first = module.funcs.first().map_or(Span::default(), |f| f.span);
    if m.starts_with("__") || m.starts_with('_') && m[1..].starts_with(|c: char| c.is_ascii_uppercase()) {
        let message = format!("module name `{m}` is reserved in C (it starts every symbol of the module)");
        return Err(Clash { message, span: first });
    }
    let (mut c, mut rust) = (Namespace::default(), Namespace::default());
    c.claim(header_guard(m), "the header's include guard".into(), first, "C")?;
    c.claim(parallel_for_symbol(m), "the parallel-for setter".into(), first, "C")?;
    rust.claim(parallel_for_symbol(m), "the parallel-for setter".into(), first, "Rust")?;
    for item in rust_items() {
        rust.claim(item, "an item of kiln's bindings".into(), first, "Rust")?;
    }
    for f in &module.funcs {
        let name = &f.name;
        let sym = entry_symbol(m, name);
        for n in std::iter::once(m).chain([name]) {
            not_a_rust_keyword(n, f.span)?;
        }
        let of = |what: &str| format!("{what} of `{name}`");
        c.claim(sym.clone(), of("the entry point"), f.span, "C")?;
        c.claim(packed_entry_symbol(m, name), of("the packed entry point"), f.span, "C")?;
        c.claim(c_workspace_macro(&sym), of("the workspace size"), f.span, "C")?;
        c.claim(c_name_macro(&sym), of("the name"), f.span, "C")?;
        rust.claim(sym.clone(), of("the entry point"), f.span, "Rust")?;
        rust.claim(name.clone(), of("the binding"), f.span, "Rust")?;
        rust.claim(rust_with_workspace(name), of("the workspace binding"), f.span, "Rust")?;
        rust.claim(rust_call(name), of("the call"), f.span, "Rust")?;
        rust.claim(rust_workspace_const(name), of("the workspace size"), f.span, "Rust")?;
        let mut arguments = Namespace::default();
        for generated in [RUST_WORKSPACE_ARGUMENT, "check"].into_iter().map(String::from).chain([rust_call(name)]) {
            arguments.claim(generated, "a name its bindings use".into(), f.span, "Rust")?;
        }
        let params = f.params.iter().map(|p| (&p.name, &p.ty, p.span));
        let results = f.result_names.iter().zip(f.result_types()).map(|(r, ty)| (r, ty, f.span));
        for (arg, ty, span) in params.chain(results) {
            not_a_rust_keyword(arg, span)?;
            let what = format!("argument `{arg}` of `{name}`");
            arguments.claim(arg.clone(), what.clone(), span, "Rust")?;
            rust.claim(rust_shape_const(name, arg), format!("the shape of {what}"), span, "Rust")?;
            let prefix = c_argument_macro(&sym, arg);
            c.claim(format!("{prefix}_RANK"), format!("the rank of {what}"), span, "C")?;
            c.claim(format!("{prefix}_SIZE"), format!("the size of {what}"), span, "C")?;
            for i in 0..ty.rank() {
                c.claim(format!("{prefix}_DIM{i}"), format!("dimension {i} of {what}"), span, "C")?;
            }
        }
    }
    Ok(())
}

fn not_a_rust_keyword(name: &str, span: Span) -> Result<(), Clash> {
    if NOT_RUST_IDENTIFIERS.contains(&name) {
        return Err(Clash { message: format!("`{name}` cannot be a name in Rust bindings, even as `r#{name}`"), span });
    }
    Ok(())
}
