//! Contractions under every register-tile schedule (codegen/src/schedule.rs) agree with the
//! interpreter: shapes the cache and register tiles divide, shapes they do not (every loop
//! peeled), tiny and batched shapes, in every dtype a product accepts, tiled for each register
//! file this machine can run.

mod common;

use kiln_ir::gen::{self, Rng};
use kiln_ir::DType;

/// (batch, m, k, n): divisible by every tile; partial cache and register tiles in m, k and n;
/// degenerate; batched with odd extents; a matrix-vector product.
const SHAPES: &[(&[usize], usize, usize, usize)] = &[
    (&[], 128, 512, 1024),
    (&[], 70, 300, 530),
    (&[], 1, 1, 1),
    (&[], 7, 5, 3),
    (&[3, 2], 13, 17, 33),
    (&[], 97, 261, 1),
];

/// CPUs whose register files select different tiles: SSE (16 x 128 bits), AVX2 (16 x 256),
/// AVX-512 (32 x 512), as far as this machine can run them.
fn cpus() -> Vec<&'static str> {
    let mut cpus = vec!["x86-64"];
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        cpus.push("x86-64-v3");
    }
    if std::arch::is_x86_feature_detected!("avx512f") {
        cpus.push("x86-64-v4");
    } else {
        eprintln!("skipping x86-64-v4 schedules: this CPU has no AVX-512");
    }
    cpus
}

fn source() -> String {
    let mut text = String::new();
    for (i, (batch, m, k, n)) in SHAPES.iter().enumerate() {
        for dtype in ["f32", "f64", "i32"] {
            let dims = |last: &[usize]| batch.iter().chain(last).map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
            text += &format!(
                "fn mm{i}_{dtype}(a: {dtype}[{}], b: {dtype}[{}]) -> {dtype}[{}] {{ a @ b }}\nexport mm{i}_{dtype};\n",
                dims(&[*m, *k]),
                dims(&[*k, *n]),
                dims(&[*m, *n])
            );
        }
    }
    text
}

#[test]
fn scheduled_contractions_agree_with_the_interpreter() {
    let source = kiln::Source { name: "mm.kn".into(), text: source() };
    let module = kiln::check(&source, "mm").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let mut rng = Rng::new(common::seed());
    for cpu in cpus() {
        let target = kiln_codegen::Target::new(None, Some(cpu)).unwrap();
        let loaded = common::compile_and_load_for(&module, 2, &target);
        let mut failures = vec![];
        for f in &module.funcs {
            let args: Vec<_> = f.params.iter().map(|p| gen::tensor(&mut rng, &p.ty, false)).collect();
            assert!(f.params.iter().all(|p| [DType::F32, DType::F64, DType::I32].contains(&p.ty.dtype)));
            if let Err(e) = common::check_against_interpreter(&loaded, &f.name, &args, common::Check::Reduction) {
                failures.push(format!("{cpu}: {e}"));
            }
        }
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    }
}
