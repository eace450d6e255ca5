"""Training the teacher: SD 1.5's topology at ``mini``, class-conditional through its context.

Four phases, each resumable from its last checkpoint (see the recipe module):

1. ``vae``: the VAE on random ``vae_crop``-pixel crops of the training data (it is convolutional,
   so it is trained on crops and used at the full size), L1 reconstruction of a sampled latent
   plus a small KL term, as SD's autoencoder is trained (without its perceptual and adversarial
   terms). The latent scale is then folded into the weights (the 1x1 ``quant_conv`` and
   ``post_quant_conv``), so that SD 1.5's ``scaling_factor`` of 0.18215 gives latents of unit
   variance and the config stays SD 1.5's.
2. ``features``: the feature network, a classifier of the ten classes (see the features module).
3. ``encode``: ``encoded`` training images, encoded once into scaled latent means.
4. ``unet``: the U-Net with ε-prediction under SD 1.5's noise schedule, conditioned through
   cross-attention on a learned context per class (a ``[classes + 1, 77, 64]`` table, layer
   normalised as a text encoder's output is; row 0 is the null condition, used for
   ``condition_drop`` of the samples so that classifier-free guidance works). An exponential
   moving average of the weights (``ema_decay``) is what ships.

Every batch, noise and timestep is a function of the seed and the step, so an interrupted and
resumed run trains the teacher an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional
from torchmetrics.functional.image import peak_signal_noise_ratio

from nanosd_nas.search.distill import sd15_noise_schedule
from nanosd_nas.search.teacher._dataset import CLASSES, heldout_set, training_batch
from nanosd_nas.search.teacher._features import FeatureNet
from nanosd_nas.search.teacher._recipe import Recipe, Staging, lr_at
from nanosd_nas.spaces import BuiltModel, build, load_point, to_scale

Progress = Callable[[str, int, int], None]
StepFn = Callable[[int], torch.Tensor]
IMAGE_SIZE = 128
_LOG_EVERY = 25
_HELDOUT_PER_CLASS = 8
_TIMESTEPS = (50, 250, 500, 750, 950)


def quiet(phase: str, done: int, total: int) -> None:
    return None


def _generator(recipe: Recipe, stream: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(recipe.seed * 7_919 + stream * 104_729 + step)


class Ema:
    """An exponential moving average of a module's floating-point state."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def update(self, module: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for name, value in module.state_dict().items():
                if value.dtype.is_floating_point:
                    self.shadow[name].lerp_(value.detach(), 1 - decay)
                else:
                    self.shadow[name].copy_(value)


@dataclass
class Phase:
    """One resumable training loop."""

    name: str
    modules: dict[str, nn.Module]
    steps: int
    lr: float
    step_fn: StepFn
    ema: Ema | None = None


