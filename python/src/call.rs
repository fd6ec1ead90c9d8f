//! Arguments between numpy and kiln's buffers: every call, compiled or interpreted, checks its
//! arguments here against the function's signature and gets row-major byte buffers back.
//!
//! Inputs are read in place when they are C-contiguous numpy arrays of the parameter's dtype
//! (no copy); a non-contiguous array of that dtype is copied; a numpy scalar is a 0-d array of
//! its dtype; a DLPack producer (a JAX or PyTorch array on the CPU) is viewed through
//! `numpy.from_dlpack`; a Python scalar is taken for a scalar parameter of a kind that holds
//! it, as kiln's weakly typed literals are. Any
//! other dtype, shape or count is an error naming the parameter: kiln never converts an
//! array's dtype behind the caller's back.

use numpy::npyffi::{self, flags::NPY_ARRAY_WRITEABLE};
use numpy::{PyArrayDescr, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods, PY_ARRAY_API};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyTuple};

/// One parameter or result: its name, kiln's dtype name (`f32`, `bf16`, ...) and shape.
#[derive(Clone, Debug)]
pub struct Arg {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
}

impl Arg {
    /// The buffer's size in bytes.
    pub fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * itemsize(self.dtype)
    }

    /// `name: f32[2, 3]`, as kiln writes a parameter.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        if dims.is_empty() {
            format!("{}: {}", self.name, self.dtype)
        } else {
            format!("{}: {}[{}]", self.name, self.dtype, dims.join(", "))
        }
    }
}

/// A function's parameters and results.
#[derive(Clone, Debug)]
pub struct Signature {
    pub name: String,
    pub params: Vec<Arg>,
    pub results: Vec<Arg>,
}

/// kiln's dtypes with their numpy names (bf16 is ml_dtypes' `bfloat16`, as in JAX) and sizes.
const DTYPES: [(&str, &str, usize); 9] = [
    ("bool", "bool", 1),
    ("u8", "uint8", 1),
    ("i32", "int32", 4),
    ("u32", "uint32", 4),
    ("i64", "int64", 8),
    ("f16", "float16", 2),
    ("bf16", "bfloat16", 2),
    ("f32", "float32", 4),
    ("f64", "float64", 8),
];

/// kiln's static name for the dtype named `name`.
pub fn dtype_name(name: &str) -> &'static str {
    DTYPES.iter().find(|d| d.0 == name).map(|d| d.0).expect("kiln's dtypes are all listed")
}

fn itemsize(dtype: &str) -> usize {
    DTYPES.iter().find(|d| d.0 == dtype).map(|d| d.2).expect("kiln's dtypes are all listed")
}

/// numpy.generic, the class of numpy's scalars, imported once.
static NUMPY_SCALAR: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();

/// ml_dtypes' bfloat16, imported once (only when a bf16 argument is met).
static BFLOAT16: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// numpy's dtype for kiln's dtype `dtype`.
pub fn numpy_dtype<'py>(py: Python<'py>, dtype: &str) -> PyResult<Bound<'py, PyArrayDescr>> {
    let numpy_name = DTYPES.iter().find(|d| d.0 == dtype).map(|d| d.1).expect("kiln's dtypes are all listed");
    if dtype == "bf16" {
        let bf16 = BFLOAT16.get_or_try_init(py, || {
            py.import("ml_dtypes").and_then(|m| m.getattr("bfloat16")).map(Bound::unbind).map_err(|e| {
                PyTypeError::new_err(format!(
                    "bf16 arrays are ml_dtypes.bfloat16, and ml_dtypes cannot be imported: {e}"
                ))
            })
        })?;
        return PyArrayDescr::new(py, bf16.bind(py));
    }
    PyArrayDescr::new(py, numpy_name)
}

/// The numpy dtypes of a signature's arguments, made once per function.
pub struct Dtypes {
    pub params: Vec<Py<PyArrayDescr>>,
    pub results: Vec<Py<PyArrayDescr>>,
}

impl Dtypes {
    pub fn new(py: Python<'_>, sig: &Signature) -> PyResult<Dtypes> {
        let of = |args: &[Arg]| -> PyResult<Vec<_>> {
            args.iter().map(|a| numpy_dtype(py, a.dtype).map(Bound::unbind)).collect()
        };
        Ok(Dtypes { params: of(&sig.params)?, results: of(&sig.results)? })
    }
}

/// The data pointer of an array.
fn data(array: &Bound<'_, PyUntypedArray>) -> *mut u8 {
    // SAFETY: a live numpy array's object fields.
    unsafe { (*npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).data.cast() }
}

fn writeable(array: &Bound<'_, PyUntypedArray>) -> bool {
    // SAFETY: as above.
    unsafe { (*npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags & NPY_ARRAY_WRITEABLE != 0 }
}

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// The buffers of a call's inputs: the arrays (kept alive for the call) whose bytes are read.
pub struct Inputs<'py> {
    arrays: Vec<Bound<'py, PyUntypedArray>>,
}

