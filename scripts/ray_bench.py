"""The data-parallel step on Ray over 1, 2 and 3 workers, its time in compiled code told apart
from Ray's overhead (docs/performance.md, "Python and Ray").

    target/pyenv/bin/python scripts/ray_bench.py [--nodes 3] [--runs 10]

The step is scripts/ray_bench.kn's gradient, run through kiln.ray.DataParallel on a local
cluster of `--nodes` nodes (one CPU each, or one node of three CPUs with `--nodes 1`).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

import kiln

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "ray"))
import train  # noqa: E402  (examples/ray/train.py: the local cluster)


def bench(runs: int, shards: int = 6) -> None:
    """The data-parallel step of ray_bench.kn over 1, 2 and 3 workers: its median time on the
    driver, the time in compiled calls (the slowest worker's) and Ray's overhead, the rest, on
    a global batch of `shards` shards; and the same shards computed in one process, no Ray."""
    from kiln.ray import DataParallel

    module = kiln.compile(pathlib.Path(__file__).with_name("ray_bench.kn"))
    f = module.shard_step
    rng = np.random.default_rng(0)
    rows = f.params[0][2][0]
    args = [
        rng.integers(0, 10, [shards * rows], dtype=np.int32)
        if dtype == "i32"
        else (rng.standard_normal([shards * rows, *shape[1:]] if i == 0 else shape) * 0.05).astype(np.float32)
        for i, (_, dtype, shape) in enumerate(f.params)
    ]
    single = []
    for _ in range(runs):
        start = time.perf_counter()
        for k in range(shards):
            f(args[0][k * rows : (k + 1) * rows], args[1][k * rows : (k + 1) * rows], *args[2:])
        single.append(time.perf_counter() - start)
    print(f"one process, no Ray: {statistics.median(single) * 1e3:.1f} ms per step of {shards} shards of {rows}")
    print("| workers | step (ms) | in compiled calls, slowest worker (ms) | Ray's overhead (ms) |")
    print("|---|---|---|---|")
    for workers in (1, 2, 3):
        parallel = DataParallel(module, "shard_step", workers, sharded=["x", "labels"])
        parallel(*args)  # the actors start and load the module
        times = []
        for _ in range(runs):
            parallel(*args)
            times.append(parallel.last)
        parallel.close()
        total = statistics.median(t.total for t in times) * 1e3
        compute = statistics.median(t.compute for t in times) * 1e3
        print(f"| {workers} | {total:.1f} | {compute:.1f} | {total - compute:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    import ray

    cluster = train.local_cluster(args.nodes, cpus_per_node=1 if args.nodes > 1 else 3)
    try:
        bench(args.runs)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
