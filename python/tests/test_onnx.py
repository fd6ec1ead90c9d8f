"""ONNX import (kiln-onnx) against onnxruntime: one small model per operator, built with onnx's
helper API, and the refusals of bad models."""

import pathlib
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import kiln

RNG = np.random.default_rng(2026)
ELEM = {np.float32: T.FLOAT, np.int64: T.INT64, np.int32: T.INT32, np.bool_: T.BOOL, np.float64: T.DOUBLE}


def f32(*shape, positive=False):
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.1 if positive else x


def model(nodes, inputs, outputs, initializers=(), opset=17, infer=True):
    """A model of `nodes` whose graph inputs are `inputs` (name -> array, typed and shaped by
    it) and whose outputs are the names `outputs`."""
    graph = h.make_graph(
        nodes,
        "test",
        [h.make_tensor_value_info(k, ELEM[v.dtype.type], v.shape) for k, v in inputs.items()],
        [h.make_empty_tensor_value_info(o) for o in outputs],
        [nh.from_array(v, k) for k, v in dict(initializers).items()],
    )
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    # onnx's shape inference gives the outputs their types, which kiln checks its own against.
    return onnx.shape_inference.infer_shapes(m) if infer else m


def check(m, inputs, tmp_path, rtol=1e-4, atol=1e-5):
    """Runs `m` in onnxruntime and through kiln, its weights compiled in and as parameters, and
    compares every output."""
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs)
    source, weights = kiln.import_onnx(path, weights_as_params=True)
    runs = {
        "compiled in": kiln.compile(path).forward(*inputs.values()),
        "as parameters": kiln.compile(source, module_name="m").forward(*inputs.values(), **weights),
    }
    for how, got in runs.items():
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want), source
        for g, w in zip(got, want):
            assert g.shape == w.shape, (how, source, g.shape, w.shape)
            assert g.dtype == w.dtype, (how, source, g.dtype, w.dtype)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{how}\n{source}")
    return kiln.import_onnx(path)[0]


def single(op, inputs, initializers=(), outputs=1, opset=17, **attrs):
    names = list(inputs) + list(dict(initializers))
    outs = [f"y{i}" for i in range(outputs)]
    return model([h.make_node(op, names, outs, **attrs)], inputs, outs, initializers, opset)


UNARY = ["Abs", "Neg", "Relu", "Sigmoid", "Tanh", "Exp", "Floor", "Ceil", "Erf", "Sin", "Cos", "Reciprocal",
         "Sign", "Round", "Softplus"]


@pytest.mark.parametrize("op", UNARY)
def test_unary_operators(op, tmp_path):
    check(single(op, {"x": f32(3, 5)}), {"x": f32(3, 5)}, tmp_path)


@pytest.mark.parametrize("op", ["Log", "Sqrt"])
def test_unary_operators_of_positive_numbers(op, tmp_path):
    x = f32(4, 3, positive=True)
    check(single(op, {"x": x}), {"x": x}, tmp_path)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow"])
def test_arithmetic_broadcasts(op, tmp_path):
    a, b = f32(2, 3, 4, positive=True), f32(3, 1, positive=True)
    check(single(op, {"a": a, "b": b}), {"a": a, "b": b}, tmp_path)


def test_integer_division_truncates(tmp_path):
    a = np.array([7, -7, 7, -7, 6, 0], np.int64)
    b = np.array([2, 2, -2, -2, 3, 5], np.int64)
    check(single("Div", {"a": a, "b": b}), {"a": a, "b": b}, tmp_path)


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
def test_comparisons(op, tmp_path):
    a, b = np.array([[1, 2, 3], [3, 2, 1]], np.float32), np.array([2, 2, 2], np.float32)
    check(single(op, {"a": a, "b": b}), {"a": a, "b": b}, tmp_path)


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic(op, tmp_path):
    a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
    check(single(op, {"a": a, "b": b}), {"a": a, "b": b}, tmp_path)
    check(single("Not", {"a": a}), {"a": a}, tmp_path)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_variadic_extremes(op, tmp_path):
    i = {"a": f32(3, 4), "b": f32(4), "c": f32(1, 4)}
    check(single(op, i), i, tmp_path)