impl<'py> Inputs<'py> {
    /// Checks `args` and `kwargs` against `sig`'s parameters, as Python binds arguments:
    /// positional first, then by parameter name, each exactly once.
    pub fn bind(
        py: Python<'py>,
        sig: &Signature,
        dtypes: &Dtypes,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Inputs<'py>> {
        let n = sig.params.len();
        let list = || sig.params.iter().map(Arg::describe).collect::<Vec<_>>().join(", ");
        if args.len() > n {
            return Err(PyTypeError::new_err(format!(
                "`{}` takes {n} arguments ({}), got {}",
                sig.name,
                list(),
                args.len()
            )));
        }
        let mut given: Vec<Option<Bound<'py, PyAny>>> = args.iter().map(Some).collect();
        given.resize(n, None);
        for (key, value) in kwargs.into_iter().flatten() {
            let key: String = key.extract()?;
            let Some(i) = sig.params.iter().position(|p| p.name == key) else {
                return Err(PyTypeError::new_err(format!(
                    "`{}` has no parameter `{key}`; its parameters are {}",
                    sig.name,
                    list()
                )));
            };
            if given[i].replace(value).is_some() {
                return Err(PyTypeError::new_err(format!("`{}` got parameter `{key}` twice", sig.name)));
            }
        }
        let missing: Vec<&str> =
            sig.params.iter().zip(&given).filter(|(_, g)| g.is_none()).map(|(p, _)| p.name.as_str()).collect();
        if !missing.is_empty() {
            return Err(PyTypeError::new_err(format!(
                "`{}` is missing {}: it takes {}",
                sig.name,
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                list()
            )));
        }
        let arrays = sig
            .params
            .iter()
            .zip(given)
            .zip(&dtypes.params)
            .map(|((p, g), d)| input(py, &sig.name, p, d.bind(py), g.expect("every parameter is given")))
            .collect::<PyResult<_>>()?;
        Ok(Inputs { arrays })
    }

    /// The inputs' bytes, valid while `self` lives.
    pub fn buffers(&self) -> Vec<&[u8]> {
        // SAFETY: each array is C-contiguous with exactly the bytes its parameter needs
        // (checked in `input`), and is kept alive by `self`.
        self.arrays
            .iter()
            .map(|a| unsafe { std::slice::from_raw_parts(data(a), a.len() * a.dtype().itemsize()) })
            .collect()
    }

    /// Where each input's bytes lie, to refuse outputs that overlap them.
    fn ranges(&self) -> Vec<std::ops::Range<usize>> {
        self.buffers().iter().map(|b| b.as_ptr() as usize..b.as_ptr() as usize + b.len()).collect()
    }
}

/// One checked input as a C-contiguous array of `param`'s dtype and shape.
fn input<'py>(
    py: Python<'py>,
    function: &str,
    param: &Arg,
    dtype: &Bound<'py, PyArrayDescr>,
    value: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let array = if let Ok(a) = value.cast::<PyUntypedArray>() {
        a.clone()
    } else if value.is_instance(NUMPY_SCALAR.import(py, "numpy", "generic")?)? {
        // A numpy scalar (np.float32(2.0)) has its dtype, as a 0-d array does.
        py.import("numpy")?.call_method1("asarray", (&value,))?.cast_into::<PyUntypedArray>()?
    } else if value.hasattr("__dlpack__")? {
        py.import("numpy")?.call_method1("from_dlpack", (&value,))?.cast_into::<PyUntypedArray>()?
    } else if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
        scalar(py, function, param, dtype, &value)?
    } else {
        return Err(PyTypeError::new_err(format!(
            "parameter `{}` of `{function}` takes a numpy array, got {}",
            param.describe(),
            value.get_type().name()?
        )));
    };
    if !array.dtype().is_equiv_to(dtype) {
        return Err(PyTypeError::new_err(format!(
            "parameter `{}` of `{function}` is {}, got an array of {}; convert it with .astype(...)",
            param.describe(),
            param.dtype,
            array.dtype().str()?
        )));
    }
    if array.shape() != param.shape.as_slice() {
        return Err(PyValueError::new_err(format!(
            "parameter `{}` of `{function}` has shape {}, got {}",
            param.describe(),
            shape_text(&param.shape),
            shape_text(array.shape())
        )));
    }
    if array.is_c_contiguous() {
        return Ok(array);
    }
    Ok(py.import("numpy")?.call_method1("ascontiguousarray", (array,))?.cast_into::<PyUntypedArray>()?)
}

