//! [`kiln_ir::Op::Argsort`] on CPUs, as nested `scf.for` loops over tensors that bufferize to
//! loads and stores in place: a radix sort of long rows and a merge sort of short ones. Both
//! are stable and O(n) or O(n log n), against the O(n log² n) of the bitonic network GPUs use
//! ([`kiln_ir::compose::argsort_network`]).
//!
//! - Radix sort (long rows, see [`radix_sorts`]): keys become unsigned order bits (the sign
//!   bit flipped for signed keys; every bit for a descending sort, which keeps equal keys in
//!   their order, as reversing an ascending sort would not). One sweep counts every byte's
//!   values per row, an exclusive prefix sum turns the counts into each value's first slot,
//!   and one stable scatter per byte, the least significant first, moves (key, position) to
//!   its slot: 1 + b sweeps of the row for b-byte keys, as numpy's radix sort of small
//!   integers does.
//! - Merge sort (shorter rows, where 256 counters per byte cost more than they save): pass k
//!   merges neighbouring sorted runs of 2^k (key, position) pairs into runs of 2^(k+1), ceil(log2
//!   n) passes. A step is branch-free: both runs' heads are read (at clamped positions when a
//!   run is used up), and selects pick the one that goes first and advance its cursor. Runs
//!   are contiguous, so every position in the left run is below every position in the right:
//!   taking the left head unless the right key strictly goes first keeps equal keys in order
//!   without comparing positions.
//!
//! The last pass of either writes positions only.

use super::{elem, signedness, tensor, Body, FuncEmitter};
use kiln_ir::{DType, Literal, Op, TensorType};
use std::fmt::Write;

/// Whether rows of `n` keys of `bytes` bytes are sorted by radix rather than by merging. A
/// radix sort makes 1 + bytes sweeps of the row, and zeroes and sums 256 counters per byte
/// (2 · 256 · bytes / n steps per key); a merge sort makes ceil(log2 n) passes. Their steps
/// cost about the same (measured with 4-byte keys on an AMD EPYC: 41 against 48 ns per key
/// at n = 256, 46 against 42 at 512, 52 against 29 at 1024, merging first).
fn radix_sorts(n: usize, bytes: usize) -> bool {
    let radix = (1 + bytes) as f64 + (512 * bytes) as f64 / n as f64;
    radix < n.next_power_of_two().trailing_zeros() as f64
}

/// A value an `scf.for` carries: its name in the body, its initial value and its type.
struct Carried {
    name: String,
    init: String,
    ty: String,
}

impl Carried {
    fn new(name: &str, init: &str, ty: &str) -> Carried {
        Carried { name: name.into(), init: init.into(), ty: ty.into() }
    }
}

/// The text of `scf.for {iv} = {lo} to {hi} step {step}` carrying `carried` through `body`,
/// which ends with the values it yields, `yielded`; its results are `{result}#k`.
fn scf_for(result: &str, [iv, lo, hi, step]: [&str; 4], carried: &[Carried], body: &str, yielded: &[String]) -> String {
    let args: Vec<String> = carried.iter().map(|c| format!("{} = {}", c.name, c.init)).collect();
    let types = carried.iter().map(|c| c.ty.as_str()).collect::<Vec<_>>().join(", ");
    format!(
        "{result}:{} = scf.for {iv} = {lo} to {hi} step {step} iter_args({}) -> ({types}) {{\n{body}      scf.yield {} : {types}\n    }}\n",
        carried.len(),
        args.join(", "),
        yielded.join(", ")
    )
}

/// The loop over the rows of a sort, of `rows` rows doing `per_row` steps each: rows are
/// independent (each writes its own row of every array it carries), so the loop is marked
/// for threads when the work is worth it (`kiln.parallel`, see [`crate::parallel`]).
fn row_loop_text(
    result: &str,
    bounds: [&str; 4],
    carried: &[Carried],
    body: &str,
    yielded: &[String],
    [rows, per_row]: [usize; 2],
) -> String {
    let text = scf_for(result, bounds, carried, body, yielded);
    let text = text.trim_end();
    match crate::parallel::grain(rows * per_row, per_row) {
        Some(grain) => format!("{text} {{kiln.parallel = {grain} : i64}}"),
        None => text.to_string(),
    }
}

