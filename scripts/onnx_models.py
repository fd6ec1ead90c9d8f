"""Whole ONNX models with random weights, written with onnx's helper API: a ResNet-18-shaped
CNN and a BERT-tiny-shaped encoder. python/tests/test_onnx.py checks them against onnxruntime
at small sizes; scripts/onnx_bench.py times them at full size.

    target/pyenv/bin/python scripts/onnx_models.py OUT_DIR     # resnet18.onnx, bert_tiny.onnx
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


class Builder:
    """Nodes and initializers of one graph, with fresh names."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def weight(self, stem: str, shape, scale: float | None = None, value=None) -> str:
        name = self.name(stem)
        if value is None:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
            value = self.rng.standard_normal(shape) * (scale if scale is not None else 1 / np.sqrt(fan_in))
        self.inits.append(nh.from_array(np.asarray(value, np.float32), name))
        return name

    def ints(self, stem: str, values) -> str:
        name = self.name(stem)
        self.inits.append(nh.from_array(np.array(values, np.int64), name))
        return name

    def op(self, op: str, inputs, **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(h.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def model(self, inputs, outputs, opset: int = 17):
        graph = h.make_graph(self.nodes, "model", inputs, [h.make_empty_tensor_value_info(o) for o in outputs], self.inits)
        m = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
        m = onnx.shape_inference.infer_shapes(m)
        onnx.checker.check_model(m)
        return m


def resnet18(size: int = 224, width: int = 64, classes: int = 1000, seed: int = 0):
    """ResNet-18's layout (7x7 stem, max pooling, four stages of two basic blocks, global
    pooling, a classifier), `width` channels in the first stage; input [1, 3, size, size]."""
    b = Builder(seed)

    def conv_bn(x, cin, cout, k, stride, relu):
        w = b.weight("conv", (cout, cin, k, k))
        y = b.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        stats = [
            b.weight("scale", (cout,), value=(1 + 0.1 * b.rng.standard_normal(cout)).astype(np.float32)),
            b.weight("bias", (cout,), value=(0.1 * b.rng.standard_normal(cout)).astype(np.float32)),
            b.weight("mean", (cout,), value=(0.1 * b.rng.standard_normal(cout)).astype(np.float32)),
            b.weight("var", (cout,), value=(1 + 0.1 * np.abs(b.rng.standard_normal(cout))).astype(np.float32)),
        ]
        y = b.op("BatchNormalization", [y, *stats])
        return b.op("Relu", [y]) if relu else y

    x = conv_bn("input", 3, width, 7, 2, True)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for stage, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(x, cin, cout, 3, stride, True)
            y = conv_bn(y, cout, cout, 3, 1, False)
            shortcut = conv_bn(x, cin, cout, 1, stride, False) if stride != 1 or cin != cout else x
            x = b.op("Relu", [b.op("Add", [y, shortcut])])
            cin = cout
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    logits = b.op("Gemm", [x, b.weight("fc", (classes, cin)), b.weight("fc_bias", (classes,), scale=0.01)], transB=1)
    return b.model([h.make_tensor_value_info("input", T.FLOAT, [1, 3, size, size])], [logits])


def bert_tiny(tokens: int = 128, hidden: int = 128, heads: int = 2, layers: int = 2, vocab: int = 30522, seed: int = 0):
    """BERT-tiny's encoder (2 layers, width 128, 2 heads, MLP 512) as PyTorch exports it: token
    and position embeddings, attention through Reshape/Transpose, GELU through Erf, and the
    pooler; input ids [1, tokens] (int64)."""
    b = Builder(seed)
    head = hidden // heads

    def dense(x, cin, cout):
        return b.op("Add", [b.op("MatMul", [x, b.weight("w", (cin, cout))]), b.weight("b", (cout,), scale=0.02)])

    def norm(x):
        return b.op("LayerNormalization", [x, b.weight("g", (hidden,), value=np.ones(hidden, np.float32)), b.weight("beta", (hidden,), scale=0.02)], axis=-1, epsilon=1e-12)

    def heads_of(x, perm):
        return b.op("Transpose", [b.op("Reshape", [x, b.ints("shape", [1, tokens, heads, head])])], perm=perm)

    words = b.op("Gather", [b.weight("word_embeddings", (vocab, hidden), scale=0.02), "input_ids"], axis=0)
    positions = b.op("Gather", [b.weight("position_embeddings", (512, hidden), scale=0.02), b.ints("positions", [list(range(tokens))])], axis=0)
    x = norm(b.op("Add", [words, positions]))
    for _ in range(layers):
        q = heads_of(dense(x, hidden, hidden), [0, 2, 1, 3])
        k = heads_of(dense(x, hidden, hidden), [0, 2, 3, 1])
        v = heads_of(dense(x, hidden, hidden), [0, 2, 1, 3])
        scale = b.weight("scale", (), value=np.array(1 / np.sqrt(head), np.float32))
        probs = b.op("Softmax", [b.op("Mul", [b.op("MatMul", [q, k]), scale])], axis=-1)
        context = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        context = b.op("Reshape", [context, b.ints("shape", [1, tokens, hidden])])
        x = norm(b.op("Add", [dense(context, hidden, hidden), x]))
        up = dense(x, hidden, 4 * hidden)
        half = b.weight("half", (), value=np.array(0.5, np.float32))
        one = b.weight("one", (), value=np.array(1.0, np.float32))
        root2 = b.weight("sqrt2", (), value=np.array(np.sqrt(2.0), np.float32))
        gelu = b.op("Mul", [b.op("Mul", [up, half]), b.op("Add", [b.op("Erf", [b.op("Div", [up, root2])]), one])])
        x = norm(b.op("Add", [dense(gelu, 4 * hidden, hidden), x]))
    first = b.op("Gather", [x, b.ints("first", 0)], axis=1)
    pooled = b.op("Tanh", [dense(first, hidden, hidden)])
    return b.model([h.make_tensor_value_info("input_ids", T.INT64, [1, tokens])], [x, pooled])


def main() -> None:
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(resnet18(), out / "resnet18.onnx")
    onnx.save(bert_tiny(), out / "bert_tiny.onnx")
    print(f"wrote {out / 'resnet18.onnx'} and {out / 'bert_tiny.onnx'}")


if __name__ == "__main__":
    main()
