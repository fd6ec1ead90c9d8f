//! Filetests: each file keeps its input and a header naming what to check.
//!
//! - tests/errors/*.kn start with `// error: CODE` (checking must fail, its first error with
//!   that code) or `// warning: CODE` (checking succeeds, its first warning with that code);
//!   every rendered diagnostic of the run is an insta snapshot.
//! - examples/*.kn and tests/run/*.kn: the IR of every export is an insta snapshot, and files
//!   whose header has a `// run` line (every example) are compiled and every export is checked
//!   against the interpreter on random inputs drawn per run. A header line `// input scale: S`
//!   multiplies the float inputs by S: a recurrent network with weights up to 4 is chaotic, and
//!   its results then say nothing about the compiler. A header line `// not interpreted: REASON`
//!   keeps a program too large for the interpreter to the snapshot (examples/gpt, which
//!   tests/training.rs checks against JAX).

mod common;

use kiln::{Error, Source};
use kiln_ir::gen::{self, Rng};
use std::path::{Path, PathBuf};

/// The `.kn` files under `dir`, in subdirectories too, sorted.
fn files(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "kn") {
                out.push(path);
            }
        }
    }
    let mut v = vec![];
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut v);
    v.sort();
    v
}

fn source(path: &Path) -> Source {
    let text = std::fs::read_to_string(path).unwrap();
    // Name files by their file name alone, so snapshots do not depend on the checkout path.
    Source { name: path.file_name().unwrap().to_string_lossy().into_owned(), text }
}

fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn error_filetests() {
    let files = files("tests/errors");
    assert!(files.len() >= 25, "at least 25 error filetests");
    for path in files {
        let src = source(&path);
        let header = src.text.lines().next().unwrap_or_default();
        let (severity, expected) = header
            .strip_prefix("// error: ")
            .map(|c| (kiln_ir::Severity::Error, c))
            .or_else(|| header.strip_prefix("// warning: ").map(|c| (kiln_ir::Severity::Warning, c)))
            .unwrap_or_else(|| panic!("{} must start with `// error: CODE` or `// warning: CODE`", path.display()));
        let (diags, rendered) = match (severity, kiln::diagnose(&src, "m")) {
            (kiln_ir::Severity::Error, Err(e @ Error::Source { .. })) => {
                let Error::Source { diags, .. } = &e else { unreachable!() };
                (diags.clone(), e.render(false))
            }
            (kiln_ir::Severity::Warning, Ok((_, warnings))) => {
                let rendered = kiln::report::render(&warnings, &src.name, &src.text, kiln::ErrorFormat::Human, false);
                (warnings, rendered)
            }
            (_, Ok(_)) => panic!("{} compiled, but should fail with {expected}", path.display()),
            (_, Err(e)) => panic!("{}: {}", path.display(), e.render(false)),
        };
        let first = diags.iter().find(|d| d.severity == severity).unwrap_or_else(|| panic!("{rendered}"));
        assert_eq!(first.code, expected.trim(), "{}:\n{rendered}", path.display());
        for d in &diags {
            assert!(!d.labels.is_empty(), "{}: a diagnostic points at the source", path.display());
            assert!(d.message.chars().next().is_some_and(|c| !c.is_uppercase()), "messages are lowercase");
        }
        insta::assert_snapshot!(format!("error_{}", stem(&path)), rendered);
    }
}

fn check_and_run(path: &Path, rng: &mut Rng) {
    let src = source(path);
    let module = kiln::check(&src, "m").unwrap_or_else(|e| panic!("{}", e.render(false)));
    insta::assert_snapshot!(format!("ir_{}", stem(path)), kiln_ir::text::print_module(&module));
    let runs = path.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        || src.text.lines().take_while(|l| l.starts_with("//")).any(|l| l.trim() == "// run");
    if !runs || !common::interpreted(&src.text) {
        return;
    }
    // Compiled as written, and after the pass pipeline (saturation, dce): both against the
    // program as written, interpreted.
    let scale = common::input_scale(&src.text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut optimized = module.clone();
    kiln_passes::run_pipeline(&mut optimized, &Default::default()).unwrap();
    for compiled in [&module, &optimized] {
        let loaded = common::compile_and_load(compiled, 2);
        for f in &module.funcs {
            for _ in 0..3 {
                let args: Vec<_> = gen::arguments(rng, f, false).iter().map(|t| common::scaled(t, scale)).collect();
                if let Err(e) = common::check_against(&loaded, f, &args, common::Check::Program) {
                    panic!("{}: {e}", path.display());
                }
            }
        }
    }
}

#[test]
fn example_filetests() {
    let mut rng = Rng::new(common::seed());
    for path in files("examples") {
        check_and_run(&path, &mut rng);
    }
}

#[test]
fn run_filetests() {
    let mut rng = Rng::new(common::seed());
    for path in files("tests/run") {
        check_and_run(&path, &mut rng);
    }
}

/// tests/rewrites/*.kn start with `// saturate` (or `// saturate fast-math`): the module after
/// the pass pipeline is a snapshot, and without fast-math its results equal the original's
/// bit for bit on random inputs.
#[test]
fn rewrite_filetests() {
    let mut rng = Rng::new(common::seed());
    for path in files("tests/rewrites") {
        let src = source(&path);
        let header = src.text.lines().next().unwrap_or("");
        let fast_math = match header {
            "// saturate" => false,
            "// saturate fast-math" => true,
            _ => panic!("{} must start with `// saturate` or `// saturate fast-math`", path.display()),
        };
        let original = kiln::check(&src, "m").unwrap_or_else(|e| panic!("{}", e.render(false)));
        let mut module = original.clone();
        let options = kiln_passes::PipelineOptions {
            saturate: kiln_passes::saturate::Options { fast_math, ..Default::default() },
            ..Default::default()
        };
        kiln_passes::run_pipeline(&mut module, &options).unwrap();
        insta::assert_snapshot!(format!("rewrite_{}", stem(&path)), kiln_ir::text::print_module(&module));
        if fast_math {
            continue;
        }
        for (f, g) in original.funcs.iter().zip(&module.funcs) {
            let args: Vec<_> = gen::arguments(&mut rng, f, true);
            let (a, b) = (kiln_ir::interp::run(f, &args), kiln_ir::interp::run(g, &args));
            for (x, y) in a.iter().zip(&b) {
                let same = (0..x.data.len()).all(|i| {
                    let (p, q) = (x.data.get_f64(i), y.data.get_f64(i));
                    p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())
                });
                assert!(same, "{}: `{}` changed its results", path.display(), f.name);
            }
        }
    }
}
