//! Threads: each top-level loop the schedule marked `kiln.parallel = GRAIN` becomes a *stage*
//! function that runs a range of the loop's iterations, and the loop itself a call that hands
//! the stage to a parallel-for.
//!
//! This works on the printed, bufferized and planned module (after [`crate::workspace`]), where a
//! function body is a sequence of top-level loop nests that communicate only through memory
//! (parameters, results and workspace views). A stage `@F_parK(args of F..., begin, end)` takes
//! the same arguments as its function `@F`, recomputes the pure top-level values the loop uses
//! (constants, views, subviews, reshapes) and runs iterations `[begin, end)`; a loop that uses
//! any other top-level value (a hoisted load, say) stays serial. The loop is replaced by a call
//! of `@F_parK_dispatch(args of F...)`, which the LLVM stage defines (see
//! `pipeline::add_parallel_dispatch`): it packs the arguments into a stack array and calls the
//! module's parallel-for with a trampoline `(ctx, begin, end)`.
//!
//! Iterations of a marked loop write disjoint outputs, so results do not depend on how the
//! iterations are split among threads.

use crate::printed::{defined, definitions, index_constants, loop_at, names, op_name, rhs, Loop};
use std::collections::{BTreeMap, BTreeSet};

/// A stage outlined from a parallel loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// The stage function (`@{function}_par{index}`).
    pub symbol: String,
    /// The LLVM types of the function's arguments are all pointers: how many there are.
    pub args: usize,
    /// Iterations of the loop.
    pub iterations: u64,
    /// Iterations per chunk, at least.
    pub grain: u64,
}

impl Stage {
    /// The dispatch function that replaces the loop.
    pub fn dispatch_symbol(&self) -> String {
        format!("{}_dispatch", self.symbol)
    }
}

/// Ops whose top-level results a stage may recompute, given recomputable operands: pure ops
/// (all of `arith` too), reads of read-only parameters (see [`is_recomputable`]), and the
/// stack buffers the workspace plan gives a parallel loop's scratch (each stage call, so each
/// thread, gets its own).
const RECOMPUTABLE: &[&str] = &[
    "memref.alloca",
    "vector.broadcast",
    "vector.shape_cast",
    "vector.extract",
    "vector.splat",
    "arith.constant",
    "ub.poison",
    "memref.view",
    "memref.subview",
    "memref.expand_shape",
    "memref.collapse_shape",
    "memref.cast",
    "memref.reinterpret_cast",
    "affine.apply",
];

/// Reads whose results a stage may recompute when they read a read-only parameter: nothing
/// writes parameters, so the read gives the same value wherever it runs.
const PARAMETER_READS: &[&str] = &["memref.load", "vector.transfer_read", "vector.load"];

/// Whether a top-level op `op` with operands `operands` can be recomputed in a stage.
fn is_recomputable(op: &str, operands: &[&str], recomputable: &BTreeMap<&str, &str>, params: &[Param]) -> bool {
    let known = |n: &&str| recomputable.contains_key(n) || params.iter().any(|p| p.name == *n);
    if PARAMETER_READS.contains(&op) {
        let source = operands.first().and_then(|n| params.iter().find(|p| p.name == *n));
        return source.is_some_and(|p| p.readonly) && operands[1..].iter().all(known);
    }
    (RECOMPUTABLE.contains(&op) || op.starts_with("arith.")) && operands.iter().all(known)
}

/// A parameter of a function: its name, type, and whether it is `llvm.readonly`.
struct Param {
    name: String,
    ty: String,
    readonly: bool,
}

/// One function of the printed module: its header, body lines and closing line.
struct Function<'t> {
    header: &'t str,
    body: Vec<&'t str>,
}

/// Rewrites every marked loop of `text` into a stage and a dispatch call. Returns the new
/// module text and the stages, in order.
pub fn outline(text: &str) -> Result<(String, Vec<Stage>), String> {
    let mut out = String::with_capacity(text.len() * 2);
    let mut stages = vec![];
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("func.func ") || line.trim_end().ends_with(')') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // A function definition: its body runs until the line `  }`.
        let indent = &line[..line.len() - line.trim_start().len()];
        let close = format!("{indent}}}");
        let mut body = vec![];
        for l in lines.by_ref() {
            if l == close {
                break;
            }
            body.push(l);
        }
        let f = Function { header: line, body };
        let (function, stage_functions) = rewrite_function(&f, indent, &mut stages)?;
        out.push_str(&function);
        out.push_str(&close);
        out.push('\n');
        out.push_str(&stage_functions);
    }
    // Declarations of the dispatch functions, before the module's closing brace.
    if !stages.is_empty() {
        let end = out.trim_end().rfind('}').ok_or("no module in the text")?;
        let mut decls = String::new();
        for (stage, types) in &stages {
            decls.push_str(&format!("  func.func private @{}({types})\n", stage.dispatch_symbol()));
        }
        out.insert_str(end, &decls);
    }
    Ok((out, stages.into_iter().map(|(s, _)| s).collect()))
}

