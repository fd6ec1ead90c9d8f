"""Compiled kiln modules on a Ray cluster: compiled once by the driver, loaded once per worker.

A ``kiln.Module`` pickles as its bundle's bytes, so ``ray.put(module)`` stores the bundle in
the object store once, and each actor given that reference loads it, verifying every file
against the manifest, when the actor starts. Actors are restarted when they die and their
calls are retried: the calls are pure functions of their arguments, so a retried call gives
the same bits.

- ``DataParallel``: data-parallel gradients. The global batch is cut into shards of the
  compiled function's batch size, the shards are spread over the workers, and the shards'
  results are averaged in shard order. The result is the same, bit for bit, on any number of
  workers.
- ``BatchFunction``: a compiled function for ``ray.data.Dataset.map_batches``.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import ray

from ._kiln import Module

__all__ = ["BatchFunction", "DataParallel", "ModuleWorker", "StepTimes"]


def _module(module: Any) -> Module:
    """The module itself, from a module or an object reference to one."""
    return ray.get(module) if isinstance(module, ray.ObjectRef) else module


class ModuleWorker:
    """Holds a loaded module and calls its functions (a Ray actor in ``DataParallel``)."""

    def __init__(self, module: Any) -> None:
        self.module = _module(module)

    def node(self) -> str:
        """The Ray node this worker runs on."""
        return ray.get_runtime_context().get_node_id()

    def call_shards(
        self,
        function: str,
        sharded: Sequence[int],
        shards: Sequence[Sequence[np.ndarray]],
        *shared: np.ndarray,
    ) -> Tuple[List[Tuple[np.ndarray, ...]], float]:
        """Calls ``function`` once per shard and returns each call's results, with the seconds
        spent calling. The parameters at positions ``sharded`` take the shard's arrays, the
        others take ``shared`` in order."""
        f = getattr(self.module, function)
        args: List[Any] = [None] * len(f.params)
        rest = iter(shared)
        for i in range(len(args)):
            if i not in sharded:
                args[i] = next(rest)
        start = time.perf_counter()
        results = []
        for shard in shards:
            for i, a in zip(sharded, shard):
                args[i] = a
            out = f(*args)
            results.append(out if isinstance(out, tuple) else (out,))
        return results, time.perf_counter() - start


class StepTimes:
    """Where the seconds of the last step went: ``total`` on the driver, ``compute`` in compiled
    calls (the slowest worker's), and ``overhead``, the rest: Ray's scheduling, moving arrays
    through the object store, averaging."""

    def __init__(self, total: float, compute: float) -> None:
        self.total, self.compute, self.overhead = total, compute, max(total - compute, 0.0)

    def __repr__(self) -> str:
        return f"StepTimes(total={self.total:.6f}, compute={self.compute:.6f}, overhead={self.overhead:.6f})"


class DataParallel:
    """Data-parallel calls of one compiled function over ``workers`` Ray actors.

    ``function`` takes a shard of a batch in the parameters named in ``sharded`` (their first
    axis is the shard size it was compiled for) and shared arrays (weights) in the others; a
    ``value_and_grad`` export is the usual one. Calling the ``DataParallel`` with the global
    batch (a multiple of the shard size along the first axis) and the shared arrays returns
    the mean over shards of each result, that is the loss and gradients of the global batch
    when the loss is a mean over examples. Shard k goes to worker k mod ``workers``; the mean
    is taken in shard order, so the result does not depend on the number of workers.

    Each shared array is put in the object store once per call. Workers are restarted when
    they die (``max_restarts``) and their calls retried.
    """

    def __init__(
        self,
        module: Module,
        function: str,
        workers: int,
        sharded: Sequence[str],
        *,
        num_cpus: float = 1,
        max_restarts: int = -1,
    ) -> None:
        f = module[function]
        names = [p[0] for p in f.params]
        unknown = [s for s in sharded if s not in names]
        if unknown or not sharded:
            raise ValueError(f"sharded names parameters of `{function}` ({', '.join(names)}), got {list(sharded)}")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.sharded = [names.index(s) for s in sharded]
        sizes = {tuple(f.params[i][2][:1]) for i in self.sharded}
        if len(sizes) != 1 or sizes == {()}:
            raise ValueError(f"the sharded parameters of `{function}` must share a first axis: {f.params}")
        self.shard_size = next(iter(sizes))[0]
        self.function = function
        self.params = f.params
        # Kept for the actors' lifetime: a restarted actor loads the module again from it.
        self.module_ref = ray.put(module)
        actor = ray.remote(ModuleWorker).options(
            num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=-1 if max_restarts else 0
        )
        self.workers: List[Any] = [actor.remote(self.module_ref) for _ in range(workers)]
        self.last: Optional[StepTimes] = None

    def close(self) -> None:
        """Stops the workers, freeing their CPUs."""
        for w in self.workers:
            ray.kill(w, no_restart=True)
        self.workers = []

    def __call__(self, *args: np.ndarray) -> Tuple[np.ndarray, ...]:
        if not self.workers:
            raise RuntimeError("this DataParallel is closed")
        if len(args) != len(self.params):
            raise TypeError(f"`{self.function}` takes {len(self.params)} arguments, got {len(args)}")
        start = time.perf_counter()
        batch = [np.asarray(args[i]) for i in self.sharded]
        rows = batch[0].shape[0] if batch[0].ndim else 0
        if rows == 0 or rows % self.shard_size or any(b.shape[:1] != (rows,) for b in batch):
            raise ValueError(
                f"the sharded arguments of `{self.function}` need a first axis of one multiple of "
                f"{self.shard_size}, got {[b.shape for b in batch]}"
            )
        count = rows // self.shard_size
        shards = [[b[k * self.shard_size : (k + 1) * self.shard_size] for b in batch] for k in range(count)]
        shared = [ray.put(a) for i, a in enumerate(args) if i not in self.sharded]
        n = len(self.workers)
        calls = [
            w.call_shards.remote(self.function, self.sharded, shards[k::n], *shared)
            for k, w in enumerate(self.workers)
            if shards[k::n]
        ]
        answers = ray.get(calls)
        results: List[Tuple[np.ndarray, ...]] = [()] * count
        for k, (shard_results, _) in enumerate(answers):
            results[k::n] = shard_results
        mean = [np.array(r, copy=True) for r in results[0]]
        for r in results[1:]:
            for m, x in zip(mean, r):
                np.add(m, x, out=m)
        for m in mean:
            np.divide(m, m.dtype.type(count), out=m)
        self.last = StepTimes(time.perf_counter() - start, max(seconds for _, seconds in answers))
        return tuple(mean)


class BatchFunction:
    """A compiled function applied to batches, for ``Dataset.map_batches``.

    The parameters named in ``columns`` take the batch's columns of the same names, with the
    batch as their first axis; ``constants`` gives the others (weights). A batch of any size
    is cut into the compiled size, the last piece padded by repeating its last row and the
    padding's results dropped. The results become columns named by ``outputs`` (default: the
    function's result names).

        ds.map_batches(BatchFunction, fn_constructor_kwargs=dict(module=ref, function="predict",
                       columns=["x"], constants=weights), batch_size=64, concurrency=2)
    """

    def __init__(
        self,
        module: Any,
        function: str,
        columns: Sequence[str],
        constants: Mapping[str, np.ndarray],
        outputs: Optional[Sequence[str]] = None,
    ) -> None:
        self.f = _module(module)[function]
        names = [p[0] for p in self.f.params]
        if sorted([*columns, *constants]) != sorted(names):
            raise ValueError(f"`{function}` takes {names}: give each once, in columns or constants")
        self.columns = list(columns)
        self.size = self.f.params[names.index(self.columns[0])][2][0]
        self.args: Dict[str, Any] = dict(constants)
        self.outputs = list(outputs) if outputs is not None else [r[0] for r in self.f.results]
        if len(self.outputs) != len(self.f.results):
            raise ValueError(f"`{function}` has {len(self.f.results)} results, got {len(self.outputs)} output names")

    def __call__(self, batch: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        rows = len(batch[self.columns[0]])
        pieces: List[List[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, rows, self.size):
            take = min(self.size, rows - start)
            for c in self.columns:
                piece = np.asarray(batch[c][start : start + take])
                if take < self.size:
                    piece = np.concatenate([piece, np.repeat(piece[-1:], self.size - take, axis=0)])
                self.args[c] = piece
            out = self.f(**self.args)
            for acc, r in zip(pieces, out if isinstance(out, tuple) else (out,)):
                acc.append(r[:take])
        return {name: np.concatenate(p) for name, p in zip(self.outputs, pieces)}