/// The results `{result}#0..k` of a loop.
fn results(result: &str, k: usize) -> Vec<String> {
    (0..k).map(|r| format!("{result}#{r}")).collect()
}

impl FuncEmitter<'_> {
    /// The positions that sort each row (the last axis) of the integer `keys`, of type `ty`.
    pub(super) fn argsort(&mut self, keys: &(String, TensorType), descending: bool, ty: &TensorType) -> String {
        let n = *ty.shape.last().expect("the type rule checks the rank");
        if ty.num_elements() == 0 {
            return self.empty(&ty.shape, elem(ty.dtype));
        }
        let rows = ty.num_elements() / n;
        let flat = TensorType::new(keys.1.dtype, vec![rows, n]);
        let key = (self.reshape(keys, &[rows, n], &flat), flat);
        let positions = TensorType::new(ty.dtype, vec![rows, n]);
        let sorted = if radix_sorts(n, keys.1.dtype.size_bytes()) {
            self.radix_sort(key, &positions, descending)
        } else {
            self.merge_sort(key, &positions, descending)
        };
        self.reshape(&(sorted, positions), &ty.shape, ty)
    }

    /// `arith.constant {v} : index`.
    fn index(&mut self, v: usize) -> String {
        self.emitted(format!("arith.constant {v} : index"))
    }

    /// The row-by-row merge sort of `key` ([rows, n]): the sorted positions, of type `positions`.
    fn merge_sort(&mut self, mut key: (String, TensorType), positions: &TensorType, descending: bool) -> String {
        let n = positions.shape[1];
        let iota = Op::Iota { dtype: positions.dtype, shape: positions.shape.clone(), axis: 1 };
        let mut position = self.inst(&iota, &[], positions);
        let mut run = 1;
        while run < n {
            let write_keys = 2 * run < n;
            let (next_key, next_position) =
                self.merge_pass(&key, &(position, positions.clone()), write_keys, run, descending);
            (key.0, position) = (next_key, next_position);
            run *= 2;
        }
        position
    }

    /// One pass of the merge sort: each row's runs of `run` sorted elements of `key` and
    /// `position` (both [rows, n]) merged in pairs into new arrays. Returns the new keys
    /// (`key` itself unless `write_keys`) and positions.
    fn merge_pass(
        &mut self,
        key: &(String, TensorType),
        position: &(String, TensorType),
        write_keys: bool,
        run: usize,
        descending: bool,
    ) -> (String, String) {
        let [rows, n] = [key.1.shape[0], key.1.shape[1]];
        let kd = key.1.dtype;
        let written: Vec<&(String, TensorType)> = if write_keys { vec![key, position] } else { vec![position] };
        let types: Vec<String> = written.iter().map(|(_, t)| tensor(t)).collect();
        let inits: Vec<String> = written.iter().map(|(_, t)| self.empty(&t.shape, elem(t.dtype))).collect();
        let (c0, c1, cn, crows) = (self.index(0), self.index(1), self.index(n), self.index(rows));
        let (crun, cpair, clast) = (self.index(run), self.index(2 * run), self.index(n - 1));
        let [row, start, at, i, j, mid, end, mid0, end0, row_loop, pair_loop, step_loop] =
            [(); 12].map(|_| self.fresh());
        let k = written.len();
        let [row_acc, pair_acc, step_acc] = [(); 3].map(|_| (0..k).map(|_| self.fresh()).collect::<Vec<_>>());
        let carried = |names: &[String], inits: &[String]| -> Vec<Carried> {
            names.iter().zip(inits).zip(&types).map(|((n, i), t)| Carried::new(n, i, t)).collect()
        };
        // One step: the heads of both runs read, the one that goes first written at `at` and
        // its cursor advanced.
        let mut b = Body { lines: String::new(), next: 0, libm: self.libm };
        let left_open = b.op(format!("arith.cmpi slt, {i}, {mid} : index"));
        let right_open = b.op(format!("arith.cmpi slt, {j}, {end} : index"));
        let left = b.op(format!("arith.minsi {i}, {clast} : index"));
        let right = b.op(format!("arith.minsi {j}, {clast} : index"));
        let read = |b: &mut Body, (name, t): &(String, TensorType), at: &str| {
            b.op(format!("tensor.extract {name}[{row}, {at}] : {}", tensor(t)))
        };
        let (left_key, right_key) = (read(&mut b, key, &left), read(&mut b, key, &right));
        let order = if descending { "gt" } else { "lt" };
        let goes_first = b.op(format!("arith.cmpi {}{order}, {right_key}, {left_key} : {}", signedness(kd), elem(kd)));
        let right_first = b.op(format!("arith.andi {right_open}, {goes_first} : i1"));
        let yes = b.op("arith.constant true".into());
        let left_done = b.op(format!("arith.xori {left_open}, {yes} : i1"));
        let take_right = b.op(format!("arith.ori {left_done}, {right_first} : i1"));
        // The heads of each array written: the keys' (already read), then the positions'.
        let mut heads = vec![];
        if write_keys {
            heads.push((left_key, right_key));
        }
        heads.push((read(&mut b, position, &left), read(&mut b, position, &right)));
        let mut stored = vec![];
        for ((acc, array), (l, r)) in step_acc.iter().zip(&written).zip(heads) {
            let value = b.op(format!("arith.select {take_right}, {r}, {l} : {}", elem(array.1.dtype)));
            stored.push(b.op(format!("tensor.insert {value} into {acc}[{row}, {at}] : {}", tensor(&array.1))));
        }
        let (one, zero) = (b.op("arith.constant 1 : index".into()), b.op("arith.constant 0 : index".into()));
        let right_step = b.op(format!("arith.select {take_right}, {one}, {zero} : index"));
        let left_step = b.op(format!("arith.select {take_right}, {zero}, {one} : index"));
        stored.push(b.op(format!("arith.addi {i}, {left_step} : index")));
        stored.push(b.op(format!("arith.addi {j}, {right_step} : index")));
        let mut step_carried = carried(&step_acc, &pair_acc);
        step_carried.extend([Carried::new(&i, &start, "index"), Carried::new(&j, &mid, "index")]);
        let steps = scf_for(&step_loop, [&at, &start, &end, &c1], &step_carried, &b.lines, &stored);
        // The pair of runs from `start`: [start, mid) and [mid, end).
        let mut pair = String::new();
        let _ = writeln!(pair, "      {mid0} = arith.addi {start}, {crun} : index");
        let _ = writeln!(pair, "      {mid} = arith.minsi {mid0}, {cn} : index");
        let _ = writeln!(pair, "      {end0} = arith.addi {start}, {cpair} : index");
        let _ = writeln!(pair, "      {end} = arith.minsi {end0}, {cn} : index");
        pair.push_str(&steps);
        let pairs = scf_for(
            &pair_loop,
            [&start, &c0, &cn, &cpair],
            &carried(&pair_acc, &row_acc),
            &pair,
            &results(&step_loop, k),
        );
        let bounds = [row.as_str(), &c0, &crows, &c1];
        self.line(row_loop_text(
            &row_loop,
            bounds,
            &carried(&row_acc, &inits),
            &pairs,
            &results(&pair_loop, k),
            [rows, n],
        ));
        let out = results(&row_loop, k);
        if write_keys {
            (out[0].clone(), out[1].clone())
        } else {
            (key.0.clone(), out[0].clone())
        }
    }

    /// The row-by-row radix sort of `key` ([rows, n]): the sorted positions, of type `positions`.
    fn radix_sort(&mut self, key: (String, TensorType), positions: &TensorType, descending: bool) -> String {
        let [rows, n] = [key.1.shape[0], key.1.shape[1]];
        let kd = key.1.dtype;
        let (bits, digits) = (kd.bits(), kd.bits() as usize / 8);
        let ke = elem(kd);
        // Unsigned order bits: the sign bit flipped for signed keys, every bit for descending.
        let sign = if kd.is_unsigned() { 0 } else { 1i64 << (bits - 1) };
        let flip = if descending { !sign } else { sign } & (u64::MAX >> (64 - bits)) as i64;
        let bits_of = if flip == 0 {
            key
        } else {
            let inputs = [super::GenericInput::new(&key.0, &key.1, super::identity_exprs(2))];
            let flipped = self.parallel(&key.1.shape, ke, &inputs, |b, a| {
                let mask = b.constant(Literal::Int(kd, flip));
                b.op(format!("arith.xori {}, {mask} : {ke}", a[0]))
            });
            (flipped, key.1.clone())
        };
        // Counters: row r's count of value v in byte k at [r, 256 k + v].
        let counters = TensorType::new(DType::I64, vec![rows, 256 * digits]);
        let zeros = self.parallel(&counters.shape, "i64", &[], |b, _| b.constant(Literal::Int(DType::I64, 0)));
        let (c0, c1, cn, crows, cslots) =
            (self.index(0), self.index(1), self.index(n), self.index(rows), self.index(256 * digits));
        let counters_t = tensor(&counters);
        let [row, at, row_acc, at_acc, count_loop, at_loop] = [(); 6].map(|_| self.fresh());
        // The slot of byte k of `value` among the counters.
        let slot = |b: &mut Body, value: &str, k: usize| {
            let shift = b.constant(Literal::Int(kd, 8 * k as i64));
            let shifted = b.op(format!("arith.shrui {value}, {shift} : {ke}"));
            let byte_mask = b.constant(Literal::Int(kd, 255));
            let byte = b.op(format!("arith.andi {shifted}, {byte_mask} : {ke}"));
            let byte = b.op(format!("arith.index_castui {byte} : {ke} to index"));
            let base = b.op(format!("arith.constant {} : index", 256 * k));
            b.op(format!("arith.addi {byte}, {base} : index"))
        };
        // Counting every byte in one sweep.
        let mut b = Body { lines: String::new(), next: 0, libm: self.libm };
        let value = b.op(format!("tensor.extract {}[{row}, {at}] : {}", bits_of.0, tensor(&bits_of.1)));
        let mut counts = at_acc.clone();
        for k in 0..digits {
            let s = slot(&mut b, &value, k);
            let old = b.op(format!("tensor.extract {counts}[{row}, {s}] : {counters_t}"));
            let one = b.constant(Literal::Int(DType::I64, 1));
            let new = b.op(format!("arith.addi {old}, {one} : i64"));
            counts = b.op(format!("tensor.insert {new} into {counts}[{row}, {s}] : {counters_t}"));
        }
        let sweep = scf_for(
            &at_loop,
            [&at, &c0, &cn, &c1],
            &[Carried::new(&at_acc, &row_acc, &counters_t)],
            &b.lines,
            &[counts],
        );
        let counted = row_loop_text(
            &count_loop,
            [&row, &c0, &crows, &c1],
            &[Carried::new(&row_acc, &zeros, &counters_t)],
            &sweep,
            &results(&at_loop, 1),
            [rows, n * digits],
        );
        self.line(counted);
        // Each byte's counts as the first slot of each value: an exclusive prefix sum that
        // starts again at every 256th counter.
        let [row, at, row_acc, at_acc, sum, row_loop, at_loop] = [(); 7].map(|_| self.fresh());
        let mut b = Body { lines: String::new(), next: 0, libm: self.libm };
        let count = b.op(format!("tensor.extract {at_acc}[{row}, {at}] : {counters_t}"));
        let c256 = b.op("arith.constant 256 : index".into());
        let within = b.op(format!("arith.remui {at}, {c256} : index"));
        let zero_index = b.op("arith.constant 0 : index".into());
        let first = b.op(format!("arith.cmpi eq, {within}, {zero_index} : index"));
        let zero = b.constant(Literal::Int(DType::I64, 0));
        let base = b.op(format!("arith.select {first}, {zero}, {sum} : i64"));
        let written = b.op(format!("tensor.insert {base} into {at_acc}[{row}, {at}] : {counters_t}"));
        let next = b.op(format!("arith.addi {base}, {count} : i64"));
        let zero_sum = self.emitted("arith.constant 0 : i64".into());
        let sweep = scf_for(
            &at_loop,
            [&at, &c0, &cslots, &c1],
            &[Carried::new(&at_acc, &row_acc, &counters_t), Carried::new(&sum, &zero_sum, "i64")],
            &b.lines,
            &[written, next],
        );
        let summed = row_loop_text(
            &row_loop,
            [&row, &c0, &crows, &c1],
            &[Carried::new(&row_acc, &format!("{count_loop}#0"), &counters_t)],
            &sweep,
            &[format!("{at_loop}#0")],
            [rows, 256 * digits],
        );
        self.line(summed);
        // One stable scatter per byte, the least significant first.
        let mut slots = format!("{row_loop}#0");
        // The keys as the last scatter left them, and the positions (none before the first).
        let (mut keys, mut sorted) = (bits_of, None::<String>);
        let positions_t = tensor(positions);
        let pe = elem(positions.dtype);
        for k in 0..digits {
            let last = k + 1 == digits;
            let [row, at, row_loop, at_loop] = [(); 4].map(|_| self.fresh());
            let mut written = vec![(positions_t.clone(), self.empty(&positions.shape, pe))];
            if !last {
                written.push((tensor(&keys.1), self.empty(&keys.1.shape, ke)));
            }
            written.push((counters_t.clone(), slots.clone()));
            let row_accs: Vec<String> = written.iter().map(|_| self.fresh()).collect();
            let at_accs: Vec<String> = written.iter().map(|_| self.fresh()).collect();
            let mut b = Body { lines: String::new(), next: 0, libm: self.libm };
            let value = b.op(format!("tensor.extract {}[{row}, {at}] : {}", keys.0, tensor(&keys.1)));
            let position = match &sorted {
                Some(p) => b.op(format!("tensor.extract {p}[{row}, {at}] : {positions_t}")),
                // The first scatter's positions are the loop's.
                None => b.index_as(&at, positions.dtype),
            };
            let s = slot(&mut b, &value, k);
            let counters_acc = at_accs.last().expect("the counters are carried");
            let to = b.op(format!("tensor.extract {counters_acc}[{row}, {s}] : {counters_t}"));
            let to_index = b.op(format!("arith.index_cast {to} : i64 to index"));
            let mut yielded =
                vec![b.op(format!("tensor.insert {position} into {}[{row}, {to_index}] : {positions_t}", at_accs[0]))];
            if !last {
                yielded.push(
                    b.op(format!("tensor.insert {value} into {}[{row}, {to_index}] : {}", at_accs[1], written[1].0)),
                );
            }
            let one = b.constant(Literal::Int(DType::I64, 1));
            let next = b.op(format!("arith.addi {to}, {one} : i64"));
            yielded.push(b.op(format!("tensor.insert {next} into {counters_acc}[{row}, {s}] : {counters_t}")));
            let at_carried: Vec<Carried> =
                at_accs.iter().zip(&row_accs).zip(&written).map(|((a, r), (t, _))| Carried::new(a, r, t)).collect();
            let row_carried: Vec<Carried> =
                row_accs.iter().zip(&written).map(|(r, (t, init))| Carried::new(r, init, t)).collect();
            let sweep = scf_for(&at_loop, [&at, &c0, &cn, &c1], &at_carried, &b.lines, &yielded);
            let bounds = [row.as_str(), &c0, &crows, &c1];
            self.line(row_loop_text(
                &row_loop,
                bounds,
                &row_carried,
                &sweep,
                &results(&at_loop, written.len()),
                [rows, n],
            ));
            let out = results(&row_loop, written.len());
            slots = out.last().expect("the counters are carried").clone();
            sorted = Some(out[0].clone());
            if !last {
                keys.0 = out[1].clone();
            }
        }
        sorted.expect("keys have at least one byte")
    }
}

#[cfg(test)]
mod tests {
    use super::radix_sorts;

    /// Rows take the algorithm tests/differential.rs's `long_rows_sort_like_the_interpreter`
    /// means them to.
    #[test]
    fn long_rows_take_the_radix_sort_and_short_ones_merge() {
        for (n, bytes) in [(1000, 4), (777, 4), (3000, 8), (1500, 4), (600, 1), (50000, 4)] {
            assert!(radix_sorts(n, bytes), "{n} keys of {bytes} bytes merge");
        }
        for (n, bytes) in [(20, 1), (7, 4), (300, 8), (200, 4), (256, 4), (1, 8)] {
            assert!(!radix_sorts(n, bytes), "{n} keys of {bytes} bytes take the radix sort");
        }
    }
}
