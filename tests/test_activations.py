"""export.activations: working memory per latent cell, pinned on a graph built by hand.

The graph (input z [1, c, h, w], output features [1, c, h, w]) is a self-attention written
out in ONNX nodes, so its liveness can be counted on paper (u = c x 4 bytes per cell, the
float32 activations of one latent cell; q = 4 bytes per cell^2, one score matrix):

    node                         alive after the node runs (before frees)
    0 Shape(z) -> sh             z                        (shapes are not working memory)
    1 Relu(z) -> a               z, a               2u    (z's last use: freed)
    2 Reshape(a) -> f [1,c,hw]   a, f               2u
    3 Transpose(f) -> ft         a, f, ft           3u
    4 MatMul(ft, f) -> s [hw,hw] a, f, ft, s        3u + q (f freed)
    5 MatMul(s, ft) -> o         a, ft, s, o        3u + q (ft, s freed)
    6 Transpose(o) -> ot         a, o, ot           3u
    7 Reshape(ot, sh) -> r       a, ot, r           3u
    8 Add(r, a) -> features      a, r, features     3u

so the only terms that can be the maximum are (3u, 0) and (3u, q): envelope [[3u, q]].
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from export import activations
from export.specs import GraphSpec, TensorSpec
from ldmind_ref.config import preset

C = 5


def _attention_graph(path):
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, C, "h", "w"])
    y = helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, C, "h", "w"])
    flat = helper.make_tensor("flat", TensorProto.INT64, [3], [1, C, -1])
    nodes = [
        helper.make_node("Shape", ["z"], ["sh"]),
        helper.make_node("Relu", ["z"], ["a"]),
        helper.make_node("Reshape", ["a", "flat"], ["f"]),
        helper.make_node("Transpose", ["f"], ["ft"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["ft", "f"], ["s"]),
        helper.make_node("MatMul", ["s", "ft"], ["o"]),
        helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["ot", "sh"], ["r"]),
        helper.make_node("Add", ["r", "a"], ["features"]),
    ]
    graph = helper.make_graph(nodes, "attention", [z], [y], initializer=[flat])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


SPEC = GraphSpec("decoder", (TensorSpec("z", "float32", ("B", C, "h", "w")),),
                 (TensorSpec("features", "float32", ("B", C, "h", "w")),), {})


def test_live_bytes_and_envelope_by_hand(tmp_path):
    path = tmp_path / "attention.onnx"
    _attention_graph(path)
    graph = onnx.load(str(path)).graph
    u, q = 10, 1000
    size = {"z": u, "a": u, "f": u, "ft": u, "s": q, "o": u, "ot": u, "r": u, "features": u, "sh": 7}
    counted = set(size) - {"sh"}
    assert activations.live_bytes(graph, size, counted) == [u, 2 * u, 2 * u, 3 * u, 3 * u + q, 3 * u + q,
                                                            3 * u, 3 * u, 3 * u]
    assert activations.envelope([(3, 0), (1, 2), (2, 1), (1, 1), (3, 0), (0.5, 2)]) == [[1, 2], [2, 1], [3, 0]]


@pytest.mark.parametrize("side", [4, 6])
def test_memory_terms_match_the_hand_count_at_any_probe(tmp_path, side):
    path = tmp_path / "attention.onnx"
    _attention_graph(path)
    cfg = preset("tiny")
    t = activations.memory_terms(path, SPEC, cfg, side=side)
    np.testing.assert_allclose(t, [[3 * C * 4, 4.0]])
