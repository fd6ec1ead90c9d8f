//! Threads: each top-level loop the schedule marked `kiln.parallel = GRAIN` becomes a *stage*
//! function that runs a range of the loop's iterations, and the loop itself a call that hands
//! the stage to a parallel-for.
//!
//! This works in memory on the bufferized and planned module (after [`crate::workspace`]),
//! where a function body is a sequence of top-level loop nests that communicate only through
//! memory (parameters, results and workspace views). A stage `@F_parK(args of F..., begin, end)` takes
//! the same arguments as its function `@F`, recomputes the pure top-level values the loop uses
//! (constants, views, subviews, reshapes) and runs iterations `[begin, end)`; a loop that uses
//! any other top-level value (a hoisted load, say) stays serial. The loop is replaced by a call
//! of `@F_parK_dispatch(args of F...)`, which the LLVM stage defines (see
//! [`add_dispatch`]): it packs the arguments into a stack array and calls the
//! module's parallel-for with a trampoline `(ctx, begin, end)`.
//!
//! Iterations of a marked loop write disjoint outputs, so results do not depend on how the
//! iterations are split among threads.
//!
//! Marked loops nested in the loops the emitter made for kiln's loops (the steps of a fold,
//! say) become stages too: a stage then also takes the enclosing loops' induction variables,
//! each stored by the caller in a stack slot of the function (`memref<1xi64>`, so that a
//! stage's arguments stay pointers) and read back by the stage, which recomputes the views
//! made from them. Such a loop's scratch (a buffer only it uses, a row group's row, say) is on
//! the stack arena, as a top-level loop's is (see [`crate::workspace`]); one with scratch in
//! the workspace (which the plan could not place on the stack) stays serial.

use crate::edit::{cloned, declaration, defined_in, erase, function_bodies, int_constant, key, remap, symbol};
use melior::dialect::{arith, func, memref};
use melior::ir::attribute::{ArrayAttribute, AttributeLike, IntegerAttribute, StringAttribute, TypeAttribute};
use melior::ir::operation::{OperationLike, OperationMutLike, OperationRef, OperationRefMut, WalkOrder, WalkResult};
use melior::ir::r#type::{FunctionType, IntegerType, MemRefType};
use melior::ir::{
    Attribute, Block, BlockLike, BlockRef, Identifier, Location, Module, Operation, Region, RegionLike, Type, Value,
    ValueLike,
};
use melior::Context;
use mlir_sys::MlirValue;
use std::collections::BTreeMap;

/// Loops doing less work than this (elements, or multiply-adds) run serially: a parallel
/// dispatch costs about a microsecond.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// Work per chunk of a parallel loop, at least: 16K elements or multiply-adds.
const PARALLEL_GRAIN_WORK: usize = 1 << 14;

