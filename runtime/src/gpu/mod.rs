//! The GPU executor: runs a GPU bundle (`kiln build --target nvptx64-nvidia-cuda`) through the
//! CUDA driver API (cudarc, loaded at run time: nothing of CUDA is needed to build).
//!
//! [`GpuBundle::open`] verifies the bundle without touching a device: the manifest, every
//! file's hash, and the launch plans (every kernel named exists, every buffer index and
//! workspace offset is in range). [`GpuExecutor::new`] refuses a bundle whose largest call
//! (its buffers plus its workspace) exceeds the caller's device memory limit before it opens
//! the device, and returns [`Error::Device`] rather than panicking when there is no driver or
//! no GPU. [`GpuExecutor::call`] copies the inputs to the device, replays the function's
//! launches in order on one stream, and copies the results back;
//! [`GpuExecutor::call_buffers`] runs on [`DeviceBuffer`]s the executor allocated and
//! [`GpuExecutor::call_pointers`] on the caller's device pointers, without copies, each
//! pointer checked against the driver's record of its allocation.
//!
//! [`GpuExecutor::emulated`] replays the same plans on [`emulator`], kiln's PTX emulator
//! (kernels read by [`ptx`]), on any machine: how CI checks GPU bundles against the interpreter
//! without a GPU, with every memory access bounds-checked.

pub mod emulator;
pub mod ptx;

use crate::bundle::{lists, read_manifest, signature, ArgSpec, DType, Error, Files, OpenOptions};
use kiln_manifest::{FunctionInfo, Kind, MAX_DIM, MAX_THREADS_PER_BLOCK};
pub use kiln_manifest::{Gemm, LaunchArg, Scalar, BLOCK_LIMITS, GRID_LIMITS, SCRATCH_ALIGN};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One launch of a function's checked plan: the manifest's [`kiln_manifest::Launch`] with its
/// kernel resolved to an index and its dimensions within CUDA's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Index into the bundle's kernels.
    pub kernel: usize,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub args: Vec<LaunchArg>,
}

/// One step of a function's checked plan: a kernel launch, a product whose operands lie in
/// their buffers and whose scratch memory is aligned workspace, or a loop or conditional whose
/// scalars lie in their buffers and whose launches read only the indices of loops around them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Kernel(Launch),
    Gemm(Gemm),
    /// `body` for each index from `from` up to `to`.
    Loop {
        from: Scalar,
        to: Scalar,
        body: Vec<Step>,
    },
    /// `before`, then `body` and `before` again while `cond` is true.
    While {
        before: Vec<Step>,
        cond: Scalar,
        body: Vec<Step>,
    },
    /// `then` when `cond` is true, `otherwise` when it is not.
    If {
        cond: Scalar,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
}

impl Step {
    /// `steps` and every step inside them, in order.
    pub fn all(steps: &[Step]) -> Vec<&Step> {
        let mut all = vec![];
        for step in steps {
            all.push(step);
            match step {
                Step::Kernel(_) | Step::Gemm(_) => {}
                Step::Loop { body, .. } => all.extend(Step::all(body)),
                Step::While { before, body, .. } => all.extend(Step::all(before).into_iter().chain(Step::all(body))),
                Step::If { then, otherwise, .. } => all.extend(Step::all(then).into_iter().chain(Step::all(otherwise))),
            }
        }
        all
    }
}

/// How deeply a plan's loops and conditionals may nest (a bound on the executor's recursion
/// for any manifest; kiln's own plans nest as deeply as the source does).
pub const MAX_PLAN_NESTING: usize = 64;

/// A function of a GPU bundle.
#[derive(Clone, Debug)]
pub struct GpuFunction {
    pub name: String,
    pub params: Vec<ArgSpec>,
    pub results: Vec<ArgSpec>,
    /// Device workspace bytes.
    pub workspace_bytes: usize,
    pub launches: Vec<Step>,
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

impl GpuBundle {
    /// Opens and verifies the GPU bundle whose manifest is at `manifest`.
    pub fn open(manifest: &Path) -> Result<GpuBundle, Error> {
        GpuBundle::open_with(manifest, &OpenOptions::default())
    }

    /// Opens and verifies the GPU bundle whose manifest is at `manifest`, requiring what
    /// `options` asks (a signature; calls within a memory limit of the device).
    pub fn open_with(manifest: &Path, options: &OpenOptions) -> Result<GpuBundle, Error> {
        GpuBundle::load(Files::Directory(manifest), options)
    }

