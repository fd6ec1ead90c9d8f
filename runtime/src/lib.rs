//! kiln-runtime: what a program needs at run time to call kiln's compiled functions.
//!
//! Owns: loading and verifying bundles (a shared library with its manifest, [`bundle`]) and
//! calling their entry points with checked buffers ([`entry`]), the thread pool that runs
//! compiled parallel loops ([`pool`]), the C API ([`capi`], CPU and GPU bundles), the GPU executor ([`gpu`]: CUDA's
//! driver loaded at run time, or kiln's PTX emulator, which runs GPU bundles on any machine).
//!
//! May depend on: kiln-manifest (the artifact contract, shared with the compiler) and nothing
//! else of the compiler; cudarc (dynamically loaded driver API). The runtime sees only the C
//! ABI of entry points (`int32_t f(void* in..., void* out...)`) and the manifest.
//!
//! Guarantees: a bundle is verified (format, version, target, file hashes, argument
//! consistency, and the ABI compiled into the library) before any of its code is called; a call
//! with the wrong argument count or buffer sizes is refused before it reaches compiled code.

pub mod bundle;
pub mod capi;
pub mod entry;
pub mod gpu;
pub mod pool;

pub use bundle::{read_bundle, Bundle, DType, Error, Files, OpenOptions, TensorMut, TensorRef};
