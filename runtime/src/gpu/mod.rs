//! The GPU executor: runs a GPU bundle (`kiln build --target nvptx64-nvidia-cuda`) through the
//! CUDA driver API (cudarc, loaded at run time: nothing of CUDA is needed to build).
//!
//! [`GpuBundle::open`] verifies the bundle without touching a device: the manifest, every
//! file's hash, and the launch plans (every kernel named exists, every buffer index and
//! workspace offset is in range). [`GpuExecutor::new`] refuses a bundle whose largest call
//! (its buffers plus its workspace) exceeds the caller's device memory limit before it opens
//! the device, and returns [`Error::Device`] rather than panicking when there is no driver or
//! no GPU. [`GpuExecutor::call`] copies the inputs to the device, replays the function's
//! launches in order on one stream, and copies the results back.

use crate::bundle::{lists, read_manifest, signature, ArgSpec, Error, LaunchArgInfo};
use std::path::Path;
use std::sync::Arc;

/// An argument of a launch (see docs/artifact-format.md, GPU bundles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchArg {
    /// Parameter or result buffer `index` (parameters first).
    Buffer(usize),
    /// The workspace, this many bytes in.
    Workspace(u64),
    /// A 64-bit integer by value.
    Int(i64),
}

/// One launch of a function's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Index into the bundle's kernels.
    pub kernel: usize,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub args: Vec<LaunchArg>,
}

/// A function of a GPU bundle.
#[derive(Clone, Debug)]
pub struct GpuFunction {
    pub name: String,
    pub params: Vec<ArgSpec>,
    pub results: Vec<ArgSpec>,
    /// Device workspace bytes.
    pub workspace_bytes: usize,
    pub launches: Vec<Launch>,
}

impl GpuFunction {
    /// Device bytes one call needs: its buffers and its workspace.
    pub fn device_bytes(&self) -> usize {
        self.params.iter().chain(&self.results).map(|a| a.bytes).sum::<usize>() + self.workspace_bytes
    }
}

/// A kernel: its PTX and entry name.
#[derive(Clone, Debug)]
pub struct GpuKernel {
    pub name: String,
    pub entry: String,
    pub ptx: String,
}

/// A verified GPU bundle.
#[derive(Clone, Debug)]
pub struct GpuBundle {
    pub module: String,
    /// The GPU architecture it was compiled for (`sm_80`, ...).
    pub gpu: String,
    pub kernels: Vec<GpuKernel>,
    pub functions: Vec<GpuFunction>,
}

/// The largest grid or block dimension a plan may ask for (CUDA's grid x limit).
const MAX_DIM: u64 = (1 << 31) - 1;

impl GpuBundle {
    /// Opens and verifies the GPU bundle whose manifest is at `manifest`.
    pub fn open(manifest: &Path) -> Result<GpuBundle, Error> {
        let (m, dir) = read_manifest(manifest)?;
        if m.kind != "gpu" || !m.target.triple.starts_with("nvptx64-") {
            return Err(Error::Target(format!("a `{}` build for {}, not a GPU bundle", m.kind, m.target.triple)));
        }
        let mut kernels = vec![];
        for k in &m.kernels {
            if !lists(&m, &k.file) {
                return Err(Error::Manifest(format!("kernel `{}`: its file `{}` is not listed", k.name, k.file)));
            }
            let ptx = std::fs::read_to_string(dir.join(&k.file)).map_err(|e| Error::Io(format!("{}: {e}", k.file)))?;
            if !ptx.contains(&format!(".entry {}(", k.entry)) {
                return Err(Error::Manifest(format!("kernel `{}` has no entry `{}`", k.name, k.entry)));
            }
            kernels.push(GpuKernel { name: k.name.clone(), entry: k.entry.clone(), ptx });
        }
        let mut functions = vec![];
        for f in &m.functions {
            let (params, results, workspace_bytes) = signature(&m.module, f)?;
            let buffers = params.len() + results.len();
            let mut launches = vec![];
            for l in &f.launches {
                let kernel = kernels
                    .iter()
                    .position(|k| k.name == l.kernel)
                    .ok_or_else(|| Error::Manifest(format!("`{}` launches unknown kernel `{}`", f.name, l.kernel)))?;
                let dims = |d: [u64; 3]| -> Result<[u32; 3], Error> {
                    if d.iter().all(|&x| (1..=MAX_DIM).contains(&x)) {
                        Ok(d.map(|x| x as u32))
                    } else {
                        Err(Error::Manifest(format!("`{}` launches `{}` with dimensions {d:?}", f.name, l.kernel)))
                    }
                };
                let args = l
                    .args
                    .iter()
                    .map(|a| match *a {
                        LaunchArgInfo::Buffer { index } if index < buffers => Ok(LaunchArg::Buffer(index)),
                        LaunchArgInfo::Workspace { offset } if offset <= workspace_bytes as u64 => {
                            Ok(LaunchArg::Workspace(offset))
                        }
                        LaunchArgInfo::Int { value } => Ok(LaunchArg::Int(value)),
                        _ => Err(Error::Manifest(format!("`{}`: launch argument {a:?} is out of range", f.name))),
                    })
                    .collect::<Result<_, _>>()?;
                launches.push(Launch { kernel, grid: dims(l.grid)?, block: dims(l.block)?, args });
            }
            if launches.is_empty() {
                return Err(Error::Manifest(format!("`{}` has no launches", f.name)));
            }
            functions.push(GpuFunction { name: f.name.clone(), params, results, workspace_bytes, launches });
        }
        Ok(GpuBundle { module: m.module, gpu: m.target.cpu, kernels, functions })
    }

