#![no_main]
//! libFuzzer's entry for kiln_fuzz_targets::onnx (see that crate for the property).
mod driver;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_fuzz_targets::onnx(data);
});
