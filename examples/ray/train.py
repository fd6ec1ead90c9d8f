"""Data-parallel training of a compiled kiln model on a Ray cluster, and batch inference.

    target/pyenv/bin/python examples/ray/train.py            # a local 3-node cluster

The driver compiles examples/ray/classifier.kn once. kiln.ray.DataParallel puts the bundle in the
object store, and each worker actor loads it once. Every step cuts the global batch of 96 into
three shards of 32. Each worker computes the loss and gradient of its shards with the compiled
`shard_step`, and the driver averages them and takes an SGD step. The same training in one
process, with `batch_step` on the whole batch, gives the same losses up to rounding. A worker
killed mid-run is restarted by Ray and the run ends with the same weights, bit for bit.
Finally Ray Data classifies a held-out set through `predict` (kiln.ray.BatchFunction).
python/tests/test_ray.py runs these functions at small sizes.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

import kiln

SOURCE = pathlib.Path(__file__).with_name("classifier.kn")
SHARD, FEATURES, HIDDEN, CLASSES = 32, 64, 128, 10
WEIGHTS = ("w1", "b1", "w2", "b2")


def data(rows: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Examples labeled by a fixed random linear teacher, so that the classes can be learned."""
    teacher = np.random.default_rng(0).standard_normal((FEATURES, CLASSES)).astype(np.float32)
    x = np.random.default_rng(seed).standard_normal((rows, FEATURES)).astype(np.float32)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int32)


def initial_weights(seed: int = 1) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.standard_normal((FEATURES, HIDDEN)) / np.sqrt(FEATURES)).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "w2": (rng.standard_normal((HIDDEN, CLASSES)) / np.sqrt(HIDDEN)).astype(np.float32),
        "b2": np.zeros(CLASSES, np.float32),
    }


Step = Callable[..., Tuple[np.ndarray, ...]]


def train(
    step: Step,
    weights: Dict[str, np.ndarray],
    batches: List[Tuple[np.ndarray, np.ndarray]],
    rate: float = 0.5,
    before_step: Optional[Callable[[int], None]] = None,
) -> Tuple[List[float], Dict[str, np.ndarray]]:
    """SGD with `step(x, labels, *weights) -> (loss, *gradients)`; returns the losses and the
    final weights."""
    weights = {k: v.copy() for k, v in weights.items()}
    losses = []
    for i, (x, labels) in enumerate(batches):
        if before_step is not None:
            before_step(i)
        loss, *grads = step(x, labels, *(weights[k] for k in WEIGHTS))
        losses.append(float(loss))
        for k, g in zip(WEIGHTS, grads):
            weights[k] -= np.float32(rate) * g
    return losses, weights


def batches(steps: int, shards: int, seed: int = 2) -> List[Tuple[np.ndarray, np.ndarray]]:
    x, labels = data(steps * shards * SHARD, seed)
    size = shards * SHARD
    return [(x[i * size : (i + 1) * size], labels[i * size : (i + 1) * size]) for i in range(steps)]


def local_cluster(nodes: int, cpus_per_node: int = 1):
    """A Ray cluster of `nodes` nodes on this machine, connected to."""
    import os

    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to a closed network
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus_per_node)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    cluster.wait_for_nodes()
    return cluster


def predict_with_ray_data(module: kiln.Module, weights: Dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The classes `predict` gives the rows of `x`, through Ray Data (kiln.ray.BatchFunction)
    on two actors, in batches of 48: pieces of the compiled 32 rows, the last one padded."""
    import ray

    from kiln.ray import BatchFunction

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    predicted = ray.data.from_items([{"x": row} for row in x]).map_batches(
        BatchFunction,
        fn_constructor_kwargs=dict(
            module=ray.put(module), function="predict", columns=["x"], constants=weights, outputs=["class"]
        ),
        batch_size=48,
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_format="numpy",
    )
    return np.concatenate([b["class"] for b in predicted.iter_batches(batch_size=None, batch_format="numpy")])


def accuracy_with_ray_data(module: kiln.Module, weights: Dict[str, np.ndarray], rows: int) -> float:
    """The share of `rows` held-out examples that `predict` classifies right, through Ray Data."""
    x, labels = data(rows, seed=3)
    classes = predict_with_ray_data(module, weights, x)
    assert classes.shape == labels.shape, classes.shape
    return float(np.mean(classes == labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    import ray

    from kiln.ray import DataParallel

    cluster = local_cluster(args.nodes)
    try:
        module = kiln.compile(SOURCE)
        data_parallel = DataParallel(module, "shard_step", args.workers, sharded=["x", "labels"])
        steps = batches(args.steps, shards=3)
        losses, weights = train(data_parallel, initial_weights(), steps)
        single, single_weights = train(module.batch_step, initial_weights(), steps)
        for i in range(0, args.steps, max(args.steps // 8, 1)):
            print(f"step {i:3d}: loss {losses[i]:.5f} on {args.workers} workers, {single[i]:.5f} in one process")
        gap = max(abs(a - b) / abs(b) for a, b in zip(losses, single))
        print(f"largest relative difference of the losses: {gap:.2e}")

        def kill_one(step: int) -> None:
            if step == args.steps // 2:
                ray.kill(data_parallel.workers[0], no_restart=False)

        again, again_weights = train(data_parallel, initial_weights(), steps, before_step=kill_one)
        same = again == losses and all(np.array_equal(again_weights[k], weights[k]) for k in WEIGHTS)
        print(f"with a worker killed at step {args.steps // 2}: {'the same losses and weights' if same else 'DIFFERENT'}")
        data_parallel.close()
        print(f"held-out accuracy through Ray Data: {accuracy_with_ray_data(module, weights, 500):.3f}")
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