    pub fn function(&self, name: &str) -> Option<&GpuFunction> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// A GPU bundle loaded on a device.
pub struct GpuExecutor {
    bundle: GpuBundle,
    stream: Arc<cudarc::driver::CudaStream>,
    functions: Vec<cudarc::driver::CudaFunction>,
}

fn device_error(e: impl std::fmt::Display) -> Error {
    Error::Device(e.to_string())
}

impl GpuExecutor {
    /// Loads `bundle` on device `ordinal`. With `memory_limit`, refuses (before touching the
    /// device) a bundle one of whose calls needs more device memory than that.
    pub fn new(bundle: GpuBundle, ordinal: usize, memory_limit: Option<usize>) -> Result<GpuExecutor, Error> {
        if let Some(limit) = memory_limit {
            if let Some(f) = bundle.functions.iter().find(|f| f.device_bytes() > limit) {
                return Err(Error::Device(format!(
                    "`{}` needs {} bytes of device memory, more than the limit of {limit}",
                    f.name,
                    f.device_bytes()
                )));
            }
        }
        // cudarc panics when the driver library is missing: ask first.
        // SAFETY: only probes for the library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Device("no CUDA driver (libcuda) on this machine".into()));
        }
        let context = std::panic::catch_unwind(|| cudarc::driver::CudaContext::new(ordinal))
            .map_err(|_| Error::Device("the CUDA driver failed to start".into()))?
            .map_err(device_error)?;
        let (major, minor) = (
            context.attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            context.attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        );
        let capability = major.map_err(device_error)? * 10 + minor.map_err(device_error)?;
        let wanted: i32 = bundle.gpu.trim_start_matches("sm_").parse().unwrap_or(i32::MAX);
        if capability < wanted {
            return Err(Error::Device(format!("built for {}, this GPU is sm_{capability}", bundle.gpu)));
        }
        let mut functions = vec![];
        for k in &bundle.kernels {
            let module = context.load_module(cudarc::nvrtc::Ptx::from_src(k.ptx.clone())).map_err(device_error)?;
            functions.push(module.load_function(&k.entry).map_err(device_error)?);
        }
        Ok(GpuExecutor { stream: context.default_stream(), bundle, functions })
    }

    pub fn bundle(&self) -> &GpuBundle {
        &self.bundle
    }

    /// Calls `name`: checks the buffers, copies the inputs to the device, runs the launch plan
    /// and copies the results into `outputs`.
    pub fn call(&self, name: &str, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<(), Error> {
        use cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
        let f = self.bundle.function(name).ok_or_else(|| Error::Argument(format!("no function `{name}`")))?;
        crate::bundle::check_buffers(&f.name, &f.params, &f.results, inputs, outputs)?;
        let s = &self.stream;
        let mut buffers = vec![];
        for input in inputs {
            buffers.push(s.clone_htod(*input).map_err(device_error)?);
        }
        for output in outputs.iter() {
            buffers.push(s.alloc_zeros::<u8>(output.len()).map_err(device_error)?);
        }
        let workspace = s.alloc_zeros::<u8>(f.workspace_bytes.max(1)).map_err(device_error)?;
        let pointers: Vec<u64> = buffers.iter().map(|b| b.device_ptr(s).0).collect();
        let base = workspace.device_ptr(s).0;
        for l in &f.launches {
            let values: Vec<u64> = l
                .args
                .iter()
                .map(|a| match *a {
                    LaunchArg::Buffer(i) => pointers[i],
                    LaunchArg::Workspace(offset) => base + offset,
                    LaunchArg::Int(v) => v as u64,
                })
                .collect();
            let mut builder = s.launch_builder(&self.functions[l.kernel]);
            for v in &values {
                builder.arg(v);
            }
            let config = LaunchConfig {
                grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
                block_dim: (l.block[0], l.block[1], l.block[2]),
                shared_mem_bytes: 0,
            };
            // SAFETY: the plan was verified against the kernels' parameters by the compiler and
            // its buffer indices and offsets against this function by `GpuBundle::open`.
            unsafe { builder.launch(config) }.map_err(device_error)?;
        }
        for (output, buffer) in outputs.iter_mut().zip(&buffers[inputs.len()..]) {
            s.memcpy_dtoh(buffer, &mut output[..]).map_err(device_error)?;
        }
        s.synchronize().map_err(device_error)
    }
}
