"""Loading teachers: the seeded demo, diffusers folders, single safetensors files, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import diffusers
import pytest
import torch
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING
from safetensors.torch import load_file, save_file

from nanosd_nas import spaces
from nanosd_nas.search.distill import (
    DEMO_SEED,
    DEMO_TEACHER,
    ContextError,
    Teacher,
    TeacherError,
    load_teacher,
)

MINI = spaces.to_scale(spaces.load_point("sd15"), "mini")
TOLERANCE = 1e-5


def _diffusers_models(
    seed: int, **unet_changes: object
) -> tuple[diffusers.UNet2DConditionModel, diffusers.AutoencoderKL]:
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(**(spaces.unet_config(MINI) | unet_changes))
    vae = diffusers.AutoencoderKL(**spaces.vae_config(MINI))
    return unet.eval(), vae.eval()


def _save_diffusers(
    root: Path, seed: int = 1, unet_changes: dict[str, object] | None = None, **save: object
) -> Path:
    unet, vae = _diffusers_models(seed, **(unet_changes or {}))
    unet.save_pretrained(root / "unet", **save)
    vae.save_pretrained(root / "vae", **save)
    return root


def _same_weights(a: Teacher, b: Teacher) -> bool:
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    return state_a.keys() == state_b.keys() and all(
        torch.equal(state_a[name], state_b[name]) for name in state_a
    )


def test_demo_teacher_is_seeded_mini_sd15_and_labelled() -> None:
    first, second = load_teacher(DEMO_TEACHER), load_teacher("demo")
    assert _same_weights(first, second)
    assert first.is_demo and first.scale == "mini" and first.spec == MINI
    assert first.teacher_id == f"demo-mini-seed{DEMO_SEED}"
    assert "demo" in first.label and "not a trained model" in first.label
    assert not first.model.unet.training
    assert not any(p.requires_grad for p in first.model.unet.parameters())
    assert not any(p.requires_grad for p in first.model.vae.parameters())


@torch.no_grad()
def test_diffusers_folder_computes_what_diffusers_computes(tmp_path: Path) -> None:
    unet, vae = _diffusers_models(seed=1)
    _save_diffusers(tmp_path, seed=1)
    teacher = load_teacher(tmp_path)
    assert (teacher.scale, teacher.is_demo, teacher.label) == ("mini", False, str(tmp_path))
    assert re.fullmatch(r"sha256-[0-9a-f]{16}", teacher.teacher_id)
    parameters = [*teacher.model.unet.parameters(), *teacher.model.vae.parameters()]
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in parameters)
    assert not teacher.model.unet.training and not teacher.model.vae.training
    inputs = teacher.model.example_inputs()
    ours = teacher.model.unet(*inputs["unet"])
    assert (ours - unet(*inputs["unet"]).sample).abs().max() <= TOLERANCE
    (latent,) = inputs["vae_decoder"]
    assert (teacher.model.vae.decode(latent) - vae.decode(latent).sample).abs().max() <= TOLERANCE


def test_diffusers_sample_size_is_free(tmp_path: Path) -> None:
    # Only the latent size differs: the scale decides it, as SD-1.5 runs at several resolutions.
    teacher = load_teacher(_save_diffusers(tmp_path, unet_changes={"sample_size": 40}))
    assert (teacher.scale, teacher.spec) == ("mini", MINI)


def test_teacher_id_follows_the_weights(tmp_path: Path) -> None:
    first = _save_diffusers(tmp_path / "a", seed=1)
    again = _save_diffusers(tmp_path / "b", seed=1)
    other = _save_diffusers(tmp_path / "c", seed=2)
    teacher_id = load_teacher(first).teacher_id
    assert load_teacher(first).teacher_id == teacher_id
    assert load_teacher(again).teacher_id == teacher_id
    assert load_teacher(other).teacher_id != teacher_id


def test_sharded_diffusers_folder_loads_the_same_weights(tmp_path: Path) -> None:
    sharded = _save_diffusers(tmp_path / "sharded", max_shard_size="100KB")
    assert list((sharded / "unet").glob("*.safetensors.index.json"))
    whole = load_teacher(_save_diffusers(tmp_path / "whole"))
    assert _same_weights(load_teacher(sharded), whole)


def test_project_safetensors_file_round_trips(tmp_path: Path) -> None:
    state = spaces.build(MINI, seed=3).state_dict()
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    teacher = load_teacher(path)
    assert (teacher.scale, teacher.is_demo, teacher.label) == ("mini", False, str(path))
    assert teacher.model.state_dict().keys() == state.keys()
    assert all(torch.equal(t, state[name]) for name, t in teacher.model.state_dict().items())
    save_file(state, tmp_path / "copy.safetensors")
    assert load_teacher(tmp_path / "copy.safetensors").teacher_id == teacher.teacher_id


def test_a_teacher_ships_its_context_beside_its_weights(tmp_path: Path) -> None:
    folder = _save_diffusers(tmp_path / "folder")
    plain = load_teacher(folder)
    assert plain.context is None and "no context" in plain.context_label
    with pytest.raises(ContextError, match="ships no context"):
        plain.calibration_context()
    prompts = torch.randn(3, 9, MINI.unet.cross_attention_dim)
    save_file({"context": prompts.half()}, folder / "context.safetensors")
    shipped = load_teacher(folder)
    assert shipped.teacher_id == plain.teacher_id  # a context is not part of the teacher's id
    assert shipped.context is not None and shipped.context.dtype == torch.float32
    assert torch.equal(shipped.context, prompts.half().float())
    assert shipped.context_label == str(folder / "context.safetensors")
    assert shipped.calibration_context()[1] == shipped.context_label
    own = tmp_path / "own.safetensors"
    save_file({"c": prompts[:1]}, own)
    tensor, label = shipped.calibration_context(own)  # the user's file comes first
    assert torch.equal(tensor, prompts[:1]) and label == str(own)

    single = tmp_path / "model.safetensors"
    save_file(spaces.build(MINI, seed=3).state_dict(), single)
    bare_id = load_teacher(single).teacher_id
    save_file({"x": prompts}, tmp_path / "model.context.safetensors")
    beside = load_teacher(single)
    assert beside.teacher_id == bare_id and torch.equal(beside.context, prompts)
    save_file({"x": prompts[..., :8].contiguous()}, tmp_path / "model.context.safetensors")
    with pytest.raises(ContextError, match=r"model\.context\.safetensors.*\[n, tokens, 64\]"):
        load_teacher(single)


def test_the_demo_teacher_ships_a_synthetic_context() -> None:
    teacher = load_teacher(DEMO_TEACHER)
    assert teacher.context is not None and teacher.context.shape == (8, 77, 64)
    assert "synthetic" in teacher.context_label
    assert torch.equal(teacher.calibration_context()[0], teacher.context)


# -- the original (LDM/CompVis) single-file layout, written by inverting diffusers' converters ---
_RESNET_PARTS = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                 ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
                 ("conv_shortcut", "skip_connection"))
_VAE_ATTENTION_PARTS = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
                        ("to_out.0", "proj_out"))


def _ldm_unet_name(name: str) -> str:
    """SD's original name of a diffusers U-Net weight (SD-1.5 topology: 4 levels, 2 layers)."""
    if name in DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]:
        return str(DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"][name])
    if m := re.match(r"(down|up)_blocks\.(\d)\.(resnets|attentions)\.(\d)\.(.*)", name):
        side, level, kind, layer, rest = m.groups()
        index = 3 * int(level) + int(layer) + (1 if side == "down" else 0)
        section = "input_blocks" if side == "down" else "output_blocks"
        if kind == "resnets":
            for diffusers_part, ldm_part in _RESNET_PARTS:
                rest = rest.replace(diffusers_part, ldm_part)
        return f"{section}.{index}.{0 if kind == 'resnets' else 1}.{rest}"
    if m := re.match(r"down_blocks\.(\d)\.downsamplers\.0\.conv\.(.*)", name):
        return f"input_blocks.{3 * int(m[1]) + 3}.0.op.{m[2]}"
    if m := re.match(r"up_blocks\.(\d)\.upsamplers\.0\.(.*)", name):
        return f"output_blocks.{3 * int(m[1]) + 2}.{1 if m[1] == '0' else 2}.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d)\.(.*)", name):
        rest = m[3]
        if m[1] == "resnets":
            for diffusers_part, ldm_part in _RESNET_PARTS:
                rest = rest.replace(diffusers_part, ldm_part)
        return f"middle_block.{2 * int(m[2]) if m[1] == 'resnets' else 1}.{rest}"
    raise AssertionError(f"no LDM name for {name}")


