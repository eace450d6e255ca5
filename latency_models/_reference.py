"""The reference model a local profiler times in alternation with every measured model."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

#: Shape of the reference's input: a 64-channel 16x16 feature map, like a mini U-Net level.
REFERENCE_INPUT = (1, 64, 16, 16)
_LAYERS = 6
#: The INT8 reference's convolution stack has this many channels: at 64 its integer kernels
#: take ~0.2 ms, too short to time steadily; at 128 they take 0.6-0.7 ms on a host with VNNI
#: (2.8 ms on an AMD host without it).
INT8_REFERENCE_CHANNELS = 128
#: The INT8 reference, by name (recorded in an INT8 device's fingerprints, so that what was
#: timed against another reference is never mixed with it): one graph running the INT8
#: convolution stack and then the U-Net of ``nanosd``'s first member, ``(0, 0, 0, 0, 0, 0)``
#: (every transformer dropped), at ``mini``, both quantised as measured models are.
INT8_REFERENCE = "int8-stack128+nanosd-0-unet-mini"
_INT8_REFERENCE_MEMBER = ("nanosd", (0, 0, 0, 0, 0, 0), "mini")


def reference_precision(precision: str) -> str:
    """The precision of the reference that normalises a device measuring at ``precision``.

    INT8 kernels and FP32 convolutions do not slow down together on a shared host: over two
    quiet minutes an INT8 U-Net's ratio to the FP32 reference drifted by 14% while its own time
    held still (CV 3.4% over 12 rounds; 4.5% over 16 with 4 beside a neighbour loading the CPU
    or its memory), and its ratio to an INT8 reference held (CV 1.9% and 2.7%). So an INT8
    device times against an INT8 reference; FP32 and FP16 devices against the FP32 one."""
    return "int8" if precision == "int8" else "fp32"


def reference_model(precision: str = "fp32") -> bytes:
    """The FP32 reference: six 3x3 convolutions with ReLU (about 57 M MACs), convolution-bound
    like the U-Nets it is paired with and about a millisecond on one core, seeded, so it is the
    same everywhere.

    With ``precision="int8"`` (see :func:`reference_precision`): :data:`INT8_REFERENCE`, the
    same stack at :data:`INT8_REFERENCE_CHANNELS` channels and a mini U-Net without attention,
    both quantised to INT8 QDQ (seeded weights and calibration inputs), in one graph, so each
    reference run times both. An INT8 U-Net's time drifts with its float parts (group
    normalisations, SiLU, the quantise/dequantise pairs) as well as with its integer
    convolutions, and which of the two a host's drift follows differs from host to host: on
    the 2-core Intel host a small INT8 U-Net as the reference repeated worse than the stack
    (median CV over 12 rounds 3.0% against 1.3%), on the 2-core AMD host far better (12 INT8
    U-Nets of ``nanosd-scaled`` over six rounds: 1.04% against 2.05%; 6 VAE decoders 1.09%
    against 1.27%). Timing both in one run is the hedge between hosts: on the AMD host, over
    four rounds, 1.48% against 2.14% for the stack and 1.09% for the U-Net alone (VAE decoders
    0.69%, 1.32%, 0.77%); not yet measured on an Intel host. Built once per process."""
    if reference_precision(precision) == "fp32":
        return _convolutions(REFERENCE_INPUT[1])
    return _int8_reference()


@functools.cache
def _int8_reference() -> bytes:
    import onnx
    from onnx.compose import merge_models

    from nanosd_nas.latency_models._precision import convert, feeds_of
    from nanosd_nas.spaces import build, export_onnx_component, load_space

    with tempfile.TemporaryDirectory(prefix="nanosd-reference-") as folder:
        path = Path(folder) / "stack" / "reference.onnx"
        path.parent.mkdir()
        path.write_bytes(_convolutions(INT8_REFERENCE_CHANNELS))
        shape = (1, INT8_REFERENCE_CHANNELS, *REFERENCE_INPUT[2:])
        feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        stack = onnx.load(str(convert(path, "int8", feeds, what=INT8_REFERENCE)))

        space, member, scale = _INT8_REFERENCE_MEMBER
        model = build(load_space(space).spec(member, scale))
        inputs = model.example_inputs()["unet"]
        path = Path(folder) / "unet" / "unet.onnx"
        path.parent.mkdir()
        names = export_onnx_component(model.components()["unet"], inputs, path, "unet")
        unet = onnx.load(str(convert(path, "int8", feeds_of(path, names, inputs),
                                     what=INT8_REFERENCE)))
    merged = merge_models(stack, unet, io_map=[], prefix1="stack/", prefix2="unet/",
                          name="nanosd_nas_int8_reference")
    onnx.checker.check_model(merged)
    serialised: bytes = merged.SerializeToString()
    return serialised


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
