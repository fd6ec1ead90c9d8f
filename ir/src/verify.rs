//! The IR verifier. It checks, for a module:
//!
//! 1. the module name, every function name, parameter name and result name is a C identifier;
//!    function names are unique in the module, parameter and result names within a function;
//! 2. every function has at least one result and as many result names as results;
//! 3. every type has a valid shape: rank at most 16, no zero dimension, at most 2^40 elements;
//! 4. SSA order: every operand and every result refers to a parameter or to an earlier
//!    instruction;
//! 5. types: every instruction's stored type is exactly what its op's type rule
//!    ([`crate::Op::infer`]) gives for its operands;
//! 6. the branches of every conditional and the body of every loop are functions that pass 1
//!    to 5.
//!
//! Passes run it at stage boundaries; a failure there is a compiler bug, reported as such.

use crate::func::{is_identifier, Func, Module};
use crate::ops::Bodies;
use crate::types::{check_shape, TensorType};
use std::collections::BTreeSet;

/// Checks every invariant listed in the module documentation.
pub fn verify_module(module: &Module) -> Result<(), String> {
    if !is_identifier(&module.name) {
        return Err(format!("module name `{}` is not an identifier", module.name));
    }
    let mut names = BTreeSet::new();
    for func in &module.funcs {
        if !names.insert(func.name.as_str()) {
            return Err(format!("function `{}` is defined twice", func.name));
        }
        verify_func(func).map_err(|e| format!("in function `{}`: {e}", func.name))?;
    }
    Ok(())
}

fn unique_identifiers<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !is_identifier(name) {
            return Err(format!("{what} name `{name}` is not an identifier"));
        }
        if !seen.insert(name) {
            return Err(format!("{what} name `{name}` is used twice"));
        }
    }
    Ok(())
}

fn valid_type(ty: &TensorType) -> Result<(), String> {
    check_shape(&ty.shape).map_err(|e| format!("type {ty}: {e}"))
}

/// Checks one function.
pub fn verify_func(func: &Func) -> Result<(), String> {
    if !is_identifier(&func.name) {
        return Err(format!("function name `{}` is not an identifier", func.name));
    }
    unique_identifiers("parameter", func.params.iter().map(|p| p.name.as_str()))?;
    unique_identifiers("result", func.result_names.iter().map(String::as_str))?;
    if func.results.is_empty() || func.results.len() != func.result_names.len() {
        return Err(format!(
            "{} results with {} names; a function needs at least one result, each named",
            func.results.len(),
            func.result_names.len()
        ));
    }
    for p in &func.params {
        valid_type(&p.ty)?;
    }
    for (i, inst) in func.insts.iter().enumerate() {
        let defined = func.params.len() + i;
        if let Some(a) = inst.args.iter().find(|a| a.index() >= defined) {
            return Err(format!("%{defined} uses %{} before it is defined", a.0));
        }
        valid_type(&inst.ty).map_err(|e| format!("%{defined}: {e}"))?;
        for body in inst.op.bodies().map(Bodies::funcs).unwrap_or_default() {
            verify_func(body).map_err(|e| format!("%{defined}, in `{}`: {e}", body.name))?;
        }
        let arg_types: Vec<&TensorType> = inst.args.iter().map(|&a| func.ty(a)).collect();
        match inst.op.infer(&arg_types) {
            Ok(ty) if ty == inst.ty => {}
            Ok(ty) => {
                return Err(format!("%{defined} = {} is typed {} but its rule gives {ty}", inst.op.name(), inst.ty))
            }
            Err(e) => return Err(format!("%{defined} = {}: {e}", inst.op.name())),
        }
    }
    if let Some(r) = func.results.iter().find(|r| r.index() >= func.num_values()) {
        return Err(format!("returns undefined value %{}", r.0));
    }
    Ok(())
}
