//! The bundles the runtime targets load: examples/mlp.kn built once per process as a CPU
//! shared library and as a GPU bundle, and the version-4 fixture's program (GPU loops and
//! conditionals) as a GPU bundle, each in a folder of its own that lives as long as the
//! process.

use std::path::PathBuf;
use std::sync::OnceLock;

/// A built bundle: its folder (where targets may write other manifests) and its manifest.
pub struct Fixture {
    pub dir: PathBuf,
    pub manifest: PathBuf,
    _keep: tempfile::TempDir,
}

/// examples/mlp.kn as a CPU shared library for the host.
pub fn cpu() -> &'static Fixture {
    static CPU: OnceLock<Fixture> = OnceLock::new();
    CPU.get_or_init(|| {
        build("examples/mlp.kn", kiln::Options { output: kiln::OutputKind::Shared, ..Default::default() })
    })
}

/// examples/mlp.kn as a GPU bundle for sm_80.
pub fn gpu() -> &'static Fixture {
    static GPU: OnceLock<Fixture> = OnceLock::new();
    GPU.get_or_init(|| build("examples/mlp.kn", gpu_options()))
}

/// tests/fixtures/bundles/v4-gpu/steps.kn (loops, while loops, a conditional, a scan) as a GPU
/// bundle for sm_80.
pub fn gpu_loops() -> &'static Fixture {
    static LOOPS: OnceLock<Fixture> = OnceLock::new();
    LOOPS.get_or_init(|| build("tests/fixtures/bundles/v4-gpu/steps.kn", gpu_options()))
}

fn gpu_options() -> kiln::Options {
    let target = kiln::kiln_codegen::Target::new(Some("nvptx64-nvidia-cuda"), Some("sm_80")).expect("the GPU target");
    kiln::Options { target, ..Default::default() }
}

fn build(file: &str, options: kiln::Options) -> Fixture {
    let source = kiln::Source::read(&super::root().join(file)).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    let module = source.default_module_name();
    let out = kiln::build(&source, &options).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let keep = tempfile::tempdir().expect("a temporary folder");
    kiln::write_output(&out, keep.path()).unwrap_or_else(|e| panic!("{}", e.render(false)));
    Fixture { dir: keep.path().to_path_buf(), manifest: keep.path().join(format!("{module}.json")), _keep: keep }
}
