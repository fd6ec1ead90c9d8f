"""Writes tests/fixtures/mlp_jax.json: the loss of examples/mlp.kn and its gradients with
respect to w1, b1, w2 and b2, computed by JAX on the deterministic inputs of examples/c/main.c.
tests/autodiff.rs checks kiln's value_and_grad (train_step) against it.

Also writes tests/fixtures/loops_jax.json: the functions of tests/fixtures/loops.kn written with
lax.scan, lax.fori_loop, lax.cond and jax.vmap in float64, their values and gradients with respect to
every parameter, on the inputs the file lists (float32 patterns, widened).

Also writes tests/fixtures/indexing_jax.json: the functions of tests/fixtures/indexing.kn written
with jax.numpy indexing, .at updates, take, take_along_axis and lax.dynamic_(update_)slice in
float64, their results and the gradients of energy(result) with respect to the float parameters;
and tests/fixtures/ops_jax.json likewise for tests/fixtures/ops.kn (jax.nn and jax.numpy ops).

Run once, with JAX from PyPI:  python3 -m venv /tmp/jax && /tmp/jax/bin/pip install jax
                               /tmp/jax/bin/python scripts/jax_fixture.py
"""
import json
import pathlib

import jax
import jax.numpy as jnp
import jax.scipy.special
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


def gru_scan(checkpoint):
    """loops.kn's gru, its step wrapped in jax.checkpoint when `checkpoint`."""

    def loss(h0, xs, wz, uz, wh, uh):
        def step(h, x):
            z = jax.nn.sigmoid(x @ wz + h @ uz)
            c = jnp.tanh(x @ wh + (h * z) @ uh)
            nxt = (1.0 - z) * h + z * c
            return nxt, nxt

        h, hs = jax.lax.scan(jax.checkpoint(step) if checkpoint else step, h0, xs)
        return jnp.sum(hs * hs) * 0.5 + jnp.sum(h)

    return loss


gru = gru_scan(False)
gru_checkpointed = gru_scan(True)


def twoway(xs, ws, a):
    def step(carry, row):
        s, p = carry
        x, w = row
        nxt = jnp.sin(s) * w + x
        return (nxt, p * (1.0 + w * 0.1)), (nxt * p, w * jnp.sum(x))

    (s, p), (u, v) = jax.lax.scan(step, (a, jnp.float64(1.0)), (xs, ws), reverse=True)
    total = jax.lax.fori_loop(0, u.shape[0], lambda i, acc: acc + jnp.sum(u[i] * u[i]), jnp.float64(0.0))
    return jnp.sum(s) + p + total + jnp.sum(v)


def rate(y, k):
    return -k * y + jnp.sin(y[::-1])


