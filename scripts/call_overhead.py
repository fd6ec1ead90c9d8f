"""The cost of calling a compiled function from Python, against calling it from C, in one run.

    target/pyenv/bin/python scripts/call_overhead.py      # after bash scripts/python.sh

For each size of `fn f(x: f32[N]) -> f32[N] { x * 2.0 + 1.0 }`, the module is compiled once
with kiln.compile and saved as a bundle. A C program linked against that same shared library
times its entry point, and Python times `m.f(x)` (a new result array each call) and
`m.f(x, out=y)` (no allocation). The figures are the median of 7 rounds, in nanoseconds per
call. The difference is what the Python layer costs: binding and checking the arguments, and
allocating and returning the result.
"""

from __future__ import annotations

import pathlib
import platform
import statistics
import subprocess
import tempfile
import timeit

import numpy as np

import kiln

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "bench.h"
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
int main(int argc, char** argv) {
    long calls = atol(argv[1]);
    static float x[BENCH_F_X_SIZE], y[BENCH_F_OUT0_SIZE];
    for (long i = 0; i < BENCH_F_X_SIZE; i++) x[i] = (float)i;
    double best[7];
    for (int round = 0; round < 7; round++) {
        double start = now();
        for (long i = 0; i < calls; i++) bench_f(x, y, 0);
        best[round] = (now() - start) / calls * 1e9;
    }
    for (int round = 0; round < 7; round++) printf("%f\n", best[round]);
    return y[1] == 3.0f ? 0 : 1;
}
"""


def c_ns(directory: pathlib.Path, calls: int) -> float:
    (directory / "harness.c").write_text(HARNESS)
    exe = directory / "harness"
    subprocess.run(
        ["cc", "-O2", "-o", exe, directory / "harness.c", f"-I{directory}", f"-L{directory}", "-lbench",
         f"-Wl,-rpath,{directory}"],
        check=True,
    )
    out = subprocess.run([exe, str(calls)], check=True, capture_output=True, text=True).stdout
    return statistics.median(float(line) for line in out.split())


def python_ns(statement, calls: int) -> float:
    return statistics.median(t / calls * 1e9 for t in timeit.repeat(statement, number=calls, repeat=7))


def cpu() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    print(f"host: {cpu()}, Python {platform.python_version()}, kiln {kiln.__version__}, numpy {np.__version__}")
    print("| elements | C call (ns) | Python, new result (ns) | Python, out= (ns) | Python over C |")
    print("|---|---|---|---|---|")
    for n in (4, 4096, 262144):
        m = kiln.compile(f"fn f(x: f32[{n}]) -> f32[{n}] {{ x * 2.0 + 1.0 }}\nexport f;", module_name="bench")
        calls = max(200_000 // max(n // 64, 1), 200)
        with tempfile.TemporaryDirectory() as d:
            m.save(d)
            c = c_ns(pathlib.Path(d), calls)
        x, y = np.arange(n, dtype=np.float32), np.empty(n, np.float32)
        f = m.f
        new = python_ns(lambda: f(x), calls)
        out = python_ns(lambda: f(x, out=y), calls)
        print(f"| {n} | {c:.0f} | {new:.0f} | {out:.0f} | {new - c:+.0f} / {out - c:+.0f} |")


if __name__ == "__main__":
    main()