/// A Python scalar for a scalar parameter: a bool for bool, an int for any integer or float
/// dtype (numpy refuses one out of range), a float for a float dtype.
fn scalar<'py>(
    py: Python<'py>,
    function: &str,
    param: &Arg,
    dtype: &Bound<'py, PyArrayDescr>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let float = matches!(param.dtype, "f16" | "bf16" | "f32" | "f64");
    let fits = if value.is_instance_of::<PyBool>() {
        param.dtype == "bool"
    } else if value.is_instance_of::<PyInt>() {
        param.dtype != "bool"
    } else {
        float
    };
    if !param.shape.is_empty() || !fits {
        return Err(PyTypeError::new_err(format!(
            "parameter `{}` of `{function}` cannot take the Python {} {}",
            param.describe(),
            value.get_type().name()?,
            value.repr()?
        )));
    }
    let numpy = py.import("numpy")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", dtype)?;
    Ok(numpy.getattr("asarray")?.call((value,), Some(&kwargs))?.cast_into::<PyUntypedArray>()?)
}

/// A new C-contiguous array of `dtype` and `shape`, uninitialized.
pub fn empty<'py>(
    py: Python<'py>,
    dtype: &Bound<'py, PyArrayDescr>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let mut dims: Vec<npyffi::npy_intp> = shape.iter().map(|&d| d as npyffi::npy_intp).collect();
    // SAFETY: PyArray_Empty steals the reference to the descriptor, which `into_dtype_ptr`
    // hands over; the dimensions outlive the call.
    unsafe {
        let ptr = PY_ARRAY_API.PyArray_Empty(py, dims.len() as _, dims.as_mut_ptr(), dtype.clone().into_dtype_ptr(), 0);
        Ok(Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked())
    }
}

/// The result arrays of a call: new arrays, or the caller's `out=` arrays after checking that
/// each is writeable, C-contiguous, of its result's dtype and shape, and shares no memory with
/// an input or another output.
pub fn outputs<'py>(
    py: Python<'py>,
    sig: &Signature,
    dtypes: &Dtypes,
    out: Option<&Bound<'py, PyAny>>,
    inputs: &Inputs<'py>,
) -> PyResult<Vec<Bound<'py, PyUntypedArray>>> {
    let Some(out) = out.filter(|o| !o.is_none()) else {
        return sig.results.iter().zip(&dtypes.results).map(|(r, d)| empty(py, d.bind(py), &r.shape)).collect();
    };
    let given: Vec<Bound<'py, PyAny>> = match (sig.results.len(), out.cast::<PyTuple>()) {
        (1, Err(_)) => vec![out.clone()],
        (_, Ok(t)) => t.iter().collect(),
        (n, Err(_)) => {
            return Err(PyTypeError::new_err(format!(
                "`{}` has {n} results, so out= takes a tuple of {n} arrays",
                sig.name
            )))
        }
    };
    if given.len() != sig.results.len() {
        return Err(PyTypeError::new_err(format!(
            "`{}` has {} results, got {} arrays in out=",
            sig.name,
            sig.results.len(),
            given.len()
        )));
    }
    let mut taken = inputs.ranges();
    let mut arrays = vec![];
    for ((r, d), o) in sig.results.iter().zip(&dtypes.results).zip(given) {
        let what = || format!("out= array for result `{}` of `{}`", r.describe(), sig.name);
        let a = o
            .cast_into::<PyUntypedArray>()
            .map_err(|_| PyTypeError::new_err(format!("the {} is not a numpy array", what())))?;
        if !a.dtype().is_equiv_to(d.bind(py)) {
            return Err(PyTypeError::new_err(format!("the {} has dtype {}", what(), a.dtype().str()?)));
        }
        if a.shape() != r.shape.as_slice() {
            return Err(PyValueError::new_err(format!("the {} has shape {}", what(), shape_text(a.shape()))));
        }
        if !a.is_c_contiguous() || !writeable(&a) {
            return Err(PyValueError::new_err(format!("the {} must be C-contiguous and writeable", what())));
        }
        let start = data(&a) as usize;
        let range = start..start + r.bytes();
        if !range.is_empty() && taken.iter().any(|t| t.start < range.end && range.start < t.end) {
            return Err(PyValueError::new_err(format!("the {} shares memory with an input or another output", what())));
        }
        taken.push(range);
        arrays.push(a);
    }
    Ok(arrays)
}

/// The bytes of output arrays made or checked by [`outputs`].
pub fn output_buffers<'a>(arrays: &'a mut [Bound<'_, PyUntypedArray>]) -> Vec<&'a mut [u8]> {
    // SAFETY: each array is C-contiguous, writeable, of its result's size, overlaps no other
    // buffer of the call (checked in `outputs`), and lives as long as `arrays`.
    arrays.iter().map(|a| unsafe { std::slice::from_raw_parts_mut(data(a), a.len() * a.dtype().itemsize()) }).collect()
}

/// A call's value: the one result, or a tuple of them.
pub fn returned<'py>(py: Python<'py>, arrays: Vec<Bound<'py, PyUntypedArray>>) -> PyResult<Bound<'py, PyAny>> {
    match <[_; 1]>::try_from(arrays) {
        Ok([one]) => Ok(one.into_any()),
        Err(arrays) => Ok(PyTuple::new(py, arrays)?.into_any()),
    }
}