/// The symbol and the (name, type) parameters of a function header
/// `func.func private @f(%a: T {attrs}, ...) {`.
fn signature(header: &str) -> Result<(String, Vec<Param>), String> {
    let bad = || format!("unexpected function header `{header}`");
    let symbol = header.split('@').nth(1).and_then(|s| s.split('(').next()).ok_or_else(bad)?;
    let open = header.find('(').ok_or_else(bad)?;
    let close = header.rfind(") {").ok_or_else(bad)?;
    let mut params = vec![];
    for p in split_top_level(&header[open + 1..close]) {
        let (name, rest) = p.split_once(": ").ok_or_else(bad)?;
        let ty = rest.split(" {").next().unwrap_or(rest).trim();
        let readonly = rest.contains("llvm.readonly");
        params.push(Param { name: name.trim().to_string(), ty: ty.to_string(), readonly });
    }
    Ok((symbol.to_string(), params))
}

/// Splits at commas outside `<>`, `()`, `[]` and `{}`.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, vec![]);
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' | '[' | '{' => depth += 1,
            '>' | ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        parts.push(s[start..].trim());
    }
    parts
}

/// Whether a body line is at the function's top level (one indentation step in).
fn is_top_level(line: &str, indent: &str) -> bool {
    line.len() > indent.len() + 2
        && line.starts_with(indent)
        && line[indent.len()..].starts_with("  ")
        && !line[indent.len() + 2..].starts_with(' ')
}

