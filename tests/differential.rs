//! Differential tests: for every op of the op table (a random instance of each, several times,
//! over the dtypes it accepts), the compiled object agrees with the reference interpreter on
//! random inputs drawn per run. A new op is covered the moment it appears in `Op::catalog`.

mod common;

use kiln_ir::gen::{self, Rng};
use kiln_ir::{Module, Op};

#[test]
fn every_op_agrees_with_the_interpreter() {
    let mut rng = Rng::new(common::seed());
    let (module, cases) = common::op_instances(&mut rng, 6, |_| true);
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

/// Argsort of rows long enough for the CPU's radix sort (every key width: u8, i32, u32, i64),
/// and of rows its merge sort takes in many passes, ascending and descending, gives the
/// interpreter's positions exactly: on keys from a small range (ties everywhere, so the sort
/// must be stable) and on keys drawn from every bit pattern (signs and high bytes).
#[test]
fn long_rows_sort_like_the_interpreter() {
    use kiln_ir::interp::{Data, Tensor};
    use kiln_ir::{DType, TensorType};
    let mut rng = Rng::new(common::seed());
    let rows = [
        (DType::I32, 1000),
        (DType::I32, 777),
        (DType::U32, 1500),
        (DType::U8, 600),
        (DType::I64, 3000),
        (DType::I64, 300),
        (DType::I32, 200),
    ];
    let mut funcs = vec![];
    for (k, &(dtype, n)) in rows.iter().enumerate() {
        for descending in [false, true] {
            let name = format!("sort{k}_{}", u8::from(descending));
            funcs.push(
                gen::op_func(&name, Op::Argsort { descending }, vec![TensorType::new(dtype, vec![3, n])]).unwrap(),
            );
        }
    }
    let module = Module { name: "sorts".into(), funcs };
    let loaded = common::compile_and_load(&module, 2);
    for f in &module.funcs {
        let ty = &f.params[0].ty;
        let n = ty.num_elements();
        let bits = |rng: &mut Rng| rng.next_u64() as i64;
        let any = match ty.dtype {
            DType::U8 => Data::U8((0..n).map(|_| bits(&mut rng) as u8).collect()),
            DType::I32 => Data::I32((0..n).map(|_| bits(&mut rng) as i32).collect()),
            DType::U32 => Data::U32((0..n).map(|_| bits(&mut rng) as u32).collect()),
            _ => Data::I64((0..n).map(|_| bits(&mut rng)).collect()),
        };
        for keys in [gen::tensor(&mut rng, ty, false), Tensor::new(ty.shape.clone(), any)] {
            let args = [keys];
            assert_eq!(loaded.call(&f.name, &args), kiln_ir::interp::run(f, &args), "`{}` on {:?}", f.name, args[0]);
        }
    }
}

/// Products of a matrix and a vector, which CPUs compute as row or column reductions rather
/// than contractions (codegen/src/mlir.rs `vector_product`), agree with the interpreter: a
/// column, a row, a dot product of two vectors, in f32, f64 and i32.
#[test]
fn matrix_vector_products_agree_with_the_interpreter() {
    use kiln_ir::{DType, TensorType};
    let mut rng = Rng::new(common::seed());
    let shapes = [([37, 300], [300, 1]), ([1, 300], [300, 41]), ([1, 5], [5, 1]), ([64, 2048], [2048, 1])];
    let mut funcs = vec![];
    for (i, (a, b)) in shapes.iter().enumerate() {
        for dtype in [DType::F32, DType::F64, DType::I32] {
            let operands = vec![TensorType::new(dtype, a.to_vec()), TensorType::new(dtype, b.to_vec())];
            funcs.push(gen::op_func(&format!("dot{i}_{}", dtype.name()), Op::Dot, operands).unwrap());
        }
    }
    let module = Module { name: "products".into(), funcs };
    let loaded = common::compile_and_load(&module, 2);
    for f in &module.funcs {
        let args = gen::arguments(&mut rng, f, false);
        common::check_against_interpreter(&loaded, &f.name, &args, common::Check::Reduction).unwrap();
    }
}

/// Random programs, 40 per run; `KILN_RANDOM_PROGRAMS` asks for another count
/// (scripts/differential.sh runs 10,000 in batches this way).
#[test]
fn random_programs_agree_with_the_interpreter() {
    let mut rng = Rng::new(common::seed());
    let count =
        std::env::var("KILN_RANDOM_PROGRAMS").map_or(40, |n| n.parse().expect("KILN_RANDOM_PROGRAMS is a count"));
    let funcs: Vec<_> = (0..count).map(|i| gen::random_func(&mut rng, 4 + i % 12, &format!("p{i}"))).collect();
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

/// The reference judges well-conditioned results and leaves out those that rounding decides:
/// nothing of `x * y + 1`, everything of a sine of a huge value, and a comparison of two values
/// within a few ulp of each other.
#[test]
fn ill_conditioned_results_are_left_out_of_comparisons() {
    use kiln_ir::interp::{Data, Tensor};
    let source = kiln::Source {
        name: "cond.kn".into(),
        text: "fn good(x: f32[64], y: f32[64]) -> f32[64] { x * y + 1.0 }\n\
               fn chaotic(x: f64[64]) -> f64[64] { sin(exp(x * 50.0 + 600.0)) }\n\
               fn near(y: f32[64]) -> bool[64] { y >= tanh(y) }\n\
               export good;\nexport chaotic;\nexport near;\n"
            .into(),
    };
    let module = kiln::check(&source, "cond").unwrap();
    let mut rng = Rng::new(common::seed());
    let judged = |name: &str, args: &[Tensor]| -> Vec<bool> {
        let f = module.func(name).unwrap();
        common::reference(f, args, common::Check::Program).remove(0).1
    };
    let random = |rng: &mut Rng, f: &str| -> Vec<Tensor> { gen::arguments(rng, module.func(f).unwrap(), false) };
    assert!(judged("good", &random(&mut rng, "good")).iter().all(|&j| j));
    assert!(judged("chaotic", &random(&mut rng, "chaotic")).iter().all(|&j| !j));
    let y: Vec<f32> = (1..=64).map(|k| k as f32 * 1e-4).collect();
    // y - tanh y = y^3 / 3: within the perturbations (1e-6 relative) below y = 1e-3, beyond
    // them above 3e-3.
    let near = judged("near", &[Tensor::new(vec![64], Data::F32(y.clone()))]);
    for (y, judged) in y.iter().zip(near) {
        assert!(if *y <= 1e-3 { !judged } else { *y < 3e-3 || judged }, "y = {y:e}: judged {judged}");
    }
}

/// Random programs long enough to be cut into segments (codegen/src/segment.rs), whose values
/// cross the cuts through the workspace, agree with the interpreter at -O0 and -O2.
#[test]
fn random_programs_cut_into_segments_agree_with_the_interpreter() {
    let mut rng = Rng::new(common::seed());
    let funcs: Vec<_> = (0..2).map(|i| gen::random_func(&mut rng, 2000, &format!("long{i}"))).collect();
    let module = Module { name: "long".into(), funcs };
    let emit = kiln_codegen::Emit { dump_after: vec!["split-functions".into()], ..Default::default() };
    let artifacts = kiln_codegen::compile(&module, &kiln_codegen::Target::default(), 0, emit).unwrap();
    let (_, split) = &artifacts.dumps[0];
    for f in &module.funcs {
        assert!(split.contains(&format!("@long_{}_impl_seg1(", f.name)), "`{}` is cut", f.name);
    }
    for opt in [0, 2] {
        let loaded = common::compile_and_load(&module, opt);
        for f in &module.funcs {
            let args = gen::arguments(&mut rng, f, false);
            common::check_against_interpreter(&loaded, &f.name, &args, common::Check::Program)
                .unwrap_or_else(|e| panic!("-O{opt}: {e}"));
        }
    }
}
