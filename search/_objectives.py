"""The objectives a study can ask for, and where each comes from.

Size objectives are counted from the spec, latency comes from the device (its predictor or a
measurement), accuracy from the study's evaluator on a Ray worker.
"""

from __future__ import annotations

from collections.abc import Callable

from nanosd_nas.spaces import ArchSpec, count

#: The latency objective: the pipeline's latency on the study's device, in ms.
LATENCY_OBJECTIVE = "latency_ms"


def params_m(spec: ArchSpec, steps: int) -> float:
    """Parameters of the whole pipeline (U-Net and VAE), in millions."""
    return count(spec).total_params / 1e6


def macs_g(spec: ArchSpec, steps: int) -> float:
    """MACs of one generation (VAE encoder, ``steps`` U-Net evaluations, VAE decoder), in G."""
    macs = count(spec).macs
    return (macs["vae_encoder"] + steps * macs["unet"] + macs["vae_decoder"]) / 1e9


#: Each size objective and how it is counted from a spec (for ``steps`` U-Net evaluations).
SIZE_COUNTERS: dict[str, Callable[[ArchSpec, int], float]] = {
    "params_m": params_m, "macs_g": macs_g,
}
