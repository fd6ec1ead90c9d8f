//! The bodies of kiln's fuzz targets. Each takes arbitrary bytes and checks a property that
//! must hold for every input, panicking when it does not:
//!
//! - [`source`]: a source file either builds (through the optimizer) or gets a diagnostic with
//!   a code; never an internal error. What builds prints as IR that parses back to itself.
//! - [`ir_text`]: the IR text parser accepts or refuses; what it accepts prints and parses
//!   back to the same text.
//! - [`manifest`]: a manifest beside a real library is refused or opens (CPU and GPU loaders).
//! - [`call`]: a call through the C API with any function name, buffer count, size or NULL
//!   pointer succeeds exactly when it matches the manifest, and otherwise returns an error.
//! - [`onnx`]: an ONNX model is imported, and then builds, or is refused with the importer's
//!   diagnostics; the importer never writes a program kiln refuses.
//!
//! `fuzz/` runs them under libFuzzer (`scripts/fuzz.sh SECONDS`); tests/replay.rs runs each
//! on its seeds, the checked-in regressions and a few thousand mutations of them in the test
//! command. [`seeds`] gives the starting corpus of each.

mod bundles;
mod call;
mod mutate;
mod onnx;

pub use call::call;
pub use mutate::Mutator;
pub use onnx::onnx;

use std::path::{Path, PathBuf};

/// A fuzz target: its name (the libFuzzer binary and corpus folder) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> Outcome,
}

/// What a target made of an input (the replay test checks that its inputs reach both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Built, parsed, opened or called.
    Accepted,
    /// Refused with an error, as it should have been.
    Refused,
}

impl Outcome {
    fn of<T, E>(result: &Result<T, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Accepted
        } else {
            Outcome::Refused
        }
    }
}

/// Every target, in the order scripts/fuzz.sh runs them.
pub const TARGETS: [Target; 5] = [
    Target { name: "source", run: source },
    Target { name: "ir_text", run: ir_text },
    Target { name: "manifest", run: manifest },
    Target { name: "call", run: call },
    Target { name: "onnx", run: onnx },
];

/// The repository root (the kiln package's folder).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz-targets sits in the repository").to_path_buf()
}

/// Saturation small enough that a target runs hundreds of inputs a second, and no time limit
/// (whose effect would depend on the machine).
fn fuzz_options() -> kiln::Options {
    let mut options = kiln::Options { emit: vec![kiln::EmitKind::Opt], ..Default::default() };
    options.saturate.node_limit = 2_000;
    options.saturate.iter_limit = 4;
    options.saturate.time_limit = std::time::Duration::from_secs(3600);
    options
}

/// Source text to a built (optimized) module or a diagnostic with a code.
pub fn source(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else { return Outcome::Refused };
    let src = kiln::Source { name: "fuzz.kn".into(), text: text.into() };
    let options = kiln::Options { module_name: Some("fuzz".into()), ..fuzz_options() };
    let built = kiln::build(&src, &options);
    let outcome = Outcome::of(&built);
    match built {
        Ok(out) => {
            let (_, printed) =
                out.dumps.iter().find(|(ext, _)| ext == kiln::EmitKind::Opt.extension()).expect("--emit opt");
            round_trips(printed);
        }
        Err(e @ kiln::Error::Source { .. }) => {
            let kiln::Error::Source { diags, .. } = &e else { unreachable!() };
            assert!(e.diagnostic().is_some(), "a failed build reports an error, not only warnings");
            for d in diags {
                assert!(
                    (d.code.starts_with('E') || d.code.starts_with('W')) && d.code != "E9999",
                    "internal error as a diagnostic: {}",
                    d.message
                );
            }
            // Rendering against the source must not panic either (spans inside the text), in
            // both forms.
            let _ = e.render(false);
            let _ = e.render_as(kiln::ErrorFormat::Json, false);
        }
        Err(kiln::Error::Usage(_)) => {}
        Err(e @ kiln::Error::Internal(_)) => panic!("{}", e.render(false)),
    }
    outcome
}

/// IR text to a module or a parse error; what parses prints and parses back to the same text.
pub fn ir_text(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else { return Outcome::Refused };
    let parsed = kiln_ir::text::parse_module(text);
    if let Ok(module) = &parsed {
        round_trips(&kiln_ir::text::print_module(module));
    }
    Outcome::of(&parsed)
}

/// Printed IR parses back, and prints again to the same text.
fn round_trips(printed: &str) {
    let module = kiln_ir::text::parse_module(printed)
        .unwrap_or_else(|d| panic!("printed IR does not parse: {}\n{printed}", d.message));
    assert_eq!(kiln_ir::text::print_module(&module), printed, "printing is not stable");
}

/// A manifest beside the libraries it names: both loaders refuse it or open it, and what the
/// CPU loader opens has its functions callable by name.
pub fn manifest(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::Refused;
    for fixture in [bundles::cpu(), bundles::gpu(), bundles::gpu_loops()] {
        let path = fixture.dir.join("fuzzed.json");
        std::fs::write(&path, data).expect("the fixture folder is writable");
        if let Ok(bundle) = kiln_runtime::Bundle::open(&path) {
            for f in bundle.functions() {
                assert!(bundle.function(&f.name).is_some());
            }
            outcome = Outcome::Accepted;
        }
        if kiln_runtime::gpu::GpuBundle::open(&path).is_ok() {
            outcome = Outcome::Accepted;
        }
    }
    outcome
}

/// The starting corpus of `target`: examples and filetests for `source`, their IR for
/// `ir_text`, the fixtures' manifests for `manifest`, and well-formed calls for `call`.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let sources = source_files();
    match target {
        "source" => sources.into_iter().map(String::into_bytes).collect(),
        "ir_text" => sources
            .iter()
            .filter_map(|text| kiln_frontend_module(text))
            .map(|m| kiln_ir::text::print_module(&m).into_bytes())
            .collect(),
        "manifest" => [bundles::cpu(), bundles::gpu(), bundles::gpu_loops()]
            .iter()
            .map(|b| std::fs::read(&b.manifest).expect("fixture manifest"))
            .collect(),
        "call" => call::seeds(),
        "onnx" => onnx::seeds(),
        other => panic!("no fuzz target `{other}`"),
    }
}

/// The module of a source that checks, if it does.
fn kiln_frontend_module(text: &str) -> Option<kiln_ir::Module> {
    kiln::check(&kiln::Source { name: "seed.kn".into(), text: text.into() }, "seed").ok()
}

/// Every `.kn` file of examples/, tests/errors/, tests/run/ and tests/rewrites/, sorted.
fn source_files() -> Vec<String> {
    let mut paths = vec![];
    for dir in ["examples", "tests/errors", "tests/run", "tests/rewrites"] {
        let entries = std::fs::read_dir(root().join(dir)).expect("the repository's test folders");
        paths.extend(
            entries.map(|e| e.expect("a folder entry").path()).filter(|p| p.extension().is_some_and(|e| e == "kn")),
        );
    }
    paths.sort();
    paths.iter().map(|p| std::fs::read_to_string(p).expect("a source file")).collect()
}

/// Inputs that once broke a target, checked in under fuzz/regressions/<target>/: each is
/// replayed by the tests.
pub fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz/regressions").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.expect("a folder entry").path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).expect("a regression")))
        .collect();
    out.sort();
    out
}
