"""Shared fixtures, and the line that scripts/test.sh totals with cargo's results."""

import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mlp_path() -> pathlib.Path:
    return ROOT / "examples" / "mlp.kn"


@pytest.fixture(scope="session")
def mlp(mlp_path):
    import kiln

    return kiln.compile(mlp_path)


@pytest.fixture(scope="session")
def mlp_reference(mlp_path):
    import kiln

    return kiln.interpret(mlp_path)


@pytest.fixture
def mlp_inputs():
    rng = np.random.default_rng(7)
    f32 = lambda *shape: rng.standard_normal(shape, dtype=np.float32) * 0.3  # noqa: E731
    return {
        "x": f32(16, 32),
        "labels": rng.integers(0, 10, 16, dtype=np.int32),
        "w1": f32(32, 64),
        "b1": f32(64),
        "w2": f32(64, 10),
        "b2": f32(10),
    }


def pytest_terminal_summary(terminalreporter):
    """Prints the results as cargo's harness does, so that one awk line totals both."""
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = sum(len(stats.get(k, [])) for k in ("failed", "error"))
    # A test that cannot run must fail, not pass silently: skips count as failures.
    failed += len(stats.get("skipped", []))
    status = "ok" if failed == 0 else "FAILED"
    terminalreporter.write_line(f"test result: {status}. {passed} passed; {failed} failed; 0 ignored (pytest)")
