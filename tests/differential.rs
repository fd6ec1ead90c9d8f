//! Differential tests: for every op of the op table (a random instance of each, several times,
//! over the dtypes it accepts), the compiled object agrees with the reference interpreter on
//! random inputs drawn per run. A new op is covered the moment it appears in `Op::catalog`.

mod common;

use kiln_ir::gen::{self, Rng};
use kiln_ir::{Module, Op, OpClass, ReduceKind};

/// Instances of each op per run.
const INSTANCES: usize = 6;

/// Whether inputs may hold NaN, infinities and huge values: everywhere except sums, dot
/// products and convolutions, whose rounding differs legitimately once values overflow.
fn with_specials(op: &Op) -> bool {
    !matches!(op, Op::Dot | Op::Conv(_) | Op::Reduce { kind: ReduceKind::Sum, .. })
}

#[test]
fn every_op_agrees_with_the_interpreter() {
    let mut rng = Rng::new(common::seed());
    let catalog = Op::catalog();
    let mut funcs = vec![];
    let mut cases = vec![];
    for (i, template) in catalog.iter().enumerate() {
        for k in 0..INSTANCES {
            let name = format!("{}_{k}_{i}", template.name());
            let f = gen::single_op_func(&mut rng, template, &name);
            cases.push((name, template.clone()));
            funcs.push(f);
        }
    }
    let module = Module { name: "ops".into(), funcs };
    for opt in [0, 2] {
        let loaded = common::compile_and_load(&module, opt);
        let mut failures = vec![];
        for (name, template) in &cases {
            let f = module.func(name).unwrap();
            let args: Vec<_> = f.params.iter().map(|p| gen::tensor(&mut rng, &p.ty, with_specials(template))).collect();
            let check = if matches!(template.class(), OpClass::Elementwise | OpClass::Shape) {
                common::Check::Elementwise
            } else {
                common::Check::Reduction
            };
            if let Err(e) = common::check_against_interpreter(&loaded, name, &args, check) {
                failures.push(format!("-O{opt}: {e}"));
            }
        }
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    }
}

#[test]
fn random_programs_agree_with_the_interpreter() {
    let mut rng = Rng::new(common::seed());
    let funcs: Vec<_> = (0..40).map(|i| gen::random_func(&mut rng, 4 + i % 12, &format!("p{i}"))).collect();
    let module = Module { name: "progs".into(), funcs };
    common::check_module(&module, &mut rng);
}

#[test]
fn compiled_derivatives_agree_with_interpreted_derivatives() {
    use kiln_passes::autodiff::{jvp, vjp};
    let mut rng = Rng::new(common::seed());
    let mut funcs = vec![];
    for (i, template) in Op::catalog().iter().enumerate() {
        for k in 0..3 {
            let f = gen::single_op_func(&mut rng, template, &format!("f{i}_{k}"));
            if !f.ty(f.results[0]).dtype.is_float() {
                continue;
            }
            funcs.push(jvp(&f, &format!("jvp{i}_{k}")));
            funcs.push(vjp(&f, &format!("vjp{i}_{k}"), None));
        }
    }
    let module = Module { name: "derivs".into(), funcs };
    common::check_module(&module, &mut rng);
}
