"""The teacher's training recipe and the staging folder that makes training resumable.

``teacher train --out DIR`` works in ``DIR.partial/`` beside its destination: the recipe it runs
(``recipe.json``), each finished phase's result and, while a phase runs, its last complete
checkpoint (written to a temporary name and renamed, so a kill never leaves half a checkpoint).
Only when every phase is done is the teacher folder written inside the staging folder and renamed
to ``DIR``: there is never a half-written teacher at ``DIR``. Run again with the same recipe, it
resumes from the last checkpoint; with another recipe it starts over.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

#: What the teacher's phases are, in order.
PHASES = ("vae", "features", "encode", "unet")
_RECIPE = "recipe.json"
_STATE = "state"


class TrainingError(ValueError):
    """A training request that cannot be carried out (bad budget, destination taken)."""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained teacher (with the package version of the data).

    The defaults are the shipped teacher's recipe: about 62 minutes on a 2-core CPU (measured
    with other work on the machine).
    """

    seed: int = 0
    vae_steps: int = 1500
    vae_batch: int = 16
    vae_crop: int = 64
    vae_lr: float = 1e-3
    vae_kl: float = 1e-6
    feature_steps: int = 400
    feature_batch: int = 32
    feature_lr: float = 2e-3
    encoded: int = 8000
    unet_steps: int = 2000
    unet_batch: int = 32
    unet_lr: float = 6e-4
    warmup: int = 100
    ema_decay: float = 0.999
    condition_drop: float = 0.1
    checkpoint_every: int = 200

    def check(self) -> None:
        """Raise :class:`TrainingError` for a budget that cannot train anything."""
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name not in ("seed", "vae_kl") and value <= 0:
                raise TrainingError(f"{item.name}={value} must be positive")
        if not 0 <= self.condition_drop < 1 or not 0 <= self.ema_decay < 1:
            raise TrainingError("condition_drop and ema_decay must lie in [0, 1)")
        if self.vae_crop > 128 or self.vae_crop % 8:
            raise TrainingError(f"vae_crop={self.vae_crop} must be a multiple of 8, at most 128")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then a cosine decay to 5% of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item()))


class Staging:
    """The resumable working folder ``DIR.partial`` of a training run towards ``DIR``."""

    def __init__(self, out: Path, recipe: Recipe) -> None:
        self.out = out
        self.root = out.with_name(out.name + ".partial")
        self.recipe = recipe

    def open(self, *, restart: bool = False) -> bool:
        """Prepare the folder; ``True`` when an earlier run of the same recipe is resumed."""
        if self.out.exists():
            raise TrainingError(f"{self.out} exists; remove it or choose another --out")
        wanted = json.dumps(self.recipe.to_dict(), sort_keys=True)
        recipe_file = self.root / _RECIPE
        if self.root.is_dir() and not restart and recipe_file.is_file() and (
                json.dumps(json.loads(recipe_file.read_text()), sort_keys=True) == wanted):
            return True
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / _STATE).mkdir(parents=True)
        _atomic_text(recipe_file, wanted + "\n")
        return False

    def path(self, name: str) -> Path:
        return self.root / _STATE / name

    def save(self, name: str, payload: dict[str, Any]) -> None:
        """Write ``payload`` (tensors, numbers, lists) as ``name``, atomically."""
        target = self.path(name)
        temporary = target.with_name(target.name + ".tmp")
        torch.save(payload, temporary)
        temporary.replace(target)

    def load(self, name: str) -> dict[str, Any] | None:
        """The payload saved as ``name``, or ``None`` if there is none (no code is unpickled)."""
        target = self.path(name)
        if not target.is_file():
            return None
        payload: dict[str, Any] = torch.load(target, map_location="cpu", weights_only=True)
        return payload

    def publish(self, folder: Path) -> None:
        """Move the finished teacher ``folder`` (inside the staging folder) to the destination
        and remove the staging folder."""
        folder.replace(self.out)
        shutil.rmtree(self.root, ignore_errors=True)


def _atomic_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)
