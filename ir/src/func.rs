//! SSA functions and modules.
//!
//! A function's values are numbered: parameters first (0..params.len()), then one value per
//! instruction in order. Instructions only use values defined before them, so a function is a
//! straight-line dataflow graph; kiln inlines every call while lowering, so there are no calls.

use crate::diag::Span;
use crate::ops::Op;
use crate::types::TensorType;

/// A value of a function: a parameter or an instruction's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub u32);

impl Value {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub ty: TensorType,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inst {
    pub op: Op,
    pub args: Vec<Value>,
    pub ty: TensorType,
    /// The source the instruction came from, so late errors still point at the user's line.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Func {
    /// The exported name (the C symbol is `<module>_<name>`).
    pub name: String,
    pub params: Vec<Param>,
    pub insts: Vec<Inst>,
    pub results: Vec<Value>,
    /// Names of the results, for headers and manifests (`out0`, ... when the source has none).
    pub result_names: Vec<String>,
    pub span: Span,
}

impl Func {
    pub fn new(name: impl Into<String>, span: Span) -> Func {
        Func { name: name.into(), params: vec![], insts: vec![], results: vec![], result_names: vec![], span }
    }

    /// Adds a parameter and returns its value. Parameters must all be added before the first
    /// instruction.
    pub fn add_param(&mut self, name: impl Into<String>, ty: TensorType, span: Span) -> Value {
        assert!(self.insts.is_empty(), "parameters come before instructions");
        self.params.push(Param { name: name.into(), ty, span });
        Value(self.params.len() as u32 - 1)
    }

    /// Appends an instruction whose type the op's rule infers from its operands.
    pub fn push(&mut self, op: Op, args: Vec<Value>, span: Span) -> Result<Value, String> {
        let arg_types: Vec<&TensorType> = args.iter().map(|&a| self.ty(a)).collect();
        let ty = op.infer(&arg_types)?;
        self.insts.push(Inst { op, args, ty, span });
        Ok(Value((self.params.len() + self.insts.len() - 1) as u32))
    }

    pub fn num_values(&self) -> usize {
        self.params.len() + self.insts.len()
    }

    /// The instruction defining `v`, or None for a parameter.
    pub fn inst(&self, v: Value) -> Option<&Inst> {
        v.index().checked_sub(self.params.len()).map(|i| &self.insts[i])
    }

    pub fn ty(&self, v: Value) -> &TensorType {
        match self.inst(v) {
            Some(inst) => &inst.ty,
            None => &self.params[v.index()].ty,
        }
    }

    pub fn param_types(&self) -> Vec<&TensorType> {
        self.params.iter().map(|p| &p.ty).collect()
    }

    pub fn result_types(&self) -> Vec<&TensorType> {
        self.results.iter().map(|&r| self.ty(r)).collect()
    }

    /// Whether an instruction or a result reads `v`.
    pub fn reads(&self, v: Value) -> bool {
        self.results.contains(&v) || self.insts.iter().any(|i| i.args.contains(&v))
    }

    /// The function with only the parameters where `keep` is set (those dropped must be
    /// unread), its values renumbered.
    pub fn keep_params(&self, keep: &[bool]) -> Func {
        let order: Vec<usize> = keep.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i).collect();
        self.with_params(&order)
    }

    /// Appends `callee`'s instructions with its parameters bound to `args`; returns the values
    /// of its results.
    pub fn inline(&mut self, callee: &Func, args: &[Value], span: Span) -> Result<Vec<Value>, String> {
        let mut map = args.to_vec();
        for inst in &callee.insts {
            let args = inst.args.iter().map(|v| map[v.index()]).collect();
            map.push(self.push(inst.op.clone(), args, span)?);
        }
        Ok(callee.results.iter().map(|r| map[r.index()]).collect())
    }

    /// The function returning its results in `order` (indices of the current ones).
    pub fn with_results(&self, order: &[usize]) -> Func {
        Func {
            results: order.iter().map(|&i| self.results[i]).collect(),
            result_names: order.iter().map(|&i| self.result_names[i].clone()).collect(),
            ..self.clone()
        }
    }

    /// The function taking its parameters in `order` (indices of the current ones; those left
    /// out must be unread), its values renumbered.
    pub fn with_params(&self, order: &[usize]) -> Func {
        let mut out = Func { insts: vec![], results: vec![], ..self.clone() };
        out.params = order.iter().map(|&i| self.params[i].clone()).collect();
        let mut map: Vec<Option<Value>> = vec![None; self.num_values()];
        for (new, &old) in order.iter().enumerate() {
            map[old] = Some(Value(new as u32));
        }
        let renumber = |map: &[Option<Value>], v: &Value| map[v.index()].expect("a dropped parameter is unread");
        for (i, inst) in self.insts.iter().enumerate() {
            let args = inst.args.iter().map(|v| renumber(&map, v)).collect();
            out.insts.push(Inst { args, ..inst.clone() });
            map[self.params.len() + i] = Some(Value((out.params.len() + i) as u32));
        }
        out.results = self.results.iter().map(|v| renumber(&map, v)).collect();
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Module {
    /// The module name: a C identifier that prefixes every exported symbol.
    pub name: String,
    pub funcs: Vec<Func>,
}

impl Module {
    pub fn func(&self, name: &str) -> Option<&Func> {
        self.funcs.iter().find(|f| f.name == name)
    }
}

/// True for names usable as C identifiers (and so as module, function and argument names).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
