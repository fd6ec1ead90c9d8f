//! kiln's failures as Python exceptions. The exception classes live in the package's Python
//! code (python/kiln/errors.py), which parses a compile error's diagnostics from the JSON that
//! `kiln build --error-format json` prints.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static COMPILE_ERROR: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
static LOAD_ERROR: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
static COMPILE_WARNING: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();

/// A failed build: `kiln.CompileError` for the program's errors and for refused options,
/// RuntimeError for a compiler bug.
pub fn compile_error(py: Python<'_>, e: kiln::Error) -> PyErr {
    if let kiln::Error::Internal(_) = e {
        return PyRuntimeError::new_err(e.render(false));
    }
    let human = e.render(false);
    let json = e.render_as(kiln::ErrorFormat::Json, false);
    match COMPILE_ERROR.import(py, "kiln.errors", "CompileError") {
        Ok(class) => match class.call1((human, json)) {
            Ok(exception) => PyErr::from_value(exception),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// A bundle that cannot be opened: `kiln.LoadError` (the runtime's reason in its message), or
/// OSError when its files cannot be read.
pub fn load_error(py: Python<'_>, e: kiln_runtime::Error) -> PyErr {
    if let kiln_runtime::Error::Io(_) = e {
        return PyOSError::new_err(e.to_string());
    }
    match LOAD_ERROR.import(py, "kiln.errors", "LoadError") {
        Ok(class) => PyErr::from_type(class.clone(), e.to_string()),
        Err(e) => e,
    }
}

/// Shows the warnings of a build of `source`, rendered as the CLI prints them, as
/// `kiln.CompileWarning`s.
pub fn warn(py: Python<'_>, source: &kiln::Source, warnings: &[kiln::kiln_ir::Diagnostic]) -> PyResult<()> {
    if warnings.is_empty() {
        return Ok(());
    }
    let class = COMPILE_WARNING.import(py, "kiln.errors", "CompileWarning")?;
    for d in warnings {
        let text = kiln::kiln_frontend::render_diagnostic(d, &source.name, &source.text, false);
        let message =
            std::ffi::CString::new(text.replace('\0', " ")).map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyErr::warn(py, class.as_any(), &message, 2)?;
    }
    Ok(())
}
