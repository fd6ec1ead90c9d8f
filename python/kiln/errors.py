"""kiln's exceptions and warnings.

The extension raises these: a compile error carries every diagnostic of the build, parsed
from the JSON that ``kiln build --error-format json`` prints (rustc's JSON shape).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple


class CompileError(Exception):
    """A program kiln refused: its errors, rendered as the CLI prints them (``str(e)``).

    ``code``, ``message``, ``file``, ``line``, ``column`` and ``span`` (byte offsets) describe
    the first error at its primary label; ``diagnostics`` holds every diagnostic of the build,
    warnings included, as dicts with ``level``, ``code``, ``message``, ``spans``, ``notes``,
    ``help`` and ``rendered``. An error that is not about a place in the program (a bad option,
    an unreadable file) has ``code`` and the place set to None.
    """

    rendered: str
    diagnostics: List[Dict[str, Any]]
    code: Optional[str]
    message: str
    file: Optional[str]
    line: Optional[int]
    column: Optional[int]
    span: Optional[Tuple[int, int]]

    def __init__(self, rendered: str, diagnostics_json: str = "") -> None:
        super().__init__(rendered.rstrip("\n"))
        self.rendered = rendered
        self.diagnostics = [json.loads(line) for line in diagnostics_json.splitlines() if line.strip()]
        errors = [d for d in self.diagnostics if d.get("level") == "error"]
        first = errors[0] if errors else {"code": None, "message": rendered.strip(), "spans": []}
        self.code = first.get("code")
        self.message = first.get("message", "")
        spans = first.get("spans") or []
        primary = next((s for s in spans if s.get("is_primary")), spans[0] if spans else None)
        if primary is None:
            self.file = self.line = self.column = self.span = None
        else:
            self.file = primary["file_name"]
            self.line = primary["line_start"]
            self.column = primary["column_start"]
            self.span = (primary["byte_start"], primary["byte_end"])

    def __reduce__(self):  # picklable, so that it crosses process boundaries (Ray) whole
        return (_compile_error, (self.rendered, "\n".join(json.dumps(d) for d in self.diagnostics)))


def _compile_error(rendered: str, diagnostics_json: str) -> CompileError:
    return CompileError(rendered, diagnostics_json)


class LoadError(Exception):
    """A bundle the runtime refused to load: a wrong format, version, target or CPU, a file whose
    size or SHA-256 differs from the manifest, a missing or forged signature, a call over the
    memory limit, or a library whose compiled ABI contradicts its manifest."""


class CompileWarning(UserWarning):
    """A warning about the program, rendered as the CLI prints it."""
