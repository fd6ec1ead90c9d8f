//! libFuzzer's `main`, defined in each target's own object. Debian's MLIR packages put
//! mlir-opt's `main` into libMLIRMlirOptMain.a, which mlir-sys links; a target that left `main`
//! to libFuzzer's archive got mlir-opt's instead, which parsed libFuzzer's flags as its own.
//! This one hands the command line to libFuzzer's driver, as FuzzerMain.cpp does.

use std::os::raw::{c_char, c_int};

extern "C" {
    fn LLVMFuzzerRunDriver(
        argc: *mut c_int,
        argv: *mut *mut *mut c_char,
        test_one_input: unsafe extern "C" fn(*const u8, usize) -> c_int,
    ) -> c_int;
    /// Defined by `libfuzzer_sys::fuzz_target!`.
    fn LLVMFuzzerTestOneInput(data: *const u8, size: usize) -> c_int;
}

#[no_mangle]
extern "C" fn main(mut argc: c_int, mut argv: *mut *mut c_char) -> c_int {
    // SAFETY: the process's own arguments, as the C runtime passed them.
    unsafe { LLVMFuzzerRunDriver(&mut argc, &mut argv, LLVMFuzzerTestOneInput) }
}
