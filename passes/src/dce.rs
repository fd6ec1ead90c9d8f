//! Dead-code elimination: removes every instruction no result depends on, and renumbers the
//! remaining values densely in their original order.

use kiln_ir::{Func, Module, Value};

pub fn run(module: &mut Module) {
    for f in &mut module.funcs {
        dce_func(f);
    }
}

/// Removes dead instructions from one function.
pub fn dce_func(f: &mut Func) {
    let np = f.params.len();
    let mut live = vec![false; f.num_values()];
    for r in &f.results {
        live[r.index()] = true;
    }
    for i in (0..f.insts.len()).rev() {
        if live[np + i] {
            for a in &f.insts[i].args {
                live[a.index()] = true;
            }
        }
    }
    // New number of each value: parameters keep theirs, live instructions are packed.
    let mut renumber: Vec<Option<Value>> = (0..np).map(|i| Some(Value(i as u32))).collect();
    let mut next = np as u32;
    for i in 0..f.insts.len() {
        renumber.push(live[np + i].then(|| {
            next += 1;
            Value(next - 1)
        }));
    }
    let map = |v: &Value| renumber[v.index()].expect("live values only use live values");
    let insts = std::mem::take(&mut f.insts);
    f.insts = insts
        .into_iter()
        .enumerate()
        .filter(|(i, _)| live[np + i])
        .map(|(_, mut inst)| {
            inst.args = inst.args.iter().map(map).collect();
            inst
        })
        .collect();
    f.results = f.results.iter().map(map).collect();
}