def _ldm_vae_weight(name: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    """SD's original name (and conv shape) of a diffusers VAE weight."""
    if name in DIFFUSERS_TO_LDM_MAPPING["vae"]:
        return str(DIFFUSERS_TO_LDM_MAPPING["vae"][name]), tensor
    side, rest = name.split(".", 1)
    rest = rest.replace("conv_shortcut", "nin_shortcut")
    if m := re.match(r"down_blocks\.(\d)\.(resnets|downsamplers\.0)\.(.*)", rest):
        return f"{side}.down.{m[1]}.{'block' if m[2] == 'resnets' else 'downsample'}.{m[3]}", tensor
    if m := re.match(r"up_blocks\.(\d)\.(resnets|upsamplers\.0)\.(.*)", rest):
        kind = "block" if m[2] == "resnets" else "upsample"
        return f"{side}.up.{3 - int(m[1])}.{kind}.{m[3]}", tensor
    if m := re.match(r"mid_block\.resnets\.(\d)\.(.*)", rest):
        return f"{side}.mid.block_{int(m[1]) + 1}.{m[2]}", tensor
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", rest):
        tail = m[1]
        for diffusers_part, ldm_part in _VAE_ATTENTION_PARTS:
            tail = tail.replace(diffusers_part, ldm_part)
        # SD stores the VAE's attention projections as 1x1 convolutions.
        return f"{side}.mid.attn_1.{tail}", tensor[..., None, None] if tensor.dim() == 2 else tensor
    raise AssertionError(f"no LDM name for {name}")


def _ldm_checkpoint(built: spaces.BuiltModel) -> dict[str, torch.Tensor]:
    checkpoint = {
        f"model.diffusion_model.{_ldm_unet_name(name)}": tensor
        for name, tensor in built.unet.state_dict().items()
    }
    for name, tensor in built.vae.state_dict().items():
        ldm_name, ldm_tensor = _ldm_vae_weight(name, tensor)
        checkpoint[f"first_stage_model.{ldm_name}"] = ldm_tensor
    # A real checkpoint also holds the text encoder and schedule, which a teacher ignores.
    checkpoint["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.ones(64)
    checkpoint["alphas_cumprod"] = torch.linspace(1, 0, 1000)
    return checkpoint


def test_original_sd_single_file_loads_through_diffusers_converters(tmp_path: Path) -> None:
    built = spaces.build(MINI, seed=4)
    path = tmp_path / "v1-5-pruned.safetensors"
    save_file(_ldm_checkpoint(built), path)
    teacher = load_teacher(path)
    assert teacher.scale == "mini"
    expected = built.state_dict()
    assert teacher.model.state_dict().keys() == expected.keys()
    assert all(torch.equal(t, expected[k]) for k, t in teacher.model.state_dict().items())


# -- bad input ---------------------------------------------------------------------------------
def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="no such file or folder"):
        load_teacher(tmp_path / "nowhere")


def test_folder_without_vae_is_named(tmp_path: Path) -> None:
    unet, _ = _diffusers_models(seed=1)
    unet.save_pretrained(tmp_path / "unet")
    with pytest.raises(TeacherError, match=r"no vae/ folder"):
        load_teacher(tmp_path)


def test_config_that_is_not_sd15_names_the_entry(tmp_path: Path) -> None:
    _save_diffusers(tmp_path, unet_changes={"block_out_channels": [32, 64, 128, 256]})
    with pytest.raises(TeacherError) as error:
        load_teacher(tmp_path)
    assert ("unet/config.json: block_out_channels [32, 64, 128, 256] is not SD-1.5's "
            "[320, 640, 1280, 1280] at full or [32, 64, 128, 128] at mini") in str(error.value)


def test_weight_of_wrong_shape_names_the_tensor_and_both_shapes(tmp_path: Path) -> None:
    _save_diffusers(tmp_path)
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["conv_in.weight"] = torch.zeros(48, 4, 3, 3)
    save_file(state, weights)
    with pytest.raises(TeacherError, match=re.escape(
        "unet.conv_in.weight has shape [48, 4, 3, 3], SD-1.5 at mini needs [32, 4, 3, 3]"
    )):
        load_teacher(tmp_path)


def test_full_size_config_with_mini_weights_names_the_first_tensor(tmp_path: Path) -> None:
    _save_diffusers(tmp_path)
    sd15 = spaces.load_point("sd15")
    (tmp_path / "unet" / "config.json").write_text(json.dumps(spaces.unet_config(sd15)))
    (tmp_path / "vae" / "config.json").write_text(json.dumps(spaces.vae_config(sd15)))
    with pytest.raises(TeacherError, match=re.escape(
        "weights do not fit SD-1.5 at full: unet.conv_in.weight has shape [32, 4, 3, 3], "
        "SD-1.5 at full needs [320, 4, 3, 3]"
    )):
        load_teacher(tmp_path)


def test_single_file_with_a_missing_tensor_names_it(tmp_path: Path) -> None:
    state = spaces.build(MINI).state_dict()
    del state["vae.decoder.conv_out.bias"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(TeacherError, match=r"vae\.decoder\.conv_out\.bias is missing"):
        load_teacher(tmp_path / "model.safetensors")


@pytest.mark.parametrize("where", ["folder", "file"])
def test_truncated_safetensors_is_reported(tmp_path: Path, where: str) -> None:
    if where == "folder":
        weights = _save_diffusers(tmp_path) / "vae" / "diffusion_pytorch_model.safetensors"
    else:
        weights = tmp_path / "model.safetensors"
        save_file(spaces.build(MINI).state_dict(), weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(TeacherError, match="not a readable safetensors file"):
        load_teacher(tmp_path if where == "folder" else weights)


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    _save_diffusers(tmp_path, safe_serialization=False)
    assert list((tmp_path / "unet").glob("*.bin"))
    with pytest.raises(TeacherError, match=r"pickled PyTorch weights.*safetensors is required"):
        load_teacher(tmp_path)
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not read")
    with pytest.raises(TeacherError, match="safetensors is required"):
        load_teacher(ckpt)


def test_unknown_single_file_layout_is_named(tmp_path: Path) -> None:
    save_file({"transformer.proj.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(TeacherError, match=r"unknown weight layout.*transformer\.proj\.weight"):
        load_teacher(tmp_path / "other.safetensors")
