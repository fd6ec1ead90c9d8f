//! The text form of the IR: a printer and a parser that reads the printer's output back.
//!
//! ```text
//! module mlp
//!
//! func @dense(%x: f32[2, 3], %w: f32[3, 4]) -> (out0: f32[2, 4]) {
//!   %2 = dot %x, %w : f32[2, 4]
//!   return %2
//! }
//! ```
//!
//! Attributes that the result type already states (a reshape's shape, a convert's target
//! dtype, an iota's shape) are not repeated; the parser takes them from the type. Spans are
//! not part of the text.

use crate::diag::{Diagnostic, Span};
use crate::func::{is_identifier, Func, Inst, Module, Value};
use crate::ops::{BinaryOp, Bodies, ConvWindow, Op, ReduceKind, ScatterKind, UnaryOp};
use crate::types::{DType, Literal, TensorType};
use std::collections::HashMap;
use std::fmt::Write;

/// Prints a module in the text form.
pub fn print_module(module: &Module) -> String {
    let mut out = format!("module {}\n", module.name);
    for func in &module.funcs {
        out.push('\n');
        out.push_str(&print_func(func));
    }
    out
}

fn value_name(func: &Func, v: Value) -> String {
    match func.inst(v) {
        Some(_) => format!("%{}", v.0),
        None => format!("%{}", func.params[v.index()].name),
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(T::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// The bracketed attributes of an op that its result type does not already state.
fn attributes(op: &Op) -> String {
    match op {
        Op::Iota { axis, .. } => format!("[axis={axis}]"),
        Op::Reduce { axes, .. } => format!("[axes={}]", list(axes)),
        Op::Transpose { perm } => format!("[perm={}]", list(perm)),
        Op::Broadcast { dims, .. } => format!("[dims={}]", list(dims)),
        Op::Slice { start, step, .. } => format!("[start={}, step={}]", list(start), list(step)),
        Op::Concat { axis } => format!("[axis={axis}]"),
        Op::Conv(w) => format!(
            "[stride={}, pad_lo={}, pad_hi={}, lhs_dilation={}, rhs_dilation={}]",
            list(&w.stride),
            list(&w.pad_lo),
            list(&w.pad_hi),
            list(&w.lhs_dilation),
            list(&w.rhs_dilation)
        ),
        Op::Const(_)
        | Op::Data(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Select
        | Op::Convert { .. }
        | Op::Bitcast { .. } => String::new(),
        Op::Dot | Op::Reshape { .. } => String::new(),
        // A loop's `checkpoint` is printed only when set: absent, it is 0.
        Op::Loop { checkpoint: true, result, .. } => format!("[checkpoint=1, result={result}]"),
        Op::Cond { result, .. } | Op::Loop { result, .. } | Op::While { result, .. } => format!("[result={result}]"),
        Op::Scan { carries, scanned, reverse, checkpoint, result, .. } => format!(
            "[carries={carries}, scanned={scanned}, reverse={}, checkpoint={}, result={result}]",
            u8::from(*reverse),
            u8::from(*checkpoint)
        ),
        Op::DynamicSlice { .. } | Op::DynamicUpdateSlice => String::new(),
        Op::Gather { axis } | Op::Scatter { axis, .. } => format!("[axis={axis}]"),
        Op::Argsort { descending } => format!("[descending={}]", u8::from(*descending)),
    }
}

/// Prints one function in the text form.
pub fn print_func(func: &Func) -> String {
    let mut out = String::new();
    write_func(&mut out, func, "");
    out
}

/// Writes `func` with each line indented by `indent`. A conditional's branches follow its
/// type, in braces, indented one level deeper.
fn write_func(out: &mut String, func: &Func, indent: &str) {
    let params: Vec<String> = func.params.iter().map(|p| format!("%{}: {}", p.name, p.ty)).collect();
    let results: Vec<String> =
        func.results.iter().zip(&func.result_names).map(|(&r, name)| format!("{name}: {}", func.ty(r))).collect();
    let _ = writeln!(out, "{indent}func @{}({}) -> ({}) {{", func.name, params.join(", "), results.join(", "));
    for (i, inst) in func.insts.iter().enumerate() {
        let v = Value((func.params.len() + i) as u32);
        let mut operands: Vec<String> = inst.args.iter().map(|&a| value_name(func, a)).collect();
        match &inst.op {
            Op::Const(lit) => operands.push(lit.to_string()),
            Op::Data(c) => {
                operands.push(format!("0x{}", c.bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()))
            }
            _ => {}
        }
        let sep = if operands.is_empty() { "" } else { " " };
        let _ = write!(
            out,
            "{indent}  {} = {}{}{sep}{} : {}",
            value_name(func, v),
            inst.op.name(),
            attributes(&inst.op),
            operands.join(", "),
            inst.ty
        );
        if let Some(bodies) = inst.op.bodies() {
            out.push_str(" {\n");
            for body in bodies.funcs() {
                write_func(out, body, &format!("{indent}    "));
            }
            let _ = write!(out, "{indent}  }}");
        }
        out.push('\n');
    }
    let results: Vec<String> = func.results.iter().map(|&r| value_name(func, r)).collect();
    let _ = writeln!(out, "{indent}  return {}\n{indent}}}", results.join(", "));
}

/// Parses the text form. Errors carry code E0900 and the span of the offending token.
pub fn parse_module(src: &str) -> Result<Module, Diagnostic> {
    Parser { src, pos: 0, depth: 0 }.module()
}

/// The deepest nesting of conditionals and loops the parser reads (each level a few KiB of stack).
const MAX_NESTING: usize = 64;

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// Conditionals and loops open around the function being read.
    depth: usize,
}

#[derive(Default)]
struct Attrs {
    map: HashMap<String, Vec<i64>>,
}

impl<'a> Parser<'a> {
    fn error(&self, message: impl Into<String>) -> Diagnostic {
        let end = (self.pos + 1).min(self.src.len()).max(self.pos);
        Diagnostic::error("E0900", format!("malformed IR text: {}", message.into()))
            .at(Span::new(self.pos, end), "here")
    }

    fn skip_ws(&mut self) {
        loop {
            let rest = &self.src[self.pos..];
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with("//") {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    fn peek_is(&mut self, token: &str) -> bool {
        self.skip_ws();
        self.src[self.pos..].starts_with(token)
    }

    fn eat(&mut self, token: &str) -> bool {
        let found = self.peek_is(token);
        if found {
            self.pos += token.len();
        }
        found
    }

    fn expect(&mut self, token: &str) -> Result<(), Diagnostic> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(format!("expected `{token}`")))
        }
    }

    /// A run of identifier characters, digits and `.`, with a leading `-` and an exponent
    /// sign in numbers: names, integers and floats (`x`, `12`, `-1.5e-7`, `-inf`).
    fn word(&mut self) -> Result<&'a str, Diagnostic> {
        self.skip_ws();
        let rest = &self.src[self.pos..];
        let bytes = rest.as_bytes();
        let numeric = matches!(bytes.first(), Some(b'0'..=b'9' | b'-'));
        let mut len = 0;
        while let Some(&c) = bytes.get(len) {
            let exponent_sign = numeric && matches!(c, b'+' | b'-') && len > 0 && matches!(bytes[len - 1], b'e' | b'E');
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || (c == b'-' && len == 0) || exponent_sign {
                len += 1;
            } else {
                break;
            }
        }
        if len == 0 {
            return Err(self.error("expected a name or number"));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    fn ident(&mut self) -> Result<&'a str, Diagnostic> {
        let start = self.pos;
        let w = self.word()?;
        if is_identifier(w) {
            Ok(w)
        } else {
            self.pos = start;
            Err(self.error(format!("expected an identifier, found `{w}`")))
        }
    }

    fn number<T: std::str::FromStr>(&mut self) -> Result<T, Diagnostic> {
        let start = self.pos;
        let w = self.word()?;
        w.parse().map_err(|_| {
            self.pos = start;
            self.error(format!("expected a number, found `{w}`"))
        })
    }

    fn int_list(&mut self) -> Result<Vec<i64>, Diagnostic> {
        self.expect("[")?;
        let mut items = vec![];
        while !self.eat("]") {
            if !items.is_empty() {
                self.expect(",")?;
            }
            items.push(self.number()?);
        }
        Ok(items)
    }

    fn ty(&mut self) -> Result<TensorType, Diagnostic> {
        let start = self.pos;
        let name = self.ident()?;
        let dtype = DType::from_name(name).ok_or_else(|| {
            self.pos = start;
            self.error(format!("unknown dtype `{name}`"))
        })?;
        let dims = self.int_list()?;
        if dims.iter().any(|&d| d <= 0) {
            return Err(self.error("dimensions must be positive"));
        }
        let shape: Vec<usize> = dims.into_iter().map(|d| d as usize).collect();
        crate::types::check_shape(&shape).map_err(|e| self.error(e))?;
        Ok(TensorType::new(dtype, shape))
    }

    fn module(mut self) -> Result<Module, Diagnostic> {
        self.expect("module")?;
        let name = self.ident()?.to_string();
        let mut funcs = vec![];
        loop {
            self.skip_ws();
            if self.pos == self.src.len() {
                return Ok(Module { name, funcs });
            }
            funcs.push(self.func()?);
        }
    }

    fn func(&mut self) -> Result<Func, Diagnostic> {
        self.expect("func")?;
        self.expect("@")?;
        let mut func = Func::new(self.ident()?, Span::default());
        let mut names: HashMap<String, Value> = HashMap::new();
        self.expect("(")?;
        while !self.eat(")") {
            if !func.params.is_empty() {
                self.expect(",")?;
            }
            self.expect("%")?;
            let name = self.ident()?.to_string();
            self.expect(":")?;
            let ty = self.ty()?;
            let v = func.add_param(name.clone(), ty, Span::default());
            if names.insert(name, v).is_some() {
                return Err(self.error("duplicate parameter name"));
            }
        }
        self.expect("->")?;
        self.expect("(")?;
        let mut result_types = vec![];
        while !self.eat(")") {
            if !result_types.is_empty() {
                self.expect(",")?;
            }
            func.result_names.push(self.ident()?.to_string());
            self.expect(":")?;
            result_types.push(self.ty()?);
        }
        self.expect("{")?;
        while !self.eat("return") {
            self.inst(&mut func, &mut names)?;
        }
        loop {
            let v = self.value(&names)?;
            func.results.push(v);
            if !self.eat(",") {
                break;
            }
        }
        if func.results.len() != result_types.len()
            || func.results.iter().zip(&result_types).any(|(&v, t)| func.ty(v) != t)
        {
            return Err(self.error("returned values do not match the declared result types"));
        }
        self.expect("}")?;
        Ok(func)
    }

    fn value(&mut self, names: &HashMap<String, Value>) -> Result<Value, Diagnostic> {
        self.expect("%")?;
        let start = self.pos;
        let name = self.word()?;
        names.get(name).copied().ok_or_else(|| {
            self.pos = start;
            self.error(format!("undefined value `%{name}`"))
        })
    }

    fn inst(&mut self, func: &mut Func, names: &mut HashMap<String, Value>) -> Result<(), Diagnostic> {
        self.expect("%")?;
        let name = self.word()?.to_string();
        self.expect("=")?;
        let op_start = self.pos;
        let op_name = self.ident()?;
        let attrs = self.attrs()?;
        let mut args = vec![];
        let mut literal = None;
        while !self.peek_is(":") {
            if !args.is_empty() || literal.is_some() {
                self.expect(",")?;
            }
            if self.peek_is("%") {
                args.push(self.value(names)?);
            } else {
                literal = Some(self.word()?);
            }
        }
        self.expect(":")?;
        let ty = self.ty()?;
        let bodies = if ["cond", "loop", "while", "scan"].contains(&op_name) { Some(self.bodies()?) } else { None };
        let end = self.pos;
        // Errors about the op itself point at its name.
        self.pos = op_start;
        let op = match bodies {
            Some(bodies) => {
                let count = |name: &str| match attrs.map.get(name).map(Vec::as_slice) {
                    Some(&[r]) => usize::try_from(r).map_err(|_| self.error(format!("`{name}` must be non-negative"))),
                    _ => Err(self.error(format!("`{op_name}` needs attribute `{name}`"))),
                };
                let result = count("result")?;
                let flag = |name: &str| match count(name)? {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(self.error(format!("`{name}` must be 0 or 1"))),
                };
                match op_name {
                    "cond" => Op::Cond { branches: bodies, result },
                    "loop" => {
                        let checkpoint = attrs.map.contains_key("checkpoint") && flag("checkpoint")?;
                        Op::Loop { body: bodies, checkpoint, result }
                    }
                    "while" => Op::While { bodies, result },
                    _ => {
                        let (reverse, checkpoint) = (flag("reverse")?, flag("checkpoint")?);
                        Op::Scan {
                            body: bodies,
                            carries: count("carries")?,
                            scanned: count("scanned")?,
                            reverse,
                            checkpoint,
                            result,
                        }
                    }
                }
            }
            None => self.op(op_name, &attrs, literal, &ty)?,
        };
        let arg_types: Vec<&TensorType> = args.iter().map(|&a| func.ty(a)).collect();
        match op.infer(&arg_types) {
            Ok(inferred) if inferred == ty => self.pos = end,
            Ok(inferred) => return Err(self.error(format!("`{op_name}` gives {inferred}, not {ty}"))),
            Err(e) => return Err(self.error(e)),
        }
        func.insts.push(Inst { op, args, ty, span: Span::default() });
        let v = Value(func.num_values() as u32 - 1);
        if names.insert(name.clone(), v).is_some() {
            return Err(self.error(format!("value `%{name}` is defined twice")));
        }
        Ok(())
    }

    /// `{ func ... }`: the functions of a conditional or loop (the op's rule checks how many).
    fn bodies(&mut self) -> Result<Bodies, Diagnostic> {
        if self.depth == MAX_NESTING {
            return Err(self.error(format!("conditionals and loops nest more than {MAX_NESTING} deep")));
        }
        self.depth += 1;
        self.expect("{")?;
        let mut funcs = vec![];
        while !self.eat("}") {
            funcs.push(self.func()?);
        }
        self.depth -= 1;
        Ok(Bodies::new(funcs))
    }

    fn attrs(&mut self) -> Result<Attrs, Diagnostic> {
        let mut attrs = Attrs::default();
        if !self.src[self.pos..].starts_with('[') {
            return Ok(attrs);
        }
        self.pos += 1;
        while !self.eat("]") {
            if !attrs.map.is_empty() {
                self.expect(",")?;
            }
            let key = self.ident()?.to_string();
            self.expect("=")?;
            let value = if self.peek_is("[") { self.int_list()? } else { vec![self.number()?] };
            attrs.map.insert(key, value);
        }
        Ok(attrs)
    }

    fn op(&self, name: &str, attrs: &Attrs, literal: Option<&str>, ty: &TensorType) -> Result<Op, Diagnostic> {
        let get = |key: &str| -> Result<&Vec<i64>, Diagnostic> {
            attrs.map.get(key).ok_or_else(|| self.error(format!("`{name}` needs attribute `{key}`")))
        };
        let indices = |key: &str| -> Result<Vec<usize>, Diagnostic> {
            get(key)?
                .iter()
                .map(|&i| usize::try_from(i).map_err(|_| self.error(format!("`{key}` must be non-negative"))))
                .collect()
        };
        let single = |key: &str| -> Result<usize, Diagnostic> {
            match indices(key)?.as_slice() {
                [a] => Ok(*a),
                _ => Err(self.error(format!("`{key}` must be one integer"))),
            }
        };
        let pair = |key: &str| -> Result<[i64; 2], Diagnostic> {
            <[i64; 2]>::try_from(get(key)?.as_slice()).map_err(|_| self.error(format!("`{key}` must be two integers")))
        };
        let positive_pair = |key: &str| -> Result<[usize; 2], Diagnostic> {
            let [a, b] = pair(key)?;
            match (usize::try_from(a), usize::try_from(b)) {
                (Ok(a), Ok(b)) => Ok([a, b]),
                _ => Err(self.error(format!("`{key}` must be non-negative"))),
            }
        };
        if let Some(u) = UnaryOp::ALL.iter().find(|u| u.name() == name) {
            return Ok(Op::Unary(*u));
        }
        if let Some(b) = BinaryOp::ALL.iter().find(|b| b.name() == name) {
            return Ok(Op::Binary(*b));
        }
        if let Some(kind) = ReduceKind::ALL.iter().find(|k| k.name() == name) {
            return Ok(Op::Reduce { kind: *kind, axes: indices("axes")? });
        }
        if let Some(kind) = ScatterKind::ALL.iter().find(|k| k.name() == name) {
            return Ok(Op::Scatter { axis: single("axis")?, kind: *kind });
        }
        Ok(match name {
            "const" => Op::Const(self.literal(literal, ty.dtype)?),
            "data" => Op::Data(self.data(literal, ty)?),
            "iota" => Op::Iota { dtype: ty.dtype, shape: ty.shape.clone(), axis: single("axis")? },
            "select" => Op::Select,
            "convert" => Op::Convert { to: ty.dtype },
            "bitcast" => Op::Bitcast { to: ty.dtype },
            "dot" => Op::Dot,
            "conv2d" => Op::Conv(ConvWindow {
                stride: positive_pair("stride")?,
                pad_lo: pair("pad_lo")?,
                pad_hi: pair("pad_hi")?,
                lhs_dilation: positive_pair("lhs_dilation")?,
                rhs_dilation: positive_pair("rhs_dilation")?,
            }),
            "reshape" => Op::Reshape { shape: ty.shape.clone() },
            "transpose" => Op::Transpose { perm: indices("perm")? },
            "broadcast" => Op::Broadcast { shape: ty.shape.clone(), dims: indices("dims")? },
            "slice" => Op::Slice { start: indices("start")?, step: get("step")?.clone(), shape: ty.shape.clone() },
            "concat" => Op::Concat { axis: single("axis")? },
            "dynamic_slice" => Op::DynamicSlice { sizes: ty.shape.clone() },
            "dynamic_update_slice" => Op::DynamicUpdateSlice,
            "gather" => Op::Gather { axis: single("axis")? },
            "argsort" => Op::Argsort {
                descending: match single("descending")? {
                    0 => false,
                    1 => true,
                    _ => return Err(self.error("`descending` must be 0 or 1")),
                },
            },
            _ => return Err(self.error(format!("unknown op `{name}`"))),
        })
    }

    /// The bytes of a `data` op, written `0x` and two hex digits per byte.
    fn data(&self, text: Option<&str>, ty: &TensorType) -> Result<crate::Constant, Diagnostic> {
        let hex = text.and_then(|t| t.strip_prefix("0x")).ok_or_else(|| self.error("`data` needs its bytes, 0x..."))?;
        if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("`data` bytes are pairs of hex digits"));
        }
        let bytes =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits")).collect();
        crate::Constant::new(ty.clone(), bytes).map_err(|e| self.error(format!("`data`: {e}")))
    }

    fn literal(&self, text: Option<&str>, dtype: DType) -> Result<Literal, Diagnostic> {
        let text = text.ok_or_else(|| self.error("`const` needs a value"))?;
        let bad = || self.error(format!("`{text}` is not a {dtype} constant"));
        match dtype {
            DType::Bool => match text {
                "true" => Ok(Literal::Bool(true)),
                "false" => Ok(Literal::Bool(false)),
                _ => Err(bad()),
            },
            DType::U8 | DType::I32 | DType::U32 | DType::I64 => {
                let v: i64 = text.parse().map_err(|_| bad())?;
                match Literal::of_i64(dtype, v) {
                    Literal::Int(_, w) if w == v => Ok(Literal::Int(dtype, v)),
                    _ => Err(bad()),
                }
            }
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 => {
                let v: f64 = text.parse().map_err(|_| bad())?;
                Ok(Literal::of_f64(dtype, v))
            }
        }
    }
}
