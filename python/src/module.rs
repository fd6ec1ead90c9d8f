//! Loaded modules and their functions, as Python sees them.
//!
//! A [`Module`] holds a verified bundle (a CPU shared library, or a GPU bundle on the device or
//! the PTX emulator) together with the bundle's files as bytes, so that it can be saved, and
//! pickled to another process (a Ray worker), which verifies it again as it loads it. Each
//! exported function is a callable [`Function`] attribute.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_runtime::bundle::Kind;
use kiln_runtime::gpu::{GpuBundle, GpuExecutor};
use kiln_runtime::{Bundle, Files, OpenOptions};
use pyo3::exceptions::{PyAttributeError, PyKeyError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::call::{self, Arg, Dtypes, Inputs, Signature};
use crate::errors;

/// Where a GPU bundle runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// A CUDA device by ordinal.
    Cuda(usize),
    /// kiln's PTX emulator: any machine, slowly.
    Emulator,
}

/// What runs a module's functions.
enum Runner {
    Cpu(Bundle),
    Gpu(GpuExecutor),
    /// The reference interpreter, on the checked program.
    Interpreter(kiln::kiln_ir::Module),
}

impl Runner {
    fn module(&self) -> String {
        match self {
            Runner::Cpu(b) => b.module.clone(),
            Runner::Gpu(g) => g.bundle().module.clone(),
            Runner::Interpreter(m) => m.name.clone(),
        }
    }
}

/// A verified, loaded bundle and its files.
struct Loaded {
    runner: Runner,
    module: String,
    /// The manifest's file name among `files`.
    manifest: String,
    files: BTreeMap<String, Vec<u8>>,
    device: Device,
}

impl Loaded {
    fn call(&self, name: &str, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<(), kiln_runtime::Error> {
        match &self.runner {
            Runner::Cpu(b) => b.call(name, inputs, outputs),
            Runner::Gpu(g) => g.call(name, inputs, outputs),
            Runner::Interpreter(m) => {
                use kiln::kiln_ir::interp::{self, Data, Tensor};
                let f = m.func(name).ok_or_else(|| kiln_runtime::Error::Argument(format!("no function `{name}`")))?;
                let args: Vec<Tensor> = f
                    .params
                    .iter()
                    .zip(inputs)
                    .map(|(p, bytes)| {
                        let data =
                            Data::from_bytes(p.ty.dtype, bytes).expect("inputs are checked against the signature");
                        Tensor::new(p.ty.shape.clone(), data)
                    })
                    .collect();
                for (out, t) in outputs.iter_mut().zip(interp::run(f, &args)) {
                    out.copy_from_slice(&t.data.to_bytes());
                }
                Ok(())
            }
        }
    }

    fn signatures(&self) -> Vec<Signature> {
        let sig = |name: &str, params: &[kiln_runtime::bundle::ArgSpec], results: &[kiln_runtime::bundle::ArgSpec]| {
            let args = |specs: &[kiln_runtime::bundle::ArgSpec]| {
                specs
                    .iter()
                    .map(|a| Arg {
                        name: a.name.clone(),
                        dtype: call::dtype_name(a.dtype.name()),
                        shape: a.shape.iter().map(|&d| d as usize).collect(),
                    })
                    .collect()
            };
            Signature { name: name.to_string(), params: args(params), results: args(results) }
        };
        match &self.runner {
            Runner::Cpu(b) => b.functions().iter().map(|f| sig(&f.name, &f.params, &f.results)).collect(),
            Runner::Gpu(g) => g.bundle().functions.iter().map(|f| sig(&f.name, &f.params, &f.results)).collect(),
            Runner::Interpreter(m) => m.funcs.iter().map(interpreted_signature).collect(),
        }
    }

    /// The bundle's files as a dict of bytes.
    fn files_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let files = PyDict::new(py);
        for (name, bytes) in self.bundle()? {
            files.set_item(name, PyBytes::new(py, bytes))?;
        }
        Ok(files)
    }

