"""kiln: an ahead-of-time tensor compiler, from Python.

``kiln.compile`` builds a kiln program in this process, with the same driver as the ``kiln``
CLI, and returns a module whose exported functions take and return numpy arrays;
``kiln.load`` opens a bundle built elsewhere, verified as the C runtime verifies it;
``kiln.interpret`` runs a program in the reference interpreter, for checks.

    >>> import numpy as np, kiln
    >>> m = kiln.compile("fn scale(x: f32[3]) -> f32[3] { x * 2.0 }\\nexport scale;")
    >>> m.scale(np.arange(3, dtype=np.float32))
    array([0., 2., 4.], dtype=float32)

Modules pickle as their bundle's bytes (``kiln.ray`` sends them to Ray workers this way).
"""

from ._kiln import (
    Function,
    Module,
    __version__,
    compile,
    explain,
    import_onnx,
    interpret,
    load,
    set_threads,
    threads,
)
from .errors import CompileError, CompileWarning, LoadError

__all__ = [
    "CompileError",
    "CompileWarning",
    "Function",
    "LoadError",
    "Module",
    "__version__",
    "compile",
    "explain",
    "import_onnx",
    "interpret",
    "load",
    "set_threads",
    "threads",
]
