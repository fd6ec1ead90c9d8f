//! kiln._kiln: the Python extension behind the `kiln` package (python/kiln).
//!
//! Owns: compiling in-process with the CLI's driver (`kiln::build`), loading bundles with
//! kiln-runtime's checks, the reference interpreter, and moving numpy arrays in and out of
//! compiled calls (`call`).
//!
//! May depend on: the driver (`kiln`) and the runtime; pyo3 and numpy for Python.
//!
//! Guarantees: a call's arguments are checked against the function's signature before any
//! compiled code runs; inputs of the right dtype that are C-contiguous are read in place; every
//! failure is a Python exception (kiln.CompileError, kiln.LoadError, TypeError, ValueError,
//! RuntimeError), never a crash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln::{OutputKind, Source};
use kiln_runtime::OpenOptions;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

mod call;
mod errors;
mod module;

use module::{Device, Module};

/// A program to compile: its source, the module name its file gives, and the weights files
/// it loads from memory (an imported ONNX model's).
struct Program {
    source: Source,
    module: Option<String>,
    weights: BTreeMap<String, Vec<u8>>,
}

/// The program `source` names: a `str` is the program itself, a path (`os.PathLike`) names a
/// .kn file or an .onnx model (imported with its weights compiled in; `shapes` fixes its
/// symbolic input dimensions).
fn program(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    shapes: Option<BTreeMap<String, Vec<usize>>>,
) -> PyResult<Program> {
    if source.is_instance_of::<PyString>() {
        let source = Source { name: "<string>".into(), text: source.extract()? };
        return Ok(Program { source, module: None, weights: BTreeMap::new() });
    }
    if source.hasattr("__fspath__")? {
        let path: PathBuf = source.extract()?;
        let (source, weights) = if kiln::is_onnx(&path) {
            let options = kiln::kiln_onnx::Options { shapes: shapes.unwrap_or_default(), weights_as_params: false };
            let (source, imported) =
                py.detach(|| kiln::import_onnx(&path, &options)).map_err(|e| errors::compile_error(py, e))?;
            let bytes =
                kiln::kiln_onnx::safetensors(&imported.weights).map_err(pyo3::exceptions::PyRuntimeError::new_err)?;
            (source, BTreeMap::from([(imported.weights_file, bytes)]))
        } else {
            (Source::read(&path).map_err(|e| errors::compile_error(py, e))?, BTreeMap::new())
        };
        // In-process modules are loaded privately, so a file name that is not a C identifier
        // (`my-model.kn`) is made into one rather than refused as the CLI refuses it.
        let module = source.default_module_name();
        return Ok(Program { source, module: Some(module), weights });
    }
    Err(PyTypeError::new_err(format!(
        "the source is a str holding the program or a path (os.PathLike) to a .kn file, got {}",
        source.get_type().name()?
    )))
}

/// Compiles a kiln program in this process, with the CLI's driver and options, into a loaded
/// module whose exported functions take and return numpy arrays. `source` is the program's
/// text, or a path to a .kn file. A GPU target (`target="nvptx64-nvidia-cuda"`, `gpu="sm_80"`)
/// runs on CUDA device `device`, or on kiln's PTX emulator with `emulate=True`.
#[pyfunction]
#[pyo3(signature = (source, *, opt_level = 2, target = None, target_cpu = None, gpu = None, fast_math = false, module_name = None, emulate = false, device = 0, shapes = None))]
#[allow(clippy::too_many_arguments)]
fn compile(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    opt_level: u8,
    target: Option<&str>,
    target_cpu: Option<&str>,
    gpu: Option<&str>,
    fast_math: bool,
    module_name: Option<String>,
    emulate: bool,
    device: usize,
    shapes: Option<BTreeMap<String, Vec<usize>>>,
) -> PyResult<Module> {
    if opt_level > 3 {
        return Err(PyValueError::new_err(format!("opt_level is 0 to 3, got {opt_level}")));
    }
    let Program { source, module: file_module, weights } = program(py, source, shapes)?;
    let target = kiln::target(target, target_cpu, gpu).map_err(|e| errors::compile_error(py, e))?;
    let output = if target.arch.is_gpu() { OutputKind::Object } else { OutputKind::Shared };
    let options = kiln::Options {
        opt_level,
        target,
        output,
        module_name: Some(module_name.or(file_module).unwrap_or_else(|| "module".into())),
        saturate: kiln_passes_options(fast_math),
        weights,
        ..Default::default()
    };
    let out = py.detach(|| kiln::build(&source, &options)).map_err(|e| errors::compile_error(py, e))?;
    errors::warn(py, &source, &out.warnings)?;
    let manifest = format!("{}.json", out.module_name);
    let files: BTreeMap<String, Vec<u8>> = out.files.into_iter().collect();
    module::open(py, manifest, files, &OpenOptions::default(), device_of(emulate, device))
}

/// Equality saturation's default limits, with or without IEEE-unsafe rewrites.
fn kiln_passes_options(fast_math: bool) -> kiln::kiln_passes::saturate::Options {
    kiln::kiln_passes::saturate::Options { fast_math, ..Default::default() }
}

fn device_of(emulate: bool, device: usize) -> Device {
    if emulate {
        Device::Emulator
    } else {
        Device::Cuda(device)
    }
}

