"""kiln on Ray (kiln.ray and examples/ray), on a local cluster of three nodes."""

import pathlib
import sys

import numpy as np
import pytest
import ray

import kiln
from kiln.ray import DataParallel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "ray"))
import train  # noqa: E402  (examples/ray/train.py)


@pytest.fixture(scope="module")
def cluster():
    c = train.local_cluster(3)
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def model(cluster):
    return kiln.compile(train.SOURCE)


def parallel(model, workers):
    return DataParallel(model, "shard_step", workers, sharded=["x", "labels"])


def test_data_parallel_training_matches_one_process(model):
    steps = train.batches(8, shards=3)
    dp = parallel(model, 3)
    try:
        assert len({ray.get(w.node.remote()) for w in dp.workers}) == 3, "one worker per node"
        losses, weights = train.train(dp, train.initial_weights(), steps)
        assert dp.last.total >= dp.last.compute > 0
    finally:
        dp.close()
    single, single_weights = train.train(model.batch_step, train.initial_weights(), steps)
    np.testing.assert_allclose(losses, single, rtol=1e-5)
    assert losses[-1] < 0.8 * losses[0]
    for k in train.WEIGHTS:
        np.testing.assert_allclose(weights[k], single_weights[k], rtol=1e-4, atol=1e-6)


def test_the_result_does_not_depend_on_the_number_of_workers(model):
    steps = train.batches(3, shards=3)
    runs = []
    for workers in (1, 2, 3):
        dp = parallel(model, workers)
        try:
            runs.append(train.train(dp, train.initial_weights(), steps))
        finally:
            dp.close()
    for losses, weights in runs[1:]:
        assert losses == runs[0][0]
        assert all(np.array_equal(weights[k], runs[0][1][k]) for k in train.WEIGHTS)


def test_a_killed_worker_is_restarted_and_the_run_ends_the_same(model):
    steps = train.batches(6, shards=3)
    dp = parallel(model, 3)
    try:
        want = train.train(dp, train.initial_weights(), steps)
        victim = dp.workers[1]

        def kill(step):
            if step == 3:
                ray.kill(victim, no_restart=False)

        got = train.train(dp, train.initial_weights(), steps, before_step=kill)
    finally:
        dp.close()
    assert got[0] == want[0]
    assert all(np.array_equal(got[1][k], want[1][k]) for k in train.WEIGHTS)


def test_data_parallel_refuses_what_it_cannot_shard(model):
    with pytest.raises(ValueError, match="sharded names parameters of `shard_step`"):
        DataParallel(model, "shard_step", 2, sharded=["images"])
    dp = parallel(model, 1)
    try:
        x, labels = train.data(40, seed=5)
        w = train.initial_weights()
        with pytest.raises(ValueError, match="a first axis of one multiple of 32"):
            dp(x, labels, *(w[k] for k in train.WEIGHTS))
    finally:
        dp.close()


def test_batch_inference_with_ray_data_matches_direct_calls(model):
    weights = train.initial_weights(seed=4)
    x, _ = train.data(100, seed=3)  # 48-row batches: 32 + 16, the last piece padded
    got = train.predict_with_ray_data(model, weights, x)
    padded = np.concatenate([x, np.zeros((28, x.shape[1]), np.float32)])
    want = np.concatenate([model.predict(padded[k : k + 32], **weights) for k in range(0, 128, 32)])[:100]
    assert got.dtype == np.int32 and got.shape == (100,)
    np.testing.assert_array_equal(got, want)
