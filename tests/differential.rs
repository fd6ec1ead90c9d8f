//! Differential tests: for every op of the op table (a random instance of each, several times,
//! over the dtypes it accepts), the compiled object agrees with the reference interpreter on
//! random inputs drawn per run. A new op is covered the moment it appears in `Op::catalog`.

mod common;

use kiln_ir::gen::{self, Rng};
use kiln_ir::{Module, Op};

#[test]
fn every_op_agrees_with_the_interpreter() {
    let mut rng = Rng::new(common::seed());
    let (module, cases) = common::op_instances(&mut rng, 6);
    for opt in [0, 2] {
        let loaded = common::compile_and_load(&module, opt);
        let mut failures = vec![];
        for (name, template) in &cases {
            let f = module.func(name).unwrap();
            let args = common::op_inputs(&mut rng, f, template);
            if let Err(e) = common::check_against_interpreter(&loaded, name, &args, common::Check::of(template)) {
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
