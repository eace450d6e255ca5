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
    """Start a real agent process on loopback; yield its URL and the lines it printed first.

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
        reader = threading.Thread(target=_forward_lines, args=(process, printed), daemon=True)
        reader.start()
        try:
            lines = [_next_line(printed)]
            if token is None:
                lines.append(_next_line(printed))
            if not lines[0].startswith("listening on http://"):
                raise AssertionError(f"unexpected first line {lines[0]!r}")
            yield lines[0].split()[-1], lines
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


def _forward_lines(process: subprocess.Popen[str], printed: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
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