def _restore(staging: Staging, phase: Phase, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    saved = staging.load(f"{phase.name}.pt") or {}
    for key, module in phase.modules.items():
        if key in saved:
            module.load_state_dict(saved[key])
    if "optimizer" in saved:
        optimizer.load_state_dict(saved["optimizer"])
    if phase.ema is not None and "ema" in saved:
        phase.ema.shadow = saved["ema"]
    return saved


def _checkpoint(staging: Staging, phase: Phase, optimizer: torch.optim.Optimizer, done: int,
                curve: list[list[float]], seconds: float) -> None:
    state: dict[str, Any] = {key: m.state_dict() for key, m in phase.modules.items()}
    state |= {"optimizer": optimizer.state_dict(), "step": done, "curve": curve,
              "seconds": seconds}
    if phase.ema is not None:
        state["ema"] = phase.ema.shadow
    staging.save(f"{phase.name}.pt", state)


def run_phase(staging: Staging, phase: Phase, recipe: Recipe,
              on_progress: Progress) -> dict[str, Any]:
    """Train ``phase`` from its last checkpoint to its last step; its curve and seconds."""
    params = [p for m in phase.modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=phase.lr, weight_decay=0.0)
    saved = _restore(staging, phase, optimizer)
    start, curve = int(saved.get("step", 0)), list(saved.get("curve", []))
    seconds, began, running = float(saved.get("seconds", 0.0)), time.monotonic(), 0.0
    for module in phase.modules.values():
        module.train()
    for step in range(start, phase.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, phase.steps, phase.lr, recipe.warmup)
        loss = phase.step_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if phase.ema is not None:
            phase.ema.update(phase.modules["model"], step)
        running += float(loss.detach())
        done = step + 1
        if done % _LOG_EVERY == 0 or done == phase.steps:
            curve.append([done, running / (done - (curve[-1][0] if curve else start))])
            running = 0.0
        if done % recipe.checkpoint_every == 0 or done == phase.steps:
            seconds += time.monotonic() - began
            began = time.monotonic()
            _checkpoint(staging, phase, optimizer, done, curve, seconds)
        on_progress(phase.name, done, phase.steps)
    for module in phase.modules.values():
        module.eval()
    return {"curve": curve, "seconds": round(seconds, 1)}


# -- the VAE ------------------------------------------------------------------------------------
def vae_phase(model: BuiltModel, recipe: Recipe, device: str) -> Phase:
    vae = model.vae

    def step_fn(step: int) -> torch.Tensor:
        images, _ = training_batch(recipe.seed, 1, step, recipe.vae_batch, IMAGE_SIZE)
        g = _generator(recipe, 1, step)
        top, left = torch.randint(0, IMAGE_SIZE - recipe.vae_crop + 1, (2,), generator=g).tolist()
        crop = images[:, :, top:top + recipe.vae_crop, left:left + recipe.vae_crop].to(device)
        mean, logvar = vae.moments(crop).chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        noise = torch.randn(mean.shape, generator=g).to(device)
        reconstruction = vae.decode(mean + torch.exp(0.5 * logvar) * noise)
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
        return functional.l1_loss(reconstruction, crop) + recipe.vae_kl * kl

    return Phase("vae", {"model": vae}, recipe.vae_steps, recipe.vae_lr, step_fn)


@torch.no_grad()
def fold_latent_scale(model: BuiltModel, recipe: Recipe, device: str) -> float:
    """Rescale the VAE's latent so that ``scaling_factor`` gives unit variance; the factor."""
    vae = model.vae
    images, _ = training_batch(recipe.seed, 5, 0, 128, IMAGE_SIZE)
    std = float(vae.encode(images.to(device)).std())
    factor = 1.0 / (model.spec.vae.scaling_factor * std)
    c = model.spec.latent_channels
    bias = vae.quant_conv.bias
    assert bias is not None
    vae.quant_conv.weight[:c] *= factor
    bias[:c] *= factor
    bias[c:] += 2 * math.log(factor)
    vae.post_quant_conv.weight /= factor
    return factor


@torch.no_grad()
def vae_psnr(model: BuiltModel, device: str) -> float:
    """Held-out reconstruction PSNR (dB, images in [-1, 1]) at the full image size."""
    images, _ = heldout_set(_HELDOUT_PER_CLASS, IMAGE_SIZE)
    images = images.to(device)
    decoded = model.vae.decode(model.vae.encode(images)).clamp(-1, 1)
    return float(peak_signal_noise_ratio(decoded, images, data_range=2.0))


# -- the feature network ------------------------------------------------------------------------
def feature_phase(net: FeatureNet, recipe: Recipe, device: str) -> Phase:
    def step_fn(step: int) -> torch.Tensor:
        images, labels = training_batch(recipe.seed, 2, step, recipe.feature_batch, IMAGE_SIZE)
        logits = net.logits((images.to(device) + 1) / 2)
        return functional.cross_entropy(logits, labels.to(device))

    return Phase("features", {"model": net}, recipe.feature_steps, recipe.feature_lr, step_fn)


@torch.no_grad()
def feature_accuracy(net: FeatureNet, device: str) -> float:
    """The share of held-out real images the feature network classifies right."""
    images, labels = heldout_set(_HELDOUT_PER_CLASS, IMAGE_SIZE)
    predicted = net.logits((images.to(device) + 1) / 2).argmax(dim=1).cpu()
    return float((predicted == labels).float().mean())


# -- the U-Net ----------------------------------------------------------------------------------
class ClassContext(nn.Module):
    """The learned context: one ``[tokens, D]`` row per class after the null row 0."""

    def __init__(self, classes: int, tokens: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(classes + 1, tokens, dim))

    def forward(self) -> torch.Tensor:
        return functional.layer_norm(self.table, (self.table.shape[-1],))


class UNetWithContext(nn.Module):
    """The U-Net and its class context, trained (and averaged) together."""

    def __init__(self, unet: nn.Module, context: ClassContext) -> None:
        super().__init__()
        self.unet = unet
        self.context = context

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.unet(noisy, t, self.context()[rows])
        return out


def unet_phase(pair: UNetWithContext, latents: torch.Tensor, labels: torch.Tensor,
               recipe: Recipe, device: str) -> Phase:
    schedule = sd15_noise_schedule()

    def step_fn(step: int) -> torch.Tensor:
        g = _generator(recipe, 4, step)
        pick = torch.randint(0, len(latents), (recipe.unet_batch,), generator=g)
        clean = latents[pick]
        rows = labels[pick] + 1
        rows[torch.rand(len(rows), generator=g) < recipe.condition_drop] = 0
        t = torch.randint(0, 1000, (len(rows),), generator=g)
        noise = torch.randn(clean.shape, generator=g)
        noisy = schedule.add_noise(clean, noise, t)  # type: ignore[attr-defined]
        predicted = pair(noisy.to(device), t.to(device), rows.to(device))
        return functional.mse_loss(predicted, noise.to(device))

    return Phase("unet", {"model": pair}, recipe.unet_steps, recipe.unet_lr, step_fn,
                 ema=Ema(pair, recipe.ema_decay))


@torch.no_grad()
def encode_all(model: BuiltModel, recipe: Recipe, device: str,
               on_progress: Progress) -> tuple[torch.Tensor, torch.Tensor]:
    """``encoded`` training images as scaled latent means, and their labels."""
    batch, latents, labels = 64, [], []
    total = math.ceil(recipe.encoded / batch)
    for index in range(total):
        size = min(batch, recipe.encoded - index * batch)
        images, classes = training_batch(recipe.seed, 3, index, size, IMAGE_SIZE)
        latents.append(model.vae.encode(images.to(device)).cpu())
        labels.append(classes)
        on_progress("encode", index + 1, total)
    return torch.cat(latents) * model.spec.vae.scaling_factor, torch.cat(labels)


@torch.no_grad()
def denoising_errors(pair: UNetWithContext, model: BuiltModel, device: str) -> dict[str, float]:
    """Held-out ε-MSE at fixed timesteps, with the class's context and with the null one
    (conditioning that helps shows as a lower conditional error)."""
    images, labels = heldout_set(_HELDOUT_PER_CLASS, IMAGE_SIZE)
    clean = model.vae.encode(images.to(device)) * model.spec.vae.scaling_factor
    g = torch.Generator().manual_seed(0)
    schedule, errors = sd15_noise_schedule(), {"conditional": 0.0, "null": 0.0}
    for step in _TIMESTEPS:
        t = torch.full((len(clean),), step)
        noise = torch.randn(clean.shape, generator=g).to(device)
        noisy = schedule.add_noise(clean, noise, t.to(device))  # type: ignore[attr-defined]
        for name, rows in (("conditional", labels + 1), ("null", torch.zeros_like(labels))):
            predicted = pair(noisy, t.to(device), rows.to(device))
            errors[name] += float(functional.mse_loss(predicted, noise)) / len(_TIMESTEPS)
    return errors


def new_models(recipe: Recipe, device: str) -> tuple[BuiltModel, FeatureNet, UNetWithContext]:
    """The seeded, untrained modules of the recipe."""
    spec = to_scale(load_point("sd15"), "mini")
    model = build(spec, seed=recipe.seed, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed + 1)
        net = FeatureNet(list(CLASSES)).to(device)
        context = ClassContext(len(CLASSES), spec.unet.context_length,
                               spec.unet.cross_attention_dim).to(device)
    return model, net, UNetWithContext(model.unet, context)


def training_data_path(root: Path) -> Path:
    return root / "encode.pt"
