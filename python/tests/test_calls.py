"""Compiled calls from Python: results against the interpreter, and every check of arguments."""

import threading
import tracemalloc

import ml_dtypes
import numpy as np
import pytest

import kiln


def test_compiled_functions_agree_with_the_interpreter(mlp, mlp_reference, mlp_inputs):
    for name in ("loss", "predict", "train_step"):
        args = [mlp_inputs[p] for p, _, _ in mlp.functions[name].params]
        got = getattr(mlp, name)(*args)
        want = getattr(mlp_reference, name)(*args)
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        assert len(got) == len(want) == len(mlp.functions[name].results)
        for g, w, (_, dtype, shape) in zip(got, want, mlp.functions[name].results):
            assert g.dtype == np.float32 and dtype == "f32" and list(g.shape) == shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_the_loss_matches_numpy(mlp, mlp_inputs):
    i = mlp_inputs
    h = np.maximum(i["x"] @ i["w1"] + i["b1"], 0)
    logits = (h @ i["w2"] + i["b2"]).astype(np.float64)
    logz = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    want = np.mean(logz - logits[np.arange(16), i["labels"]])
    assert mlp.loss(**i).shape == ()
    np.testing.assert_allclose(mlp.loss(**i), want, rtol=1e-5)


def test_arguments_bind_by_position_then_by_name(mlp, mlp_inputs):
    i = mlp_inputs
    by_position = mlp.loss(*i.values())
    assert mlp.loss(**i) == by_position
    assert mlp.loss(i["x"], i["labels"], w2=i["w2"], b2=i["b2"], w1=i["w1"], b1=i["b1"]) == by_position
    with pytest.raises(TypeError, match=r"`loss` is missing `b2`: it takes x: f32\[16, 32\]"):
        mlp.loss(*list(i.values())[:5])
    with pytest.raises(TypeError, match="`loss` takes 6 arguments"):
        mlp.loss(*i.values(), i["b2"])
    with pytest.raises(TypeError, match="got parameter `x` twice"):
        mlp.loss(*i.values(), x=i["x"])
    with pytest.raises(TypeError, match="`loss` has no parameter `w3`"):
        mlp.loss(**i, w3=i["w2"])


def test_wrong_dtypes_and_shapes_name_the_parameter(mlp, mlp_inputs):
    i = dict(mlp_inputs)
    with pytest.raises(TypeError, match=r"parameter `labels: i32\[16\]` of `loss` is i32, got an array of int64"):
        mlp.loss(**{**i, "labels": i["labels"].astype(np.int64)})
    with pytest.raises(ValueError, match=r"parameter `w1: f32\[32, 64\]` of `loss` has shape \(32, 64\), got \(64, 32\)"):
        mlp.loss(**{**i, "w1": np.ascontiguousarray(i["w1"].T)})
    with pytest.raises(TypeError, match="parameter `x: f32.16, 32.` of `loss` takes a numpy array, got list"):
        mlp.loss(**{**i, "x": i["x"].tolist()})
    with pytest.raises(TypeError, match="is f32, got an array of >f4"):
        mlp.loss(**{**i, "x": i["x"].astype(">f4")})


def test_contiguous_inputs_are_read_in_place():
    m = kiln.compile("fn total(x: f32[4096, 4096]) -> f32 { sum(x) }\nexport total;")
    x = np.ones((4096, 4096), np.float32)  # 64 MiB
    tracemalloc.start()
    try:
        assert m.total(x) == 4096 * 4096
        _, in_place = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        # A transposed view is not C-contiguous: it is copied, and the copy shows.
        assert m.total(x.T) == 4096 * 4096
        _, copied = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert in_place < 1 << 20, in_place
    assert copied >= 64 << 20, copied


def test_results_can_be_written_into_given_arrays(mlp, mlp_inputs):
    i = [mlp_inputs[p] for p in ("x", "w1", "b1", "w2", "b2")]
    probabilities, best = np.empty((16, 10), np.float32), np.empty(16, np.float32)
    returned = mlp.predict(*i, out=(probabilities, best))
    assert returned[0] is probabilities and returned[1] is best
    np.testing.assert_allclose(probabilities, mlp.predict(*i)[0])
    np.testing.assert_allclose(best, probabilities.max(1))
    with pytest.raises(TypeError, match="has 2 results, so out= takes a tuple of 2 arrays"):
        mlp.predict(*i, out=probabilities)
    with pytest.raises(TypeError, match=r"the out= array for result `out0: f32\[16, 10\]` of `predict` has dtype float64"):
        mlp.predict(*i, out=(probabilities.astype(np.float64), best))
    with pytest.raises(ValueError, match="must be C-contiguous and writeable"):
        mlp.predict(*i, out=(np.empty((10, 16), np.float32).T, best))
    read_only = np.empty(16, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="must be C-contiguous and writeable"):
        mlp.predict(*i, out=(probabilities, read_only))


def test_outputs_may_not_share_memory_with_inputs():
    m = kiln.compile("fn double(x: f32[8]) -> f32[8] { x + x }\nexport double;")
    x = np.arange(8, dtype=np.float32)
    with pytest.raises(ValueError, match="shares memory with an input"):
        m.double(x, out=x)
    buffer = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        m.double(buffer[:8], out=buffer[4:12])
    np.testing.assert_array_equal(m.double(buffer[:8], out=buffer[8:]), np.zeros(8))