    /// How a pickle rebuilds this module, or its function `function`: `_load_files` and its
    /// arguments, the bundle's bytes among them.
    fn reduce<'py>(
        &self,
        py: Python<'py>,
        function: Option<&str>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let load = py.import("kiln._kiln")?.getattr("_load_files")?;
        let (emulate, device) = match self.device {
            Device::Cuda(d) => (false, d),
            Device::Emulator => (true, 0),
        };
        let args = (self.manifest.clone(), self.files_dict(py)?, emulate, device, function);
        Ok((load, args.into_pyobject(py)?))
    }

    /// The bundle's files, refusing for an interpreted module, which has none.
    fn bundle(&self) -> PyResult<&BTreeMap<String, Vec<u8>>> {
        match self.runner {
            Runner::Interpreter(_) => Err(PyTypeError::new_err(format!(
                "`{}` runs in the interpreter: it has no bundle to save or send; compile it with kiln.compile",
                self.module
            ))),
            _ => Ok(&self.files),
        }
    }
}

/// The signature of a function of the checked program.
fn interpreted_signature(f: &kiln::kiln_ir::Func) -> Signature {
    let arg = |name: &str, ty: &kiln::kiln_ir::TensorType| Arg {
        name: name.to_string(),
        dtype: call::dtype_name(ty.dtype.name()),
        shape: ty.shape.clone(),
    };
    Signature {
        name: f.name.clone(),
        params: f.params.iter().map(|p| arg(&p.name, &p.ty)).collect(),
        results: f.result_names.iter().zip(&f.results).map(|(n, &v)| arg(n, f.ty(v))).collect(),
    }
}

/// Verifies and loads the bundle in `files`: a CPU bundle in this process, a GPU bundle on
/// `device`.
pub fn open(
    py: Python<'_>,
    manifest: String,
    files: BTreeMap<String, Vec<u8>>,
    options: &OpenOptions,
    device: Device,
) -> PyResult<Module> {
    let loaded = py
        .detach(|| {
            let in_memory = Files::Memory(&manifest, &files);
            let runner = if kiln_runtime::bundle::kind(in_memory)? == Kind::Gpu {
                let bundle = GpuBundle::load(in_memory, options)?;
                let limit = options.memory_limit.map(|l| l as usize);
                Runner::Gpu(match device {
                    Device::Cuda(ordinal) => GpuExecutor::new(bundle, ordinal, limit)?,
                    Device::Emulator => GpuExecutor::emulated(bundle, limit)?,
                })
            } else {
                Runner::Cpu(Bundle::load(in_memory, options)?)
            };
            Ok(Loaded { module: runner.module(), runner, manifest, files, device })
        })
        .map_err(|e| errors::load_error(py, e))?;
    Module::new(py, Arc::new(loaded))
}

/// A compiled module: its exported functions are attributes.
#[pyclass(frozen, module = "kiln")]
pub struct Module {
    loaded: Arc<Loaded>,
    /// name -> Function, in the manifest's order.
    functions: Py<PyDict>,
}

impl Module {
    /// A module whose functions run in the reference interpreter.
    pub fn interpreted(py: Python<'_>, ir: kiln::kiln_ir::Module) -> PyResult<Module> {
        let runner = Runner::Interpreter(ir);
        let loaded = Loaded {
            module: runner.module(),
            runner,
            manifest: String::new(),
            files: BTreeMap::new(),
            device: Device::Emulator,
        };
        Module::new(py, Arc::new(loaded))
    }

    fn new(py: Python<'_>, loaded: Arc<Loaded>) -> PyResult<Module> {
        let functions = PyDict::new(py);
        for sig in loaded.signatures() {
            let dtypes = Dtypes::new(py, &sig)?;
            functions.set_item(sig.name.clone(), Function { loaded: loaded.clone(), sig, dtypes })?;
        }
        Ok(Module { loaded, functions: functions.unbind() })
    }
}

#[pymethods]
impl Module {
    /// The module's name (the prefix of its C symbols).
    #[getter]
    fn name(&self) -> &str {
        &self.loaded.module
    }