/// The grain (`kiln.parallel = GRAIN`, iterations per chunk) of a parallel loop doing `total`
/// work, `per_iteration` per iteration, or None when the loop is not worth threads.
pub(crate) fn grain(total: usize, per_iteration: usize) -> Option<usize> {
    (total >= PARALLEL_MIN_WORK).then(|| PARALLEL_GRAIN_WORK.div_ceil(per_iteration.max(1)))
}

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
/// (all of `arith` too; `memref.get_global` names a constant), reads of read-only parameters (see [`is_recomputable`]), and the
/// stack buffers the workspace plan gives a parallel loop's scratch (each stage call, so each
/// thread, gets its own).
const RECOMPUTABLE: &[&str] = &[
    "memref.alloca",
    "memref.get_global",
    "vector.step",
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

/// A function being outlined: its entry block's arguments, which are read-only, and the
/// top-level ops a stage may recompute (by the values they define).
pub(crate) struct Function<'c, 'a> {
    params: Vec<Value<'c, 'a>>,
    readonly: Vec<bool>,
    /// By the values they define: the ops, numbered in the order they were met (an op of an
    /// enclosing loop's body comes after the ops before that loop).
    recomputable: BTreeMap<usize, (usize, OperationRef<'c, 'a>)>,
    /// The induction variables of the loops enclosing the block being outlined, outermost
    /// first, and the stack slots that pass each to stages.
    extras: Vec<Value<'c, 'a>>,
    slots: Vec<Value<'c, 'a>>,
    /// How many ops (views aside) use each buffer (see [`root`]), in the whole function.
    uses: BTreeMap<usize, usize>,
}

impl<'c, 'a> Function<'c, 'a> {
    /// The function `func` with entry block `body`, before any top-level op is noted.
    pub(crate) fn new(func: &OperationRef<'c, 'a>, body: &BlockRef<'c, 'a>) -> Result<Self, String> {
        let params: Vec<Value> = (0..body.argument_count())
            .map(|i| body.argument(i).map(Value::from))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let readonly = (0..params.len()).map(|i| is_readonly(func, i)).collect();
        let mut uses = BTreeMap::new();
        func.walk(WalkOrder::PreOrder, |op| {
            if !is_view(&op) {
                for v in op.operands().filter(is_buffer) {
                    *uses.entry(root(v)).or_default() += 1;
                }
            }
            WalkResult::Advance
        });
        Ok(Function { params, readonly, recomputable: BTreeMap::new(), extras: vec![], slots: vec![], uses })
    }

    /// Notes the top-level op `top`, met in block order, as recomputable when it is; returns
    /// whether it is.
    pub(crate) fn note(&mut self, top: &OperationRef<'c, 'a>) -> bool {
        let recomputable = top.result_count() > 0 && self.is_recomputable(top);
        if recomputable {
            let seq = self.recomputable.len();
            for r in top.results() {
                self.recomputable.insert(key(r.to_raw()), (seq, *top));
            }
        }
        recomputable
    }

    /// The function's parameters, which an outlined function takes first.
    pub(crate) fn params(&self) -> &[Value<'c, 'a>] {
        &self.params
    }

    /// Clones into `block`, in function order, the recomputable values that `ops` (and the ops
    /// nested in them) use, with the recomputable values those need, and maps each old value
    /// to its clone in `map` (which must already map the parameters).
    pub(crate) fn recompute_into(
        &self,
        ops: &[OperationRef<'c, 'a>],
        block: &Block<'c>,
        map: &mut BTreeMap<usize, MlirValue>,
    ) {
        // By their place in the function, each once.
        let mut needed: BTreeMap<usize, OperationRef> = BTreeMap::new();
        let mut pending: Vec<Value> = vec![];
        for op in ops {
            op.walk(WalkOrder::PreOrder, |op| {
                pending.extend(
                    op.operands()
                        .filter(|&v| self.recomputable.contains_key(&key(v.to_raw())))
                        // SAFETY: the operands of live ops of this function outlive the walk.
                        .map(|v| unsafe { Value::from_raw(v.to_raw()) }),
                );
                WalkResult::Advance
            });
        }
        while let Some(v) = pending.pop() {
            let Some(&(seq, def)) = self.recomputable.get(&key(v.to_raw())) else { continue };
            if needed.insert(seq, def).is_none() {
                pending.extend(def.operands().filter(|&v| self.recomputable.contains_key(&key(v.to_raw()))));
            }
        }
        for def in needed.into_values() {
            let copy = block.append_operation(cloned(&def));
            remap(&copy, map);
            for (old, new) in def.results().zip(copy.results()) {
                map.insert(key(old.to_raw()), new.to_raw());
            }
        }
    }

    /// The argument attributes of an outlined function that takes the parameters and then
    /// `extra` read-only pointers: every one noalias (as in the function), and read-only where
    /// the function's is.
    pub(crate) fn argument_attributes(&self, context: &'c Context, extra: usize) -> Result<Vec<Attribute<'c>>, String> {
        let extras = std::iter::repeat_n(&true, extra);
        let text = |readonly: &bool| if *readonly { "{llvm.noalias, llvm.readonly}" } else { "{llvm.noalias}" };
        self.readonly
            .iter()
            .chain(extras)
            .map(|r| Attribute::parse(context, text(r)).ok_or_else(|| "no argument attributes".to_string()))
            .collect()
    }

    fn param(&self, v: Value) -> Option<usize> {
        self.params.iter().position(|&p| p == v)
    }

    /// Whether a value is a parameter, an enclosing loop's induction variable, or
    /// recomputable.
    fn known(&self, v: Value) -> bool {
        self.param(v).is_some() || self.extras.contains(&v) || self.recomputable.contains_key(&key(v.to_raw()))
    }

    /// Whether the top-level op `op` can be recomputed in a stage.
    fn is_recomputable(&self, op: &OperationRef) -> bool {
        let name = op.name().as_string_ref().as_str().unwrap_or("").to_string();
        let operands: Vec<Value> = op.operands().collect();
        if PARAMETER_READS.contains(&name.as_str()) {
            let readonly = operands.first().and_then(|&m| self.param(m)).is_some_and(|i| self.readonly[i]);
            return readonly && operands[1..].iter().all(|&v| self.known(v));
        }
        (RECOMPUTABLE.contains(&name.as_str()) || name.starts_with("arith.")) && operands.iter().all(|&v| self.known(v))
    }
}

/// Whether argument `index` of `func` has `llvm.readonly` among its argument attributes.
fn is_readonly(func: &OperationRef, index: usize) -> bool {
    let Some(attrs) = func.attribute("arg_attrs").ok().and_then(|a| ArrayAttribute::try_from(a).ok()) else {
        return false;
    };
    let Ok(dictionary) = attrs.element(index) else { return false };
    // SAFETY: a query on a live attribute; the name is a valid string reference.
    unsafe {
        mlir_sys::mlirAttributeIsADictionary(dictionary.to_raw())
            && !mlir_sys::mlirDictionaryAttrGetElementByName(
                dictionary.to_raw(),
                melior::StringRef::new("llvm.readonly").to_raw(),
            )
            .ptr
            .is_null()
    }
}

/// Outlines every marked loop of the module into a stage and replaces it by a dispatch call
/// (declared at the module's end). Returns the stages, in order.
pub fn outline<'c>(context: &'c Context, module: &Module<'c>) -> Result<Vec<Stage>, String> {
    let mut out = Outlined { stages: vec![], dispatch_types: vec![] };
    // The functions as they are before any stage is added.
    for (func, body) in function_bodies(module) {
        let symbol = symbol(&func).ok_or("a function without a name")?;
        let mut f = Function::new(&func, &body)?;
        // The last stage function placed after this function.
        let mut after = func;
        outline_block(context, module, &mut f, &body, &body, &symbol, &mut after, &mut out)?;
    }
    for (symbol, types) in out.dispatch_types {
        module.body().append_operation(declaration(context, &symbol, &types, &[]));
    }
    Ok(out.stages)
}

/// The stages made so far, and the types of their dispatch functions.
struct Outlined<'c> {
    stages: Vec<Stage>,
    dispatch_types: Vec<(String, Vec<Type<'c>>)>,
}

/// Outlines the marked loops of `block` (the function's body `entry`, or the body of a loop
/// nested there, whose induction variables are `f.extras`), and those of the loops nested in
/// it, placing stage functions after `after`.
#[allow(clippy::too_many_arguments)]
fn outline_block<'c, 'a>(
    context: &'c Context,
    module: &'a Module<'c>,
    f: &mut Function<'c, 'a>,
    entry: &BlockRef<'c, 'a>,
    block: &BlockRef<'c, 'a>,
    symbol: &str,
    after: &mut OperationRef<'c, 'a>,
    out: &mut Outlined<'c>,
) -> Result<(), String> {
    let location = Location::unknown(context);
    let mut op = block.first_operation();
    while let Some(top) = op {
        op = top.next_in_block();
        f.note(&top);
        let Some(stage) = stage_of(f, &top, symbol, out.stages.len()) else {
            if let Some(body) = nested_body(&top) {
                let iv: Value = body.argument(0).map_err(|e| e.to_string())?.into();
                if f.slots.len() == f.extras.len() {
                    // A slot per depth, at the start of the function (an alloca in a loop
                    // would take stack space at every iteration).
                    let ty = MemRefType::new(IntegerType::new(context, 64).into(), &[1], None, None);
                    let alloca = memref::alloca(context, ty, &[], &[], None, location);
                    let slot = match entry.first_operation() {
                        Some(first) => entry.insert_operation_before(first, alloca),
                        None => entry.append_operation(alloca),
                    };
                    f.slots.push(slot.result(0).map_err(|e| e.to_string())?.into());
                }
                // The induction variable into its slot, once per iteration, for every stage
                // of the body.
                let first = body.first_operation().ok_or("a loop body without ops")?;
                let zero = body.insert_operation_before(first, int_index(context, 0, location));
                let zero: Value = zero.result(0).map_err(|e| e.to_string())?.into();
                let word = body.insert_operation_before(
                    first,
                    arith::index_cast(iv, IntegerType::new(context, 64).into(), location),
                );
                let word: Value = word.result(0).map_err(|e| e.to_string())?.into();
                body.insert_operation_before(first, memref::store(word, f.slots[f.extras.len()], &[zero], location));
                f.extras.push(iv);
                outline_block(context, module, f, entry, &body, symbol, after, out)?;
                f.extras.pop();
            }
            continue;
        };
        let stage_func = stage_function(context, f, &top, &stage)?;
        *after = module.body().insert_operation_after(*after, stage_func);
        // The stage takes the slots of the enclosing induction variables after the parameters.
        let slots = &f.slots[..f.extras.len()];
        let args: Vec<Value> = f.params.iter().chain(slots).copied().collect();
        let types: Vec<Type> = args.iter().map(|p| p.r#type()).collect();
        let call = func::call(
            context,
            melior::ir::attribute::FlatSymbolRefAttribute::new(context, &stage.dispatch_symbol()),
            &args,
            &[],
            top.location(),
        );
        block.insert_operation_before(top, call);
        // SAFETY: a loop without results, used by nothing, replaced by the call.
        unsafe { erase(top.to_raw()) };
        out.dispatch_types.push((stage.dispatch_symbol(), types));
        out.stages.push(stage);
    }
    Ok(())
}

/// `arith.constant value : index`.
fn int_index<'c>(context: &'c Context, value: i64, location: Location<'c>) -> Operation<'c> {
    arith::constant(context, IntegerAttribute::new(Type::index(context), value).into(), location)
}

/// The body of a loop the emitter made for one of kiln's loops, whose marked loops may become
/// stages: an `scf.for` without results (its carries live in buffers of their own) that is
/// not itself marked parallel.
fn nested_body<'c, 'a>(op: &OperationRef<'c, 'a>) -> Option<BlockRef<'c, 'a>> {
    let is_loop = op.name().as_string_ref().as_str() == Ok("scf.for") && op.result_count() == 0;
    (is_loop && op.has_attribute("kiln.carries") && !op.has_attribute("kiln.parallel"))
        .then(|| op.region(0).ok()?.first_block())
        .flatten()
}

/// Views: ops whose result is (a part of) their first operand's buffer.
const VIEWS: &[&str] =
    &["memref.subview", "memref.expand_shape", "memref.collapse_shape", "memref.cast", "memref.reinterpret_cast"];

fn is_buffer(v: &Value) -> bool {
    MemRefType::try_from(v.r#type()).is_ok()
}

fn is_view(op: &OperationRef) -> bool {
    VIEWS.contains(&op.name().as_string_ref().as_str().unwrap_or(""))
}

/// The op defining `v`, if an op does.
fn definition<'c, 'a>(v: Value<'c, 'a>) -> Option<OperationRef<'c, 'a>> {
    // SAFETY: an ownership query on a live value.
    unsafe {
        v.is_operation_result().then(|| OperationRef::from_option_raw(mlir_sys::mlirOpResultGetOwner(v.to_raw())))
    }
    .flatten()
}

/// The buffer a value is a view of, by its defining value (a workspace view, an allocation or
/// a parameter): views followed to their sources.
fn root_value<'c, 'a>(v: Value<'c, 'a>) -> Value<'c, 'a> {
    let mut v = v;
    while let Some(source) = definition(v).filter(is_view).and_then(|def| def.operand(0).ok()) {
        // SAFETY: the source of a live view is a live value of the same module.
        v = unsafe { Value::from_raw(source.to_raw()) };
    }
    v
}

fn root(v: Value) -> usize {
    key(root_value(v).to_raw())
}

/// Whether a buffer is a view of the stack arena (a `memref.alloca` the stage recomputes, so
/// each thread has its own: see [`crate::workspace`]).
fn on_stack(v: Value) -> bool {
    let arena = definition(root_value(v))
        .filter(|def| def.name().as_string_ref().as_str() == Ok("memref.view"))
        .and_then(|def| def.operand(0).ok())
        .and_then(definition);
    arena.is_some_and(|a| a.name().as_string_ref().as_str() == Ok("memref.alloca"))
}

/// The stage for the top-level op `l`, when it is a loop marked parallel with constant bounds,
/// at least 2 iterations and no loop-carried values, that uses only parameters and
/// recomputable values.
fn stage_of(f: &Function, l: &OperationRef, function: &str, index: usize) -> Option<Stage> {
    if l.name().as_string_ref().as_str() != Ok("scf.for") || l.result_count() != 0 || l.operand_count() != 3 {
        return None;
    }
    let grain = l.attribute("kiln.parallel").ok().filter(|a| a.is_integer())?;
    let grain = u64::try_from(IntegerAttribute::try_from(grain).ok()?.value()).ok()?;
    let [lb, ub, step] = [0, 1, 2].map(|i| l.operand(i).ok().and_then(int_constant));
    let (lb, ub, step) = (lb?, ub?, step?);
    let iterations = u64::try_from((ub - lb + step - 1) / step).unwrap_or(0);
    if iterations < 2 {
        return None;
    }
    // Every value from outside the loop that its body uses must be a parameter, an enclosing
    // loop's induction variable or recomputable; nested, the loop may use no buffer that only
    // it uses (scratch, which the workspace plan shares among its iterations).
    let nested = !f.extras.is_empty();
    let mut outside_ok = true;
    let mut inside: BTreeMap<usize, usize> = BTreeMap::new();
    l.walk(WalkOrder::PreOrder, |op| {
        if op.to_raw().ptr != l.to_raw().ptr {
            outside_ok &= op.operands().all(|v| defined_in(v, l) || f.known(v));
            if nested && !is_view(&op) {
                for v in op.operands().filter(|v| is_buffer(v) && !on_stack(*v)) {
                    *inside.entry(root(v)).or_default() += 1;
                }
            }
        }
        WalkResult::Advance
    });
    let scratch = |(buffer, n): (&usize, &usize)| {
        f.uses.get(buffer) == Some(n) && !f.params.iter().any(|p| key(p.to_raw()) == *buffer)
    };
    let own_scratch = inside.iter().any(scratch);
    (outside_ok && !own_scratch).then(|| Stage {
        symbol: format!("{function}_par{index}"),
        args: f.params.len() + f.extras.len(),
        iterations,
        grain,
    })
}

/// The stage function of loop `l` of function `f`: `@F_parK(params..., begin, end)` recomputes the
/// values the loop needs, in their order in the function, and runs iterations
/// `[begin, end)` of the loop.
fn stage_function<'c>(
    context: &'c Context,
    f: &Function<'c, '_>,
    l: &OperationRef<'c, '_>,
    stage: &Stage,
) -> Result<Operation<'c>, String> {
    let location = l.location();
    let index = Type::index(context);
    let slots = &f.slots[..f.extras.len()];
    let param_types: Vec<Type> = f.params.iter().chain(slots).map(|p| p.r#type()).collect();
    let arguments: Vec<(Type, Location)> = param_types.iter().chain([&index, &index]).map(|&t| (t, location)).collect();
    let block = Block::new(&arguments);
    // Old value -> its value in the stage.
    let mut map: BTreeMap<usize, MlirValue> = BTreeMap::new();
    for (i, &p) in f.params.iter().enumerate() {
        map.insert(key(p.to_raw()), block.argument(i).map_err(|e| e.to_string())?.to_raw());
    }
    // The enclosing loops' induction variables, read from their slots.
    for (d, &iv) in f.extras.iter().enumerate() {
        let slot: Value = block.argument(f.params.len() + d).map_err(|e| e.to_string())?.into();
        let zero = block.append_operation(int_index(context, 0, location));
        let zero: Value = zero.result(0).map_err(|e| e.to_string())?.into();
        let word = block.append_operation(memref::load(slot, &[zero], location));
        let word: Value = word.result(0).map_err(|e| e.to_string())?.into();
        let value = block.append_operation(arith::index_cast(word, index, location));
        map.insert(key(iv.to_raw()), value.result(0).map_err(|e| e.to_string())?.to_raw());
    }
    // The recomputable values the loop needs, with what they need, in function order.
    f.recompute_into(&[*l], &block, &mut map);
    // Iterations [begin, end) of the loop: from lb + begin * step to min(lb + end * step, ub).
    let [lb, ub, step] = [0, 1, 2].map(|i| l.operand(i).ok().and_then(int_constant).unwrap_or(0));
    fn value<'c, 'a>(op: OperationRef<'c, 'a>) -> Value<'c, 'a> {
        op.result(0).expect("an op with a result").into()
    }
    let (begin, end): (Value, Value) = (
        block.argument(f.params.len() + slots.len()).map_err(|e| e.to_string())?.into(),
        block.argument(f.params.len() + slots.len() + 1).map_err(|e| e.to_string())?.into(),
    );
    let lb = value(block.append_operation(int_index(context, lb, location)));
    let ub = value(block.append_operation(int_index(context, ub, location)));
    let step = value(block.append_operation(int_index(context, step, location)));
    let b = value(block.append_operation(arith::muli(begin, step, location)));
    let lo = value(block.append_operation(arith::addi(lb, b, location)));
    let e = value(block.append_operation(arith::muli(end, step, location)));
    let e1 = value(block.append_operation(arith::addi(lb, e, location)));
    let hi = value(block.append_operation(arith::minsi(e1, ub, location)));
    let copy = block.append_operation(cloned(l));
    remap(&copy, &map);
    // SAFETY: the copied loop is live; its bounds become the stage's range.
    let mut copy = unsafe { OperationRefMut::from_raw(copy.to_raw()) };
    copy.set_operand(0, lo);
    copy.set_operand(1, hi);
    copy.set_operand(2, step);
    // The stage's loop is no longer the function's parallel loop (and `kiln.rows` has done its
    // work in the prefetch stage); an absent attribute is fine.
    let _ = copy.remove_attribute("kiln.parallel");
    let _ = copy.remove_attribute("kiln.rows");
    block.append_operation(func::r#return(&[], location));
    let region = Region::new();
    region.append_block(block);
    let mut arg_attrs = f.argument_attributes(context, slots.len())?;
    let empty = Attribute::parse(context, "{}").ok_or("no empty dictionary")?;
    arg_attrs.extend([empty, empty]);
    let signature: Vec<Type> = arguments.iter().map(|(t, _)| *t).collect();
    Ok(func::func(
        context,
        StringAttribute::new(context, &stage.symbol),
        TypeAttribute::new(FunctionType::new(context, &signature, &[]).into()),
        region,
        &[
            (Identifier::new(context, "sym_visibility"), StringAttribute::new(context, "private").into()),
            (Identifier::new(context, "arg_attrs"), ArrayAttribute::new(context, &arg_attrs).into()),
        ],
        location,
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mlir;

    /// A function with two marked loops: the first uses a view (recomputed in its stage), the
    /// second a value loaded from a written buffer (it stays serial).
    const MODULE: &str = r#"module {
  func.func private @f(%x: memref<64xf32> {llvm.noalias, llvm.readonly}, %y: memref<64xf32> {llvm.noalias}, %ws: memref<256xi8> {llvm.noalias}) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c64 = arith.constant 64 : index
    %t = memref.view %ws[%c0][] : memref<256xi8> to memref<64xf32>
    scf.for %i = %c0 to %c64 step %c1 {
      %v = memref.load %x[%i] : memref<64xf32>
      memref.store %v, %t[%i] : memref<64xf32>
    } {kiln.parallel = 8 : i64}
    %s = memref.load %t[%c0] : memref<64xf32>
    scf.for %i = %c0 to %c64 step %c1 {
      memref.store %s, %y[%i] : memref<64xf32>
    } {kiln.parallel = 8 : i64}
    return
  }
}
"#;

    #[test]
    fn marked_loops_become_stages_unless_they_need_a_computed_value() {
        let mlir = Mlir::new();
        let module = mlir.parse(MODULE, "test").unwrap();
        let stages = outline(&mlir.context, &module).unwrap();
        let text = module.as_operation().to_string();
        assert!(module.as_operation().verify(), "{text}");
        assert_eq!(stages, [Stage { symbol: "f_par0".into(), args: 3, iterations: 64, grain: 8 }]);
        assert!(text.contains("call @f_par0_dispatch(%arg0, %arg1, %arg2)"), "{text}");
        assert!(
            text.contains("func.func private @f_par0_dispatch(memref<64xf32>, memref<64xf32>, memref<256xi8>)"),
            "{text}"
        );
        // The stage recomputes the view and runs [begin, end) of the loop.
        let stage = text.split("func.func private @f_par0(").nth(1).unwrap();
        assert!(stage.starts_with("%arg0: memref<64xf32> {llvm.noalias, llvm.readonly}"), "{stage}");
        assert!(stage.contains("memref.view") && stage.contains("arith.minsi"), "{stage}");
        assert!(!stage.contains("kiln.parallel"), "{stage}");
        // The second loop reads a value loaded from the workspace: serial, still marked.
        assert_eq!(text.matches("kiln.parallel").count(), 1, "{text}");
    }

    /// A kiln loop (`kiln.carries`) whose body holds two marked loops: the first writes the
    /// row of the result its induction variable picks (a stage that reads the variable from
    /// its slot), the second uses a buffer nothing else uses (scratch: it stays serial).
    const NESTED: &str = r#"module {
  func.func private @g(%x: memref<4x64xf32> {llvm.noalias, llvm.readonly}, %y: memref<4x64xf32> {llvm.noalias}, %ws: memref<256xi8> {llvm.noalias}) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c4 = arith.constant 4 : index
    %c64 = arith.constant 64 : index
    %t = memref.view %ws[%c0][] : memref<256xi8> to memref<64xf32>
    scf.for %k = %c0 to %c4 step %c1 {
      %row = memref.subview %y[%k, 0] [1, 64] [1, 1] : memref<4x64xf32> to memref<64xf32, strided<[1], offset: ?>>
      scf.for %i = %c0 to %c64 step %c1 {
        %v = memref.load %x[%k, %i] : memref<4x64xf32>
        memref.store %v, %row[%i] : memref<64xf32, strided<[1], offset: ?>>
      } {kiln.parallel = 8 : i64}
      scf.for %i = %c0 to %c64 step %c1 {
        %v = memref.load %x[%k, %i] : memref<4x64xf32>
        memref.store %v, %t[%i] : memref<64xf32>
      } {kiln.parallel = 8 : i64}
    } {kiln.carries}
    return
  }
}
"#;

    #[test]
    fn marked_loops_in_kiln_loops_take_the_induction_variable_unless_they_use_scratch() {
        let mlir = Mlir::new();
        let module = mlir.parse(NESTED, "test").unwrap();
        let stages = outline(&mlir.context, &module).unwrap();
        let text = module.as_operation().to_string();
        assert!(module.as_operation().verify(), "{text}");
        assert_eq!(stages, [Stage { symbol: "g_par0".into(), args: 4, iterations: 64, grain: 8 }]);
        // The function stores the induction variable in a slot made at its start and passes it.
        let (caller, stage) = text.split_once("func.func private @g_par0(").unwrap();
        assert!(caller.contains("memref.alloca() : memref<1xi64>"), "{caller}");
        assert!(caller.contains("arith.index_cast") && caller.contains("memref.store"), "{caller}");
        assert!(text.contains("call @g_par0_dispatch(%arg0, %arg1, %arg2, %alloca)"), "{text}");
        // The stage reads it back and recomputes the row's view from it.
        assert!(stage.contains("%arg3: memref<1xi64> {llvm.noalias, llvm.readonly}"), "{stage}");
        assert!(stage.contains("memref.load %arg3") && stage.contains("memref.subview"), "{stage}");
        // The loop with scratch of its own stays serial, still marked.
        assert_eq!(text.matches("kiln.parallel").count(), 1, "{text}");
    }
}
