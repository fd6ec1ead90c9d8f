"""Type stubs for kiln's extension module (python/src)."""

import os
from typing import Any, Dict, List, Optional, Tuple, Union, final

import numpy as np

__version__: str
__all__ = [
    "Function",
    "Module",
    "__version__",
    "_load_files",
    "compile",
    "explain",
    "import_onnx",
    "interpret",
    "load",
    "set_threads",
    "threads",
]

_ArrayLike = Union[np.ndarray, bool, int, float, Any]  # Any: a DLPack producer (JAX, torch)
_Arg = Tuple[str, str, List[int]]

@final
class Function:
    """An exported function of a loaded module."""

    @property
    def name(self) -> str: ...
    @property
    def params(self) -> List[_Arg]:
        """The parameters as (name, dtype, shape); dtype is kiln's name (``f32``, ``bf16``)."""
    @property
    def results(self) -> List[_Arg]: ...
    def __call__(
        self,
        *args: _ArrayLike,
        out: Union[np.ndarray, Tuple[np.ndarray, ...], None] = None,
        **kwargs: _ArrayLike,
    ) -> Union[np.ndarray, Tuple[np.ndarray, ...]]:
        """Calls the function: one array for one result, else a tuple of arrays.

        Inputs of the parameter's dtype that are C-contiguous are read in place. A wrong
        dtype raises TypeError, a wrong shape ValueError, naming the parameter; a wrong
        count TypeError. ``out=`` takes the result arrays to write into.
        """

@final
class Module:
    """A compiled (or interpreted) module: its exported functions are attributes."""

    @property
    def name(self) -> str: ...
    @property
    def functions(self) -> Dict[str, Function]: ...
    @property
    def files(self) -> Dict[str, bytes]:
        """The bundle's files by name (TypeError for an interpreted module)."""
    @property
    def manifest(self) -> str:
        """The manifest's JSON text."""
    @property
    def is_gpu(self) -> bool: ...
    @property
    def is_interpreted(self) -> bool: ...
    def save(self, directory: Union[str, os.PathLike]) -> str:
        """Writes the bundle into ``directory``; returns the manifest's path."""
    def __getattr__(self, name: str) -> Function: ...
    def __getitem__(self, name: str, /) -> Function: ...

def compile(
    source: Union[str, os.PathLike],
    *,
    opt_level: int = 2,
    target: Optional[str] = None,
    target_cpu: Optional[str] = None,
    gpu: Optional[str] = None,
    fast_math: bool = False,
    module_name: Optional[str] = None,
    emulate: bool = False,
    device: int = 0,
    shapes: Optional[Dict[str, List[int]]] = None,
) -> Module:
    """Compiles a program (a str holding it, or a path to a .kn file or an .onnx model, whose
    weights are compiled in; `shapes` fixes a model's symbolic input dimensions) in this process.

    Raises kiln.CompileError with the rendered diagnostics, their code, file and span.
    """

def load(
    manifest: Union[str, os.PathLike],
    *,
    public_key: Optional[str] = None,
    memory_limit: Optional[int] = None,
    emulate: bool = False,
    device: int = 0,
) -> Module:
    """Opens a bundle built elsewhere, verified as the C runtime verifies it (kiln.LoadError)."""

def interpret(source: Union[str, os.PathLike], *, memory_limit_mib: int = 4096) -> Module:
    """A module whose functions run in kiln's reference interpreter."""

def import_onnx(
    model: Union[str, os.PathLike],
    *,
    shapes: Optional[Dict[str, List[int]]] = None,
    weights_as_params: bool = False,
) -> Tuple[str, Dict[str, np.ndarray]]:
    """An ONNX model as kiln source (its function `forward` takes the inputs and loads the
    weights, or with `weights_as_params` takes them after the inputs) and its weights by name
    (kiln.CompileError when it cannot be imported)."""

def set_threads(threads: int) -> int:
    """Sets the threads running compiled parallel loops; returns the previous number."""

def threads() -> int: ...
def explain(code: str) -> Optional[str]:
    """The errors page of a diagnostic code, as ``kiln explain`` prints it."""
def _load_files(
    manifest: str, files: Dict[str, bytes], emulate: bool, device: int, function: Optional[str] = None
) -> Union[Module, Function]: ...
