//! The `call` target: calls through the C API (`kiln_bundle_call`) whose function name,
//! buffer counts, sizes and pointers come from the input. A call must succeed exactly when it
//! matches the manifest (a known function, as many buffers as it has parameters and results,
//! each of its exact size and none NULL), and must return an error otherwise.

use kiln_runtime::capi::{kiln_bundle_call, kiln_bundle_open, KilnBundle};
use std::ffi::{c_void, CString};
use std::sync::OnceLock;

/// The fixture's bundle, opened once through the C API, with the sizes its manifest lists.
struct Opened {
    handle: *mut KilnBundle,
    functions: Vec<(String, Vec<usize>, Vec<usize>)>,
}

// SAFETY: a bundle handle may be used from any thread (the runtime's calls share nothing
// mutable); the handle is never closed.
unsafe impl Send for Opened {}
unsafe impl Sync for Opened {}

fn opened() -> &'static Opened {
    static OPENED: OnceLock<Opened> = OnceLock::new();
    OPENED.get_or_init(|| {
        let manifest = &super::bundles::cpu().manifest;
        let bundle = kiln_runtime::Bundle::open(manifest).expect("the fixture opens");
        let sizes = |specs: &[kiln_runtime::bundle::ArgSpec]| specs.iter().map(|s| s.bytes).collect();
        let functions =
            bundle.functions().iter().map(|f| (f.name.clone(), sizes(&f.params), sizes(&f.results))).collect();
        let path = CString::new(manifest.to_str().expect("a UTF-8 temporary path")).expect("no NUL in a path");
        // SAFETY: a NUL-terminated path and no error buffer.
        let handle = unsafe { kiln_bundle_open(path.as_ptr(), std::ptr::null_mut(), 0) };
        assert!(!handle.is_null(), "the fixture opens through the C API");
        Opened { handle, functions }
    })
}

/// Reads the input a byte at a time, then zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
}

/// One buffer as the input chose it: the size claimed for it, and whether its pointer is NULL.
struct Claim {
    bytes: usize,
    null: bool,
}

impl Claim {
    /// The buffer `expected` bytes long (or 1 to 64 bytes for one the function does not
    /// have), mostly exact, sometimes off by one, empty, doubled, NULL or SIZE_MAX.
    fn draw(input: &mut Bytes, expected: Option<usize>) -> Claim {
        let expected = expected.unwrap_or_else(|| 1 + input.next() as usize % 64);
        let (bytes, null) = match input.next() % 16 {
            0 => (0, false),
            1 => (expected + 1, false),
            2 => (expected.saturating_sub(1), false),
            3 => (expected * 2, false),
            4 => (usize::MAX, false),
            5 => (expected, true),
            _ => (expected, false),
        };
        Claim { bytes, null }
    }
}

/// See the module's documentation.
pub fn call(data: &[u8]) -> super::Outcome {
    let bundle = opened();
    let mut input = Bytes(data);
    let pick = input.next();
    let (name, function) = if pick < 240 {
        let f = &bundle.functions[pick as usize % bundle.functions.len()];
        (f.0.clone().into_bytes(), Some(f))
    } else {
        let len = input.next() as usize % 16;
        let name: Vec<u8> = (0..len).map(|_| input.next()).take_while(|&b| b != 0).collect();
        let known = bundle.functions.iter().find(|f| f.0.as_bytes() == name);
        (name, known)
    };
    let count = |input: &mut Bytes, expected: Option<usize>| match (input.next() % 8, expected) {
        (0, _) | (_, None) => input.next() as usize % 40,
        (_, Some(n)) => n,
    };
    let num_inputs = count(&mut input, function.map(|f| f.1.len()));
    let num_outputs = count(&mut input, function.map(|f| f.2.len()));
    let ins: Vec<Claim> =
        (0..num_inputs).map(|i| Claim::draw(&mut input, function.and_then(|f| f.1.get(i).copied()))).collect();
    let outs: Vec<Claim> =
        (0..num_outputs).map(|i| Claim::draw(&mut input, function.and_then(|f| f.2.get(i).copied()))).collect();
    let matches = function.is_some_and(|f| {
        let exact = |claims: &[Claim], sizes: &[usize]| {
            claims.len() == sizes.len() && claims.iter().zip(sizes).all(|(c, &n)| c.bytes == n && !c.null)
        };
        exact(&ins, &f.1) && exact(&outs, &f.2)
    });
    // Buffers of 8-byte words, as a C caller's arrays of floats or integers are aligned; an
    // input's bytes come from the rest of the fuzz input. A SIZE_MAX claim gets one word.
    let fill = &input.0;
    let mut buffers: Vec<Vec<u64>> = ins
        .iter()
        .chain(&outs)
        .map(|c| {
            let words = if c.bytes == usize::MAX { 1 } else { c.bytes.div_ceil(8) };
            (0..words)
                .map(|k| fill.get(k % fill.len().max(1)).map_or(0, |&b| u64::from(b) * 0x0101_0101_0101_0101))
                .collect()
        })
        .collect();
    let pointers: Vec<*mut c_void> = buffers
        .iter_mut()
        .zip(ins.iter().chain(&outs))
        .map(|(b, c)| if c.null { std::ptr::null_mut() } else { b.as_mut_ptr().cast() })
        .collect();
    let (in_ptrs, out_ptrs) = pointers.split_at(num_inputs);
    let in_ptrs: Vec<*const c_void> = in_ptrs.iter().map(|&p| p.cast_const()).collect();
    let in_bytes: Vec<usize> = ins.iter().map(|c| c.bytes).collect();
    let out_bytes: Vec<usize> = outs.iter().map(|c| c.bytes).collect();
    let name = CString::new(name).expect("NUL bytes were cut");
    let mut error = [0 as std::ffi::c_char; 256];
    // SAFETY: every non-NULL buffer holds its claimed size, except a SIZE_MAX claim, which no
    // buffer can have and the runtime refuses before touching it.
    let status = unsafe {
        kiln_bundle_call(
            bundle.handle,
            name.as_ptr(),
            in_ptrs.as_ptr(),
            in_bytes.as_ptr(),
            num_inputs,
            out_ptrs.as_ptr(),
            out_bytes.as_ptr(),
            num_outputs,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    // SAFETY: the runtime writes a NUL-terminated message within the buffer.
    let message = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) }.to_string_lossy();
    assert_eq!(
        status == 0,
        matches,
        "a call that {} the manifest returned {status}: {message}",
        if matches { "matches" } else { "does not match" }
    );
    if status == 0 {
        super::Outcome::Accepted
    } else {
        assert!(!message.is_empty(), "a refused call says why");
        super::Outcome::Refused
    }
}

/// Well-formed calls of each function of the fixture (function index, exact counts, exact
/// sizes), with a few bytes of data.
pub fn seeds() -> Vec<Vec<u8>> {
    let bundle = opened();
    (0..bundle.functions.len())
        .map(|k| {
            let (_, ins, outs) = &bundle.functions[k];
            let mut seed = vec![k as u8, 1, 1];
            seed.extend(std::iter::repeat_n(15, ins.len() + outs.len()));
            seed.extend([0x3f, 0x80, 0x00, 0x00, 0x40]);
            seed
        })
        .collect()
}
