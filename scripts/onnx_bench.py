"""Whole ONNX models through kiln against onnxruntime, in one run, at the same thread count.

    target/pyenv/bin/python scripts/onnx_bench.py [--runs 20] [--target-cpu native]

The models are scripts/onnx_models.py's ResNet-18-shaped CNN (224x224) and BERT-tiny-shaped
encoder (128 tokens), with random weights. kiln compiles each with its weights in the object
(`kiln.compile(path)`), and the outputs are checked against onnxruntime's before anything is
timed. Each figure is the median of `--runs` calls in ms, at 1 and 2 threads (kiln's pool;
onnxruntime's intra-op threads, with sequential execution).
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

import kiln

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import onnx_models  # noqa: E402


def cpu() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def median_ms(call, runs: int) -> float:
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--target-cpu", default=None, help="kiln's CPU (default x86-64-v3; `native` for this one)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    models = [
        ("ResNet-18-shaped, 1x3x224x224", onnx_models.resnet18(), {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}),
        ("BERT-tiny-shaped, 128 tokens", onnx_models.bert_tiny(), {"input_ids": rng.integers(0, 30522, (1, 128)).astype(np.int64)}),
    ]
    print(f"host: {cpu()}; onnxruntime {ort.__version__}; kiln {kiln.__version__}, --target-cpu {args.target_cpu or 'x86-64-v3'}")
    print("| model | kiln compile (s) | threads | kiln (ms) | onnxruntime (ms) | kiln / onnxruntime |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for title, model, feed in models:
            path = pathlib.Path(d) / "model.onnx"
            onnx.save(model, path)
            start = time.perf_counter()
            compiled = kiln.compile(path, target_cpu=args.target_cpu)
            seconds = time.perf_counter() - start
            for threads in (1, 2):
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                kiln.set_threads(threads)
                want = session.run(None, feed)
                got = compiled.forward(*feed.values())
                got = got if isinstance(got, tuple) else (got,)
                for g, w in zip(got, want):
                    np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)
                k = median_ms(lambda: compiled.forward(*feed.values()), args.runs)
                o = median_ms(lambda: session.run(None, feed), args.runs)
                print(f"| {title} | {seconds:.1f} | {threads} | {k:.2f} | {o:.2f} | {k / o:.2f} |")
    kiln.set_threads(1)


if __name__ == "__main__":
    main()