def test_where_clip_cast_leaky_relu(tmp_path):
    x = f32(4, 5) * 3
    c = x > 0
    check(single("Where", {"c": c, "x": x, "y": -x}), {"c": c, "x": x, "y": -x}, tmp_path)
    bounds = {"lo": np.array(-1.0, np.float32), "hi": np.array(0.5, np.float32)}
    check(single("Clip", {"x": x}, bounds), {"x": x}, tmp_path)
    check(single("Cast", {"x": x}, to=T.INT32), {"x": x}, tmp_path)
    check(single("LeakyRelu", {"x": x}, alpha=0.2), {"x": x}, tmp_path)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate, tmp_path):
    x = f32(3, 7) * 2
    check(single("Gelu", {"x": x}, opset=20, approximate=approximate), {"x": x}, tmp_path)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax(op, axis, tmp_path):
    x = f32(2, 5, 3)
    check(single(op, {"x": x}, axis=axis), {"x": x}, tmp_path)


@pytest.mark.parametrize("shapes", [((4, 6), (6, 3)), ((2, 4, 6), (6, 3)), ((2, 4, 6), (2, 6, 3)), ((6,), (6, 3)), ((4, 6), (6,))])
def test_matmul(shapes, tmp_path):
    a, b = f32(*shapes[0]), f32(*shapes[1])
    check(single("MatMul", {"a": a, "b": b}), {"a": a, "b": b}, tmp_path)


@pytest.mark.parametrize("trans", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm(trans, tmp_path):
    a = f32(5, 4) if trans[0] else f32(4, 5)
    b = f32(3, 5) if trans[1] else f32(5, 3)
    m = single("Gemm", {"a": a}, {"b": b, "c": f32(3)}, transA=trans[0], transB=trans[1], alpha=0.5, beta=2.0)
    check(m, {"a": a}, tmp_path)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"pads": [1, 1, 1, 1]},
        {"pads": [0, 1, 2, 1], "strides": [2, 2]},
        {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ],
)
def test_conv(attrs, tmp_path):
    x = f32(2, 3, 9, 8)
    m = single("Conv", {"x": x}, {"w": f32(4, 3, 3, 3), "b": f32(4)}, kernel_shape=[3, 3], **attrs)
    check(m, {"x": x}, tmp_path)


