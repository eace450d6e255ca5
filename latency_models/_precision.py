"""Precisions a device measures at: the exported FP32 graph as it is, converted to FP16, or
quantised to INT8 with ONNX Runtime's static QDQ quantisation (the format NPU execution
providers consume; :data:`INT8_OPERATORS`), and the converted model's output error against
FP32 (SNR in dB).

The conversion happens before a model leaves this host, so a remote agent measures the same
converted graph a local device does. Static quantisation needs calibration inputs: the measured
model's own inputs (the seeded example inputs of a component, or the activations a block
receives inside its model) drawn afresh four times with the same mean and spread; the SNR is
taken on the original inputs, which calibration never saw. Latency does not depend on the
calibration data, only the SNR does.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nanosd_nas.latency_models._records import LatencyInputError

if TYPE_CHECKING:
    import torch

#: What a device can measure at; ``fp32`` is the exported graph unchanged.
PRECISIONS = ("fp32", "fp16", "int8")
#: Fresh draws of the inputs that calibrate INT8 quantisation.
CALIBRATION_DRAWS = 4
#: The operators INT8 quantisation covers: the convolutions and matrix products that hold
#: nearly all of a U-Net's and a VAE's arithmetic (ONNX Runtime's CPU provider fuses their QDQ
#: pairs into integer kernels). Normalisations, activations and softmax stay in float; with
#: every operator quantised, quantisation took three times as long on a ``mini`` U-Net and its
#: SNR fell from 25.6 to 20.5 dB.
INT8_OPERATORS = ("Conv", "MatMul", "Gemm")
#: What an SNR without any error reads as (a finite number, so reports stay valid JSON).
SNR_CEILING_DB = 300.0


class ConversionError(LatencyInputError):
    """A model could not be converted to a precision: ONNX Runtime's FP16 converter or INT8
    quantiser failed on it (``reason``: the converter's error, in one line)."""

    def __init__(self, what: str, precision: str, reason: str) -> None:
        super().__init__(f"cannot convert {what} to {precision}: {reason}")
        self.what, self.precision, self.reason = what, precision, reason


def _reason(error: BaseException) -> str:
    """``error`` as one line: its type and the first line of its message."""
    first = next(iter(str(error).strip().splitlines()), "")
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; otherwise one line naming them."""
    if precision not in PRECISIONS:
        raise LatencyInputError(f"precision {precision!r} does not exist; precisions: "
                                f"{', '.join(PRECISIONS)}")
    return precision


Feeds = dict[str, np.ndarray]


def feeds_of(path: Path, names: list[str], inputs: tuple[torch.Tensor, ...]) -> Feeds:
    """The inputs as ONNX Runtime feeds, by name, for the inputs the exported graph kept (the
    exporter drops an input the graph never reads)."""
    import onnx

    graph_inputs = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
    return {name: tensor.detach().numpy() for name, tensor in zip(names, inputs, strict=True)
            if name in graph_inputs}


def _redrawn(feeds: Feeds, seed: int) -> Feeds:
    """``feeds`` with every floating input of two or more dimensions drawn afresh with its own
    mean and spread (a time step, a scalar, stays as it is)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, value in feeds.items():
        if value.dtype.kind == "f" and value.ndim >= 2:
            draw = rng.standard_normal(value.shape) * float(value.std()) + float(value.mean())
            out[name] = draw.astype(value.dtype)
        else:
            out[name] = value
    return out


def convert(path: Path, precision: str, feeds: Feeds, *, what: str = "the model") -> Path:
    """``path`` converted to ``precision`` beside it (``path`` itself for ``fp32``).

    Inputs and outputs stay FP32 in every precision (the casts are part of the measured
    graph), so the same feeds drive the FP32 and the converted model.

    Raises:
        ConversionError: the converter failed on the model (``what`` names it in the message,
            the converter's own error is its cause).
    """
    check_precision(precision)
    if precision == "fp32":
        return path
    try:
        with warnings.catch_warnings():  # the converters' numpy warnings say what the error will
            warnings.simplefilter("ignore")
            return _converted(path, precision, feeds)
    except (LatencyInputError, OSError, MemoryError):
        raise
    except Exception as error:  # any failure of the converter: the model cannot be converted
        raise ConversionError(what, precision, _reason(error)) from error


def _converted(path: Path, precision: str, feeds: Feeds) -> Path:
    import onnx

    external = Path(f"{path}.data").exists()
    out = path.with_name(f"{path.stem}.{precision}.onnx")
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
        onnx.save_model(model, str(out), save_as_external_data=external,
                        all_tensors_to_one_file=True, location=f"{out.name}.data")
        return out
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime is untyped
        def __init__(self) -> None:
            self.draws = iter([_redrawn(feeds, seed) for seed in range(1, 1 + CALIBRATION_DRAWS)])

        def get_next(self) -> Feeds | None:
            return next(self.draws, None)

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # both steps log their progress to the root logger
    try:
        # ONNX Runtime's own pre-processing (its basic graph optimisations, which every session
        # applies anyway, and shape inference) first: it folds the exporter's constants and
        # identities, halving a mini U-Net's nodes (1,660 to 908), and the quantiser's graph
        # edits scan every node once per quantised tensor (3.0 s to 2.5 s in all; the timed
        # latency and the SNR unchanged within their repeatability).
        prepared = path.with_name(f"{path.stem}.prepared.onnx")
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True,
                          save_as_external_data=external, all_tensors_to_one_file=True,
                          external_data_location=f"{prepared.name}.data")
        quantize_static(str(prepared), str(out), _Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(INT8_OPERATORS),
                        use_external_data_format=external)
    finally:
        quiet.setLevel(level)
    return out


def output_snr_db(reference: Path, converted: Path, feeds: Feeds) -> float:
    """Signal-to-noise ratio (dB) of ``converted``'s outputs against ``reference``'s on the
    same feeds, over all outputs together; :data:`SNR_CEILING_DB` when they agree exactly."""
    import onnxruntime as ort

    def outputs(path: Path) -> list[np.ndarray]:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        result: list[np.ndarray] = session.run(None, feeds)
        return result

    signal = noise = 0.0
    for want, got in zip(outputs(reference), outputs(converted), strict=True):
        want64, got64 = want.astype(np.float64), got.astype(np.float64)
        signal += float(np.sum(want64 ** 2))
        noise += float(np.sum((want64 - got64) ** 2))
    if noise == 0.0:
        return SNR_CEILING_DB
    if signal == 0.0 or not math.isfinite(noise):
        return -SNR_CEILING_DB
    return round(min(SNR_CEILING_DB, 10.0 * math.log10(signal / noise)), 2)