def rk4_loop(checkpoint):
    """loops.kn's rk4, its step wrapped in jax.checkpoint when `checkpoint`."""

    def loss(y0, k):
        def step(i, y):
            k1 = rate(y, k)
            k2 = rate(y + 0.05 * k1, k)
            k3 = rate(y + 0.05 * k2, k)
            k4 = rate(y + 0.1 * k3, k)
            return y + (0.1 / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

        y = jax.lax.fori_loop(0, 10, jax.checkpoint(step) if checkpoint else step, y0)
        return jnp.sum(y * y)

    return loss


rk4 = rk4_loop(False)
rk4_checkpointed = rk4_loop(True)


def branchy(x, t):
    y = jax.lax.cond(jnp.sum(x) > t, lambda: jnp.sin(x) * t, lambda: x * x - t)
    return jnp.sum(y * y)


def mlp_loss(w1, w2, x, y):
    p = jnp.tanh(x @ w1) @ w2
    return jnp.sum((p - y) * (p - y))


def norms(w1, w2, xs, ys):
    g1, g2 = jax.vmap(jax.grad(mlp_loss, argnums=(0, 1)), in_axes=(None, None, 0, 0))(w1, w2, xs, ys)
    return jnp.sum(jnp.sqrt(jnp.sum(g1 * g1, axis=(1, 2)) + jnp.sum(g2 * g2, axis=(1, 2))))


def rnn_last(h0, xs, w):
    def step(h, x):
        nxt = jnp.tanh(h @ w + x)
        return nxt, jnp.sum(nxt)

    h, _ = jax.lax.scan(step, h0, xs)
    return jax.lax.cond(jnp.sum(h) > 0.0, lambda: h * 2.0, lambda: h - 1.0)


def sequences(h0, xss, w):
    hs = jax.vmap(rnn_last, in_axes=(None, 0, None))(h0, xss, w)
    return jnp.sum(hs * hs)


# name: (function, [(shape, seed, scale) per parameter])
LOOPS = {
    "gru": (gru, [((4,), 1, 0.5), ((5, 3), 2, 1.0), ((3, 4), 3, 0.5), ((4, 4), 4, 0.5), ((3, 4), 5, 0.5), ((4, 4), 6, 0.5)]),
    "gru_checkpointed": (gru_checkpointed, [((4,), 1, 0.5), ((5, 3), 2, 1.0), ((3, 4), 3, 0.5), ((4, 4), 4, 0.5), ((3, 4), 5, 0.5), ((4, 4), 6, 0.5)]),
    "twoway": (twoway, [((6, 2), 7, 1.0), ((6,), 8, 0.8), ((2,), 9, 0.5)]),
    "rk4": (rk4, [((2,), 10, 1.0), ((2,), 11, 0.5)]),
    "rk4_checkpointed": (rk4_checkpointed, [((2,), 10, 1.0), ((2,), 11, 0.5)]),
    "branchy": (branchy, [((3,), 12, 1.0), ((), 13, 0.5)]),
    "norms": (norms, [((3, 8), 14, 0.5), ((8, 2), 15, 0.5), ((6, 3), 16, 1.0), ((6, 2), 17, 1.0)]),
    "sequences": (sequences, [((3,), 18, 0.5), ((4, 5, 3), 19, 1.0), ((3, 3), 20, 0.7)]),
}


def loops():
    jax.config.update("jax_enable_x64", True)
    fixture = {"jax_version": jax.__version__, "functions": {}}
    for name, (f, specs) in LOOPS.items():
        args = [jnp.asarray(pattern(shape, seed, scale).astype(np.float64)) for shape, seed, scale in specs]
        value, grads = jax.value_and_grad(f, argnums=tuple(range(len(args))))(*args)
        fixture["functions"][name] = {
            "inputs": [{"shape": list(shape), "seed": seed, "scale": scale} for shape, seed, scale in specs],
            "value": float(value),
            "grads": [np.asarray(g, dtype=np.float64).ravel().tolist() for g in grads],
        }
    out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "loops_jax.json"
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {out}")


def energy(y):
    """indexing.kn's energy of a result: smooth and different for every element."""
    y = jnp.ravel(y)
    return jnp.sum(y * y) * 0.5 + jnp.sum(jnp.sin(y))


def f(shape, seed, scale=1.0):
    return ("f", shape, seed, scale)


def ints(values):
    return ("i", np.shape(values), values)


def ints64(values):
    return ("l", np.shape(values), values)


def uints(values):
    return ("u", np.shape(values), values)


def bytes_(values):
    return ("b", np.shape(values), values)


# Integer parameter kinds: numpy dtype and the fixture's key for the values.
INTEGER_KINDS = {"i": (np.int32, "ints"), "l": (np.int64, "i64s"), "u": (np.uint32, "u32s"), "b": (np.uint8, "u8s")}


# name: (function, parameters); reads that clamp use mode="clip", whose gradient reaches the
# element read (kiln's, for every clamped read; x[idx] in JAX drops it).
INDEXING = {
    "rows": (lambda x, idx: x.at[idx].get(mode="clip"), [f((5, 3), 1), ints([[0, -1, 4], [7, -6, 2]])]),
    "cols": (lambda x, idx: x.at[:, idx].get(mode="clip"), [f((4, 5), 2), ints([4, -2, 9])]),
    "pair": (lambda x, i, j: x.at[i, j].get(mode="clip"), [f((5, 6), 3), ints([[0], [-1], [6]]), ints([1, -7, 5, 2])]),
    "apart": (lambda x, i, j: x.at[i, :, j].get(mode="clip"), [f((4, 3, 5), 4), ints([1, -1]), ints([4, 0])]),
    "mixed": (lambda x, idx: x.at[::2, idx, 1].get(mode="clip"), [f((6, 5, 4), 5), ints([0, -1, 3])]),
    "taken": (lambda x, idx: jnp.take(x, idx, axis=1, fill_value=-2.0), [f((4, 5), 6), ints([1, 5, -6])]),
    "taken_flat": (lambda x, idx: jnp.take(x, idx, mode="clip"), [f((4, 5), 7), ints([[0, 19], [-1, 25]])]),
    "along": (lambda x, idx: jnp.take_along_axis(x, idx, axis=1, fill_value=0.5),
              [f((4, 5), 8), ints([[0, 4], [5, -1], [2, 2], [-6, 1]])]),
    "along_broadcast": (lambda x, idx: jnp.take_along_axis(x, idx, axis=2, mode="clip"),
                        [f((3, 1, 4), 9), ints([[[0, 3], [-1, 9]]])]),
    "got": (lambda x, idx: x.at[idx].get(mode="fill", fill_value=3.0), [f((5, 3), 10), ints([1, -1, 5, -6])]),
    "added": (lambda x, idx, v: x.at[idx].add(v), [f((5, 3), 11), ints([1, 3, 1, 7]), f((4, 3), 12)]),
    "added_pairs": (lambda x, i, j, v: x.at[i, j].add(v),
                    [f((5, 6), 13), ints([[0], [4], [-1]]), ints([1, 1, 6, -2]), f((3, 4), 14)]),
    "set_strided": (lambda x, idx, v: x.at[1:5:2, idx].set(v), [f((6, 5), 15), ints([0, -1]), f((2, 2), 16)]),
    "set_scalar": (lambda x, idx, v: x.at[idx, 1:3].set(v), [f((4, 5), 17), ints([3, 0]), f((), 18)]),
    "maxed": (lambda x, idx, v: x.at[idx].max(v), [f((5, 3), 19), ints([2, 0, 2, 4]), f((4, 3), 20, 1.5)]),
    "minned": (lambda x, idx, v: x.at[idx].min(v), [f((5, 3), 21), ints([2, 0, 2, 4]), f((4, 3), 22, 1.5)]),
    "subtracted": (lambda x, v: x.at[2].subtract(v), [f((4, 5), 23), f((5,), 24)]),
    # JAX differentiates scatter_mul's updates only with unique indices; repeated ones are
    # checked for values here and against central differences in tests/autodiff.rs.
    "multiplied": (lambda x, idx, v: x.at[idx].multiply(v, unique_indices=True),
                   [f((5, 3), 46), ints([3, 0, -1]), f((3, 3), 47)]),
    "divided_powered": (lambda x, idx, v: x.at[idx].divide(v) + jnp.abs(x).at[idx].power(v * 0.5),
                        [f((5, 3), 48), ints([1, 3, 1, 7]), f((4, 3), 49)], False),
    "window": (lambda x, i: jax.lax.dynamic_slice(x, (i, jnp.int32(-2)), (2, 2)), [f((4, 5), 25), ints(3)]),
    "new_axes": (lambda x, idx, labels: x[:, None, idx] + jnp.take_along_axis(x, labels[:, None], axis=-1).reshape(4, 1, 1),
                 [f((4, 5), 28), ints([4, -1, 0]), ints([0, 3, 4, 1])]),
    "ellipses": (lambda x, v: x.at[..., 0].set(v) + jnp.broadcast_to((x[..., 1] + x[None, ..., 2][0]).reshape(2, 3, 1), (2, 3, 4)),
                 [f((2, 3, 4), 29), f((2, 3), 30)]),
    "patched": (lambda x, u, i: jax.lax.dynamic_update_slice(x, u, (i, jnp.int32(3))), [f((4, 5), 26), f((2, 3), 27), ints(-1)]),
}


def tri(x):
    return jnp.tril(x, k=-1) + jnp.triu(x, k=2)


def rounding(x):
    return jnp.floor(x * 3.0) + jnp.ceil(x * 2.0) + jnp.round(x * 4.0) + jnp.trunc(x * 5.0) + jnp.sign(x)


def sixteen_bit(x, y):
    b, h = (x * 3.0).astype(jnp.bfloat16), (y * 3.0).astype(jnp.float16)
    f = lambda v: jnp.ravel(v).astype(jnp.float64)
    return jnp.concatenate([f(b * b + 1.0), f(b - b[::-1] / 3.0), f(h * h - h / 7.0), f(jnp.sum(b, axis=1)),
                            f(jnp.sum(h, axis=0)), f(jnp.mean(b, axis=1)), f(jnp.var(h, axis=1)), f(b @ b.T),
                            f(h @ h.T), f((x * 1.0e4).astype(jnp.float16)), f((x * 1.0e30).astype(jnp.bfloat16)),
                            f(jnp.maximum(b, 0.25)), f(b.astype(jnp.float32) + h.astype(jnp.float32))])


def half_math(x):
    b, h = x.astype(jnp.bfloat16), x.astype(jnp.float16)
    f = lambda v: jnp.ravel(v).astype(jnp.float64)
    return jnp.concatenate([f(jnp.exp(b)), f(jnp.tanh(h * 2.0)), f(jax.nn.softmax(b, axis=1)), f(jnp.log1p(h * h))])


def unsigned(a, b):
    s = jnp.remainder(b, 40)
    return jnp.stack([a + b, a - b, a * b, -a, jnp.floor_divide(a, b), jnp.remainder(a, b), jnp.maximum(a, b),
                      (a < b).astype(jnp.uint32), jnp.right_shift(a, s), jnp.left_shift(a, s),
                      jax.lax.shift_right_arithmetic(a, s), jnp.bitwise_not(a) ^ (b | 7), jnp.abs(a) + jnp.sign(b),
                      jnp.cumsum(a), jnp.max(a, keepdims=True) + jnp.sum(b, keepdims=True, dtype=jnp.uint32) + jnp.zeros_like(a)])


def unsigned_mixed(a, c, i, x):
    f = lambda v: v.astype(jnp.float64)
    return jnp.concatenate([f(a + i), f(c + i), f(a + c), f(c * jnp.uint8(3) + jnp.uint8(200)), f(a.astype(jnp.float32)),
                            f((x * 3.0e9).astype(jnp.uint32)), f((x * 300.0).astype(jnp.uint8)), f(a.astype(jnp.int32)),
                            f(a + 4294967295), x[c % 8]])


def logic(x, y):
    f = lambda b: b.astype(jnp.float64)
    return (f(jnp.logical_xor(x > 0.0, y > 0.0)) + f(jnp.logical_and(x, y > 0.5)) * 2.0
            + f(jnp.logical_not(x > 0.3)) * 4.0 + f(jnp.logical_or(x > 0.9, y < -0.9)) * 8.0)


# name: (function, parameters, whether energy(result) is differentiated)
OPS = {
    "gelu_tanh": (lambda x: jax.nn.gelu(x), [f((3, 4), 1, 2.0)], True),
    "gelu_exact": (lambda x: jax.nn.gelu(x, approximate=False), [f((3, 4), 2, 2.0)], True),
    "swish": (jax.nn.silu, [f((3, 4), 3, 2.0)], True),
    "soft": (lambda x: jax.nn.softplus(x * 40.0), [f((3, 4), 4)], True),
    "clipped": (lambda x: jnp.clip(x, -0.5, 0.7) + jnp.clip(x, max=0.2), [f((3, 4), 5)], True),
    "variance": (lambda x: jnp.var(x, axis=1, ddof=1), [f((4, 5), 6)], True),
    "spread": (lambda x: jnp.std(x, axis=0, keepdims=True), [f((4, 5), 7)], True),
    "shapes": (lambda x: jnp.squeeze(jnp.expand_dims(jnp.stack([x, jnp.flip(x, axis=1)], axis=1), (0, 3))),
               [f((3, 4), 8)], True),
    "flipped": (jnp.flip, [f((3, 4), 9)], True),
    "tri": (tri, [f((2, 4, 4), 10)], True),
    "eyes": (lambda x: x * jnp.eye(3, 5, k=1, dtype=jnp.float64), [f((3, 5), 11)], True),
    "rounding": (rounding, [f((3, 4), 12, 2.0)], True),
    "running": (lambda x: jnp.cumsum(x, axis=1) + jnp.cumprod(x, axis=0) + jax.lax.cummax(x, axis=1)
                - jax.lax.cummin(x, axis=0), [f((3, 4), 19, 1.5)], True),
    "running_flat": (jnp.cumsum, [f((3, 4), 20)], True),
    "padded": (lambda x: jnp.pad(x, [[2, 2], [0, 3]], constant_values=0.5) + jnp.pad(x, [[3, 1], [1, 2]], mode="edge")
               + jnp.pad(x, [[2, 2], [3, 0]], mode="reflect"), [f((3, 4), 21)], True),
    "masked": (lambda x: jnp.sum(x, axis=1, where=x > 0.0) + jnp.mean(x, axis=1, where=x < 0.9)
               + jnp.max(x, axis=1, where=x < 0.3, initial=-1.0) + jnp.min(x, axis=1, initial=0.1), [f((3, 4), 22)], True),
    "ein_attention": (lambda q, k: jnp.einsum("bqd,bkd->bqk", q, k), [f((2, 3, 4), 23), f((2, 5, 4), 24)], True),
    "ein_chain": (lambda a, b, c: jnp.einsum("ij,jk,kl->il", a, b, c) + jnp.einsum("ij,jk", a, b) @ c
                  + jnp.einsum("ij->ji", a).T @ b @ c, [f((3, 4), 25), f((4, 5), 26), f((5, 2), 27)], True),
    "ein_rows": (lambda a, b: jnp.broadcast_to(jnp.einsum("ij,ij->i", a, b) + jnp.einsum("ij->i", a), (4, 3)) * a.T
                 + jnp.einsum("i,j->ji", a[:, 0], b[0]), [f((3, 4), 28), f((3, 4), 29)], True),
    "float_division": (lambda x, y: jnp.remainder(x, y) + jnp.floor_divide(x * 4.0, y) + jnp.fmod(x * 3.0, y),
                       [f((3, 4), 30), f((3, 4), 31, 0.7)], True),
    "int_division": (lambda a, b: jnp.remainder(a, b) + 100 * jnp.floor_divide(a, b) + 10000 * jnp.fmod(a, b),
                     [ints([7, -7, 7, -7, 0, 5, -9, 12]), ints([3, 3, -3, -3, 4, 0, 2, -5])], False),
    "bits": (lambda a, b: jnp.bitwise_xor(jnp.bitwise_and(a, b) + jnp.left_shift(a, jnp.remainder(b, 8)), jnp.right_shift(a, 2))
             + jax.lax.shift_right_logical(a, jnp.int32(28)) + jnp.bitwise_not(b) + jnp.bitwise_or(a, 5),
             [ints([7, -7, 123456, -98765, 0, 1 << 30, -(1 << 31), 2147483647]), ints([3, 5, -3, 12, 4, 0, 31, -1])], False),
    "far_shifts": (lambda a, b: jnp.left_shift(a, b) + jnp.right_shift(a, b) + jax.lax.shift_right_logical(a, b),
                   [ints64([5, -5, -1, 1 << 40, -(1 << 50), 7]), ints64([63, 64, 70, -1, 3, 0])], False),
    "products": (lambda x: jnp.prod(jnp.where(jnp.abs(x) < 0.4, 0.0, x), axis=1)
                 + jnp.prod(x * 1.5, axis=1, where=x > -0.5) + jnp.prod(x[:, :2]), [f((4, 5), 32, 1.2)], True),
    "inverse_erf": (lambda x: jax.scipy.special.erfinv(x * 0.9)
                    + jax.scipy.special.erfinv(jnp.clip(x * 2.0, -0.99999999, 0.99999999)), [f((3, 4), 33)], True),
    "halves": (lambda: jnp.round(jnp.arange(8, dtype=jnp.float64) * 0.5 - 2.0), [], False),
    "largest": (lambda x: jnp.argmax(x, axis=1), [f((4, 5), 13)], False),
    "smallest": (jnp.argmin, [f((4, 5), 14)], False),
    "nan_largest": (lambda x: jnp.argmax(jnp.log(x)), [f((6,), 15)], False),
    "nans": (lambda x: jnp.isnan(jnp.log(x)).astype(jnp.float64) + 2.0 * jnp.isfinite(jnp.log(x + 0.5)).astype(jnp.float64),
             [f((6,), 16)], False),
    "logic": (logic, [f((6,), 17), f((6,), 18)], False),
    "sorted": (lambda x: jnp.sort(x, axis=1) + 2.0 * jnp.sort(x, axis=0, descending=True), [f((4, 5), 37)], True),
    "top": (lambda x: jax.lax.top_k(x, 3)[0], [f((4, 6), 40)], True),
    "ranks": (lambda x: flat(jnp.argsort(jnp.round(x * 2.0), axis=1), jnp.argsort(jnp.round(x * 2.0), axis=0, descending=True),
                             jax.lax.top_k(jnp.round(x * 2.0), 4)[1]), [f((4, 6), 38)], False),
    "special_order": (lambda x: flat(jnp.argsort(jnp.concatenate([jnp.log(x), jnp.log(x) * 0.0, -jnp.log(x)])),
                                     jnp.nan_to_num(jnp.sort(jnp.concatenate([jnp.log(x), jnp.log(x) * 0.0])), nan=99.0)),
                      [f((8,), 39)], False),
    "sixteen_bit": (sixteen_bit, [f((4, 6), 42), f((4, 6), 43)], False),
    "half_math": (half_math, [f((4, 6), 44, 2.0)], False),
    "unsigned": (unsigned, [uints([7, 4294967295, 123456, 3000000000, 0, 1 << 31, 5, 2147483647]),
                            uints([3, 5, 4294967290, 12, 4, 0, 31, 1])], False),
    "unsigned_mixed": (unsigned_mixed, [uints([7, 4294967295, 123456, 3000000000, 0, 1 << 31, 5, 2147483647]),
                                        bytes_([0, 255, 17, 128, 3, 9, 200, 6]), ints([-5, 7, -1, 0, 12, -100, 3, 2]),
                                        f((8,), 34, 1.5)], False),
}


def bits_of(x):
    return jax.random.key_data(x).astype(jnp.float64).ravel()


def flat(*parts):
    return jnp.concatenate([jnp.ravel(p).astype(jnp.float64) for p in parts])


def key_stream(seed):
    k = jax.random.key(seed)
    a, b = jax.random.split(k)
    ks = jax.random.split(b, (2, 3))
    return flat(bits_of(k), bits_of(a), bits_of(ks), bits_of(jax.random.fold_in(a, jnp.int32(123456))),
                bits_of(jax.random.fold_in(k, jnp.int32(-7))), bits_of(jax.random.split(ks[1, 2], 1)))


# name: (function, parameters, False: no gradients): jax.random's bits and draws from keys made
# from the seeds given (scalar i32 or i64), in float64; tests/fixtures/random.kn computes the same.
# Dtypes are explicit: with 64-bit types enabled, jax.random's defaults are float64 and uint64.
RANDOM = {
    "keys": (key_stream, [ints(42)], False),
    "wide_seed": (lambda s: flat(bits_of(jax.random.key(s)), bits_of(jax.random.key(-(1 << 40) - 3))), [ints64(5 * (1 << 33) + 11)], False),
    "bits": (lambda s: flat(jax.random.bits(jax.random.key(s), (3, 4), dtype=jnp.uint32),
                            jax.random.bits(jax.random.fold_in(jax.random.key(s), 9), (7,), dtype=jnp.uint8),
                            jax.random.bits(jax.random.key(s), dtype=jnp.uint32)), [ints(0)], False),
    "uniforms": (lambda s: flat(jax.random.uniform(jax.random.key(s), (3, 5), jnp.float32, minval=-2.0, maxval=3.0),
                                jax.random.uniform(jax.random.split(jax.random.key(s))[1], (4,), dtype=jnp.float64),
                                jax.random.uniform(jax.random.key(s + 1), (2, 3), jnp.float32, minval=jnp.array([-5.0, 2.5, 10.0], jnp.float32),
                                                   maxval=jnp.float32(20.0))), [ints(7)], False),
    "normals": (lambda s: flat(jax.random.normal(jax.random.key(s), (4, 6), jnp.float32),
                               jax.random.normal(jax.random.key(s), (5,), dtype=jnp.float64)), [ints(3)], False),
    "bernoullis": (lambda s, p: flat(jax.random.bernoulli(jax.random.key(s), p.astype(jnp.float32)),
                                     jax.random.bernoulli(jax.random.key(s + 5), jnp.float32(0.3), (2, 4))),
                   [ints(11), f((6,), 35, 1.0)], False),
    "half_draws": (lambda s, x: flat(jax.random.uniform(jax.random.key(s), (7,), jnp.float16),
                                     jax.random.uniform(jax.random.key(s), (7,), jnp.bfloat16, minval=-2.0, maxval=3.0),
                                     jax.random.normal(jax.random.key(s + 1), (6,), jnp.bfloat16),
                                     jax.random.normal(jax.random.key(s + 1), (6,), jnp.float16),
                                     jax.random.categorical(jax.random.key(s + 2), x.astype(jnp.bfloat16)),
                                     jax.random.bernoulli(jax.random.key(s + 3), (x[0] * 0.5 + 0.5).astype(jnp.float16))),
                   [ints(6), f((4, 5), 45, 2.0)], False),
    "permutations": (lambda s, x: flat(jax.random.permutation(jax.random.key(s), 10),
                                       jax.random.permutation(jax.random.key(s + 1), x, axis=1),
                                       jax.random.permutation(jax.random.key(s + 2), x, independent=True)),
                     [ints(4), f((3, 5), 41)], False),
    "categoricals": (lambda s, logits: flat(jax.random.categorical(jax.random.key(s), logits.astype(jnp.float32)),
                                            jax.random.categorical(jax.random.key(s), logits[0].astype(jnp.float32), shape=(9,)),
                                            jax.random.categorical(jax.random.key(s + 2), logits.astype(jnp.float32), axis=0,
                                                                   shape=(2, 5))),
                     [ints(5), f((4, 5), 36, 3.0)], False),
}


def agreed(table, file):
    """Writes tests/fixtures/<file>: each function's result on its parameters (float patterns
    or the integers listed) and, where asked, the gradients of energy(result) with respect to
    the float parameters."""
    jax.config.update("jax_enable_x64", True)
    fixture = {"jax_version": jax.__version__, "functions": {}}
    for name, (fn, specs, *smooth) in table.items():
        args = [jnp.asarray(pattern(s[1], s[2], s[3]).astype(np.float64)) if s[0] == "f"
                else jnp.asarray(np.array(s[2], dtype=INTEGER_KINDS[s[0]][0])) for s in specs]
        floats = tuple(k for k, s in enumerate(specs) if s[0] == "f")
        value = fn(*args)
        grads = jax.grad(lambda *a: energy(fn(*a)), argnums=floats)(*args) if smooth in ([], [True]) else []
        fixture["functions"][name] = {
            "inputs": [{"shape": list(s[1]), "seed": s[2], "scale": s[3]} if s[0] == "f" else
                       {"shape": list(s[1]), INTEGER_KINDS[s[0]][1]: np.ravel(np.array(s[2])).tolist()}
                       for s in specs],
            "value": np.asarray(value, dtype=np.float64).ravel().tolist(),
            "grads": [np.asarray(g, dtype=np.float64).ravel().tolist() for g in grads],
        }
    out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / file
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {out}")


class Lcg:
    """examples/gpt/main.c's generator: a 64-bit LCG (Knuth's MMIX constants), its high 32 bits."""

    def __init__(self):
        self.state = 1

    def u32(self):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return self.state >> 32

    def uniform(self):
        return np.float32(self.u32() >> 8) / np.float32(16777216.0)


GPT_D, GPT_LAYERS, GPT_HEADS, GPT_CONTEXT, GPT_VOCAB = 128, 4, 4, 64, 16
# (shape, half-width of the uniform initial values; "gain" for ones), in gpt.kn's `unpack` order.
GPT_PARTS = [((16, 128), 0.0346), ((64, 128), 0.0346), ((4, 128), "gain"), ((4, 128), 0.0),
             ((4, 128, 384), 0.0346), ((4, 128, 128), 0.0122), ((4, 128), "gain"), ((4, 128), 0.0),
             ((4, 128, 512), 0.0346), ((4, 512), 0.0), ((4, 512, 128), 0.0122), ((4, 128), 0.0),
             ((128,), "gain"), ((128,), 0.0), ((128, 16), 0.0346)]


def gpt_init(rng):
    parts = []
    for shape, scale in GPT_PARTS:
        n = int(np.prod(shape))
        if scale == "gain":
            parts.append(np.ones(n, np.float32))
        elif scale == 0.0:
            parts.append(np.zeros(n, np.float32))
        else:
            parts.append(np.array([np.float32(scale) * (np.float32(2.0) * rng.uniform() - np.float32(1.0)) for _ in range(n)],
                                  np.float32))
    return np.concatenate(parts)


def gpt_unpack(p):
    out, at = [], 0
    for shape, _ in GPT_PARTS:
        n = int(np.prod(shape))
        out.append(p[at:at + n].reshape(shape))
        at += n
    return out


def layer_norm(x, g, b):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(jnp.var(x, axis=-1, keepdims=True) + 1e-5) * g + b


def gpt_logits(tokens, p):
    tok, pos, ln1g, ln1b, w_qkv, w_o, ln2g, ln2b, w_fc, b_fc, w_proj, b_proj, lnfg, lnfb, head = gpt_unpack(p)
    bsz, t = tokens.shape
    x = tok[tokens] + pos

    def block(h, w):
        g1, b1, wq, wo, g2, b2, wf, bf, wp, bp = w
        qkv = layer_norm(h, g1, b1) @ wq
        heads = lambda a: a.reshape(bsz, t, GPT_HEADS, -1).transpose(0, 2, 1, 3)
        q, k, v = heads(qkv[..., :GPT_D]), heads(qkv[..., GPT_D:2 * GPT_D]), heads(qkv[..., 2 * GPT_D:])
        scores = q @ k.transpose(0, 1, 3, 2) * jax.lax.rsqrt(jnp.float32(GPT_D / GPT_HEADS))
        weights = jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -1e9), axis=-1)
        a = h + (weights @ v).transpose(0, 2, 1, 3).reshape(bsz, t, GPT_D) @ wo
        return a + jax.nn.gelu(layer_norm(a, g2, b2) @ wf + bf) @ wp + bp, None

    h, _ = jax.lax.scan(block, x, (ln1g, ln1b, w_qkv, w_o, ln2g, ln2b, w_fc, b_fc, w_proj, b_proj))
    return layer_norm(h, lnfg, lnfb) @ head