    /// The exported functions by name.
    #[getter]
    fn functions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.functions.bind(py).copy()
    }

    /// The bundle's files by name: the manifest, the library or kernels, and the signature
    /// when it has one.
    #[getter]
    fn files<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.loaded.files_dict(py)
    }

    /// The manifest's JSON text.
    #[getter]
    fn manifest(&self) -> PyResult<String> {
        Ok(String::from_utf8_lossy(&self.loaded.bundle()?[&self.loaded.manifest]).into_owned())
    }

    /// Whether the module runs on a GPU (or the PTX emulator).
    #[getter]
    fn is_gpu(&self) -> bool {
        matches!(self.loaded.runner, Runner::Gpu(_))
    }

    /// Whether the module's functions run in the reference interpreter (`kiln.interpret`).
    #[getter]
    fn is_interpreted(&self) -> bool {
        matches!(self.loaded.runner, Runner::Interpreter(_))
    }

    /// Writes the bundle's files into `directory` (made if missing) and returns the manifest's
    /// path, which `kiln.load` and the C runtime open.
    fn save(&self, directory: std::path::PathBuf) -> PyResult<std::path::PathBuf> {
        let files = self.loaded.bundle()?;
        std::fs::create_dir_all(&directory)?;
        for (name, bytes) in files {
            std::fs::write(directory.join(name), bytes)?;
        }
        Ok(directory.join(&self.loaded.manifest))
    }

    fn __getattr__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.functions.bind(py).get_item(name)?.ok_or_else(|| {
            PyAttributeError::new_err(format!(
                "module `{}` exports no function `{name}`; it exports {}",
                self.loaded.module,
                self.names(py).join(", ")
            ))
        })
    }

    fn __getitem__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.functions.bind(py).get_item(name)?.ok_or_else(|| PyKeyError::new_err(name.to_string()))
    }

    fn __dir__(&self, py: Python<'_>) -> Vec<String> {
        let mut names = self.names(py);
        names.extend(["name", "functions", "files", "manifest", "is_gpu", "is_interpreted", "save"].map(String::from));
        names
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<kiln.Module {} exporting {}>", self.loaded.module, self.names(py).join(", "))
    }

    /// Pickles as the bundle's bytes: the receiving process verifies and loads them again.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        self.loaded.reduce(py, None)
    }
}

impl Module {
    fn names(&self, py: Python<'_>) -> Vec<String> {
        self.functions.bind(py).keys().iter().map(|k| k.to_string()).collect()
    }
}

/// An exported function of a loaded module.
#[pyclass(frozen, module = "kiln")]
pub struct Function {
    loaded: Arc<Loaded>,
    sig: Signature,
    dtypes: Dtypes,
}

#[pymethods]
impl Function {
    /// Calls the compiled function. Arguments bind as in Python (by position, then by
    /// parameter name); `out=` takes the result arrays to write into (one array, or a tuple of
    /// one per result), which are then returned.
    #[pyo3(signature = (*args, out = None, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        out: Option<&Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inputs = Inputs::bind(py, &self.sig, &self.dtypes, args, kwargs)?;
        let mut outputs = call::outputs(py, &self.sig, &self.dtypes, out, &inputs)?;
        {
            let ins = inputs.buffers();
            let mut outs = call::output_buffers(&mut outputs);
            let (loaded, name) = (&self.loaded, &self.sig.name);
            py.detach(|| loaded.call(name, &ins, &mut outs))
                .map_err(|e| PyRuntimeError::new_err(format!("`{name}`: {e}")))?;
        }
        call::returned(py, outputs)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.sig.name
    }

    /// The parameters as (name, dtype, shape) tuples; dtype is kiln's name (`f32`, `bf16`).
    #[getter]
    fn params(&self) -> Vec<(String, &'static str, Vec<usize>)> {
        describe(&self.sig.params)
    }

    /// The results as (name, dtype, shape) tuples.
    #[getter]
    fn results(&self) -> Vec<(String, &'static str, Vec<usize>)> {
        describe(&self.sig.results)
    }

    /// Pickles as its module's bundle and its name.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        self.loaded.reduce(py, Some(&self.sig.name))
    }

    fn __repr__(&self) -> String {
        let list = |args: &[Arg]| args.iter().map(Arg::describe).collect::<Vec<_>>().join(", ");
        format!("<kiln.Function {}({}) -> ({})>", self.sig.name, list(&self.sig.params), list(&self.sig.results))
    }
}

fn describe(args: &[Arg]) -> Vec<(String, &'static str, Vec<usize>)> {
    args.iter().map(|a| (a.name.clone(), a.dtype, a.shape.clone())).collect()
}