    /// Opens and verifies the GPU bundle in `files`, requiring what `options` asks.
    pub fn load(files: Files, options: &OpenOptions) -> Result<GpuBundle, Error> {
        let (m, verified) = read_manifest(files, options)?;
        if m.kind != Kind::Gpu || !m.target.triple.starts_with("nvptx64-") {
            return Err(Error::Target(format!(
                "a `{}` build for {}, not a GPU bundle",
                m.kind.name(),
                m.target.triple
            )));
        }
        let mut kernels = vec![];
        for k in &m.kernels {
            if !lists(&m, &k.file) {
                return Err(Error::Manifest(format!("kernel `{}`: its file `{}` is not listed", k.name, k.file)));
            }
            let bytes = verified.get(&k.file).expect("listed files are verified");
            let ptx =
                String::from_utf8(bytes.to_vec()).map_err(|_| Error::Io(format!("{}: not UTF-8 text", k.file)))?;
            kernels.push(GpuKernel { name: k.name.clone(), entry: k.entry.clone(), ptx });
        }
        // A plan that breaks a rule is refused for that reason; one that keeps the rules but is
        // not the plan built (recorded in a hashed file) is refused as an edited manifest.
        let bundle = GpuBundle::from_plan(&m.module, &m.target.cpu, &m.functions, kernels)?;
        let plan = kiln_manifest::plan_file(&m.module);
        if verified.get(&plan) != Some(&kiln_manifest::plan_bytes(&m.functions)[..]) {
            return Err(Error::Integrity(format!(
                "the manifest's launch plan differs from the one built, recorded in `{plan}` (or it is missing)"
            )));
        }
        Ok(bundle)
    }

    /// A bundle of module `module` for GPU architecture `gpu` from its functions, as a manifest
    /// lists them, and its kernels, after the checks [`GpuBundle::open`] makes of everything
    /// but files: every kernel has its entry, and every function's plan names known kernels,
    /// launches within CUDA's limits and passes arguments that lie in their buffers.
    pub fn from_plan(
        module: &str,
        gpu: &str,
        functions: &[FunctionInfo],
        kernels: Vec<GpuKernel>,
    ) -> Result<GpuBundle, Error> {
        for k in &kernels {
            if !k.ptx.contains(&format!(".entry {}(", k.entry)) {
                return Err(Error::Manifest(format!("kernel `{}` has no entry `{}`", k.name, k.entry)));
            }
        }
        let functions = functions.iter().map(|f| checked_function(module, f, &kernels)).collect::<Result<_, _>>()?;
        Ok(GpuBundle { module: module.to_string(), gpu: gpu.to_string(), kernels, functions })
    }

    pub fn function(&self, name: &str) -> Option<&GpuFunction> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// A function of a GPU bundle with its signature and launch plan checked.
fn checked_function(module: &str, f: &FunctionInfo, kernels: &[GpuKernel]) -> Result<GpuFunction, Error> {
    let (params, results, workspace_bytes) = signature(module, f)?;
    let plan = PlanCheck {
        function: &f.name,
        buffer_bytes: params.iter().chain(&results).map(|a| a.bytes as u64).collect(),
        workspace_bytes: workspace_bytes as u64,
        kernels,
    };
    let launches = plan.steps(&f.launches, 0, 0)?;
    if launches.is_empty() {
        return Err(Error::Manifest(format!("`{}` has no launches", f.name)));
    }
    Ok(GpuFunction { name: f.name.clone(), params, results, workspace_bytes, launches })
}

/// What the steps of one function's plan are checked against.
struct PlanCheck<'a> {
    function: &'a str,
    /// Bytes of each parameter and result buffer.
    buffer_bytes: Vec<u64>,
    workspace_bytes: u64,
    kernels: &'a [GpuKernel],
}

impl PlanCheck<'_> {
    fn error(&self, what: String) -> Error {
        Error::Manifest(format!("`{}`: {what}", self.function))
    }

    /// An argument in range inside `loops` counted loops: a buffer or workspace holding `bytes`
    /// from where it points, or (for `bytes` 0, a value) an integer or an enclosing loop's index.
    fn arg(&self, a: &LaunchArg, bytes: u64, loops: usize) -> Result<LaunchArg, Error> {
        let fits = match *a {
            LaunchArg::Buffer { index } => self.buffer_bytes.get(index).is_some_and(|&b| bytes <= b),
            LaunchArg::Workspace { offset } => offset.checked_add(bytes).is_some_and(|e| e <= self.workspace_bytes),
            LaunchArg::Int { .. } => bytes == 0,
            LaunchArg::Index { depth } => bytes == 0 && depth < loops,
        };
        if fits {
            Ok(*a)
        } else {
            Err(self.error(format!("launch argument {a:?} is out of range")))
        }
    }

    /// A scalar the host reads: a constant, or an integer or bool element in range.
    fn scalar(&self, s: &Scalar, loops: usize) -> Result<Scalar, Error> {
        if let Scalar::Read { at, dtype } = s {
            if matches!(dtype, DType::F32 | DType::F64) || matches!(at, LaunchArg::Int { .. } | LaunchArg::Index { .. })
            {
                return Err(self.error(format!("the plan reads {s:?}, not an integer in memory")));
            }
            self.arg(at, dtype.size(), loops)?;
        }
        Ok(*s)
    }

