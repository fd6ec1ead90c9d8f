//! The C API (header: runtime/include/kiln_runtime.h), built into `libkiln_runtime.a`: CPU
//! bundles (`kiln_bundle_*`) and GPU bundles (`kiln_gpu_*`, on a CUDA device or kiln's PTX
//! emulator).
//!
//! Every function checks its pointers, never unwinds into C (panics become errors), and
//! reports failures through a return value plus an optional message buffer.

use crate::bundle::{Bundle, OpenOptions};
use crate::gpu::{DeviceBuffer, GpuBundle, GpuExecutor};
use std::ffi::{c_char, c_void, CStr};
use std::path::Path;
use std::sync::Mutex;

/// Opaque handle of a loaded bundle.
pub struct KilnBundle(Bundle);

/// Opaque handle of a GPU bundle loaded on a device, with the device buffers C allocated
/// through it.
pub struct KilnGpu {
    executor: GpuExecutor,
    buffers: Mutex<Vec<DeviceBuffer>>,
}

impl KilnGpu {
    /// Its buffers; a panic while they were held leaves the list whole, so a poisoned lock is
    /// taken as it is.
    fn buffers(&self) -> std::sync::MutexGuard<'_, Vec<DeviceBuffer>> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Copies `message` into the caller's buffer (truncated, NUL-terminated), if there is one.
unsafe fn report(error: *mut c_char, len: usize, message: &str) {
    if error.is_null() || len == 0 {
        return;
    }
    let n = message.len().min(len - 1);
    // SAFETY: the caller gives a buffer of `len` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), error as *mut u8, n);
        *error.add(n) = 0;
    }
}

/// Runs `body` for the C function `name`: 0 when it succeeds; 1 when it fails or panics, the
/// reason in `error` (`error_len` bytes, may be NULL).
unsafe fn status(name: &str, error: *mut c_char, error_len: usize, body: impl FnOnce() -> Result<(), String>) -> i32 {
    let message = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => return 0,
        Ok(Err(message)) => message,
        Err(_) => format!("internal error in {name}"),
    };
    // SAFETY: forwarded from the caller.
    unsafe { report(error, error_len, &message) };
    1
}

/// Runs `body` for the C function `name` that returns a new handle: the handle, or NULL with
/// the reason in `error`.
unsafe fn handle<T>(
    name: &str,
    error: *mut c_char,
    error_len: usize,
    body: impl FnOnce() -> Result<T, String>,
) -> *mut T {
    let mut out = None;
    // SAFETY: forwarded from the caller.
    unsafe { status(name, error, error_len, || body().map(|h| out = Some(h))) };
    out.map_or(std::ptr::null_mut(), |h| Box::into_raw(Box::new(h)))
}

unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: the caller gives a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| format!("{what} is not UTF-8"))
}

/// The handle behind `p`, checked non-NULL.
unsafe fn handle_arg<'a, T>(p: *const T, what: &str) -> Result<&'a T, String> {
    // SAFETY: the caller gives NULL or a live handle.
    unsafe { p.as_ref() }.ok_or_else(|| format!("{what} is NULL"))
}

/// A call's input and output buffers in host memory.
type HostBuffers<'a> = (Vec<&'a [u8]>, Vec<&'a mut [u8]>);

