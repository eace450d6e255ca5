"""The teacher's model card: what it is, the recipe, its figures and its training curves."""

from __future__ import annotations

from typing import Any

from nanosd_nas.search.teacher._dataset import CLASSES, HELDOUT_FACES, HELDOUT_PHOTOS
from nanosd_nas.search.teacher._recipe import Recipe

_CURVE_ROWS = 12
_METRICS = {
    "vae_heldout_psnr_db": "VAE reconstruction PSNR on held-out images (dB, 128 px)",
    "latent_scale": "latent scale folded into the VAE (so that 0.18215 gives unit variance)",
    "feature_heldout_accuracy": "feature network's accuracy on held-out real images",
    "eps_mse_conditional": "U-Net held-out ε-MSE with the class context (mean of 5 timesteps)",
    "eps_mse_null": "U-Net held-out ε-MSE with the null context (same noise and timesteps)",
}


def _curve_table(curves: dict[str, list[list[float]]]) -> list[str]:
    lines = []
    for phase, curve in curves.items():
        if not curve:
            continue
        stride = max(1, len(curve) // _CURVE_ROWS)
        shown = curve[::stride] + ([curve[-1]] if (len(curve) - 1) % stride else [])
        lines += [f"**{phase}** (training loss, mean over each logged interval)", "",
                  "| step | loss |", "|---:|---:|"]
        lines += [f"| {int(step)} | {loss:.4f} |" for step, loss in shown]
        lines.append("")
    return lines


def model_card(recipe: Recipe, metrics: dict[str, float], curves: dict[str, list[list[float]]],
               seconds: dict[str, float]) -> str:
    """The card's Markdown."""
    recipe_rows = [f"| `{k}` | {v} |" for k, v in recipe.to_dict().items()]
    metric_rows = [f"| {_METRICS.get(k, k)} | {v} |" for k, v in metrics.items()]
    time_rows = [f"| {k} | {v:.0f} s |" for k, v in seconds.items()]
    text: list[Any] = [
        "# nanosd-nas trained mini teacher",
        "",
        "Stable Diffusion 1.5's U-Net and VAE topology at the `mini` scale (widths divided by "
        "10 and 8, a 64-wide context, 128-pixel images, 16x16 latents), trained from scratch "
        "by `nanosd-nas teacher train` with the recipe below. It is a small class-conditional "
        "diffusion model, not SD 1.5: it exists so that distilled students are measured "
        "against a model that was trained.",
        "",
        "- Diffusers folder: `unet/` (`UNet2DConditionModel`) and `vae/` (`AutoencoderKL`), "
        "fp16 safetensors; `scheduler/` holds SD 1.5's DDIM configuration.",
        "- `context.safetensors`: the conditioning, `[classes + 1, 77, 64]`; row 0 is the null "
        "condition (for classifier-free guidance), row *i* the class *i* of the file's "
        "`classes` metadata.",
        "- `features.safetensors`: a small classifier of the same classes trained on the same "
        "data; its pooled features serve Fréchet distance and KID, its scores class accuracy.",
        "- ε-prediction under SD 1.5's noise schedule (scaled-linear betas 0.00085-0.012, "
        "1,000 steps); the shipped U-Net weights are an exponential moving average.",
        "",
        "## Data",
        "",
        f"Ten classes: {', '.join(f'`{c}`' for c in CLASSES)}. The first eight are procedural "
        "(shapes and patterns with random colours, backgrounds, positions, sizes, angles and "
        "periods); `photo` is random crops of scikit-image's sample pictures (held out: "
        f"{', '.join(HELDOUT_PHOTOS)}), `face` LFW faces shipped with scikit-image (the last "
        f"{HELDOUT_FACES} held out). Crops are mirrored and jittered in brightness and contrast. "
        "The sample pictures carry their own licences (see scikit-image's documentation).",
        "",
        "## Recipe",
        "",
        "| setting | value |",
        "|---|---|",
        *recipe_rows,
        "",
        "## Figures (held out)",
        "",
        "| figure | value |",
        "|---|---|",
        *metric_rows,
        "",
        "## Time per phase",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *time_rows,
        "",
        "## Training curves",
        "",
        *_curve_table(curves),
        "The whole curves are in `curves.json` (`[step, loss]` per phase).",
        "",
        "## Loading",
        "",
        "```python",
        "from diffusers import AutoencoderKL, UNet2DConditionModel",
        "unet = UNet2DConditionModel.from_pretrained(FOLDER, subfolder='unet')",
        "vae = AutoencoderKL.from_pretrained(FOLDER, subfolder='vae')",
        "```",
        "",
        "`nanosd-nas ... --teacher FOLDER` loads it as it loads an SD 1.5 checkpoint.",
        "",
    ]
    return "\n".join(str(line) for line in text)