    /// `steps`, inside `loops` counted loops and `nesting` loops and conditionals.
    fn steps(&self, steps: &[kiln_manifest::Step], loops: usize, nesting: usize) -> Result<Vec<Step>, Error> {
        use kiln_manifest::Step as Planned;
        if nesting > MAX_PLAN_NESTING {
            return Err(self.error(format!("loops and conditionals nest deeper than {MAX_PLAN_NESTING}")));
        }
        let inner = |steps: &[Planned], loops: usize| self.steps(steps, loops, nesting + 1);
        steps
            .iter()
            .map(|step| {
                Ok(match step {
                    Planned::Kernel(l) => {
                        Step::Kernel(kernel_launch(self.function, l, self.kernels, |a| self.arg(a, 0, loops))?)
                    }
                    Planned::Gemm { gemm } => {
                        Step::Gemm(library_product(self.function, gemm, |a, bytes| self.arg(a, bytes, 0))?)
                    }
                    Planned::Loop { r#loop } => Step::Loop {
                        from: self.scalar(&r#loop.from, loops)?,
                        to: self.scalar(&r#loop.to, loops)?,
                        body: inner(&r#loop.body, loops + 1)?,
                    },
                    Planned::While { r#while } => Step::While {
                        before: inner(&r#while.before, loops)?,
                        cond: self.scalar(&r#while.cond, loops)?,
                        body: inner(&r#while.body, loops)?,
                    },
                    Planned::If { r#if } => Step::If {
                        cond: self.scalar(&r#if.cond, loops)?,
                        then: inner(&r#if.then, loops)?,
                        otherwise: inner(&r#if.r#else, loops)?,
                    },
                })
            })
            .collect()
    }
}

/// A kernel launch of function `f`'s plan, its kernel known and its dimensions in range.
fn kernel_launch(
    f: &str,
    l: &kiln_manifest::Launch,
    kernels: &[GpuKernel],
    arg: impl Fn(&LaunchArg) -> Result<LaunchArg, Error>,
) -> Result<Launch, Error> {
    let kernel = kernels
        .iter()
        .position(|k| k.name == l.kernel)
        .ok_or_else(|| Error::Manifest(format!("`{f}` launches unknown kernel `{}`", l.kernel)))?;
    let within = |d: [u64; 3], limits: [u64; 3]| d.iter().zip(limits).all(|(&x, max)| (1..=max).contains(&x));
    if !within(l.grid, GRID_LIMITS)
        || !within(l.block, BLOCK_LIMITS)
        || l.block.iter().product::<u64>() > MAX_THREADS_PER_BLOCK
    {
        return Err(Error::Manifest(format!(
            "`{f}` launches `{}` with grid {:?} and block {:?}, beyond CUDA's limits",
            l.kernel, l.grid, l.block
        )));
    }
    let args = l.args.iter().map(arg).collect::<Result<_, _>>()?;
    Ok(Launch { kernel, grid: l.grid.map(|x| x as u32), block: l.block.map(|x| x as u32), args })
}

/// A library product of function `f`'s plan: a float type, dimensions cuBLAS takes, operands
/// whose buffers hold every matrix, and aligned scratch memory in the workspace.
fn library_product(
    f: &str,
    g: &Gemm,
    arg: impl Fn(&LaunchArg, u64) -> Result<LaunchArg, Error>,
) -> Result<Gemm, Error> {
    let dims = [g.batch, g.m, g.n, g.k];
    if !matches!(g.dtype, DType::F32 | DType::F64) || !dims.iter().all(|&d| (1..=MAX_DIM).contains(&d)) {
        return Err(Error::Manifest(format!("`{f}`: a {} product of dimensions {dims:?}", g.dtype.name())));
    }
    for (operand, bytes) in [&g.a, &g.b, &g.c].into_iter().zip(g.bytes()) {
        arg(operand, bytes)?;
    }
    match arg(&g.scratch, g.scratch_bytes)? {
        LaunchArg::Workspace { offset } if offset % SCRATCH_ALIGN == 0 => Ok(g.clone()),
        _ => {
            Err(Error::Manifest(format!("`{f}`: a product's scratch memory {:?} is not aligned workspace", g.scratch)))
        }
    }
}

/// A GPU bundle loaded on a device, or on the PTX emulator.
pub struct GpuExecutor {
    bundle: GpuBundle,
    backend: Backend,
}

enum Backend {
    Cuda {
        stream: Arc<cudarc::driver::CudaStream>,
        functions: Vec<cudarc::driver::CudaFunction>,
        /// Present when a plan has library products.
        blas: Option<cudarc::cublas::CudaBlas>,
    },
    Emulator {
        /// Each bundle kernel, read for [`emulator`].
        kernels: Vec<ptx::Kernel>,
        /// The emulated device's memory, shared with the [`DeviceBuffer`]s allocated in it.
        memory: Arc<Mutex<emulator::Memory>>,
    },
}

/// A buffer in an executor's device memory (for an emulated executor, the emulator's memory),
/// freed when dropped: for callers that keep data on the device from one call to the next.
pub struct DeviceBuffer {
    address: u64,
    bytes: usize,
    owner: Owner,
}

enum Owner {
    Cuda(cudarc::driver::CudaSlice<u8>),
    Emulator(Arc<Mutex<emulator::Memory>>),
}

impl DeviceBuffer {
    /// Its device address.
    pub fn address(&self) -> u64 {
        self.address
    }

    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Owner::Emulator(memory) = &self.owner {
            lock(memory).free(self.address);
        }
    }
}

/// The emulator's memory; a panic while it was held leaves it consistent (allocations are
/// whole operations), so a poisoned lock is taken as it is.
fn lock(memory: &Mutex<emulator::Memory>) -> std::sync::MutexGuard<'_, emulator::Memory> {
    memory.lock().unwrap_or_else(|e| e.into_inner())
}

/// Refuses a copy between `buffer` and host memory of another size.
fn same_size(buffer: &DeviceBuffer, bytes: usize) -> Result<(), Error> {
    if buffer.bytes == bytes {
        Ok(())
    } else {
        Err(Error::Argument(format!("a copy of {bytes} bytes to or from a device buffer of {}", buffer.bytes)))
    }
}

fn device_error(e: impl std::fmt::Display) -> Error {
    Error::Device(e.to_string())
}

/// Refuses `bundle` if one of its calls needs more device memory than `limit`.
fn check_memory(bundle: &GpuBundle, limit: Option<usize>) -> Result<(), Error> {
    match (limit, bundle.functions.iter().max_by_key(|f| f.device_bytes())) {
        (Some(limit), Some(f)) if f.device_bytes() > limit => Err(Error::Device(format!(
            "`{}` needs {} bytes of device memory, more than the limit of {limit}",
            f.name,
            f.device_bytes()
        ))),
        _ => Ok(()),
    }
}

impl GpuExecutor {
    /// Loads `bundle` on device `ordinal`. With `memory_limit`, refuses (before touching the
    /// device) a bundle one of whose calls needs more device memory than that.
    pub fn new(bundle: GpuBundle, ordinal: usize, memory_limit: Option<usize>) -> Result<GpuExecutor, Error> {
        check_memory(&bundle, memory_limit)?;
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
        let stream = context.default_stream();
        let products = bundle.functions.iter().flat_map(|f| Step::all(&f.launches)).any(|s| matches!(s, Step::Gemm(_)));
        let blas = if products {
            // SAFETY: only probes for the library (cudarc panics when it is missing).
            if !unsafe { cudarc::cublas::sys::is_culib_present() } {
                return Err(Error::Device("the bundle's matrix products need cuBLAS (libcublas), not found".into()));
            }
            Some(cudarc::cublas::CudaBlas::new(stream.clone()).map_err(device_error)?)
        } else {
            None
        };
        Ok(GpuExecutor { backend: Backend::Cuda { stream, functions, blas }, bundle })
    }

    /// Loads `bundle` on the PTX emulator ([`emulator`]): no GPU or driver needed, every
    /// kernel read and checked now, every access checked when it runs. `memory_limit` as for
    /// [`GpuExecutor::new`].
    pub fn emulated(bundle: GpuBundle, memory_limit: Option<usize>) -> Result<GpuExecutor, Error> {
        check_memory(&bundle, memory_limit)?;
        let kernels = bundle
            .kernels
            .iter()
            .map(|k| {
                let mut module =
                    ptx::parse(&k.ptx).map_err(|e| Error::Emulator(format!("kernel `{}`: {e}", k.name)))?;
                let at = module.kernels.iter().position(|e| e.name == k.entry);
                at.map(|i| module.kernels.swap_remove(i))
                    .ok_or_else(|| Error::Manifest(format!("kernel `{}` has no entry `{}`", k.name, k.entry)))
            })
            .collect::<Result<_, _>>()?;
        Ok(GpuExecutor { backend: Backend::Emulator { kernels, memory: Default::default() }, bundle })
    }

    pub fn bundle(&self) -> &GpuBundle {
        &self.bundle
    }

    /// Whether this executor runs on the PTX emulator.
    pub fn is_emulated(&self) -> bool {
        matches!(self.backend, Backend::Emulator { .. })
    }

    /// Calls `name`: checks the buffers, copies the inputs to the device, runs the launch plan
    /// and copies the results into `outputs`.
    pub fn call(&self, name: &str, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<(), Error> {
        self.run(name, inputs, outputs, 1).map(drop)
    }

    /// Times `name` on `inputs`: the inputs are copied to the device once, then the plan runs
    /// `runs` times; the seconds of each run, from a synchronized device to a synchronized
    /// device (launch overheads included, copies excluded).
    pub fn time(&self, name: &str, inputs: &[&[u8]], runs: usize) -> Result<Vec<f64>, Error> {
        let f = self.function(name)?;
        let mut outputs: Vec<Vec<u8>> = f.results.iter().map(|r| vec![0; r.bytes]).collect();
        let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        self.run(name, inputs, &mut outs, runs)
    }

    /// A device buffer of `bytes` bytes, its contents unspecified.
    pub fn alloc(&self, bytes: usize) -> Result<DeviceBuffer, Error> {
        self.device().alloc(bytes)
    }

    /// A device buffer holding a copy of `data`.
    pub fn upload(&self, data: &[u8]) -> Result<DeviceBuffer, Error> {
        self.device().upload(data)
    }

    /// Copies `data` into `buffer`, of the same size.
    pub fn write(&self, buffer: &DeviceBuffer, data: &[u8]) -> Result<(), Error> {
        same_size(buffer, data.len())?;
        self.device().write(buffer, data)
    }

    /// Copies `buffer` into `out`, of the same size, once every call given so far has finished.
    pub fn download(&self, buffer: &DeviceBuffer, out: &mut [u8]) -> Result<(), Error> {
        same_size(buffer, out.len())?;
        self.device().download(buffer, out)
    }

    /// Calls `name` on buffers already on the device, parameters then results, without
    /// copies. Refused: a wrong count, a buffer of another device or smaller than its
    /// parameter or result, a result overlapping another buffer.
    pub fn call_buffers(&self, name: &str, buffers: &[&DeviceBuffer]) -> Result<(), Error> {
        let mut device = self.device();
        let spans = buffers
            .iter()
            .map(|b| device.owns(b).map(|()| (b.address, Some(b.bytes as u64))))
            .collect::<Result<Vec<_>, _>>()?;
        // SAFETY: each buffer is a live allocation of this device, borrowed for the call.
        unsafe { self.call_spans(&mut *device, name, &spans) }
    }

    /// Calls `name` on the caller's device pointers (`CUdeviceptr`s of this executor's device,
    /// from `cudaMalloc` or `cuMemAlloc`; on the emulator, addresses of [`DeviceBuffer`]s):
    /// parameters then results. Each pointer must point into device memory with at least its
    /// buffer's bytes from there on, as the driver records it (`cuMemGetAddressRange`);
    /// otherwise as [`GpuExecutor::call_buffers`].
    ///
    /// # Safety
    /// The memory stays allocated during the call, and nothing else writes the buffers, or
    /// reads the results, while it runs.
    pub unsafe fn call_pointers(&self, name: &str, pointers: &[u64]) -> Result<(), Error> {
        let mut device = self.device();
        let spans: Vec<(u64, Option<u64>)> = pointers.iter().map(|&p| (p, device.available(p))).collect();
        // SAFETY: forwarded from the caller.
        unsafe { self.call_spans(&mut *device, name, &spans) }
    }

    /// Runs `name` once with its parameters and results in the device memory `spans`
    /// (address, bytes available there; `None` when it is not device memory), after checking
    /// them.
    ///
    /// # Safety
    /// As for [`GpuExecutor::call_pointers`].
    unsafe fn call_spans(
        &self,
        device: &mut dyn Device,
        name: &str,
        spans: &[(u64, Option<u64>)],
    ) -> Result<(), Error> {
        let f = self.function(name)?;
        let specs: Vec<&ArgSpec> = f.params.iter().chain(&f.results).collect();
        if spans.len() != specs.len() {
            return Err(Error::Argument(format!(
                "`{name}` takes {} buffers ({} parameters, {} results), got {}",
                specs.len(),
                f.params.len(),
                f.results.len(),
                spans.len()
            )));
        }
        for (&(p, n), spec) in spans.iter().zip(&specs) {
            let Some(n) = n else {
                return Err(Error::Argument(format!(
                    "`{}` of `{name}`: {p:#x} is not memory of this executor's device",
                    spec.name
                )));
            };
            if n < spec.bytes as u64 {
                return Err(Error::Argument(format!(
                    "`{}` of `{name}` needs {} bytes, its device memory holds {n} from {p:#x}",
                    spec.name, spec.bytes
                )));
            }
        }
        let range = |i: usize| spans[i].0..spans[i].0 + specs[i].bytes as u64;
        for r in f.params.len()..specs.len() {
            if let Some(i) =
                (0..specs.len()).find(|&i| i != r && range(i).start < range(r).end && range(r).start < range(i).end)
            {
                return Err(Error::Argument(format!(
                    "`{name}`: the result `{}` overlaps `{}`",
                    specs[r].name, specs[i].name
                )));
            }
        }
        let pointers: Vec<u64> = spans.iter().map(|s| s.0).collect();
        replay(device, f, &pointers, 1).map(drop)
    }

    fn function(&self, name: &str) -> Result<&GpuFunction, Error> {
        self.bundle.function(name).ok_or_else(|| Error::Argument(format!("no function `{name}`")))
    }

    /// This executor's device, for one operation or call.
    fn device(&self) -> Box<dyn Device + '_> {
        match &self.backend {
            Backend::Cuda { stream, functions, blas } => {
                Box::new(CudaDevice { stream, functions, blas: blas.as_ref() })
            }
            Backend::Emulator { kernels, memory } => Box::new(EmulatedDevice { kernels, memory }),
        }
    }

    fn run(&self, name: &str, inputs: &[&[u8]], outputs: &mut [&mut [u8]], runs: usize) -> Result<Vec<f64>, Error> {
        let f = self.function(name)?;
        crate::bundle::check_buffers(&f.name, &f.params, &f.results, inputs, outputs)?;
        let mut device = self.device();
        let mut buffers = vec![];
        for input in inputs {
            buffers.push(device.upload(input)?);
        }
        for output in outputs.iter() {
            buffers.push(device.alloc(output.len())?);
        }
        let pointers: Vec<u64> = buffers.iter().map(|b| b.address).collect();
        let times = replay(&mut *device, f, &pointers, runs)?;
        for (output, buffer) in outputs.iter_mut().zip(&buffers[inputs.len()..]) {
            device.download(buffer, output)?;
        }
        Ok(times)
    }
}

/// What running launch plans needs of a device. Addresses are device pointers.
trait Device {
    /// A buffer whose contents a plan must not rely on (it writes before it reads).
    fn alloc(&mut self, bytes: usize) -> Result<DeviceBuffer, Error>;
    /// Copies `data`, of its size, into `buffer`.
    fn write(&mut self, buffer: &DeviceBuffer, data: &[u8]) -> Result<(), Error>;
    fn upload(&mut self, data: &[u8]) -> Result<DeviceBuffer, Error> {
        let buffer = self.alloc(data.len())?;
        self.write(&buffer, data)?;
        Ok(buffer)
    }
    /// Copies `buffer` into `out` once every step given so far has finished.
    fn download(&mut self, buffer: &DeviceBuffer, out: &mut [u8]) -> Result<(), Error>;
    /// The bytes of device memory from `address` to the end of its allocation; `None` when
    /// `address` is not device memory.
    fn available(&mut self, address: u64) -> Option<u64>;
    /// Refuses a buffer of another device (its address may mean nothing here).
    fn owns(&self, buffer: &DeviceBuffer) -> Result<(), Error>;
    fn launch(&mut self, launch: &Launch, args: &[u64]) -> Result<(), Error>;
    /// Computes `gemm` with its operands and scratch memory at these addresses.
    fn gemm(&mut self, gemm: &Gemm, operands: [u64; 4]) -> Result<(), Error>;
    /// Waits until every step given so far has finished.
    fn synchronize(&mut self) -> Result<(), Error>;
    /// Copies the device memory at `address` into `out` once every step given so far has
    /// finished (the plan's checks put it inside a buffer or the workspace).
    fn read(&mut self, address: u64, out: &mut [u8]) -> Result<(), Error>;
}

/// Runs `f`'s launch plan `runs` times on `device` with its parameters and results at
/// `pointers` and a workspace allocated for it, the steps in order (each run recomputes every
/// result from the parameters); the seconds of each run between synchronizations.
fn replay(device: &mut dyn Device, f: &GpuFunction, pointers: &[u64], runs: usize) -> Result<Vec<f64>, Error> {
    let workspace = device.alloc(f.workspace_bytes.max(1))?;
    let mut times = vec![];
    for _ in 0..runs.max(1) {
        device.synchronize()?;
        let start = std::time::Instant::now();
        Replay { device: &mut *device, pointers, workspace: workspace.address, indices: vec![] }.run(&f.launches)?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// One run of a plan: the device, where the function's buffers and workspace are, and the
/// index of each counted loop being run (outermost first).
struct Replay<'a> {
    device: &'a mut dyn Device,
    pointers: &'a [u64],
    workspace: u64,
    indices: Vec<i64>,
}

impl Replay<'_> {
    /// The value a launch passes for `a`.
    fn value(&self, a: &LaunchArg) -> u64 {
        match *a {
            LaunchArg::Buffer { index } => self.pointers[index],
            LaunchArg::Workspace { offset } => self.workspace + offset,
            LaunchArg::Int { value } => value as u64,
            LaunchArg::Index { depth } => self.indices[depth] as u64,
        }
    }

    /// `s`'s value, read back from the device once every step before has finished.
    fn scalar(&mut self, s: &Scalar) -> Result<i64, Error> {
        let (at, dtype) = match s {
            Scalar::Int { value } => return Ok(*value),
            Scalar::Read { at, dtype } => (self.value(at), *dtype),
        };
        let mut bytes = [0u8; 8];
        let size = dtype.size() as usize;
        self.device.read(at, &mut bytes[..size])?;
        Ok(match dtype {
            DType::Bool => i64::from(bytes[0] != 0),
            DType::I32 => i64::from(i32::from_le_bytes(bytes[..4].try_into().expect("four bytes"))),
            _ => i64::from_le_bytes(bytes),
        })
    }

    fn run(&mut self, steps: &[Step]) -> Result<(), Error> {
        for step in steps {
            match step {
                Step::Kernel(l) => {
                    let args: Vec<u64> = l.args.iter().map(|a| self.value(a)).collect();
                    self.device.launch(l, &args)?
                }
                Step::Gemm(g) => {
                    let operands = [&g.a, &g.b, &g.c, &g.scratch].map(|a| self.value(a));
                    self.device.gemm(g, operands)?
                }
                Step::Loop { from, to, body } => {
                    let (from, to) = (self.scalar(from)?, self.scalar(to)?);
                    for i in from..to {
                        self.indices.push(i);
                        let ran = self.run(body);
                        self.indices.pop();
                        ran?;
                    }
                }
                Step::While { before, cond, body } => loop {
                    self.run(before)?;
                    if self.scalar(cond)? == 0 {
                        break;
                    }
                    self.run(body)?;
                },
                Step::If { cond, then, otherwise } => {
                    let taken = if self.scalar(cond)? != 0 { then } else { otherwise };
                    self.run(taken)?;
                }
            }
        }
        Ok(())
    }
}

/// A CUDA device: its stream, the bundle's kernels and cuBLAS handle.
struct CudaDevice<'a> {
    stream: &'a Arc<cudarc::driver::CudaStream>,
    functions: &'a [cudarc::driver::CudaFunction],
    blas: Option<&'a cudarc::cublas::CudaBlas>,
}

impl CudaDevice<'_> {
    fn keep(&self, buffer: cudarc::driver::CudaSlice<u8>) -> DeviceBuffer {
        use cudarc::driver::DevicePtr;
        let address = buffer.device_ptr(self.stream).0;
        DeviceBuffer { address, bytes: buffer.len(), owner: Owner::Cuda(buffer) }
    }
}

impl Device for CudaDevice<'_> {
    fn synchronize(&mut self) -> Result<(), Error> {
        self.stream.synchronize().map_err(device_error)
    }

    fn owns(&self, buffer: &DeviceBuffer) -> Result<(), Error> {
        match buffer.owner {
            Owner::Cuda(_) => Ok(()),
            Owner::Emulator(_) => Err(Error::Argument("a buffer of the emulator given to a GPU".into())),
        }
    }

    fn write(&mut self, buffer: &DeviceBuffer, data: &[u8]) -> Result<(), Error> {
        self.owns(buffer)?;
        self.stream.context().bind_to_thread().map_err(device_error)?;
        // SAFETY: `buffer` is a live device allocation of `data.len()` bytes (checked by the
        // caller); the copy has finished when the stream is synchronized, before `data` goes.
        unsafe { cudarc::driver::result::memcpy_htod_async(buffer.address, data, self.stream.cu_stream()) }
            .map_err(device_error)?;
        self.stream.synchronize().map_err(device_error)
    }

    /// Zeroed, so that a call's results never depend on what the device held before.
    fn alloc(&mut self, bytes: usize) -> Result<DeviceBuffer, Error> {
        let buffer = self.stream.alloc_zeros::<u8>(bytes).map_err(device_error)?;
        Ok(self.keep(buffer))
    }

    fn available(&mut self, address: u64) -> Option<u64> {
        use cudarc::driver::sys;
        self.stream.context().bind_to_thread().ok()?;
        let (mut base, mut size) = (0, 0);
        // SAFETY: only asks the driver about an address.
        unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, address) }.result().ok()?;
        Some(base + size as u64 - address)
    }

    fn launch(&mut self, l: &Launch, args: &[u64]) -> Result<(), Error> {
        use cudarc::driver::{LaunchConfig, PushKernelArg};
        let mut builder = self.stream.launch_builder(&self.functions[l.kernel]);
        for v in args {
            builder.arg(v);
        }
        let config = LaunchConfig {
            grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
            block_dim: (l.block[0], l.block[1], l.block[2]),
            shared_mem_bytes: 0,
        };
        // SAFETY: the plan was verified against the kernels' parameters by the compiler and
        // its buffer indices and offsets against this function by `GpuBundle::open`.
        unsafe { builder.launch(config) }.map(drop).map_err(device_error)
    }

    /// Row-major c = a b is column-major c^T = b^T a^T: cuBLAS multiplies b (n×k, leading
    /// dimension n) by a (k×m, leading dimension k; or transposed from m×k when a is stored
    /// k×m) into c (n×m, leading dimension n), with beta = 1 to accumulate and 0 to overwrite,
    /// in the plan's scratch memory (the same size on every call: same algorithms, same bits).
    fn gemm(&mut self, g: &Gemm, [a, b, c, scratch]: [u64; 4]) -> Result<(), Error> {
        use cudarc::cublas::{result, sys::cublasOperation_t as Op};
        let blas = self.blas.ok_or_else(|| Error::Device("no cuBLAS handle".into()))?;
        let (m, n, k, batch) = (g.m as i32, g.n as i32, g.k as i32, g.batch as i32);
        let (op_a, lda) = if g.a_transposed { (Op::CUBLAS_OP_T, m) } else { (Op::CUBLAS_OP_N, k) };
        let strides = [g.m * g.k, g.k * g.n, g.m * g.n].map(|s| s as i64);
        let h = *blas.handle();
        // SAFETY: the scratch memory lies inside this call's workspace (`GpuBundle::open`),
        // aligned as cuBLAS requires, and outlives the products that use it.
        unsafe { cudarc::cublas::sys::cublasSetWorkspace_v2(h, scratch as *mut _, g.scratch_bytes as usize) }
            .result()
            .map_err(device_error)?;
        // One call for either element type: b (n×k), then a, into c.
        macro_rules! gemm {
            ($call:path, $t:ty) => {{
                let (one, beta): ($t, $t) = (1.0, if g.accumulate { 1.0 } else { 0.0 });
                let (a, b, c) = (a as *const $t, b as *const $t, c as *mut $t);
                $call(
                    h,
                    Op::CUBLAS_OP_N,
                    op_a,
                    n,
                    m,
                    k,
                    &one,
                    b,
                    n,
                    strides[1],
                    a,
                    lda,
                    strides[0],
                    &beta,
                    c,
                    n,
                    strides[2],
                    batch,
                )
            }};
        }
        // SAFETY: the pointers are this call's buffers, verified by `GpuBundle::open` to hold
        // every matrix of the product; the handle runs on this call's stream.
        unsafe {
            match g.dtype {
                DType::F64 => gemm!(result::dgemm_strided_batched, f64),
                _ => gemm!(result::sgemm_strided_batched, f32),
            }
        }
        .map_err(device_error)
    }

    fn read(&mut self, address: u64, out: &mut [u8]) -> Result<(), Error> {
        self.stream.context().bind_to_thread().map_err(device_error)?;
        // SAFETY: `address` lies in this call's buffers or workspace (checked when the bundle
        // was opened); the copy has finished when the stream is synchronized.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(out, address, self.stream.cu_stream()) }
            .map_err(device_error)?;
        self.stream.synchronize().map_err(device_error)
    }

    fn download(&mut self, buffer: &DeviceBuffer, out: &mut [u8]) -> Result<(), Error> {
        let Owner::Cuda(slice) = &buffer.owner else {
            // An emulator's buffer, which `owns` refuses.
            return self.owns(buffer);
        };
        self.stream.memcpy_dtoh(slice, out).map_err(device_error)?;
        self.stream.synchronize().map_err(device_error)
    }
}

/// The PTX emulator: every step runs to its end when it is given.
struct EmulatedDevice<'a> {
    kernels: &'a [ptx::Kernel],
    memory: &'a Arc<Mutex<emulator::Memory>>,
}

impl Device for EmulatedDevice<'_> {
    fn synchronize(&mut self) -> Result<(), Error> {
        Ok(())
    }

