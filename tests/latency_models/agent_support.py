"""Helpers of the latency tests: tiny real ONNX models and a real agent process on loopback."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-123"


def tiny_onnx(batch: int | str = 8, width: int = 64) -> bytes:
    """``relu(x @ w)``: a real model that loads and runs in microseconds.

    ``batch`` may be a name (``"N"``) to make the first input dimension dynamic.
    """
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _io(width: int = 8) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    return ([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])])


def _model(nodes: list[onnx.NodeProto], *, initializers: tuple[onnx.TensorProto, ...] = (),
           domains: tuple[str, ...] = (), functions: tuple[onnx.FunctionProto, ...] = (),
           inputs: list[onnx.ValueInfoProto] | None = None) -> bytes:
    declared, outputs = _io()
    graph = helper.make_graph(nodes, "upload", inputs or declared, outputs, list(initializers))
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
    model.ir_version = 8
    return model.SerializeToString()


def external_data_onnx(location: str) -> bytes:
    """``x + w`` where ``w`` says its 8 floats are in the file ``location``."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 8],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "32")):
        weight.external_data.add(key=key, value=value)
    return _model([helper.make_node("Add", ["x", "w"], ["y"])], initializers=(weight,))


def custom_domain_onnx() -> bytes:
    """A node of a custom operator library's domain (no opset import names it)."""
    return _model([helper.make_node("Frobnicate", ["x"], ["y"], domain="custom.ops")])


def microsoft_domain_onnx() -> bytes:
    """onnxruntime's own ``com.microsoft`` Gelu: a standard domain the runtime has."""
    return _model([helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
                  domains=("com.microsoft",))


def local_function_onnx() -> bytes:
    """A node calling the model's own function (domain ``local.fn``: Relu, then doubled)."""
    function = helper.make_function(
        "local.fn", "DoubleRelu", ["a"], ["b"],
        [helper.make_node("Relu", ["a"], ["t"]), helper.make_node("Add", ["t", "t"], ["b"])],
        opset_imports=[helper.make_opsetid("", 17)])
    return _model([helper.make_node("DoubleRelu", ["x"], ["y"], domain="local.fn")],
                  domains=("local.fn",), functions=(function,))


def unsorted_graph_onnx() -> bytes:
    """Parses, but the checker refuses it: a node reads a value nothing produces."""
    return _model([helper.make_node("Relu", ["nowhere"], ["y"])])


def huge_input_onnx() -> bytes:
    """A Relu whose fixed input has 2**28 + 16384 elements: 1 GiB the agent would allocate."""
    declared = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16385, 16384])]
    return _model([helper.make_node("Relu", ["x"], ["y"])], inputs=declared)


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def agent_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NANOSD_NAS_AGENT_TOKEN", None)
    return env


@contextlib.contextmanager
def running_agent(*extra: str, token: str | None = TOKEN, command: list[str] | None = None,
                  cwd: Path = ROOT, log: Path | None = None) -> Iterator[tuple[str, list[str]]]:
    """Start a real agent process on loopback; yield its URL and the lines it prints (the
    list grows while the agent runs and holds all of its output once the block is left).

    The process is killed on exit whatever happens in between.
    """
    argv = command or [sys.executable, "-m", "nanosd_nas", "agent"]
    argv = [*argv, "--host", "127.0.0.1", "--port", "0", *extra]
    if token is not None:
        argv += ["--token", token]
    with open(log or os.devnull, "w") as stderr:  # noqa: PTH123
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   cwd=cwd, env=agent_env())
        printed: queue.Queue[str] = queue.Queue()
        transcript: list[str] = []
        reader = threading.Thread(target=_forward_lines, args=(process, printed, transcript),
                                  daemon=True)
        reader.start()
        try:
            first = _next_line(printed)
            if token is None:
                _next_line(printed)
            if not first.startswith("listening on http://"):
                raise AssertionError(f"unexpected first line {first!r}")
            yield first.split()[-1], transcript
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(timeout=5)
            if process.stdout is not None:
                process.stdout.close()


def _forward_lines(process: subprocess.Popen[str], printed: queue.Queue[str],
                   transcript: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        transcript.append(line.strip())
        printed.put(line.strip())
    printed.put("")  # end of output: the process exited


def _next_line(printed: queue.Queue[str], timeout: float = 30.0) -> str:
    try:
        line = printed.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"the agent printed nothing within {timeout} s") from None
    if not line:
        raise AssertionError("the agent exited before printing")
    return line
