//! [`kiln_ir::Op::Argsort`] on CPUs: a bottom-up merge sort of each row, as nested `scf.for`
//! loops over tensors that bufferize to stores in place.
//!
//! Pass k merges neighbouring sorted runs of 2^k (key, position) pairs into runs of 2^(k+1),
//! reading the previous pass's arrays and writing new ones: ceil(log2 n) passes of n steps per
//! row, O(n log n) work, against the O(n log² n) of the bitonic network GPUs use
//! ([`kiln_ir::compose::argsort_network`]). A step is branch-free: both runs' heads are read
//! (at clamped positions when a run is used up) and selects pick the one that goes first and
//! advance its cursor. Runs are contiguous, so every position in the left run is below every
//! position in the right: taking the left head unless the right key strictly goes first keeps
//! equal keys in order (a stable sort) without comparing positions. The last pass writes
//! positions only.

use super::{elem, signedness, tensor, Body, FuncEmitter};
use kiln_ir::{DType, TensorType};
use std::fmt::Write;

impl FuncEmitter<'_> {
    /// The positions that sort each row (the last axis) of the integer `keys`, of type `ty`.
    pub(super) fn argsort(&mut self, keys: &(String, TensorType), descending: bool, ty: &TensorType) -> String {
        let n = *ty.shape.last().expect("the type rule checks the rank");
        if ty.num_elements() == 0 {
            return self.empty(&ty.shape, elem(ty.dtype));
        }
        let rows = ty.num_elements() / n;
        let flat_keys = TensorType::new(keys.1.dtype, vec![rows, n]);
        let flat_positions = TensorType::new(ty.dtype, vec![rows, n]);
        let mut key = self.reshape(keys, &[rows, n], &flat_keys);
        let mut position = self.parallel(&[rows, n], elem(ty.dtype), &[], |b, _| {
            let i = b.op("linalg.index 1 : index".into());
            let i = b.op(format!("arith.index_cast {i} : index to i64"));
            b.convert(&i, DType::I64, ty.dtype)
        });
        let mut run = 1;
        while run < n {
            // The last pass writes positions only.
            let write_keys = 2 * run < n;
            let (keys, positions) = ((key, flat_keys.clone()), (position, flat_positions.clone()));
            (key, position) = self.merge_pass(&keys, &positions, write_keys, run, descending);
            run *= 2;
        }
        self.reshape(&(position, flat_positions), &ty.shape, ty)
    }

    /// One pass of the merge sort: each row's runs of `run` sorted elements of `key` and
    /// `position` (both [rows, n]) merged in pairs into new arrays. Returns the new positions,
    /// and the new keys when `write_keys` (else `key` itself).
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
        let types = written.iter().map(|(_, t)| tensor(t)).collect::<Vec<_>>().join(", ");
        let inits: Vec<String> = written.iter().map(|(_, t)| self.empty(&t.shape, elem(t.dtype))).collect();
        let index = |this: &mut Self, v: usize| this.emitted(format!("arith.constant {v} : index"));
        let (c0, c1, cn, crows) = (index(self, 0), index(self, 1), index(self, n), index(self, rows));
        let (crun, cpair, clast) = (index(self, run), index(self, 2 * run), index(self, n - 1));
        let mut names = |k: usize| (0..k).map(|_| self.fresh()).collect::<Vec<_>>();
        let [row, start, at, i, j, mid, end, mid0, end0, row_results, pair_results, step_results]: [String; 12] =
            names(12).try_into().expect("twelve names");
        let k = written.len();
        let (row_acc, pair_acc, step_acc) = (names(k), names(k), names(k));
        let carried = |names: &[String], from: &[String]| {
            names.iter().zip(from).map(|(a, b)| format!("{a} = {b}")).collect::<Vec<_>>().join(", ")
        };
        let results = |name: &str| (0..k).map(|r| format!("{name}#{r}")).collect::<Vec<_>>();
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
        let mut stored = vec![];
        for (acc, array) in step_acc.iter().zip(&written) {
            let (l, r) = if array.0 == key.0 {
                (left_key.clone(), right_key.clone())
            } else {
                (read(&mut b, position, &left), read(&mut b, position, &right))
            };
            let value = b.op(format!("arith.select {take_right}, {r}, {l} : {}", elem(array.1.dtype)));
            stored.push(b.op(format!("tensor.insert {value} into {acc}[{row}, {at}] : {}", tensor(&array.1))));
        }
        let (one, zero) = (b.op("arith.constant 1 : index".into()), b.op("arith.constant 0 : index".into()));
        let right_step = b.op(format!("arith.select {take_right}, {one}, {zero} : index"));
        let left_step = b.op(format!("arith.select {take_right}, {zero}, {one} : index"));
        let next_i = b.op(format!("arith.addi {i}, {left_step} : index"));
        let next_j = b.op(format!("arith.addi {j}, {right_step} : index"));
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{row_results}:{k} = scf.for {row} = {c0} to {crows} step {c1} iter_args({}) -> ({types}) {{",
            carried(&row_acc, &inits)
        );
        let _ = writeln!(
            text,
            "      {pair_results}:{k} = scf.for {start} = {c0} to {cn} step {cpair} iter_args({}) -> ({types}) {{",
            carried(&pair_acc, &row_acc)
        );
        let _ = writeln!(text, "      {mid0} = arith.addi {start}, {crun} : index");
        let _ = writeln!(text, "      {mid} = arith.minsi {mid0}, {cn} : index");
        let _ = writeln!(text, "      {end0} = arith.addi {start}, {cpair} : index");
        let _ = writeln!(text, "      {end} = arith.minsi {end0}, {cn} : index");
        let _ = writeln!(
            text,
            "      {step_results}:{} = scf.for {at} = {start} to {end} step {c1} iter_args({}, {i} = {start}, {j} = {mid}) -> ({types}, index, index) {{",
            k + 2,
            carried(&step_acc, &pair_acc)
        );
        text.push_str(&b.lines);
        let _ = writeln!(
            text,
            "      scf.yield {}, {next_i}, {next_j} : {types}, index, index\n      }}",
            stored.join(", ")
        );
        let _ = writeln!(text, "      scf.yield {} : {types}\n      }}", results(&step_results).join(", "));
        let _ = write!(text, "      scf.yield {} : {types}\n    }}", results(&pair_results).join(", "));
        self.line(text);
        let out = results(&row_results);
        if write_keys {
            (out[0].clone(), out[1].clone())
        } else {
            (key.0.clone(), out[0].clone())
        }
    }
}