@pytest.mark.parametrize("group", [2, 6])
def test_grouped_and_depthwise_conv(group, tmp_path):
    x = f32(1, 6, 7, 7)
    m = single("Conv", {"x": x}, {"w": f32(12, 6 // group, 3, 3), "b": f32(12)}, kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group)
    check(m, {"x": x}, tmp_path)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs", [{"kernel_shape": [2, 2], "strides": [2, 2]}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}])
def test_pooling(op, attrs, tmp_path):
    x = f32(2, 3, 8, 7)
    check(single(op, {"x": x}, **attrs), {"x": x}, tmp_path)
    if op == "AveragePool" and "pads" in attrs:
        check(single(op, {"x": x}, count_include_pad=1, **attrs), {"x": x}, tmp_path)


def test_normalizations(tmp_path):
    x = f32(2, 3, 4, 5)
    stats = {"scale": f32(3), "bias": f32(3), "mean": f32(3), "var": f32(3, positive=True)}
    check(single("BatchNormalization", {"x": x}, stats, epsilon=1e-3), {"x": x}, tmp_path)
    check(single("GlobalAveragePool", {"x": x}), {"x": x}, tmp_path)
    check(single("GlobalMaxPool", {"x": x}), {"x": x}, tmp_path)
    y = f32(2, 6, 8)
    check(single("LayerNormalization", {"y": y}, {"g": f32(8), "b": f32(8)}, axis=-1), {"y": y}, tmp_path)
    check(single("LayerNormalization", {"y": y}, {"g": f32(6, 8)}, axis=1), {"y": y}, tmp_path)


def test_shape_arithmetic_is_folded(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters write a flatten."""
    x = f32(2, 3, 4)
    nodes = [
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        h.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        h.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        h.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    init = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus_one": np.array([-1], np.int64)}
    source = check(model(nodes, {"x": x}, ["y"], init), {"x": x}, tmp_path)
    assert "reshape(x, [2, 12])" in source


def test_reshapes_and_layout(tmp_path):
    x = f32(2, 3, 1, 4)
    shapes = {
        "Reshape": ({"s": np.array([0, -1, 2], np.int64)}, {}),
        "Flatten": ({}, {"axis": 2}),
        "Transpose": ({}, {"perm": [3, 0, 2, 1]}),
        "Squeeze": ({"axes": np.array([2], np.int64)}, {}),
        "Unsqueeze": ({"axes": np.array([0, -1], np.int64)}, {}),
        "Expand": ({"s": np.array([2, 1, 3, 4], np.int64)}, {}),
    }
    for op, (init, attrs) in shapes.items():
        check(single(op, {"x": x}, init, **attrs), {"x": x}, tmp_path)
    a, b = f32(2, 3), f32(2, 5)
    check(single("Concat", {"a": a, "b": b}, axis=1), {"a": a, "b": b}, tmp_path)


@pytest.mark.parametrize(
    "starts, ends, axes, steps",
    [([1], [3], [0], [1]), ([0, -1], [5, -6], [1, 2], [2, -1]), ([-100], [100], [2], [3])],
)
def test_slice(starts, ends, axes, steps, tmp_path):
    x = f32(4, 5, 6)
    init = {k: np.array(v, np.int64) for k, v in zip(["st", "en", "ax", "sp"], [starts, ends, axes, steps])}
    check(single("Slice", {"x": x}, init), {"x": x}, tmp_path)


def test_split_gather_and_indices(tmp_path):
    x = f32(6, 4)
    m = single("Split", {"x": x}, {"parts": np.array([1, 2, 3], np.int64)}, outputs=3, axis=0)
    check(m, {"x": x}, tmp_path)
    table, ids = f32(10, 4), np.array([[1, 9], [0, 3]], np.int64)
    check(single("Gather", {"table": table, "ids": ids}, axis=0), {"table": table, "ids": ids}, tmp_path)
    check(single("Gather", {"x": x}, {"i": np.array([3, -1], np.int64)}, axis=1), {"x": x}, tmp_path)


def test_constants(tmp_path):
    x = f32(2, 3)
    nodes = [
        h.make_node("Constant", [], ["c"], value=nh.from_array(f32(2, 3))),
        h.make_node("ConstantOfShape", ["shape"], ["z"], value=nh.from_array(np.array([1.5], np.float32))),
        h.make_node("Range", ["r0", "r1", "r2"], ["r"]),
        h.make_node("Add", ["x", "c"], ["s"]),
        h.make_node("Mul", ["s", "z"], ["t"]),
        h.make_node("Cast", ["r"], ["rf"], to=T.FLOAT),
        h.make_node("Add", ["t", "rf"], ["y"]),
        h.make_node("Identity", ["y"], ["y1"]),
        h.make_node("Dropout", ["y1"], ["y2"]),
    ]
    init = {"shape": np.array([2, 3], np.int64), "r0": np.array(0, np.int64), "r1": np.array(6, np.int64),
            "r2": np.array(2, np.int64)}
    check(model(nodes, {"x": x}, ["y2"], init), {"x": x}, tmp_path)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
@pytest.mark.parametrize("opset", [17, 18])
def test_reductions(op, opset, tmp_path):
    x = f32(3, 4, 5)
    axes = [0, -1]
    if op == "ReduceSum" or opset >= 18:
        m = single(op, {"x": x}, {"axes": np.array(axes, np.int64)}, opset=opset, keepdims=0)
    else:
        m = single(op, {"x": x}, opset=opset, axes=axes, keepdims=0)
    check(m, {"x": x}, tmp_path)
    check(single(op, {"x": x}, opset=opset), {"x": x}, tmp_path)


def test_arg_top_k_cumsum_pad_einsum(tmp_path):
    x = f32(3, 5, 4)
    check(single("ArgMax", {"x": x}, axis=1, keepdims=0), {"x": x}, tmp_path)
    check(single("ArgMin", {"x": x}, axis=-1), {"x": x}, tmp_path)
    check(single("TopK", {"x": x}, {"k": np.array([2], np.int64)}, outputs=2, axis=1), {"x": x}, tmp_path)
    check(single("TopK", {"x": x}, {"k": np.array([3], np.int64)}, outputs=2, largest=0), {"x": x}, tmp_path)
    for exclusive, reverse in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        m = single("CumSum", {"x": x}, {"axis": np.array(1, np.int64)}, exclusive=exclusive, reverse=reverse)
        check(m, {"x": x}, tmp_path)
    pads = {"pads": np.array([0, 1, 2, 0, 2, 1], np.int64)}
    for mode in ["constant", "edge", "reflect"]:
        check(single("Pad", {"x": x}, pads, mode=mode), {"x": x}, tmp_path)
    a, b = f32(2, 3, 4), f32(2, 4, 5)
    check(single("Einsum", {"a": a, "b": b}, equation="bij,bjk->bik"), {"a": a, "b": b}, tmp_path)


def test_a_small_residual_network(tmp_path):
    """conv-bn-relu, a residual block, max pooling, global pooling and a classifier."""
    x = f32(2, 3, 16, 16)
    conv = lambda name, cin, cout: (f"{name}_w", f32(cout, cin, 3, 3) * 0.3)  # noqa: E731
    init = dict([conv("c1", 3, 8), conv("c2", 8, 8), conv("c3", 8, 8)])
    for k in ("bn1", "bn2"):
        init.update({f"{k}_s": f32(8, positive=True), f"{k}_b": f32(8), f"{k}_m": f32(8), f"{k}_v": f32(8, positive=True)})
    init.update({"fc_w": f32(10, 8), "fc_b": f32(10), "flat": np.array([2, -1], np.int64)})
    bn = lambda k, i, o: h.make_node("BatchNormalization", [i, f"{k}_s", f"{k}_b", f"{k}_m", f"{k}_v"], [o])  # noqa: E731
    nodes = [
        h.make_node("Conv", ["x", "c1_w"], ["a1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        bn("bn1", "a1", "a2"),
        h.make_node("Relu", ["a2"], ["a3"]),
        h.make_node("MaxPool", ["a3"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        h.make_node("Conv", ["p", "c2_w"], ["b1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        bn("bn2", "b1", "b2"),
        h.make_node("Relu", ["b2"], ["b3"]),
        h.make_node("Conv", ["b3", "c3_w"], ["b4"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Add", ["b4", "p"], ["r"]),
        h.make_node("Relu", ["r"], ["r1"]),
        h.make_node("GlobalAveragePool", ["r1"], ["g"]),
        h.make_node("Reshape", ["g", "flat"], ["f"]),
        h.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    check(model(nodes, {"x": x}, ["logits"], init), {"x": x}, tmp_path, rtol=2e-4, atol=1e-4)


@pytest.mark.parametrize(
    "attrs",
    [{}, {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, {"coordinate_transformation_mode": "pytorch_half_pixel"}],
)
def test_resize_nearest_by_whole_scales(attrs, tmp_path):
    x = f32(1, 2, 3, 4)
    m = single("Resize", {"x": x}, {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 3], np.float32)}, mode="nearest", **attrs)
    check(m, {"x": x}, tmp_path)
    sizes = {"roi": np.zeros(0, np.float32), "scales": np.zeros(0, np.float32), "sizes": np.array([1, 2, 6, 4], np.int64)}
    check(single("Resize", {"x": x}, sizes, mode="nearest", **attrs), {"x": x}, tmp_path)


def test_arg_extremes_can_take_the_last_index(tmp_path):
    x = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], np.float32)
    check(single("ArgMax", {"x": x}, axis=1, select_last_index=1), {"x": x}, tmp_path)
    check(single("ArgMin", {"x": x}, axis=0, keepdims=0, select_last_index=1), {"x": x}, tmp_path)


def test_unsupported_operators_are_listed_at_once(tmp_path):
    x = f32(1, 2, 4, 4)
    nodes = [
        h.make_node("ConvTranspose", ["x", "w"], ["a"], name="up"),
        h.make_node("Relu", ["a"], ["b"]),
        h.make_node("FusedThing", ["b"], ["y"], domain="com.example", name="custom"),
    ]
    m = model(nodes, {"x": x}, ["y"], {"w": f32(2, 2, 3, 3)}, infer=False)
    m.opset_import.append(h.make_opsetid("com.example", 1))
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    with pytest.raises(kiln.CompileError) as caught:
        kiln.import_onnx(path)
    e = caught.value
    assert e.code == "E0701" and e.message == "2 nodes of the model use operators kiln does not import"
    assert "node `up`: ConvTranspose (ai.onnx, opset 17)" in str(e) and "node `custom`: FusedThing (com.example" in str(e)


def test_bad_models_are_diagnosed(tmp_path):
    x = f32(2, 3)
    path = tmp_path / "m.onnx"
    good = single("Relu", {"x": x})
    onnx.save(good, path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 7):
        path.write_bytes(data[:cut])
        with pytest.raises(kiln.CompileError, match=r"is not an ONNX model") as caught:
            kiln.import_onnx(path)
        assert caught.value.code == "E0700"
    onnx.save(single("Relu", {"x": x}, opset=9), path)
    with pytest.raises(kiln.CompileError, match="opset 9; kiln imports opsets 13 to 21") as caught:
        kiln.import_onnx(path)
    assert caught.value.code == "E0705"
    symbolic = single("Relu", {"x": x})
    for v in (symbolic.graph.input[0], symbolic.graph.output[0]):
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(symbolic, path)
    with pytest.raises(kiln.CompileError, match=r"input `x` has symbolic dimensions \[\?, 3\]") as caught:
        kiln.import_onnx(path)
    assert "--shape x=1x3" in str(caught.value) and caught.value.code == "E0703"
    source, _ = kiln.import_onnx(path, shapes={"x": [5, 3]})
    assert "fn forward(x: f32[5, 3])" in source
    with pytest.raises(kiln.CompileError, match="contradicts"):
        kiln.import_onnx(path, shapes={"x": [5, 4]})
    external = single("Add", {"x": x}, {"w": f32(2, 3)})
    onnx.save(external, path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    (tmp_path / "w.bin").unlink()
    with pytest.raises(kiln.CompileError, match=r"initializer `w`: its external data file .*w.bin") as caught:
        kiln.import_onnx(path)
    assert caught.value.code == "E0702"
    mismatch = single("MatMul", {"a": f32(2, 3), "b": f32(4, 5)})
    onnx.save(mismatch, path)
    with pytest.raises(kiln.CompileError, match=r"node `y0` \(MatMul\) cannot be imported: .*inner dimensions 3 and 4") as caught:
        kiln.import_onnx(path)
    assert caught.value.code == "E0704"


def test_imported_models_run_in_the_interpreter(tmp_path):
    x = f32(2, 4)
    path = tmp_path / "m.onnx"
    onnx.save(single("Gemm", {"x": x}, {"w": f32(4, 3), "b": f32(3)}), path)
    np.testing.assert_allclose(kiln.interpret(path).forward(x), kiln.compile(path).forward(x), rtol=1e-5)


def test_file_names_that_are_not_identifiers(tmp_path):
    x = f32(2, 3)
    path = tmp_path / "my-model.v2.onnx"
    onnx.save(single("Relu", {"x": x}, {}), path)
    assert kiln.compile(path).name == "my_model_v2"
    out = tmp_path / "out"
    kiln_cli = pathlib.Path(__file__).resolve().parents[2] / "target" / "debug" / "kiln"
    subprocess.run([kiln_cli, "import", path, "-o", out], check=True)
    assert (out / "my_model_v2.kn").is_file()


def test_external_data_is_read(tmp_path):
    x = f32(2, 3)
    m = single("Add", {"x": x}, {"w": f32(2, 3)})
    want = nh.to_array(m.graph.initializer[0])
    path = tmp_path / "m.onnx"
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    source, weights = kiln.import_onnx(path, weights_as_params=True)
    np.testing.assert_array_equal(weights["w"], want)
    np.testing.assert_array_equal(kiln.compile(source).forward(x, **weights), x + want)
    np.testing.assert_array_equal(kiln.compile(path).forward(x), x + want)


def _models():
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
    import onnx_models  # scripts/onnx_models.py

    return onnx_models


def test_a_resnet18_shaped_cnn(tmp_path):
    """ResNet-18's layout at a small width and input (scripts/onnx_models.py)."""
    m = _models().resnet18(size=32, width=8, classes=10)
    x = {"input": f32(1, 3, 32, 32)}
    check(m, x, tmp_path, rtol=1e-4, atol=1e-5)


def test_a_bert_tiny_shaped_encoder(tmp_path):
    """BERT-tiny's encoder as PyTorch exports it, on 16 tokens (scripts/onnx_models.py)."""
    m = _models().bert_tiny(tokens=16, vocab=100)
    ids = {"input_ids": RNG.integers(0, 100, (1, 16)).astype(np.int64)}
    check(m, ids, tmp_path, rtol=1e-4, atol=2e-5)