/// The host buffers of a call: `num_inputs` inputs and `num_outputs` outputs, each a pointer
/// and a size in bytes.
///
/// # Safety
/// Each pointer array has the stated length and each buffer the stated size; output buffers
/// are writable and distinct from the inputs.
unsafe fn host_buffers<'a>(
    inputs: *const *const c_void,
    input_bytes: *const usize,
    num_inputs: usize,
    outputs: *const *mut c_void,
    output_bytes: *const usize,
    num_outputs: usize,
) -> Result<HostBuffers<'a>, String> {
    for (p, q, n) in [(inputs.cast::<c_void>(), input_bytes, num_inputs), (outputs.cast(), output_bytes, num_outputs)] {
        if n > 0 && (p.is_null() || q.is_null()) {
            return Err("a buffer array is NULL".into());
        }
    }
    if num_inputs > 1 << 16 || num_outputs > 1 << 16 {
        return Err("too many buffers".into());
    }
    // SAFETY: the caller gives arrays of the stated lengths.
    let (ins, outs) = unsafe {
        (
            (0..num_inputs).map(|i| (*inputs.add(i) as *mut u8, *input_bytes.add(i))).collect::<Vec<_>>(),
            (0..num_outputs).map(|i| (*outputs.add(i) as *mut u8, *output_bytes.add(i))).collect::<Vec<_>>(),
        )
    };
    if ins.iter().chain(&outs).any(|(p, _)| p.is_null()) {
        return Err("a buffer is NULL".into());
    }
    // No buffer can be larger than isize::MAX bytes; a size beyond (SIZE_MAX) is refused before
    // a slice is made of it.
    if let Some((_, n)) = ins.iter().chain(&outs).find(|(_, n)| *n > isize::MAX as usize) {
        return Err(format!("a buffer size of {n} bytes is larger than any buffer"));
    }
    // SAFETY: each buffer holds its stated size (non-NULL, checked above).
    unsafe {
        Ok((
            ins.into_iter().map(|(p, n)| std::slice::from_raw_parts(p as *const u8, n)).collect(),
            outs.into_iter().map(|(p, n)| std::slice::from_raw_parts_mut(p, n)).collect(),
        ))
    }
}

/// Opens and verifies the bundle whose manifest is at `manifest_path`. Returns NULL on failure,
/// with the reason in `error` (a buffer of `error_len` bytes, may be NULL).
///
/// # Safety
/// `manifest_path` is NUL-terminated; `error` is NULL or points to `error_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_bundle_open(
    manifest_path: *const c_char,
    error: *mut c_char,
    error_len: usize,
) -> *mut KilnBundle {
    // SAFETY: forwarded from the caller.
    unsafe {
        handle("kiln_bundle_open", error, error_len, || {
            let path = str_arg(manifest_path, "manifest_path")?;
            Bundle::open(Path::new(path)).map(KilnBundle).map_err(|e| e.to_string())
        })
    }
}

/// Opens like [`kiln_bundle_open`], and also requires what the arguments ask: when
/// `public_key_pem` is not NULL, a signature of the manifest (`M.json.sig`, from
/// `kiln build --sign`) that verifies with that ed25519 public key (PEM text); when
/// `memory_limit` is not 0, no function whose call uses more than that many bytes
/// (parameters, results and workspace).
///
/// # Safety
/// `manifest_path` and `public_key_pem` (unless NULL) are NUL-terminated; `error` is NULL or
/// points to `error_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_bundle_open_with(
    manifest_path: *const c_char,
    public_key_pem: *const c_char,
    memory_limit: u64,
    error: *mut c_char,
    error_len: usize,
) -> *mut KilnBundle {
    // SAFETY: forwarded from the caller.
    unsafe {
        handle("kiln_bundle_open_with", error, error_len, || {
            let path = str_arg(manifest_path, "manifest_path")?;
            let public_key = if public_key_pem.is_null() {
                None
            } else {
                Some(str_arg(public_key_pem, "public_key_pem")?.to_string())
            };
            let options = OpenOptions { public_key, memory_limit: (memory_limit > 0).then_some(memory_limit) };
            Bundle::open_with(Path::new(path), &options).map(KilnBundle).map_err(|e| e.to_string())
        })
    }
}

/// Calls `function` of `bundle` with `num_inputs` input buffers and `num_outputs` output
/// buffers, each with its size in bytes. Returns 0 on success, 1 when anything is refused
/// (unknown function, wrong count or size, NULL pointer) or the compiled code fails, with the
/// reason in `error`.
///
/// # Safety
/// Each pointer array has the stated length and each buffer the stated size; `error` is NULL
/// or points to `error_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_bundle_call(
    bundle: *const KilnBundle,
    function: *const c_char,
    inputs: *const *const c_void,
    input_bytes: *const usize,
    num_inputs: usize,
    outputs: *const *mut c_void,
    output_bytes: *const usize,
    num_outputs: usize,
    error: *mut c_char,
    error_len: usize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        status("kiln_bundle_call", error, error_len, || {
            let bundle = handle_arg(bundle, "bundle")?;
            let name = str_arg(function, "function")?;
            let (ins, mut outs) = host_buffers(inputs, input_bytes, num_inputs, outputs, output_bytes, num_outputs)?;
            bundle.0.call(name, &ins, &mut outs).map_err(|e| e.to_string())
        })
    }
}