    fn write(&mut self, buffer: &DeviceBuffer, data: &[u8]) -> Result<(), Error> {
        self.owns(buffer)?;
        lock(self.memory).bytes_mut(buffer.address).copy_from_slice(data);
        Ok(())
    }

    /// Filled with 0xFF bytes, NaN in every float type and -1 in every integer type, so that a
    /// plan that reads memory before writing it changes results.
    fn alloc(&mut self, bytes: usize) -> Result<DeviceBuffer, Error> {
        let mut memory = lock(self.memory);
        let address = memory.alloc(bytes);
        memory.bytes_mut(address).fill(0xFF);
        Ok(DeviceBuffer { address, bytes, owner: Owner::Emulator(self.memory.clone()) })
    }

    fn available(&mut self, address: u64) -> Option<u64> {
        lock(self.memory).available(address)
    }

    fn owns(&self, buffer: &DeviceBuffer) -> Result<(), Error> {
        match &buffer.owner {
            Owner::Emulator(memory) if Arc::ptr_eq(memory, self.memory) => Ok(()),
            _ => Err(Error::Argument("a buffer of another device given to the emulator".into())),
        }
    }

    fn launch(&mut self, l: &Launch, args: &[u64]) -> Result<(), Error> {
        emulator::launch(&mut lock(self.memory), &self.kernels[l.kernel], l.grid, l.block, args)
            .map_err(Error::Emulator)
    }

    fn gemm(&mut self, g: &Gemm, [a, b, c, _scratch]: [u64; 4]) -> Result<(), Error> {
        emulator::gemm(&mut lock(self.memory), g, [a, b, c]).map_err(Error::Emulator)
    }

    fn read(&mut self, address: u64, out: &mut [u8]) -> Result<(), Error> {
        lock(self.memory)
            .read(address, out)
            .ok_or_else(|| Error::Emulator(format!("a read of {} bytes at {address:#x} outside memory", out.len())))
    }

    fn download(&mut self, buffer: &DeviceBuffer, out: &mut [u8]) -> Result<(), Error> {
        self.owns(buffer)?;
        out.copy_from_slice(lock(self.memory).bytes(buffer.address));
        Ok(())
    }
}
