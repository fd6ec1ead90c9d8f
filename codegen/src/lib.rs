//! kiln-codegen: from verified IR to machine code.
//!
//! Owns: the expansion of ops computed as compositions of others ([`lower`]), IR to MLIR ([`mlir`]), the MLIR pass pipeline that bufferizes and lowers to the LLVM
//! dialect ([`pipeline`]), threads ([`parallel`]), long functions cut into segments ([`segment`]), next-row prefetches ([`prefetch`]), loop schedules: contractions, row groups and vectorization ([`schedule`]), translation to LLVM IR and the C entry points, LLVM target machines
//! ([`target`]) and object emission, PTX kernels and launch plans for GPUs ([`gpu`]), the generated C header ([`header`]).
//!
//! May depend on: kiln-ir, kiln-manifest (the artifact contract), melior and mlir-sys (MLIR 22),
//! inkwell (LLVM 22).
//!
//! Guarantees: the same module, target and options give byte-identical outputs; every
//! exported function `f` of module `m` is a C function `int32_t m_f(const T* in..., T* out...)`
//! that returns 0 on success and 1 when a pointer is NULL; besides those, only the ABI string
//! `m.kiln_abi` and the parallel-for setter `m_set_parallel_for` are exported.

pub mod bindings;
pub mod context;
pub mod cpu;
mod edit;
pub mod front;
pub mod gpu;
pub mod header;
mod hide;
pub mod lower;
pub mod manifest;
pub mod mlir;
pub mod names;
pub mod parallel;
pub mod pipeline;
pub mod prefetch;
pub mod schedule;
pub mod segment;
pub mod target;
pub mod workspace;

pub use context::CodegenError;
pub use pipeline::{compile, stage_names, Artifacts, Emit};
pub use target::{Arch, Target};
