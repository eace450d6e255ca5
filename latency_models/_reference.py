"""The reference model a local profiler times in alternation with every measured model."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Shape of the reference's input: a 64-channel 16x16 feature map, like a mini U-Net level.
REFERENCE_INPUT = (1, 64, 16, 16)
_LAYERS = 6


def reference_model() -> bytes:
    """Six 3x3 convolutions with ReLU (about 57 M MACs): convolution-bound like the U-Nets it
    is paired with, and about a millisecond on one core. Seeded, so it is the same everywhere."""
    rng = np.random.default_rng(0)
    channels = REFERENCE_INPUT[1]
    nodes, initializers = [], []
    previous = "x"
    for i in range(_LAYERS):
        weight = (rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32)
        initializers.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        previous = f"r{i}"
    graph = helper.make_graph(
        nodes, "nanosd_nas_reference",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(REFERENCE_INPUT))],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, list(REFERENCE_INPUT))],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    serialised: bytes = model.SerializeToString()
    return serialised