/// Unloads a bundle (NULL is ignored).
///
/// # Safety
/// `bundle` comes from `kiln_bundle_open` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_bundle_close(bundle: *mut KilnBundle) {
    if !bundle.is_null() {
        // SAFETY: the caller gives a handle from kiln_bundle_open, once.
        drop(unsafe { Box::from_raw(bundle) });
    }
}

/// Sets the thread count of compiled parallel loops (see [`crate::pool::set_threads`]) and
/// returns the count now in use (1 if setting it failed).
#[unsafe(no_mangle)]
pub extern "C" fn kiln_set_threads(threads: usize) -> usize {
    std::panic::catch_unwind(|| crate::pool::set_threads(threads)).unwrap_or(1)
}

/// Opens and verifies the GPU bundle whose manifest is at `manifest_path` and loads it on CUDA
/// device `device`, or on kiln's PTX emulator when `emulate` is non-zero. Refuses, before
/// touching the device, a bundle one of whose calls needs more than `memory_limit` bytes of
/// device memory (0: no limit). Returns NULL on failure (no driver, no GPU, ...), with the
/// reason in `error`.
///
/// # Safety
/// `manifest_path` is NUL-terminated; `error` is NULL or points to `error_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_gpu_open(
    manifest_path: *const c_char,
    device: usize,
    memory_limit: usize,
    emulate: i32,
    error: *mut c_char,
    error_len: usize,
) -> *mut KilnGpu {
    // SAFETY: forwarded from the caller.
    unsafe {
        handle("kiln_gpu_open", error, error_len, || {
            let path = str_arg(manifest_path, "manifest_path")?;
            let bundle = GpuBundle::open(Path::new(path)).map_err(|e| e.to_string())?;
            let limit = (memory_limit > 0).then_some(memory_limit);
            let executor = if emulate != 0 {
                GpuExecutor::emulated(bundle, limit)
            } else {
                GpuExecutor::new(bundle, device, limit)
            };
            Ok(KilnGpu { executor: executor.map_err(|e| e.to_string())?, buffers: Mutex::default() })
        })
    }
}

/// Calls `function` of `gpu` with host buffers as [`kiln_bundle_call`] does: the inputs are
/// copied to the device, the launch plan runs, the results are copied back.
///
/// # Safety
/// As for [`kiln_bundle_call`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_gpu_call(
    gpu: *const KilnGpu,
    function: *const c_char,
    inputs: *const *const c_void,
    input_bytes: *const usize,
    num_inputs: usize,
    outputs: *const *mut c_void,
    output_bytes: *const usize,
    num_outputs: usize,
    error: *mut c_char,
    error_len: usize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        status("kiln_gpu_call", error, error_len, || {
            let gpu = handle_arg(gpu, "gpu")?;
            let name = str_arg(function, "function")?;
            let (ins, mut outs) = host_buffers(inputs, input_bytes, num_inputs, outputs, output_bytes, num_outputs)?;
            gpu.executor.call(name, &ins, &mut outs).map_err(|e| e.to_string())
        })
    }
}

/// Calls `function` of `gpu` on `num_buffers` device pointers, parameters then results, with
/// no copies: `CUdeviceptr`s of the device (from `cudaMalloc`, the driver or another
/// library), or addresses from [`kiln_gpu_alloc`]. Refused (1, the reason in `error`): a wrong
/// count, a pointer that is not device memory or has fewer bytes after it than its buffer
/// needs, a result overlapping another buffer. Returns when the results are computed.
///
/// # Safety
/// `buffers` holds `num_buffers` entries; the memory stays allocated during the call, and
/// nothing else writes the buffers or reads the results while it runs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_gpu_call_device(
    gpu: *const KilnGpu,
    function: *const c_char,
    buffers: *const u64,
    num_buffers: usize,
    error: *mut c_char,
    error_len: usize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        status("kiln_gpu_call_device", error, error_len, || {
            let gpu = handle_arg(gpu, "gpu")?;
            let name = str_arg(function, "function")?;
            if num_buffers > 0 && buffers.is_null() {
                return Err("buffers is NULL".into());
            }
            let pointers = if num_buffers == 0 { &[][..] } else { std::slice::from_raw_parts(buffers, num_buffers) };
            gpu.executor.call_pointers(name, pointers).map_err(|e| e.to_string())
        })
    }
}