def gpt_loss(p, text):
    logits = gpt_logits(text[:, :GPT_CONTEXT], p)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, text[:, 1:, None], axis=-1))


@jax.jit
def gpt_step(p, m, v, t, text):
    loss, g = jax.value_and_grad(gpt_loss)(p, text)
    m2 = 0.9 * m + 0.1 * g
    v2 = 0.95 * v + 0.05 * g * g
    m_hat = m2 / (1.0 - jnp.power(jnp.float32(0.9), t))
    v_hat = v2 / (1.0 - jnp.power(jnp.float32(0.95), t))
    return loss, p - 1e-3 * (m_hat / (jnp.sqrt(v_hat) + 1e-8) + 0.01 * p), m2, v2


def gpt(steps=50):
    """Writes tests/fixtures/gpt_jax.json: the losses of examples/gpt's first `steps` AdamW steps,
    from main.c's initial parameters and batches, computed by the same model in JAX (float32)."""
    jax.config.update("jax_enable_x64", False)
    root = pathlib.Path(__file__).resolve().parent.parent
    text = (root / "examples" / "gpt" / "sums.txt").read_text()
    codes = np.array(["0123456789+=\n".index(c) for c in text], np.int32)
    rng = Lcg()
    p = jnp.asarray(gpt_init(rng))
    m, v = jnp.zeros_like(p), jnp.zeros_like(p)
    losses = []
    for s in range(steps):
        starts = [rng.u32() % (len(codes) - 65) for _ in range(16)]
        batch = jnp.asarray(np.stack([codes[a:a + 65] for a in starts]))
        loss, p, m, v = gpt_step(p, m, v, jnp.float32(s + 1), batch)
        losses.append(float(loss))
    out = root / "tests" / "fixtures" / "gpt_jax.json"
    out.write_text(json.dumps({"jax_version": jax.__version__, "losses": losses}, indent=1) + "\n")
    print(f"wrote {out}: loss {losses[0]:.6f} to {losses[-1]:.6f}")


if __name__ == "__main__":
    main()
    loops()
    agreed(INDEXING, "indexing_jax.json")
    agreed(OPS, "ops_jax.json")
    agreed(RANDOM, "random_jax.json")
    gpt()
