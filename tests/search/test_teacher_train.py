"""``teacher train``: the folder it writes loads as diffusers and as a teacher; an interrupted run
resumes to the teacher an uninterrupted one makes; nothing half-written appears at the
destination."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file

from nanosd_nas.search.distill import load_teacher
from nanosd_nas.search.teacher import (
    CLASSES,
    Recipe,
    TrainingError,
    load_features,
    train_teacher,
)

TINY = Recipe(vae_steps=6, vae_batch=4, feature_steps=5, feature_batch=8, encoded=64,
              unet_steps=10, unet_batch=8, warmup=2, checkpoint_every=4)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    state = {}
    for part in ("unet", "vae"):
        file = folder / part / "diffusion_pytorch_model.safetensors"
        state |= {f"{part}.{k}": v for k, v in load_file(file).items()}
    state |= {f"context.{k}": v for k, v in load_file(folder / "context.safetensors").items()}
    return state


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "tiny"
    train_teacher(out, TINY)
    return out


def test_the_folder_loads_in_stock_diffusers_and_as_a_class_conditional_teacher(trained):
    unet = UNet2DConditionModel.from_pretrained(trained, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(trained, subfolder="vae")
    assert unet.config.cross_attention_dim == 64 and vae.config.latent_channels == 4
    stored = load_file(trained / "unet" / "diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.float16}
    teacher = load_teacher(trained)
    assert teacher.scale == "mini" and not teacher.is_demo
    assert teacher.classes == CLASSES
    assert teacher.context is not None and teacher.context.shape == (len(CLASSES) + 1, 77, 64)
    assert load_features(trained / "features.safetensors").classes == list(CLASSES)
    card = (trained / "README.md").read_text()
    assert "## Recipe" in card and "| `unet_steps` | 10 |" in card and "**unet**" in card
    curves = json.loads((trained / "curves.json").read_text())
    assert [step for step, _ in curves["unet"]] == [10]
    assert not trained.with_name("tiny.partial").exists()


def test_an_interrupted_run_resumes_to_the_teacher_an_uninterrupted_run_makes(tmp_path, trained):
    out = tmp_path / "resumed"

    def stop_in_unet(phase: str, done: int, total: int) -> None:
        if phase == "unet" and done == 6:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_teacher(out, TINY, on_progress=stop_in_unet)
    assert not out.exists(), "a half-trained teacher appeared at the destination"
    assert (tmp_path / "resumed.partial" / "state" / "unet.pt").is_file()
    resumed = train_teacher(out, TINY)
    assert resumed.resumed
    first, second = _weights(trained), _weights(out)
    assert first.keys() == second.keys()
    # The same up to rounding: CPU training of the U-Net is not bitwise deterministic from run
    # to run (two uninterrupted runs differ by about one fp16 step, 6e-5, in a few tensors).
    different = [k for k in first
                 if not torch.allclose(first[k].float(), second[k].float(), rtol=0, atol=1.5e-4)]
    assert not different, different[:5]


def test_another_recipe_starts_over_and_a_taken_destination_is_refused(tmp_path, trained):
    out = tmp_path / "other"
    with pytest.raises(Interrupt):
        train_teacher(out, TINY, on_progress=lambda p, d, t: (_ for _ in ()).throw(Interrupt))
    changed = Recipe(**{**TINY.to_dict(), "seed": 1})
    assert not train_teacher(out, changed).resumed
    with pytest.raises(TrainingError, match="exists"):
        train_teacher(trained, TINY)
    with pytest.raises(TrainingError, match="unet_steps=0"):
        train_teacher(tmp_path / "none", Recipe(unet_steps=0))


def test_cli_refuses_a_taken_destination_in_one_line(tmp_path, trained):
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "teacher", "train", "--out", str(trained)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NANOSD_NAS_HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "exists" in lines[0], result.stderr


#: A short budget of the shipped recipe's kind (110-136 s on 2 cores beside other tests); its
#: figures, recorded by training it with the current recipe code (two runs gave the same figures
#: to the last digit), are in data/short_teacher.json.
SHORT_REFERENCE = Path(__file__).parent / "data" / "short_teacher.json"


@pytest.mark.slow
def test_the_recipe_reproduces_a_teacher_of_the_recorded_quality_on_a_short_budget(tmp_path):
    reference = json.loads(SHORT_REFERENCE.read_text())
    made = train_teacher(tmp_path / "short", Recipe(**reference["recipe"]))
    recorded, got = reference["metrics"], made.metrics
    assert abs(got["vae_heldout_psnr_db"] - recorded["vae_heldout_psnr_db"]) < 1.0
    assert abs(got["feature_heldout_accuracy"] - recorded["feature_heldout_accuracy"]) < 0.1
    for key in ("eps_mse_conditional", "eps_mse_null"):
        assert abs(got[key] - recorded[key]) < 0.1 * recorded[key], (key, got, recorded)
    # trained at all: better than chance and than predicting no noise
    assert got["feature_heldout_accuracy"] > 2 / len(CLASSES)
    assert got["eps_mse_conditional"] < 0.5


def _sample(home: Path, teacher: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "accuracy", "sample", "sd15", "--teacher",
         str(teacher), "--per-class", "1", "--steps", "4", "--out", str(home / "out")],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NANOSD_NAS_HOME": str(home)})


def _one_line(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_teacher_folder_without_its_context_or_with_a_wrong_one_is_one_line(tmp_path, trained):
    import shutil

    from safetensors.torch import save_file

    bare = tmp_path / "bare"
    shutil.copytree(trained, bare)
    (bare / "context.safetensors").unlink()
    _one_line(_sample(tmp_path, bare), "context")
    save_file({"context": torch.zeros(11, 77, 32)}, str(bare / "context.safetensors"))
    _one_line(_sample(tmp_path, bare), "64")
    assert not (tmp_path / "out").exists()
