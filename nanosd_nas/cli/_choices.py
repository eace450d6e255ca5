"""The fixed sets of values some options take. As ``Literal`` types, Typer lists them in
``--help``, completes them in the shell, and refuses any other value before the command runs
(one line, exit code 2); the command receives the plain string.

Each set is the library's own (``tests/cli/test_examples.py`` checks that they agree).
"""

from __future__ import annotations

from typing import Literal

#: ``--mode`` of ``accuracy``: the block bank's distilled weights, or training-free surgery.
AccuracyMode = Literal["distill", "surgery"]
#: Where PyTorch runs (``accuracy``, ``bench``): ``auto`` takes cuda when PyTorch sees a GPU.
ComputeDevice = Literal["auto", "cpu", "cuda"]
#: Where PyTorch runs when it must be said (``teacher train``, a torch device).
TorchTarget = Literal["cpu", "cuda"]
#: A torch device's dtype (``latency_models.TORCH_DTYPES``).
TorchDtype = Literal["fp32", "fp16", "bf16"]
#: A device's kind (``latency_models.DEVICE_KINDS``).
DeviceKind = Literal["local", "remote", "torch"]
#: What a device's latency is read as (the block table's statistics).
Statistic = Literal["normalised_ms", "min_ms", "p10_ms", "median_ms"]
#: What a spec or trial is exported as (``spaces.FORMATS``).
ExportFormat = Literal["spec", "diffusers", "onnx", "safetensors"]
#: The weights a trial is exported with.
ExportWeights = Literal["distilled", "teacher"]
#: Where an ONNX export's files go (``spaces.ONNX_LAYOUTS``).
OnnxLayout = Literal["nanosd", "optimum"]
#: An ONNX export's weights (``spaces.ONNX_PRECISIONS``).
OnnxPrecision = Literal["fp32", "fp16"]
#: What writes an ONNX export's graphs (``spaces.ONNX_EXPORTERS``).
OnnxExporter = Literal["dynamo", "torchscript"]
#: How a member's choices are presented to the samplers.
Encoding = Literal["ordinal", "categorical", "binary"]
#: A study's initial design.
InitialDesign = Literal["corners", "none"]
#: What ``bench search`` scores members by.
BenchObjective = Literal["surrogate", "real"]
#: The diffusion sampler of ``accuracy sample``.
Scheduler = Literal["ddim", "dpmsolver++"]
