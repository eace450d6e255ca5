"""Distilling one side of the VAE alone, as a U-Net stage is: the same teacher-input,
teacher-output principle.

The encoder side (encoder and ``quant_conv``) learns to give the teacher's latent mean of an
image; the decoder side (``post_quant_conv`` and decoder) learns to decode a teacher latent as
the teacher's decoder does. A side whose widths differ from the teacher's starts from the
teacher's tensors, narrower ones cut to the teacher's leading channels.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from nanosd_nas.search.distill._data import CalibrationData
from nanosd_nas.search.distill._distill import (
    DistillResult,
    DistillSettings,
    relative_mse,
    train_loop,
)
from nanosd_nas.spaces import BuiltModel, SpecVAE

#: The modules of each side, by their names in ``SpecVAE``.
PART_MODULES = {"vae_encoder": ("encoder", "quant_conv"),
                "vae_decoder": ("post_quant_conv", "decoder")}


def _run(vae: SpecVAE, part: str, inputs: torch.Tensor) -> torch.Tensor:
    return vae.encode(inputs) if part == "vae_encoder" else vae.decode(inputs)


def part_state(vae: SpecVAE, part: str) -> dict[str, torch.Tensor]:
    """The weights of one side, named as in ``SpecVAE``'s state dict."""
    prefixes = tuple(f"{m}." for m in PART_MODULES[part])
    return {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()
            if k.startswith(prefixes)}


@torch.no_grad()
def _teacher_pairs(teacher: BuiltModel, part: str, images: torch.Tensor,
                   latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for one side: images -> latent means, or latents -> images."""
    unscaled = latents / teacher.spec.vae.scaling_factor
    if part == "vae_encoder":
        return images, unscaled
    decoded = torch.cat([teacher.vae.decode(unscaled[i:i + 8])
                         for i in range(0, unscaled.shape[0], 8)])
    return unscaled, decoded


def distill_vae_part(
    part: str, student: BuiltModel, teacher: BuiltModel, data: CalibrationData,
    settings: DistillSettings, *, device: str = "cpu", seed: int = 0,
) -> tuple[DistillResult, dict[str, torch.Tensor]]:
    """Train one VAE side of ``student`` (a copy) against the teacher's; returns its weights."""
    started = time.perf_counter()
    vae = copy.deepcopy(student.vae).to(device).train()
    modules = nn.ModuleList(getattr(vae, name) for name in PART_MODULES[part])
    train_in, train_out = (t.to(device) for t in _teacher_pairs(
        teacher, part, data.distill.images, data.distill.latents))
    held_in, held_out = (t.to(device) for t in _teacher_pairs(
        teacher, part, data.heldout.images, data.heldout.latents))

    def loss_on(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return relative_mse([_run(vae, part, inputs)], [targets])

    with torch.no_grad():
        initial, held_initial = loss_on(train_in, train_out), loss_on(held_in, held_out)
    steps = settings.steps if float(initial) > 1e-10 else 0
    train_loop(modules, lambda rows: loss_on(train_in[rows], train_out[rows]),
               n=train_in.shape[0], steps=steps, settings=settings, seed=seed)
    vae.eval()
    with torch.no_grad():
        final, held_final = loss_on(train_in, train_out), loss_on(held_in, held_out)
    result = DistillResult(
        state={}, initial_loss=float(initial), final_loss=float(final),
        heldout_initial=float(held_initial), heldout_final=float(held_final), steps=steps,
        seconds=time.perf_counter() - started,
    )
    return result, part_state(vae, part)
