//! The C API (header: runtime/include/kiln_runtime.h), built into `libkiln_runtime.a`.
//!
//! Every function checks its pointers, never unwinds into C (panics become errors), and
//! reports failures through a return value plus an optional message buffer.

use crate::bundle::Bundle;
use std::ffi::{c_char, c_void, CStr};
use std::path::Path;

/// Opaque handle of a loaded bundle.
pub struct KilnBundle(Bundle);

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

unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: the caller gives a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| format!("{what} is not UTF-8"))
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
    let result = std::panic::catch_unwind(|| {
        // SAFETY: forwarded from the caller.
        let path = unsafe { str_arg(manifest_path, "manifest_path") }?;
        Bundle::open(Path::new(path)).map_err(|e| e.to_string())
    });
    match result {
        Ok(Ok(bundle)) => Box::into_raw(Box::new(KilnBundle(bundle))),
        Ok(Err(message)) => {
            unsafe { report(error, error_len, &message) };
            std::ptr::null_mut()
        }
        Err(_) => {
            unsafe { report(error, error_len, "internal error in kiln_bundle_open") };
            std::ptr::null_mut()
        }
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
    let result = std::panic::catch_unwind(|| -> Result<(), String> {
        if bundle.is_null() {
            return Err("bundle is NULL".into());
        }
        // SAFETY: forwarded from the caller.
        let name = unsafe { str_arg(function, "function") }?;
        let arrays = |p: *const c_void, q: *const usize, n: usize| -> Result<(), String> {
            if n > 0 && (p.is_null() || q.is_null()) {
                Err("a buffer array is NULL".into())
            } else {
                Ok(())
            }
        };
        arrays(inputs.cast(), input_bytes, num_inputs)?;
        arrays(outputs.cast(), output_bytes, num_outputs)?;
        if num_inputs > crate::entry::MAX_ARGS || num_outputs > crate::entry::MAX_ARGS {
            return Err("too many buffers".into());
        }
        let slice = |ptr: *const u8, len: usize| -> Result<&[u8], String> {
            if ptr.is_null() {
                Err("a buffer is NULL".into())
            } else {
                Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
            }
        };
        let mut ins = vec![];
        for i in 0..num_inputs {
            // SAFETY: the caller gives arrays of `num_inputs` entries.
            ins.push(slice(unsafe { *inputs.add(i) }.cast(), unsafe { *input_bytes.add(i) })?);
        }
        let mut outs = vec![];
        for i in 0..num_outputs {
            // SAFETY: as above; output buffers are writable and distinct from the inputs.
            let (ptr, len) = unsafe { (*outputs.add(i), *output_bytes.add(i)) };
            if ptr.is_null() {
                return Err("a buffer is NULL".into());
            }
            outs.push(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) });
        }
        // SAFETY: checked non-null above.
        let b = unsafe { &(*bundle).0 };
        b.call(name, &ins, &mut outs).map_err(|e| e.to_string())
    });
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            unsafe { report(error, error_len, &message) };
            1
        }
        Err(_) => {
            unsafe { report(error, error_len, "internal error in kiln_bundle_call") };
            1
        }
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

/// Sets the thread count of compiled parallel loops (see [`crate::pool::set_threads`]).
#[unsafe(no_mangle)]
pub extern "C" fn kiln_set_threads(threads: usize) {
    let _ = std::panic::catch_unwind(|| crate::pool::set_threads(threads));
}
