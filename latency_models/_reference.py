"""The reference model a local profiler times in alternation with every measured model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

#: Shape of the reference's input: a 64-channel 16x16 feature map, like a mini U-Net level.
REFERENCE_INPUT = (1, 64, 16, 16)
#: The INT8 reference's channels: at 64 its integer kernels take ~0.2 ms, too short to time
#: steadily; at 128 they take 0.6-0.7 ms, about as long as the FP32 reference at 64.
INT8_REFERENCE_CHANNELS = 128
_LAYERS = 6


def reference_precision(precision: str) -> str:
    """The precision of the reference that normalises a device measuring at ``precision``.

    INT8 kernels and FP32 convolutions do not slow down together on a shared host: over two
    quiet minutes an INT8 U-Net's ratio to the FP32 reference drifted by 14% while its own time
    held still (CV 3.4% over 12 rounds; 4.5% over 16 with 4 beside a neighbour loading the CPU
    or its memory), and its ratio to an INT8 reference held (CV 1.9% and 2.7%). So an INT8
    device times against an INT8 reference; FP32 and FP16 devices against the FP32 one."""
    return "int8" if precision == "int8" else "fp32"


def reference_model(precision: str = "fp32") -> bytes:
    """Six 3x3 convolutions with ReLU (about 57 M MACs): convolution-bound like the U-Nets it
    is paired with, and about a millisecond on one core. Seeded, so it is the same everywhere.

    With ``precision="int8"`` (see :func:`reference_precision`): the same stack at
    :data:`INT8_REFERENCE_CHANNELS` channels, quantised to INT8 QDQ as measured models are."""
    if reference_precision(precision) == "fp32":
        return _convolutions(REFERENCE_INPUT[1])
    from nanosd_nas.latency_models._precision import convert

    with tempfile.TemporaryDirectory(prefix="nanosd-reference-") as folder:
        path = Path(folder) / "reference.onnx"
        path.write_bytes(_convolutions(INT8_REFERENCE_CHANNELS))
        shape = (1, INT8_REFERENCE_CHANNELS, *REFERENCE_INPUT[2:])
        feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        return convert(path, "int8", feeds).read_bytes()


def _convolutions(channels: int) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shape = [1, channels, *REFERENCE_INPUT[2:]]
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
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, shape)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    serialised: bytes = model.SerializeToString()
    return serialised