/// The function with its marked loops replaced by dispatch calls (without its closing line),
/// and the text of the stage functions.
fn rewrite_function(f: &Function, indent: &str, stages: &mut Vec<(Stage, String)>) -> Result<(String, String), String> {
    let (symbol, params) = signature(f.header)?;
    let constants = index_constants(f.body.iter().copied().filter(|l| is_top_level(l, indent)));
    let inner = format!("{indent}  ");
    let mut out = format!("{}\n", f.header);
    let mut stage_texts = String::new();
    // Top-level names that a stage may recompute, with their defining line.
    let mut recomputable: BTreeMap<&str, &str> = BTreeMap::new();
    let mut i = 0;
    while i < f.body.len() {
        let line = f.body[i];
        if !is_top_level(line, indent) {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        }
        if let Some(name) = defined(line) {
            let operands: Vec<&str> = names(rhs(line)).collect();
            if is_recomputable(op_name(line), &operands, &recomputable, &params) {
                recomputable.insert(name, line);
            }
        }
        // A loop without results: its lines run to the closing line at the same indentation.
        let Some(l) = loop_at(&f.body, i).filter(|_| line.trim_start().starts_with("scf.for ")) else {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        };
        let loop_lines = &f.body[l.header..=l.close];
        match stage_of(&l, loop_lines, &params, &constants, &recomputable, &symbol, stages.len())? {
            Some((stage, text)) => {
                let arg_names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                let types: Vec<&str> = params.iter().map(|p| p.ty.as_str()).collect();
                out.push_str(&format!(
                    "{inner}func.call @{}({}) : ({}) -> ()\n",
                    stage.dispatch_symbol(),
                    arg_names.join(", "),
                    types.join(", ")
                ));
                stage_texts.push_str(&text);
                stages.push((stage, types.join(", ")));
            }
            None => {
                for l in loop_lines {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        i = l.close + 1;
    }
    Ok((out, stage_texts))
}

/// The stage for the loop `l` (its `lines`, header to closing line), when it is marked
/// parallel, has constant bounds and no loop-carried values, and uses only recomputable
/// top-level values.
fn stage_of(
    l: &Loop,
    lines: &[&str],
    params: &[Param],
    constants: &BTreeMap<&str, i64>,
    recomputable: &BTreeMap<&str, &str>,
    function: &str,
    index: usize,
) -> Result<Option<(Stage, String)>, String> {
    let (header, close) = (lines[0], lines[lines.len() - 1]);
    let Some(grain) =
        close.split("kiln.parallel = ").nth(1).and_then(|g| g.split(' ').next()).and_then(|g| g.parse::<u64>().ok())
    else {
        return Ok(None);
    };
    // Exactly `scf.for %iv = %lb to %ub step %step {`: index bounds, no loop-carried values.
    let words: Vec<&str> = header.split_whitespace().collect();
    if words.len() != 9 || words[0] != "scf.for" || words[8] != "{" {
        return Ok(None);
    }
    let iv = &l.iv;
    let (Some(&lb_v), Some(&ub_v), Some(&step_v)) =
        (constants.get(l.lower.as_str()), constants.get(l.upper.as_str()), constants.get(l.step.as_str()))
    else {
        return Ok(None);
    };
    let iterations = u64::try_from((ub_v - lb_v + step_v - 1) / step_v).unwrap_or(0);
    if iterations < 2 {
        return Ok(None);
    }
    // Every top-level value the loop uses must be a parameter or recomputable.
    let inside: BTreeSet<&str> = lines.iter().flat_map(|l| definitions(l)).collect();
    let mut needed = BTreeSet::new();
    for n in lines.iter().flat_map(|l| names(l)) {
        if inside.contains(n) || params.iter().any(|p| p.name == n) {
            continue;
        }
        if !recomputable.contains_key(n) {
            return Ok(None);
        }
        needed.insert(n);
    }
    let symbol = format!("{function}_par{index}");
    let indent = &header[..header.len() - header.trim_start().len()];
    let sig: Vec<String> = params
        .iter()
        .map(|p| format!("{}: {} {{llvm.noalias{}}}", p.name, p.ty, if p.readonly { ", llvm.readonly" } else { "" }))
        .collect();
    let mut text = format!(
        "{}func.func private @{symbol}({}, %kiln_begin: index, %kiln_end: index) {{\n",
        &indent[2..],
        sig.join(", ")
    );
    // Recomputed values, each after the values it uses.
    let mut emitted = BTreeSet::new();
    for &n in &needed {
        emit_with_dependencies(n, recomputable, &mut emitted, &mut text);
    }
    text.push_str(&format!(
        "{indent}%kiln_lb = arith.constant {lb_v} : index\n\
         {indent}%kiln_ub = arith.constant {ub_v} : index\n\
         {indent}%kiln_step = arith.constant {step_v} : index\n\
         {indent}%kiln_b = arith.muli %kiln_begin, %kiln_step : index\n\
         {indent}%kiln_lo = arith.addi %kiln_lb, %kiln_b : index\n\
         {indent}%kiln_e = arith.muli %kiln_end, %kiln_step : index\n\
         {indent}%kiln_e1 = arith.addi %kiln_lb, %kiln_e : index\n\
         {indent}%kiln_hi = arith.minsi %kiln_e1, %kiln_ub : index\n\
         {indent}scf.for {iv} = %kiln_lo to %kiln_hi step %kiln_step {{\n"
    ));
    for l in &lines[1..lines.len() - 1] {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str(&format!("{indent}}}\n{indent}return\n{}}}\n", &indent[2..]));
    let stage = Stage { symbol, args: params.len(), iterations, grain };
    Ok(Some((stage, text)))
}

/// Emits the definition of `name` after those of the recomputable values it uses.
fn emit_with_dependencies<'t>(
    name: &'t str,
    recomputable: &BTreeMap<&'t str, &'t str>,
    emitted: &mut BTreeSet<&'t str>,
    text: &mut String,
) {
    let Some(def) = recomputable.get(name) else { return };
    if !emitted.insert(name) {
        return;
    }
    for n in names(rhs(def)) {
        if let Some((&k, _)) = recomputable.get_key_value(n) {
            emit_with_dependencies(k, recomputable, emitted, text);
        }
    }
    text.push_str(def);
    text.push('\n');
}

/// Defines, in the translated LLVM module, the module's parallel-for pointer (a serial loop
/// until [`kiln_manifest::parallel_for_symbol`] is called with a pool's parallel-for), its setter, and for each
/// stage the dispatch function the MLIR module declared and a trampoline
/// `(ctx, begin, end)` that unpacks the arguments and runs the stage.
///
/// The parallel-for has the C type
/// `void (*)(void (*body)(void* ctx, int64_t begin, int64_t end), void* ctx, int64_t n, int64_t grain)`:
/// it must call `body` on disjoint ranges covering `[0, n)`, each at least `grain` long except
/// perhaps the last, and return when all have finished.
pub fn add_dispatch<'c>(
    llvm: &'c inkwell::context::Context,
    m: &inkwell::module::Module<'c>,
    module: &str,
    stages: &[Stage],
) -> Result<(), String> {
    use inkwell::module::Linkage;
    use inkwell::AddressSpace;
    let e = |e: inkwell::builder::BuilderError| e.to_string();
    let ptr = llvm.ptr_type(AddressSpace::default());
    let i64t = llvm.i64_type();
    let void = llvm.void_type();
    let body_type = void.fn_type(&[ptr.into(), i64t.into(), i64t.into()], false);
    let for_type = void.fn_type(&[ptr.into(), ptr.into(), i64t.into(), i64t.into()], false);
    let b = llvm.create_builder();

    // The serial parallel-for: body(ctx, 0, n).
    let serial = m.add_function(&format!("{module}_serial_for"), for_type, Some(Linkage::Internal));
    b.position_at_end(llvm.append_basic_block(serial, "entry"));
    let [body, ctx, n, _] = [0, 1, 2, 3].map(|i| serial.get_nth_param(i).expect("four parameters"));
    b.build_indirect_call(body_type, body.into_pointer_value(), &[ctx.into(), i64t.const_zero().into(), n.into()], "")
        .map_err(e)?;
    b.build_return(None).map_err(e)?;

    let current = m.add_global(ptr, None, &format!("{module}_parallel_for"));
    current.set_linkage(Linkage::Internal);
    current.set_initializer(&serial.as_global_value().as_pointer_value());

    // The setter: NULL restores the serial loop.
    let setter = m.add_function(&kiln_manifest::parallel_for_symbol(module), void.fn_type(&[ptr.into()], false), None);
    b.position_at_end(llvm.append_basic_block(setter, "entry"));
    let given = setter.get_first_param().expect("one parameter").into_pointer_value();
    let is_null = b.build_is_null(given, "").map_err(e)?;
    let chosen = b.build_select(is_null, serial.as_global_value().as_pointer_value(), given, "").map_err(e)?;
    b.build_store(current.as_pointer_value(), chosen).map_err(e)?;
    b.build_return(None).map_err(e)?;

    for stage in stages {
        let run = m.get_function(&stage.symbol).ok_or_else(|| format!("no stage `{}`", stage.symbol))?;
        let trampoline = m.add_function(&format!("{}_entry", stage.symbol), body_type, Some(Linkage::Internal));
        b.position_at_end(llvm.append_basic_block(trampoline, "entry"));
        let ctx = trampoline.get_nth_param(0).expect("ctx").into_pointer_value();
        let array = ptr.array_type(stage.args as u32);
        let mut args = vec![];
        for i in 0..stage.args {
            // SAFETY: the index is within the array of `stage.args` pointers built below.
            let slot =
                unsafe { b.build_in_bounds_gep(array, ctx, &[i64t.const_zero(), i64t.const_int(i as u64, false)], "") }
                    .map_err(e)?;
            args.push(b.build_load(ptr, slot, "").map_err(e)?.into());
        }
        args.push(trampoline.get_nth_param(1).expect("begin").into());
        args.push(trampoline.get_nth_param(2).expect("end").into());
        b.build_call(run, &args, "").map_err(e)?;
        b.build_return(None).map_err(e)?;

        let dispatch = m
            .get_function(&stage.dispatch_symbol())
            .ok_or_else(|| format!("no dispatch `{}`", stage.dispatch_symbol()))?;
        dispatch.set_linkage(Linkage::Internal);
        b.position_at_end(llvm.append_basic_block(dispatch, "entry"));
        let ctx = b.build_alloca(array, "ctx").map_err(e)?;
        for (i, p) in dispatch.get_param_iter().enumerate() {
            // SAFETY: as above.
            let slot =
                unsafe { b.build_in_bounds_gep(array, ctx, &[i64t.const_zero(), i64t.const_int(i as u64, false)], "") }
                    .map_err(e)?;
            b.build_store(slot, p).map_err(e)?;
        }
        let f = b.build_load(ptr, current.as_pointer_value(), "").map_err(e)?.into_pointer_value();
        let entry = trampoline.as_global_value().as_pointer_value();
        let (n, grain) = (i64t.const_int(stage.iterations, false), i64t.const_int(stage.grain, false));
        b.build_indirect_call(for_type, f, &[entry.into(), ctx.into(), n.into(), grain.into()], "").map_err(e)?;
        b.build_return(None).map_err(e)?;
    }
    Ok(())
}
