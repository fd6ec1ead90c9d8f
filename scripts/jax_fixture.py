"""Writes tests/fixtures/mlp_jax.json: the loss of examples/mlp.kn and its gradients with
respect to w1, b1, w2 and b2, computed by JAX on the deterministic inputs of examples/c/main.c.
tests/autodiff.rs checks kiln's value_and_grad (train_step) against it.

Run once, with JAX from PyPI:  python3 -m venv /tmp/jax && /tmp/jax/bin/pip install jax
                               /tmp/jax/bin/python scripts/jax_fixture.py
"""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np


def pattern(shape, seed, scale):
    """scale * sin(0.37 i + 1.7 seed) over the flattened array, as examples/c/main.c fills it."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    return (scale * np.sin(0.37 * i + 1.7 * seed)).astype(np.float32).reshape(shape)


def loss(x, labels, w1, b1, w2, b2):
    h = jax.nn.relu(x @ w1 + b1)
    logits = h @ w2 + b2
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def main():
    x = pattern((16, 32), 1, 1.0)
    w1 = pattern((32, 64), 2, 0.3)
    b1 = pattern((64,), 3, 0.1)
    w2 = pattern((64, 10), 4, 0.3)
    b2 = pattern((10,), 5, 0.1)
    labels = np.array([(i * 7) % 10 for i in range(16)], dtype=np.int32)
    value, grads = jax.value_and_grad(loss, argnums=(2, 3, 4, 5))(x, labels, w1, b1, w2, b2)
    fixture = {
        "jax_version": jax.__version__,
        "inputs": "scale * sin(0.37 i + 1.7 seed): x (1, 1.0), w1 (2, 0.3), b1 (3, 0.1), w2 (4, 0.3), b2 (5, 0.1); labels 7i mod 10",
        "loss": float(value),
        "grads": {name: np.asarray(g, dtype=np.float64).ravel().tolist() for name, g in zip(["w1", "b1", "w2", "b2"], grads)},
    }
    out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mlp_jax.json"
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {out}: loss {float(value):.6f}")


if __name__ == "__main__":
    main()