/// Opens the bundle whose manifest is at `manifest` (built by `kiln build --output-kind shared`,
/// or for a GPU), verified as the C runtime verifies it: format and version, target and CPU
/// features, every file's size and SHA-256, the ABI compiled into the library, and with
/// `public_key` (PEM) the manifest's signature. `memory_limit` (bytes) refuses a bundle whose
/// calls would use more.
#[pyfunction]
#[pyo3(signature = (manifest, *, public_key = None, memory_limit = None, emulate = false, device = 0))]
fn load(
    py: Python<'_>,
    manifest: PathBuf,
    public_key: Option<String>,
    memory_limit: Option<u64>,
    emulate: bool,
    device: usize,
) -> PyResult<Module> {
    let (name, files) = py.detach(|| kiln_runtime::read_bundle(&manifest)).map_err(|e| errors::load_error(py, e))?;
    module::open(py, name, files, &OpenOptions { public_key, memory_limit }, device_of(emulate, device))
}

/// Loads a bundle from its files' bytes, and returns the module or its function `function`:
/// how a pickled module or function is rebuilt.
#[pyfunction]
#[pyo3(signature = (manifest, files, emulate, device, function = None))]
fn _load_files(
    py: Python<'_>,
    manifest: String,
    files: BTreeMap<String, Vec<u8>>,
    emulate: bool,
    device: usize,
    function: Option<&str>,
) -> PyResult<Py<PyAny>> {
    let module = Py::new(py, module::open(py, manifest, files, &OpenOptions::default(), device_of(emulate, device))?)?;
    match function {
        None => Ok(module.into_any()),
        Some(name) => module.bind(py).as_any().getattr(name).map(Bound::unbind),
    }
}

/// The reference interpreter: a module whose functions run kiln's interpreter on the checked,
/// unoptimized program, with the same calling conventions as a compiled module. For checks,
/// not speed. A function whose interpretation would hold more than `memory_limit_mib` MiB is
/// refused.
#[pyfunction]
#[pyo3(signature = (source, *, memory_limit_mib = 4096))]
fn interpret(py: Python<'_>, source: &Bound<'_, PyAny>, memory_limit_mib: u64) -> PyResult<Module> {
    let Program { source, module: file_module, weights } = program(py, source, None)?;
    let name = file_module.unwrap_or_else(|| "module".into());
    let (ir, warnings) =
        py.detach(|| kiln::diagnose_with(&source, &name, &weights)).map_err(|e| errors::compile_error(py, e))?;
    errors::warn(py, &source, &warnings)?;
    if let Some(f) = ir.funcs.iter().find(|f| kiln::kiln_ir::interp::memory_bytes(f) > memory_limit_mib << 20) {
        return Err(PyValueError::new_err(format!(
            "interpreting `{}` needs about {} MiB, more than memory_limit_mib={memory_limit_mib}",
            f.name,
            kiln::kiln_ir::interp::memory_bytes(f) >> 20
        )));
    }
    Module::interpreted(py, ir)
}

/// Imports the ONNX model at `model`: returns its graph as kiln source (one exported function,
/// `forward`, that takes the model's inputs and `load`s its weights from the model's
/// `.safetensors` file, or with `weights_as_params` takes them as parameters after the inputs)
/// and the weights by name, in order. `shapes` fixes the sizes of inputs whose dimensions
/// the model leaves symbolic (`{"input": [1, 3, 224, 224]}`).
#[pyfunction]
#[pyo3(signature = (model, *, shapes = None, weights_as_params = false))]
fn import_onnx<'py>(
    py: Python<'py>,
    model: PathBuf,
    shapes: Option<BTreeMap<String, Vec<usize>>>,
    weights_as_params: bool,
) -> PyResult<(String, Bound<'py, pyo3::types::PyDict>)> {
    let options = kiln::kiln_onnx::Options { shapes: shapes.unwrap_or_default(), weights_as_params };
    let (source, imported) =
        py.detach(|| kiln::import_onnx(&model, &options)).map_err(|e| errors::compile_error(py, e))?;
    let weights = pyo3::types::PyDict::new(py);
    for w in &imported.weights {
        let dtype = call::numpy_dtype(py, w.tensor.data.dtype().name())?;
        let array = call::empty(py, &dtype, &w.tensor.shape)?;
        let bytes = w.tensor.data.to_bytes();
        call::output_buffers(&mut [array.clone()])[0].copy_from_slice(&bytes);
        weights.set_item(&w.name, array)?;
    }
    Ok((source.text, weights))
}

/// Sets the number of threads that run compiled parallel loops (the caller's included; 1 runs
/// them serially, the default) and returns the previous number.
#[pyfunction]
fn set_threads(threads: usize) -> PyResult<usize> {
    if threads == 0 {
        return Err(PyValueError::new_err("threads must be at least 1"));
    }
    Ok(kiln_runtime::pool::set_threads(threads))
}

/// The number of threads that run compiled parallel loops.
#[pyfunction]
fn threads() -> usize {
    kiln_runtime::pool::threads()
}

/// The errors page for a diagnostic code (`E0101`), as `kiln explain` prints it.
#[pyfunction]
fn explain(code: &str) -> Option<&'static str> {
    kiln::report::explain(code)
}

#[pymodule]
fn _kiln(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", kiln::VERSION)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(_load_files, m)?)?;
    m.add_function(wrap_pyfunction!(interpret, m)?)?;
    m.add_function(wrap_pyfunction!(import_onnx, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads, m)?)?;
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    m.add_class::<Module>()?;
    m.add_class::<module::Function>()?;
    Ok(())
}