def test_python_scalars_are_weakly_typed():
    m = kiln.compile(
        "fn f(a: f32, n: i32, on: bool) -> f32 { where(on, a * n, 0.0) }\nexport f;"
    )
    assert m.f(1.5, 4, True) == np.float32(6.0)
    assert m.f(2, 3, False) == 0.0
    with pytest.raises(TypeError, match="parameter `n: i32` of `f` cannot take the Python float 4.5"):
        m.f(1.0, 4.5, True)
    with pytest.raises(TypeError, match="parameter `on: bool` of `f` cannot take the Python int 1"):
        m.f(1.0, 4, 1)
    with pytest.raises(OverflowError):
        m.f(1.0, 2**40, True)


def test_numpy_scalars_keep_their_dtype():
    m = kiln.compile("fn f(a: f32, n: i64) -> f32 { a * n }\nexport f;")
    assert m.f(np.float32(1.5), np.int64(4)) == 6.0
    with pytest.raises(TypeError, match="parameter `a: f32` of `f` is f32, got an array of float64"):
        m.f(np.float64(1.5), 4)


def test_hostile_arguments_raise_and_never_crash():
    m = kiln.compile("fn f(x: f32[2, 3], n: i32) -> f32[2, 3] { x * n }\nexport f;")
    x = np.ones((2, 3), np.float32)
    hostile = [
        None, "x", b"bytes", [[1.0] * 3] * 2, {"x": 1}, object(), memoryview(b"123456"),
        np.ones((2, 3), object), np.zeros(6, np.float32), np.zeros((3, 2), np.float32),
        np.zeros((2, 3, 1), np.float32), np.zeros((0, 3), np.float32), np.zeros((2, 3), "V4"),
        np.zeros((2, 3), [("a", np.float32)]), np.float32(1), np.zeros((2, 3), np.float16),
        np.zeros((2, 3), np.complex64), np.zeros((2, 3), ">f4"), np.zeros((2, 3), "S4"),
    ]
    for value in hostile:
        with pytest.raises((TypeError, ValueError)):
            m.f(value, 2)
        with pytest.raises((TypeError, ValueError, OverflowError)):
            m.f(x, value)
    for out in hostile[1:] + [x, (x,), (x, x), np.ones((2, 3), np.float32)[:, ::-1]]:  # out=None: no out
        if isinstance(out, np.ndarray) and out.flags.c_contiguous and out.dtype == np.float32 and out.shape == (2, 3):
            continue
        with pytest.raises((TypeError, ValueError)):
            m.f(x, 2, out=out)
    np.testing.assert_array_equal(m.f(x, 2), 2 * x)


def test_dlpack_producers_are_accepted():
    class Producer:  # what a JAX or PyTorch CPU array offers: the DLPack protocol only
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kwargs):
            return self.a.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    m = kiln.compile("fn f(x: f32[2, 3]) -> f32[3] { sum(x, axis=0) }\nexport f;")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(m.f(Producer(x)), [3, 5, 7])


def test_sixteen_bit_floats_are_numpys_float16_and_ml_dtypes_bfloat16():
    source = """
fn f(a: f16[5], b: bf16[5]) -> (f16[5], bf16[5], f32) {
    (a * a + 1.0, exp(b), sum(a) + sum(b))
}
export f;
"""
    compiled, reference = kiln.compile(source), kiln.interpret(source)
    a = np.linspace(-2, 2, 5).astype(np.float16)
    b = np.linspace(-1, 1, 5).astype(ml_dtypes.bfloat16)
    got, want = compiled.f(a, b), reference.f(a, b)
    assert got[0].dtype == np.float16 and got[1].dtype == ml_dtypes.bfloat16
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.astype(np.float32), w.astype(np.float32))
    with pytest.raises(TypeError, match=r"parameter `b: bf16\[5\]` of `f` is bf16, got an array of float16"):
        compiled.f(a, a)


def test_threads_run_parallel_loops_and_calls_release_the_gil(mlp, mlp_inputs):
    want = mlp.train_step(**mlp_inputs)
    previous = kiln.set_threads(2)
    try:
        assert kiln.threads() == 2
        results = [None] * 4

        def work(k):
            results[k] = mlp.train_step(**mlp_inputs)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            for g, w in zip(r, want):
                np.testing.assert_allclose(g, w, rtol=1e-6)
    finally:
        kiln.set_threads(previous)
    with pytest.raises(ValueError, match="at least 1"):
        kiln.set_threads(0)


def test_function_objects_describe_themselves(mlp):
    f = mlp.predict
    assert f.name == "predict"
    assert f.params[0] == ("x", "f32", [16, 32])
    assert f.results == [("out0", "f32", [16, 10]), ("out1", "f32", [16])]
    assert repr(f).startswith("<kiln.Function predict(x: f32[16, 32], w1: f32[32, 64]")
    assert mlp["predict"] is f
    assert list(mlp.functions) == ["loss", "predict", "train_step"]
    with pytest.raises(AttributeError, match="exports no function `fit`; it exports loss, predict, train_step"):
        mlp.fit
