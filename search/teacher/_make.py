"""``teacher train``: run the recipe's phases and write the teacher folder.

The folder is a diffusers folder (``unet/`` and ``vae/`` as ``save_pretrained`` writes them, in
fp16 safetensors; ``scheduler/`` with SD 1.5's DDIM configuration) plus ``context.safetensors``
(the learned class context, its class names in the file's metadata), ``features.safetensors``
(the feature network), ``recipe.json``, ``curves.json`` and a model card ``README.md``. Before
it is moved into place it is loaded back through the teacher loader, so a folder that appears at
the destination always loads.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from nanosd_nas.search.distill import CONTEXT_FILE, load_teacher
from nanosd_nas.search.teacher._card import model_card
from nanosd_nas.search.teacher._dataset import CLASSES
from nanosd_nas.search.teacher._features import FEATURES_FILE, FeatureNet, save_features
from nanosd_nas.search.teacher._recipe import Recipe, Staging
from nanosd_nas.search.teacher._train import (
    Progress,
    UNetWithContext,
    denoising_errors,
    encode_all,
    feature_accuracy,
    feature_phase,
    fold_latent_scale,
    new_models,
    quiet,
    run_phase,
    unet_phase,
    vae_phase,
    vae_psnr,
)
from nanosd_nas.spaces import BuiltModel, unet_config, vae_config


@dataclass(frozen=True)
class TrainedTeacher:
    """What ``teacher train`` made: the folder, its figures and curves, and whether it resumed."""

    folder: Path
    metrics: dict[str, float]
    curves: dict[str, list[list[float]]]
    seconds: dict[str, float]
    resumed: bool


def train_teacher(out: Path, recipe: Recipe | None = None, *, device: str = "cpu",
                  restart: bool = False, on_progress: Progress = quiet) -> TrainedTeacher:
    """Train the teacher of ``recipe`` and write it to ``out`` (see the module's docstring).

    Raises:
        TrainingError: the recipe is invalid or ``out`` exists.
    """
    recipe = recipe or Recipe()
    recipe.check()
    staging = Staging(Path(out), recipe)
    resumed = staging.open(restart=restart)
    torch.manual_seed(recipe.seed)
    model, net, pair = new_models(recipe, device)
    metrics: dict[str, float] = {}
    curves: dict[str, list[list[float]]] = {}
    seconds: dict[str, float] = {}

    def record(name: str, result: dict[str, Any]) -> None:
        curves[name], seconds[name] = result["curve"], result["seconds"]

    record("vae", run_phase(staging, vae_phase(model, recipe, device), recipe, on_progress))
    metrics["latent_scale"] = fold_latent_scale(model, recipe, device)
    metrics["vae_heldout_psnr_db"] = vae_psnr(model, device)
    record("features", run_phase(staging, feature_phase(net, recipe, device), recipe,
                                 on_progress))
    metrics["feature_heldout_accuracy"] = feature_accuracy(net, device)
    latents, labels, encode_seconds = _encoded(staging, model, recipe, device, on_progress)
    seconds["encode"] = encode_seconds
    phase = unet_phase(pair, latents, labels, recipe, device)
    record("unet", run_phase(staging, phase, recipe, on_progress))
    assert phase.ema is not None
    pair.load_state_dict(phase.ema.shadow)
    pair.eval()
    metrics |= {f"eps_mse_{k}": v for k, v in denoising_errors(pair, model, device).items()}
    folder = staging.root / "teacher"
    if folder.exists():
        shutil.rmtree(folder)
    result = TrainedTeacher(folder=Path(out), metrics={k: round(v, 4) for k, v in
                                                       metrics.items()},
                            curves=curves, seconds=seconds, resumed=resumed)
    _write(folder, model, pair, net, recipe, result)
    load_teacher(folder)  # what lands at `out` loads
    staging.publish(folder)
    return result


def _encoded(staging: Staging, model: BuiltModel, recipe: Recipe, device: str,
             on_progress: Progress) -> tuple[torch.Tensor, torch.Tensor, float]:
    saved = staging.load("encode.pt")
    if saved is not None:
        return saved["latents"], saved["labels"], float(saved["seconds"])
    began = time.monotonic()
    latents, labels = encode_all(model, recipe, device, on_progress)
    seconds = round(time.monotonic() - began, 1)
    staging.save("encode.pt", {"latents": latents, "labels": labels, "seconds": seconds})
    return latents, labels, seconds


def _write(folder: Path, model: BuiltModel, pair: UNetWithContext, net: FeatureNet,
           recipe: Recipe, result: TrainedTeacher) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    configs = {"unet": unet_config(model.spec), "vae": vae_config(model.spec)}
    for name, cls, module in (("unet", UNet2DConditionModel, model.unet),
                              ("vae", AutoencoderKL, model.vae)):
        stock = cls.from_config(configs[name])  # type: ignore[no-untyped-call]
        stock.load_state_dict(module.state_dict(), strict=True)
        stock.to(torch.float16).save_pretrained(folder / name, safe_serialization=True)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", set_alpha_to_one=False,
                              steps_offset=1, clip_sample=False, prediction_type="epsilon")
    scheduler.save_config(folder / "scheduler")  # type: ignore[attr-defined]
    with torch.no_grad():
        context = pair.context().detach().to("cpu", torch.float16).contiguous()
    save_file({"context": context}, str(folder / CONTEXT_FILE),
              metadata={"classes": json.dumps(list(CLASSES))})
    save_features(net, folder / FEATURES_FILE)
    (folder / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
    (folder / "curves.json").write_text(json.dumps(result.curves) + "\n")
    (folder / "README.md").write_text(model_card(recipe, result.metrics, result.curves,
                                                 result.seconds))
