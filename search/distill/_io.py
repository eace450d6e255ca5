"""Distilling the U-Net's stem, time embedding and head (the :data:`UNET_IO` unit).

Their shapes follow the first level's width W1 (the time embedding is 4·W1 wide), so a student
narrower there cannot take them from its teacher. Each is trained alone toward what the stages
were distilled with, so the assembled student runs the features its stages learnt on:

- the stem (``conv_in``) maps a noisy latent to the teacher's first W1 channels of its stem
  output;
- the time embedding maps a timestep to the teacher's first 4·W1 channels of its time
  embedding, over all 1,000 training timesteps (its sinusoid is W1 wide, unlike the teacher's,
  so it must be learnt rather than cut);
- the head (``conv_norm_out``, ``conv_out``) maps the teacher's D1 output, cut to W1 channels,
  to the teacher's noise prediction.

The student arrives with every tensor cut from the teacher's (the first channels on every
axis, the selection the stage features use; ``transplant(..., cut=True)``), and the three
losses (relative MSE) are summed and minimised together, as a stage's are.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from nanosd_nas.search._accuracy_config import DistillSettings
from nanosd_nas.search.distill._data import CalibrationData
from nanosd_nas.search.distill._distill import (
    DistillResult,
    fit_channels,
    relative_mse,
    train_loop,
)
from nanosd_nas.search.distill._stages import Trace
from nanosd_nas.search.distill._variants import UNET_IO_MODULES
from nanosd_nas.spaces import BuiltModel, SpecUNet

TIMESTEPS = 1000


def io_state(unet: SpecUNet) -> dict[str, torch.Tensor]:
    """The unit's tensors, named as in ``SpecUNet``'s state dict."""
    prefixes = tuple(f"{m}." for m in UNET_IO_MODULES)
    return {k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()
            if k.startswith(prefixes)}


class _IOData:
    """Inputs and targets of the three parts, for one part of the calibration data."""

    def __init__(self, teacher: SpecUNet, trace: Trace, noisy: torch.Tensor, width: int,
                 device: str) -> None:
        with torch.no_grad():
            stem = torch.cat([teacher.conv_in(noisy[i:i + 16]) for i in range(0, len(noisy), 16)])
        self.noisy = noisy.to(device)
        self.stem_target = fit_channels(stem, width).to(device)
        self.head_input = fit_channels(trace.stages["D1"].outputs[0], width).to(device)
        self.head_target = trace.output.to(device)

    def __len__(self) -> int:
        return self.noisy.shape[0]


def _time_pairs(teacher: SpecUNet, width: int, device: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
    timesteps = torch.arange(TIMESTEPS, dtype=torch.float32)
    with torch.no_grad():
        target = teacher.time_embedding(teacher.time_proj(timesteps))
    return timesteps.to(device), fit_channels(target, 4 * width).to(device)


def distill_unet_io(
    student: BuiltModel, teacher: BuiltModel, data: CalibrationData,
    traces: dict[str, Trace], settings: DistillSettings, *, device: str = "cpu",
    seed: int = 0,
) -> tuple[DistillResult, dict[str, torch.Tensor]]:
    """Train the stem, time embedding and head of ``student`` (a copy) toward the teacher's;
    ``traces`` holds the teacher's features on the ``distill`` and ``heldout`` parts."""
    started = time.perf_counter()
    unet = copy.deepcopy(student.unet).to(device)
    width = student.spec.unet.levels[0].channels
    parts = {part: _IOData(teacher.unet, traces[part], getattr(data, part).noisy, width, device)
             for part in ("distill", "heldout")}
    timesteps, temb_target = _time_pairs(teacher.unet, width, device)
    modules = nn.ModuleList(getattr(unet, name) for name in UNET_IO_MODULES).train()

    def loss_on(io: _IOData, rows: torch.Tensor | slice) -> torch.Tensor:
        stem = unet.conv_in(io.noisy[rows])
        temb = unet.time_embedding(unet.time_proj(timesteps))
        head = unet.conv_out(unet.conv_act(unet.conv_norm_out(io.head_input[rows])))
        return relative_mse([stem, temb, head],
                            [io.stem_target[rows], temb_target, io.head_target[rows]])

    with torch.no_grad():
        initial = loss_on(parts["distill"], slice(None))
        held_initial = loss_on(parts["heldout"], slice(None))
    steps = settings.steps if float(initial) > 1e-10 else 0
    train_loop(modules, lambda rows: loss_on(parts["distill"], rows),
               n=len(parts["distill"]), steps=steps, settings=settings, seed=seed)
    modules.eval()
    with torch.no_grad():
        final = loss_on(parts["distill"], slice(None))
        held_final = loss_on(parts["heldout"], slice(None))
    result = DistillResult(
        state={}, initial_loss=float(initial), final_loss=float(final),
        heldout_initial=float(held_initial), heldout_final=float(held_final), steps=steps,
        seconds=time.perf_counter() - started,
    )
    return result, io_state(unet)
