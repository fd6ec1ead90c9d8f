//! Bundles: a shared library built by `kiln build --output-kind shared` with its manifest.
//!
//! [`Bundle::open`] checks everything before it loads any code: the manifest's format and
//! version, that the bundle is a shared library for this machine's architecture, the size and
//! SHA-256 of every file it lists, and the consistency of every argument's dtype, shape and
//! byte count. After loading, it compares the ABI descriptor compiled into the library
//! (`<module>.kiln_abi`) with the one the manifest implies, so a manifest edited to claim other
//! shapes is refused rather than believed. [`Bundle::call`] checks argument count, dtypes and
//! buffer lengths before the call.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::{c_void, CStr};
use std::path::Path;

pub use kiln_manifest::Kind;
use kiln_manifest::{ArgInfo, FileInfo, FunctionInfo, Manifest};
pub use kiln_manifest::{DType, FORMAT, VERSION};

/// The alignment a caller's workspace must have.
pub const WORKSPACE_ALIGNMENT: usize = kiln_manifest::WORKSPACE_ALIGNMENT as usize;

/// The largest manifest the runtime reads (a bigger one is refused, not parsed).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// A typed view of an input buffer, for [`Bundle::call_typed`].
#[derive(Clone, Copy, Debug)]
pub enum TensorRef<'a> {
    /// bool, one byte per element (0 or 1).
    Bool(&'a [u8]),
    U8(&'a [u8]),
    I32(&'a [i32]),
    U32(&'a [u32]),
    I64(&'a [i64]),
    /// f16 and bf16 as their bits.
    F16(&'a [u16]),
    BF16(&'a [u16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// A typed view of an output buffer, for [`Bundle::call_typed`].
#[derive(Debug)]
pub enum TensorMut<'a> {
    Bool(&'a mut [u8]),
    U8(&'a mut [u8]),
    I32(&'a mut [i32]),
    U32(&'a mut [u32]),
    I64(&'a mut [i64]),
    F16(&'a mut [u16]),
    BF16(&'a mut [u16]),
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

/// The dtype and bytes of a typed buffer.
macro_rules! typed_bytes {
    ($t:expr, $bytes:ident) => {
        match $t {
            TensorRef::Bool(v) => (DType::Bool, $bytes(v)),
            TensorRef::U8(v) => (DType::U8, $bytes(v)),
            TensorRef::I32(v) => (DType::I32, $bytes(v)),
            TensorRef::U32(v) => (DType::U32, $bytes(v)),
            TensorRef::I64(v) => (DType::I64, $bytes(v)),
            TensorRef::F16(v) => (DType::F16, $bytes(v)),
            TensorRef::BF16(v) => (DType::BF16, $bytes(v)),
            TensorRef::F32(v) => (DType::F32, $bytes(v)),
            TensorRef::F64(v) => (DType::F64, $bytes(v)),
        }
    };
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain numeric elements; any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

fn as_bytes_mut<T: Copy>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as above; the compiled code writes valid values of T (for bool, 0 or 1).
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
}

impl TensorMut<'_> {
    fn dtype_and_bytes(&mut self) -> (DType, &mut [u8]) {
        match self {
            TensorMut::Bool(v) => (DType::Bool, as_bytes_mut(v)),
            TensorMut::U8(v) => (DType::U8, as_bytes_mut(v)),
            TensorMut::I32(v) => (DType::I32, as_bytes_mut(v)),
            TensorMut::U32(v) => (DType::U32, as_bytes_mut(v)),
            TensorMut::I64(v) => (DType::I64, as_bytes_mut(v)),
            TensorMut::F16(v) => (DType::F16, as_bytes_mut(v)),
            TensorMut::BF16(v) => (DType::BF16, as_bytes_mut(v)),
            TensorMut::F32(v) => (DType::F32, as_bytes_mut(v)),
            TensorMut::F64(v) => (DType::F64, as_bytes_mut(v)),
        }
    }
}

/// Why a bundle or a call was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    Io(String),
    /// The manifest is not valid JSON of the expected shape, or contradicts itself.
    Manifest(String),
    /// A format or version this runtime does not read.
    Version(String),
    /// Built for another architecture, or not a shared library.
    Target(String),
    /// A file's size or hash differs from the manifest.
    Integrity(String),
    /// A signature was asked for ([`OpenOptions::public_key`]) and is missing or does not
    /// verify.
    Signature(String),
    /// A function's calls would use more memory than [`OpenOptions::memory_limit`] allows.
    Limit(String),
    /// The library cannot be loaded, lacks a symbol, or its ABI differs from the manifest.
    Library(String),
    /// A call with the wrong function, argument count, dtype or buffer size.
    Argument(String),
    /// The compiled function returned a nonzero status.
    Status(i32),
    /// No usable GPU (no driver, no device, too old a device, not enough memory allowed), or
    /// the CUDA driver failed.
    Device(String),
    /// The PTX emulator cannot run a kernel, or a kernel faulted in it (an access outside its
    /// buffers, a deadlock).
    Emulator(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(m) => write!(f, "cannot read the bundle: {m}"),
            Error::Manifest(m) => write!(f, "invalid manifest: {m}"),
            Error::Version(m) => write!(f, "unsupported manifest: {m}"),
            Error::Target(m) => write!(f, "wrong target: {m}"),
            Error::Integrity(m) => write!(f, "corrupt bundle: {m}"),
            Error::Signature(m) => write!(f, "unsigned or forged bundle: {m}"),
            Error::Limit(m) => write!(f, "over the memory limit: {m}"),
            Error::Device(m) => write!(f, "GPU: {m}"),
            Error::Emulator(m) => write!(f, "PTX emulator: {m}"),
            Error::Library(m) => write!(f, "cannot load the library: {m}"),
            Error::Argument(m) => write!(f, "bad arguments: {m}"),
            Error::Status(s) => write!(f, "the compiled function returned status {s}"),
        }
    }
}

impl std::error::Error for Error {}

/// One argument's expected type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub bytes: usize,
}

/// A function of a loaded bundle.
#[derive(Debug)]
pub struct Function {
    pub name: String,
    pub params: Vec<ArgSpec>,
    pub results: Vec<ArgSpec>,
    /// Bytes of scratch memory a call needs (see [`Bundle::call_with_workspace`]).
    pub workspace_bytes: usize,
    entry: Entry,
}

/// How a function is called: through its packed entry point (arguments in one array, any
/// arity), or, in a library built before packed entry points, its plain one (at most
/// [`crate::entry::MAX_ARGS`] arguments).
#[derive(Clone, Copy, Debug)]
enum Entry {
    Packed(*const c_void),
    Plain(*const c_void),
}

/// The most parameters and results a function's manifest may list (bounding what a manifest
/// makes the runtime allocate).
const MAX_ARGUMENTS: usize = 1 << 16;

/// A loaded, verified bundle.
#[derive(Debug)]
pub struct Bundle {
    pub module: String,
    functions: Vec<Function>,
    _library: libloading::Library,
    /// The in-memory file the library was loaded from, open while it is loaded: its
    /// /proc/self/fd path stays unique, so another bundle's load is never taken for this one.
    _image: std::fs::File,
}

// SAFETY: entry points are plain functions with no shared mutable state (the library holds no
// globals besides constants), so calls from several threads with distinct buffers are safe.
unsafe impl Send for Bundle {}
unsafe impl Sync for Bundle {}

/// The triple kiln builds for this machine (kiln's CPU targets are Linux with glibc).
fn host_triple() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "aarch64-unknown-linux-gnu"
    } else {
        "x86_64-unknown-linux-gnu"
    }
}

/// The first CPU feature a bundle for `cpu` with extra `features` (LLVM's `+name,-name` list,
/// recorded for `--target-cpu native`) needs and this machine lacks
/// ([`kiln_manifest::cpu_features`]). A feature this runtime cannot detect is not held
/// against the bundle, nor is a named CPU beyond the psABI levels (whose features only LLVM
/// knows): such a bundle is checked by its recorded features only.
fn missing_cpu_features(cpu: &str, features: &str) -> Option<String> {
    kiln_manifest::cpu_features(cpu, features).into_iter().find(|f| host_has(f) == Some(false))
}

/// Whether this machine has x86 feature `name` (LLVM's spelling), if the runtime can tell.
#[cfg(target_arch = "x86_64")]
fn host_has(name: &str) -> Option<bool> {
    use std::arch::is_x86_feature_detected as has;
    Some(match name {
        "sse3" => has!("sse3"),
        "ssse3" => has!("ssse3"),
        "sse4.1" => has!("sse4.1"),
        "sse4.2" => has!("sse4.2"),
        "popcnt" => has!("popcnt"),
        "cmpxchg16b" => has!("cmpxchg16b"),
        "avx" => has!("avx"),
        "avx2" => has!("avx2"),
        "bmi1" => has!("bmi1"),
        "bmi2" => has!("bmi2"),
        "f16c" => has!("f16c"),
        "fma" => has!("fma"),
        "lzcnt" => has!("lzcnt"),
        "movbe" => has!("movbe"),
        "xsave" => has!("xsave"),
        "avx512f" => has!("avx512f"),
        "avx512bw" => has!("avx512bw"),
        "avx512cd" => has!("avx512cd"),
        "avx512dq" => has!("avx512dq"),
        "avx512vl" => has!("avx512vl"),
        "avx512vnni" => has!("avx512vnni"),
        "avx512bf16" => has!("avx512bf16"),
        "avx512fp16" => has!("avx512fp16"),
        "avxvnni" => has!("avxvnni"),
        "sse4a" => has!("sse4a"),
        "tbm" => has!("tbm"),
        _ => return None,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn host_has(_: &str) -> Option<bool> {
    None
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Checks the count and byte size of a call's buffers against a function's arguments.
pub(crate) fn check_buffers(
    name: &str,
    params: &[ArgSpec],
    results: &[ArgSpec],
    inputs: &[&[u8]],
    outputs: &[&mut [u8]],
) -> Result<(), Error> {
    if inputs.len() != params.len() || outputs.len() != results.len() {
        return Err(Error::Argument(format!(
            "`{name}` takes {} inputs and {} outputs, got {} and {}",
            params.len(),
            results.len(),
            inputs.len(),
            outputs.len()
        )));
    }
    let sizes = params.iter().zip(inputs.iter().map(|b| b.len()));
    for (spec, len) in sizes.chain(results.iter().zip(outputs.iter().map(|b| b.len()))) {
        if spec.bytes != len {
            return Err(Error::Argument(format!("`{}` of `{name}` needs {} bytes, got {len}", spec.name, spec.bytes)));
        }
    }
    Ok(())
}

/// How a bundle is opened: what it must prove, and what its calls may use.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// An ed25519 public key (SubjectPublicKeyInfo PEM, as `openssl pkey -pubout` writes it).
    /// When set, the bundle opens only if its manifest's detached signature
    /// ([`kiln_manifest::signature_file`], made by `kiln build --sign`) verifies with it.
    pub public_key: Option<String>,
    /// The most memory one call may use: parameters, results and workspace (host memory for
    /// CPU bundles, device memory for GPU bundles). A bundle with a function that needs more
    /// is refused at open.
    pub memory_limit: Option<u64>,
}

/// Where a bundle's files are read from.
#[derive(Clone, Copy, Debug)]
pub enum Files<'a> {
    /// The manifest at this path, its files beside it.
    Directory(&'a Path),
    /// In memory: the manifest's file name and every file by name (a bundle built in this
    /// process, or received as bytes from another), checked exactly as files on disk are.
    Memory(&'a str, &'a BTreeMap<String, Vec<u8>>),
}

impl Files<'_> {
    /// The manifest's bytes, refusing more than `limit`.
    fn manifest(&self, limit: u64) -> Result<Vec<u8>, Error> {
        match *self {
            Files::Directory(path) => {
                read_regular_file(path, limit).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
            }
            Files::Memory(name, _) => self.file(name, limit).map_err(|e| Error::Io(format!("{name}: {e}"))),
        }
    }

    /// The bytes of the file `name` (a plain file name) of the bundle, refusing more than
    /// `limit`.
    fn file(&self, name: &str, limit: u64) -> Result<Vec<u8>, String> {
        match *self {
            Files::Directory(path) => read_regular_file(&path.parent().unwrap_or(Path::new("")).join(name), limit),
            Files::Memory(_, files) => match files.get(name) {
                None => Err("no such file".into()),
                Some(b) if b.len() as u64 > limit => Err(format!("more than {limit} bytes")),
                Some(b) => Ok(b.clone()),
            },
        }
    }
}

/// Reads the manifest from `files` and checks what every bundle must satisfy: size, JSON shape,
/// format and a version this runtime opens, module name, the requirements section, the
/// signature when `options` asks for one, the memory limit, and the size and SHA-256 of every
/// file it lists, whose verified bytes it returns.
pub(crate) fn read_manifest(files: Files, options: &OpenOptions) -> Result<(Manifest, Verified), Error> {
    let text = files.manifest(MAX_MANIFEST_BYTES)?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| Error::Manifest(e.to_string()))?;
    if m.format != FORMAT {
        return Err(Error::Version(format!("format `{}`; this runtime reads `{FORMAT}`", m.format)));
    }
    kiln_manifest::check_version(m.version).map_err(Error::Version)?;
    let needed = kiln_manifest::version_of(&m.functions);
    if m.version < needed {
        return Err(Error::Version(format!(
            "the manifest says version {}, but its launch plans have loops or conditionals (version {needed})",
            m.version
        )));
    }
    if !is_identifier(&m.module) {
        return Err(Error::Manifest(format!("module name `{}` is not an identifier", m.module)));
    }
    let needs = kiln_manifest::requirements(m.kind, &m.target, &m.functions);
    if m.requirements.as_ref().is_some_and(|r| *r != needs) {
        return Err(Error::Manifest("the requirements section differs from the functions and target".into()));
    }
    if let Some(key) = &options.public_key {
        let sig_name = kiln_manifest::signature_file(&m.module);
        let signature = files.file(&sig_name, 1024).map_err(|e| Error::Signature(format!("{sig_name}: {e}")))?;
        kiln_manifest::verify(&text, &signature, key).map_err(Error::Signature)?;
    }
    if let Some(limit) = options.memory_limit {
        if let Some(f) = needs.functions.iter().find(|f| f.call_bytes() > limit) {
            return Err(Error::Limit(format!(
                "a call of `{}` uses {} bytes (parameters, results and workspace), more than the limit of {limit}",
                f.name,
                f.call_bytes()
            )));
        }
    }
    let mut verified = BTreeMap::new();
    for f in &m.files {
        verified.insert(f.name.clone(), verify_file(files, f)?);
    }
    Ok((m, Verified { files: verified, manifest: text }))
}

/// The bundle whose manifest is at `manifest`, in memory, as [`Files::Memory`] takes it: the
/// manifest's file name, and the bytes of the manifest, of every file it lists (verified
/// against it) and of its signature when one lies beside it. To send a bundle to another
/// process, which verifies it again when it loads it.
pub fn read_bundle(manifest: &Path) -> Result<(String, BTreeMap<String, Vec<u8>>), Error> {
    let files = Files::Directory(manifest);
    let (m, Verified { files: mut bytes, manifest: text }) = read_manifest(files, &OpenOptions::default())?;
    let name = manifest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    bytes.insert(name.clone(), text);
    let signature = kiln_manifest::signature_file(&m.module);
    if let Ok(b) = files.file(&signature, 1024) {
        bytes.insert(signature, b);
    }
    Ok((name, bytes))
}

/// The kind of build whose manifest `files` holds (a CPU shared library, a GPU bundle), for a
/// caller that opens either, as C callers choose `kiln_bundle_open` or `kiln_gpu_open`. Only
/// the kind is read: opening the bundle checks the rest.
pub fn kind(files: Files) -> Result<Kind, Error> {
    let text = files.manifest(MAX_MANIFEST_BYTES)?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::Manifest(e.to_string()))?;
    serde_json::from_value(value["kind"].clone()).map_err(|e| Error::Manifest(format!("kind: {e}")))
}

/// The bytes of a bundle's files as they were verified against the manifest's hashes: what
/// the runtime loads, so that a file replaced after the check is never used.
pub(crate) struct Verified {
    files: BTreeMap<String, Vec<u8>>,
    /// The manifest's own bytes, as they were read and checked.
    manifest: Vec<u8>,
}

impl Verified {
    /// The verified bytes of listed file `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }
}

/// Loads a shared library from exactly `bytes`, through an anonymous in-memory file (returned:
/// keep it open while the library is loaded): never a search of the library path (a bare file
/// name), never a file replaced after it was verified, and never the library an earlier open of
/// the same path left loaded.
fn load_library(name: &str, bytes: &[u8]) -> Result<(libloading::Library, std::fs::File), Error> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let c_name = std::ffi::CString::new(name).map_err(|e| Error::Library(e.to_string()))?;
    // SAFETY: a NUL-terminated name and valid flags; the descriptor is owned by the File below.
    let fd = unsafe { libc::memfd_create(c_name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Library(format!("memfd_create: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: `fd` is a fresh descriptor this function owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes).map_err(|e| Error::Library(e.to_string()))?;
    // SAFETY: the bytes are the library whose hash the manifest records; kiln's libraries run
    // no initializers.
    let library = unsafe { libloading::Library::new(format!("/proc/self/fd/{fd}")) }
        .map_err(|e| Error::Library(e.to_string()))?;
    Ok((library, file))
}

/// Whether the manifest lists a file of that name (and so has verified it).
pub(crate) fn lists(m: &Manifest, name: &str) -> bool {
    m.files.iter().any(|f| f.name == name)
}

/// A function's checked parameters, results and workspace bytes.
pub(crate) fn signature(module: &str, f: &FunctionInfo) -> Result<(Vec<ArgSpec>, Vec<ArgSpec>, usize), Error> {
    if !is_identifier(&f.name) || f.symbol != kiln_manifest::entry_symbol(module, &f.name) {
        return Err(Error::Manifest(format!("function `{}` has symbol `{}`", f.name, f.symbol)));
    }
    let params = f.params.iter().map(spec).collect::<Result<Vec<_>, _>>()?;
    let results = f.results.iter().map(spec).collect::<Result<Vec<_>, _>>()?;
    if params.len() + results.len() > MAX_ARGUMENTS {
        return Err(Error::Manifest(format!("`{}` has more than {MAX_ARGUMENTS} arguments", f.name)));
    }
    if f.workspace_bytes > 1 << 44 || !f.workspace_bytes.is_multiple_of(WORKSPACE_ALIGNMENT as u64) {
        return Err(Error::Manifest(format!("`{}` claims {} workspace bytes", f.name, f.workspace_bytes)));
    }
    Ok((params, results, f.workspace_bytes as usize))
}

fn spec(a: &ArgInfo) -> Result<ArgSpec, Error> {
    let dtype = a.dtype;
    let elements = a.shape.iter().try_fold(1u64, |n, &d| if d == 0 { None } else { n.checked_mul(d) });
    let bytes = elements.and_then(|n| n.checked_mul(dtype.size())).filter(|&b| b == a.bytes && b <= 1 << 44);
    let bytes = bytes.ok_or_else(|| {
        Error::Manifest(format!("argument `{}`: shape {:?} does not give {} bytes", a.name, a.shape, a.bytes))
    })?;
    Ok(ArgSpec { name: a.name.clone(), dtype, shape: a.shape.clone(), bytes: bytes as usize })
}

impl Bundle {
    /// Opens the bundle whose manifest is at `manifest` (its files sit beside it).
    pub fn open(manifest: &Path) -> Result<Bundle, Error> {
        Bundle::open_with(manifest, &OpenOptions::default())
    }

    /// Opens the bundle whose manifest is at `manifest`, requiring what `options` asks.
    pub fn open_with(manifest: &Path, options: &OpenOptions) -> Result<Bundle, Error> {
        Bundle::load(Files::Directory(manifest), options)
    }

    /// Opens the bundle in `files`, requiring what `options` asks.
    pub fn load(files: Files, options: &OpenOptions) -> Result<Bundle, Error> {
        let (m, verified) = read_manifest(files, options)?;
        if m.kind != Kind::Shared {
            return Err(Error::Target(format!(
                "a `{}` build; the runtime loads shared libraries (--output-kind shared){}",
                m.kind.name(),
                if m.kind == Kind::Gpu { " here, and GPU bundles with kiln_runtime::gpu" } else { "" }
            )));
        }
        if m.target.triple != host_triple() {
            return Err(Error::Target(format!("built for {}, this machine is {}", m.target.triple, host_triple())));
        }
        if let Some(missing) = missing_cpu_features(&m.target.cpu, &m.target.features) {
            return Err(Error::Target(format!(
                "built for CPU `{}`, which needs {missing}; this machine lacks it (its code would stop on an illegal instruction)",
                m.target.cpu
            )));
        }
        let library_name = format!("lib{}.so", m.module);
        if !lists(&m, &library_name) {
            return Err(Error::Manifest(format!("the file list lacks `{library_name}`")));
        }
        let mut functions = vec![];
        let mut symbols = vec![];
        for f in &m.functions {
            let (params, results, workspace_bytes) = signature(&m.module, f)?;
            functions.push(Function {
                name: f.name.clone(),
                params,
                results,
                workspace_bytes,
                entry: Entry::Plain(std::ptr::null()),
            });
            symbols.push(f.symbol.clone());
        }
        let (library, image) =
            load_library(&library_name, verified.get(&library_name).expect("listed files are verified"))?;
        let descriptor = format!("{}\0", kiln_manifest::abi_symbol(&m.module));
        // SAFETY: the symbol is a NUL-terminated constant string in kiln's libraries.
        let embedded = unsafe {
            let s: libloading::Symbol<*const std::ffi::c_char> =
                library.get(descriptor.as_bytes()).map_err(|e| Error::Library(e.to_string()))?;
            CStr::from_ptr(*s).to_string_lossy().into_owned()
        };
        let expected = kiln_manifest::abi(&m.functions);
        if embedded != expected {
            return Err(Error::Library(format!(
                "the library's ABI `{embedded}` differs from the manifest's `{expected}`"
            )));
        }
        for (f, s) in functions.iter_mut().zip(&symbols) {
            let resolve = |name: String| {
                // SAFETY: resolving a symbol has no side effect.
                unsafe { library.get::<*const c_void>(format!("{name}\0").as_bytes()) }.map(|s| *s)
            };
            f.entry = match resolve(kiln_manifest::packed_entry_symbol(&m.module, &f.name)) {
                Ok(packed) => Entry::Packed(packed),
                Err(_) if f.params.len() + f.results.len() < crate::entry::MAX_ARGS => {
                    Entry::Plain(resolve(s.clone()).map_err(|e| Error::Library(e.to_string()))?)
                }
                Err(_) => {
                    return Err(Error::Library(format!(
                        "`{}` takes more than {} arguments, and this library (built before packed entry points) has no `{}`",
                        f.name,
                        crate::entry::MAX_ARGS,
                        kiln_manifest::packed_entry_symbol(&m.module, &f.name)
                    )))
                }
            };
        }
        // Parallel loops run on this runtime's pool (serially until `pool::set_threads`).
        let setter = format!("{}\0", kiln_manifest::parallel_for_symbol(&m.module));
        // SAFETY: kiln's libraries define the setter as `void (ParallelFor)`.
        if let Ok(set) = unsafe { library.get::<unsafe extern "C" fn(crate::pool::ParallelFor)>(setter.as_bytes()) } {
            unsafe { set(crate::pool::kiln_parallel_for) };
        }
        Ok(Bundle { module: m.module, functions, _library: library, _image: image })
    }

    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Calls `name` with input and output buffers (raw little-endian bytes, row-major) after
    /// checking their count and sizes; the compiled code allocates its own scratch memory.
    pub fn call(&self, name: &str, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<(), Error> {
        self.invoke(name, inputs, outputs, None)
    }

    /// As [`Bundle::call`] with typed buffers: each buffer's dtype must also match its
    /// argument's.
    pub fn call_typed(&self, name: &str, inputs: &[TensorRef], outputs: &mut [TensorMut]) -> Result<(), Error> {
        let f = self
            .function(name)
            .ok_or_else(|| Error::Argument(format!("no function `{name}` in module `{}`", self.module)))?;
        let ins: Vec<(DType, &[u8])> = inputs.iter().map(|t| typed_bytes!(t, as_bytes)).collect();
        let mut outs: Vec<(DType, &mut [u8])> = outputs.iter_mut().map(TensorMut::dtype_and_bytes).collect();
        let given = ins.iter().map(|(d, _)| *d).chain(outs.iter().map(|(d, _)| *d));
        for (spec, dtype) in f.params.iter().chain(&f.results).zip(given) {
            if spec.dtype != dtype {
                return Err(Error::Argument(format!(
                    "`{}` of `{name}` is {}, got {}",
                    spec.name,
                    spec.dtype.name(),
                    dtype.name()
                )));
            }
        }
        let in_bytes: Vec<&[u8]> = ins.into_iter().map(|(_, b)| b).collect();
        let mut out_bytes: Vec<&mut [u8]> = outs.iter_mut().map(|(_, b)| &mut **b).collect();
        self.invoke(name, &in_bytes, &mut out_bytes, None)
    }

    /// As [`Bundle::call`], with scratch memory from `workspace`: at least the function's
    /// `workspace_bytes`, aligned to 64 bytes. The call then allocates nothing.
    pub fn call_with_workspace(
        &self,
        name: &str,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        workspace: &mut [u8],
    ) -> Result<(), Error> {
        self.invoke(name, inputs, outputs, Some(workspace))
    }

    fn invoke(
        &self,
        name: &str,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        workspace: Option<&mut [u8]>,
    ) -> Result<(), Error> {
        let f = self
            .function(name)
            .ok_or_else(|| Error::Argument(format!("no function `{name}` in module `{}`", self.module)))?;
        check_buffers(name, &f.params, &f.results, inputs, outputs)?;
        let ws = match workspace {
            None => std::ptr::null_mut(),
            Some(w) if w.len() < f.workspace_bytes => {
                return Err(Error::Argument(format!(
                    "`{name}` needs a workspace of {} bytes, got {}",
                    f.workspace_bytes,
                    w.len()
                )))
            }
            Some(w) if !(w.as_ptr() as usize).is_multiple_of(WORKSPACE_ALIGNMENT) => {
                return Err(Error::Argument(format!(
                    "the workspace of `{name}` must be aligned to {WORKSPACE_ALIGNMENT} bytes"
                )))
            }
            Some(w) => w.as_mut_ptr() as *mut c_void,
        };
        let mut ptrs: Vec<*mut c_void> = inputs.iter().map(|b| b.as_ptr() as *mut c_void).collect();
        ptrs.extend(outputs.iter_mut().map(|b| b.as_mut_ptr() as *mut c_void));
        ptrs.push(ws);
        // SAFETY: the entry point comes from a verified bundle whose ABI matches these specs,
        // every buffer has the size its argument needs, and the workspace is NULL or large
        // enough and aligned.
        let status = match f.entry {
            // SAFETY: a packed entry point reads exactly these pointers from the array.
            Entry::Packed(p) => unsafe {
                let packed: extern "C" fn(*const *mut c_void) -> i32 = std::mem::transmute(p);
                packed(ptrs.as_ptr())
            },
            Entry::Plain(p) => unsafe { crate::entry::call(p, &ptrs) }.map_err(|e| Error::Argument(e.to_string()))?,
        };
        match status {
            0 => Ok(()),
            s => Err(Error::Status(s)),
        }
    }
}

/// The bytes of the regular file at `path` (symbolic links followed), refusing anything else
/// and more than `limit` bytes, without reading past the limit: a FIFO, a device such as
/// /dev/zero (behind a link, too) or a growing file in a bundle's place is an error, not a hang
/// or exhausted memory. The file is opened without blocking (a FIFO's open does not wait for a
/// writer) and checked as opened, so it cannot be swapped between the check and the read.
fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| e.to_string())?;
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = vec![];
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("more than {limit} bytes"));
    }
    Ok(bytes)
}

fn verify_file(files: Files, f: &FileInfo) -> Result<Vec<u8>, Error> {
    if f.name.is_empty() || f.name.contains(['/', '\\']) || f.name.starts_with('.') {
        return Err(Error::Manifest(format!("file name `{}` is not a plain file name", f.name)));
    }
    let bytes = files.file(&f.name, f.bytes).map_err(|e| Error::Integrity(format!("`{}`: {e}", f.name)))?;
    if bytes.len() as u64 != f.bytes {
        return Err(Error::Integrity(format!("`{}` has {} bytes, the manifest says {}", f.name, bytes.len(), f.bytes)));
    }
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if digest != f.sha256 {
        return Err(Error::Integrity(format!("`{}` does not match its SHA-256", f.name)));
    }
    Ok(bytes)
}
