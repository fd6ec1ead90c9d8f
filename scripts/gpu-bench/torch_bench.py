"""PyTorch's side of the GPU benchmark (scripts/gpu-bench/run.sh): times the programs of
bench.kn with PyTorch on the same GPU, reads kiln-gpu-check --bench's lines from the file
given as the argument, and prints each figure with its ratio to PyTorch's."""
import re
import statistics
import sys
import time

import torch

RUNS = 20


def timed(f):
    """Median seconds of a run, between synchronizations (as kiln-gpu-check times kiln)."""
    f()
    times = []
    for _ in range(RUNS):
        torch.cuda.synchronize()
        start = time.perf_counter()
        f()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    torch.backends.cuda.matmul.allow_tf32 = False  # kiln's products are FP32, not TF32
    dev = torch.device("cuda")
    n = 1 << 26
    x, y = torch.rand(n, device=dev) * 2 - 1, torch.rand(n, device=dev) * 2 - 1
    s = torch.rand(8192, 4096, device=dev) * 2 - 1
    a, b = torch.rand(4096, 4096, device=dev), torch.rand(4096, 4096, device=dev)
    torch_times = {
        "chain": timed(lambda: torch.sigmoid(x * y + x) * 2.0 - 1.0),
        "smax": timed(lambda: torch.softmax(s, dim=1)),
        "matmul": timed(lambda: a @ b),
    }
    kiln_times = {}
    for line in open(sys.argv[1]):
        m = re.match(r"\w+\.(\w+): median ([0-9.]+) ms", line)
        if m:
            kiln_times[m.group(1)] = float(m.group(2)) / 1e3
    work = {  # bytes moved at least, or FLOPs
        "chain": ("GB/s", 3 * 4 * n / 1e9),
        "smax": ("GB/s", 2 * 4 * 8192 * 4096 / 1e9),
        "matmul": ("TFLOP/s", 2 * 4096**3 / 1e12),
    }
    print(f"GPU: {torch.cuda.get_device_name()}, PyTorch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    for name, (unit, amount) in work.items():
        k, t = kiln_times.get(name), torch_times[name]
        if k is None:
            print(f"{name}: no kiln figure")
            continue
        print(f"{name}: kiln {k * 1e3:.3f} ms, {amount / k:.1f} {unit}; PyTorch {t * 1e3:.3f} ms, "
              f"{amount / t:.1f} {unit}; kiln/PyTorch throughput {t / k:.2f}")


if __name__ == "__main__":
    main()