/// Allocates `bytes` of device memory of `gpu` (its contents unspecified) and writes its
/// address to `address`; it lives until [`kiln_gpu_free`] or [`kiln_gpu_close`].
///
/// # Safety
/// `address` is NULL or writable; `error` as above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_gpu_alloc(
    gpu: *const KilnGpu,
    bytes: usize,
    address: *mut u64,
    error: *mut c_char,
    error_len: usize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        status("kiln_gpu_alloc", error, error_len, || {
            let gpu = handle_arg(gpu, "gpu")?;
            let out = address.as_mut().ok_or("address is NULL")?;
            let buffer = gpu.executor.alloc(bytes).map_err(|e| e.to_string())?;
            *out = buffer.address();
            gpu.buffers().push(buffer);
            Ok(())
        })
    }
}

/// A copy between `bytes` of host memory at `data` and the whole buffer at `address` (from
/// [`kiln_gpu_alloc`], of that size), to the device or from it.
///
/// # Safety
/// `gpu` is NULL or a live handle; `data` holds `bytes` bytes, writable when copying from the
/// device.
unsafe fn copy(gpu: *const KilnGpu, address: u64, data: *mut u8, bytes: usize, to_device: bool) -> Result<(), String> {
    // SAFETY: forwarded from the caller.
    let gpu = unsafe { handle_arg(gpu, "gpu") }?;
    if data.is_null() {
        return Err("data is NULL".into());
    }
    let buffers = gpu.buffers();
    let buffer = buffers
        .iter()
        .find(|b| b.address() == address)
        .ok_or_else(|| format!("{address:#x} was not allocated by kiln_gpu_alloc"))?;
    if buffer.len() != bytes {
        return Err(format!("the buffer at {address:#x} holds {} bytes, not {bytes}", buffer.len()));
    }
    // SAFETY: `data` holds `bytes` bytes (the caller).
    let done = unsafe {
        if to_device {
            gpu.executor.write(buffer, std::slice::from_raw_parts(data, bytes))
        } else {
            gpu.executor.download(buffer, std::slice::from_raw_parts_mut(data, bytes))
        }
    };
    done.map_err(|e| e.to_string())
}

/// Copies `bytes` from host memory `data` into the whole buffer at `address` (from
/// [`kiln_gpu_alloc`], of that size).
///
/// # Safety
/// `data` holds `bytes` readable bytes; `error` as above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_gpu_copy_to_device(
    gpu: *const KilnGpu,
    address: u64,
    data: *const c_void,
    bytes: usize,
    error: *mut c_char,
    error_len: usize,
) -> i32 {
    // SAFETY: forwarded from the caller; `copy` only reads `data` when copying to the device.
    unsafe { status("kiln_gpu_copy_to_device", error, error_len, || copy(gpu, address, data as *mut u8, bytes, true)) }
}

/// Copies the whole buffer at `address` (from [`kiln_gpu_alloc`], of `bytes` bytes) into host
/// memory `data`, once every call given so far has finished.
///
/// # Safety
/// `data` holds `bytes` writable bytes; `error` as above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_gpu_copy_from_device(
    gpu: *const KilnGpu,
    data: *mut c_void,
    address: u64,
    bytes: usize,
    error: *mut c_char,
    error_len: usize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { status("kiln_gpu_copy_from_device", error, error_len, || copy(gpu, address, data.cast(), bytes, false)) }
}

/// Frees the buffer at `address` from [`kiln_gpu_alloc`] (other addresses are ignored).
///
/// # Safety
/// `gpu` is NULL or a live handle; no call given so far still uses the buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_gpu_free(gpu: *const KilnGpu, address: u64) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: forwarded from the caller.
        if let Some(gpu) = unsafe { gpu.as_ref() } {
            gpu.buffers().retain(|b| b.address() != address);
        }
    });
}

/// Unloads a GPU bundle and frees the buffers allocated through it (NULL is ignored).
///
/// # Safety
/// `gpu` comes from `kiln_gpu_open` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_gpu_close(gpu: *mut KilnGpu) {
    if !gpu.is_null() {
        // SAFETY: the caller gives a handle from kiln_gpu_open, once.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(unsafe { Box::from_raw(gpu) })));
    }
}
