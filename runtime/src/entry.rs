//! Calling entry points. Every kiln entry point has the C signature
//! `int32_t f(void* a0, ..., void* an)`: inputs, then outputs, each a pointer to a dense
//! row-major buffer. Rust cannot call a C function with an arity known only at run time, so
//! [`call`] dispatches on the count to a function-pointer type of that arity.

use std::ffi::c_void;

/// The most pointer arguments [`call`] supports.
pub const MAX_ARGS: usize = 32;

/// Why a call could not be made.
#[derive(Debug, PartialEq, Eq)]
pub enum CallError {
    /// More than [`MAX_ARGS`] arguments.
    TooManyArguments(usize),
    /// The function pointer is null.
    NullFunction,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::TooManyArguments(n) => write!(f, "{n} arguments; entry points take at most {MAX_ARGS}"),
            CallError::NullFunction => f.write_str("null function pointer"),
        }
    }
}

impl std::error::Error for CallError {}

/// Calls entry point `f` with `args` (input pointers, then output pointers) and returns its
/// status code.
///
/// # Safety
/// `f` must be a kiln entry point taking exactly `args.len()` pointers, and each pointer must
/// reference a buffer of the size its parameter needs (readable for inputs, writable for
/// outputs) for the duration of the call.
pub unsafe fn call(f: *const c_void, args: &[*mut c_void]) -> Result<i32, CallError> {
    if f.is_null() {
        return Err(CallError::NullFunction);
    }
    macro_rules! with_arity {
        ($($n:literal => [$($i:literal)*],)*) => {
            match args.len() {
                $($n => {
                    // SAFETY: the caller guarantees `f` takes exactly this many pointers.
                    let f: extern "C" fn($(with_arity!(@ptr $i)),*) -> i32 = unsafe { std::mem::transmute(f) };
                    Ok(f($(args[$i]),*))
                })*
                n => Err(CallError::TooManyArguments(n)),
            }
        };
        (@ptr $i:literal) => { *mut c_void };
    }
    with_arity! {
        0 => [],
        1 => [0],
        2 => [0 1],
        3 => [0 1 2],
        4 => [0 1 2 3],
        5 => [0 1 2 3 4],
        6 => [0 1 2 3 4 5],
        7 => [0 1 2 3 4 5 6],
        8 => [0 1 2 3 4 5 6 7],
        9 => [0 1 2 3 4 5 6 7 8],
        10 => [0 1 2 3 4 5 6 7 8 9],
        11 => [0 1 2 3 4 5 6 7 8 9 10],
        12 => [0 1 2 3 4 5 6 7 8 9 10 11],
        13 => [0 1 2 3 4 5 6 7 8 9 10 11 12],
        14 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13],
        15 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14],
        16 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15],
        17 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16],
        18 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17],
        19 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18],
        20 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19],
        21 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20],
        22 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21],
        23 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22],
        24 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23],
        25 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24],
        26 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25],
        27 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26],
        28 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27],
        29 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28],
        30 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29],
        31 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30],
        32 => [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn sum3(a: *mut c_void, b: *mut c_void, out: *mut c_void) -> i32 {
        unsafe { *(out as *mut i32) = *(a as *const i32) + *(b as *const i32) };
        7
    }

    #[test]
    fn calls_with_the_right_arity() {
        let (mut a, mut b, mut out) = (2i32, 40i32, 0i32);
        let args =
            [&mut a as *mut i32 as *mut c_void, &mut b as *mut i32 as *mut c_void, &mut out as *mut i32 as *mut c_void];
        assert_eq!(unsafe { call(sum3 as *const c_void, &args) }, Ok(7));
        assert_eq!(out, 42);
        assert_eq!(unsafe { call(std::ptr::null(), &args) }, Err(CallError::NullFunction));
        let many = vec![std::ptr::null_mut(); MAX_ARGS + 1];
        assert_eq!(unsafe { call(sum3 as *const c_void, &many) }, Err(CallError::TooManyArguments(MAX_ARGS + 1)));
    }
}
