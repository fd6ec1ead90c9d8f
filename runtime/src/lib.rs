//! kiln-runtime: what a program needs at run time to call kiln's compiled functions.
//!
//! Owns: calling an exported entry point through a C function pointer with its argument
//! buffers ([`entry`]). Bundle loading and validation, the CPU and GPU executors and the C API
//! grow here (see the artifacts and GPU issues).
//!
//! May depend on: nothing of the compiler. The runtime sees only the C ABI of entry points
//! (`int32_t f(void* in..., void* out...)`) and, later, the documented manifest format.
//!
//! Guarantees: no allocation and no global state; an entry point is called with exactly the
//! pointers given, in order.

pub mod entry;
