"""Exports that plug in: a diffusers folder that diffusers loads back as pipeline components,
with a model index and a model card; ONNX graphs with dynamic batch and spatial axes that ONNX
Runtime runs at shapes the export never saw, in this project's layout and in diffusers' and
Optimum's, at FP32 and FP16, written by either exporter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

from nanosd_nas import spaces
from nanosd_nas.spaces._onnx_export import component_inputs

_R = {"block": "resnet", "transformer_depth": 0}
_T = {"block": "resnet", "transformer_depth": 1}
#: Two U-Net levels (attention in the first), a two-level VAE: seconds to export.
TINY = spaces.ArchSpec.from_dict({
    "schema_version": 1, "latent_channels": 4, "latent_size": 8,
    "unet": {"levels": [{"channels": 16, "heads": 2, "down": [_T], "up": [_T, _T]},
                        {"channels": 32, "heads": 2, "down": [_R], "up": [_R, _R]}],
             "mid_block": False, "cross_attention_dim": 32, "context_length": 8,
             "norm_groups": 8},
    "vae": {"encoder_channels": [8, 16], "encoder_layers": 1, "encoder_mid_attention": False,
            "decoder_channels": [8, 16], "decoder_layers": 1, "decoder_mid_attention": False,
            "norm_groups": 8, "scaling_factor": 0.18215},
})
SOURCE = spaces.ExportSource(
    weights="distilled", study="edge-study", trial=7, teacher="SD 1.5 demo (`demo-mini-seed0`)",
    bank="`demo-mini-seed0` distilled 150 steps",
    objectives=(spaces.ObjectiveValue("latency_ms", 12.5, "measured"),
                spaces.ObjectiveValue("params_m", 1.25, "computed")))


def _front_matter(card: str) -> dict:
    _, header, _ = card.split("---", 2)
    return yaml.safe_load(header)


def _run_at(session: ort.InferenceSession, names: list[str],
            inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    by_name = dict(zip(names, inputs, strict=True))
    feeds = {i.name: by_name[i.name].numpy() for i in session.get_inputs()}
    return session.run(None, feeds)[0]


def test_a_diffusers_export_loads_back_as_pipeline_components(tmp_path: Path) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel

    model = spaces.build(TINY, seed=3)
    out = tmp_path / "student"
    result = spaces.export(TINY, "diffusers", out, model=model, source=SOURCE)
    assert {"model_index.json", "README.md", "export.json", "unet/config.json",
            "vae/config.json", "scheduler/scheduler_config.json"} <= set(result.files)

    unet = UNet2DConditionModel.from_pretrained(out, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(out, subfolder="vae")
    scheduler = DDIMScheduler.from_pretrained(out, subfolder="scheduler")
    sample, timestep, text = model.example_inputs()["unet"]
    with torch.no_grad():
        assert torch.allclose(unet(sample, timestep, text).sample,
                              model.unet(sample, timestep, text), atol=1e-5)
        assert torch.allclose(vae.decode(sample).sample, model.vae.decode(sample), atol=1e-5)
    assert scheduler.config.beta_schedule == "scaled_linear"

    index = DiffusionPipeline.load_config(out)
    assert index["_class_name"] == "StableDiffusionPipeline" and index["_diffusers_version"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]

    card = (out / "README.md").read_text()
    assert _front_matter(card)["library_name"] == "diffusers"
    for said in (TINY.spec_id, "E1 T, E2 R, D2 RR, D1 TT", "| latency_ms | 12.5 | measured |",
                 "| params_m | 1.25 | computed |", "trial 7 of study `edge-study`",
                 "demo-mini-seed0", 'from_pretrained(folder, subfolder="unet")',
                 "StableDiffusionPipeline.from_pretrained(folder", "prompt_embeds"):
        assert said in card, said
    assert json.loads((out / "export.json").read_text())["source"]["objectives"][0] == {
        "name": "latency_ms", "value": 12.5, "provenance": "measured"}

    # ONNX options belong to the onnx format: refused before anything is written.
    with pytest.raises(spaces.SpaceError, match="onnx format"):
        spaces.export(TINY, "diffusers", tmp_path / "refused",
                      onnx=spaces.OnnxOptions(precision="fp16"))
    with pytest.raises(spaces.SpaceError, match="layout 'coreml' does not exist"):
        spaces.OnnxOptions(layout="coreml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


def test_onnx_exports_run_in_onnx_runtime_at_two_batches_and_resolutions(tmp_path: Path) -> None:
    model = spaces.build(TINY, seed=1)
    components = model.components()
    # TorchScript here (a second per graph); the default exporter has its own test below.
    default = spaces.export(TINY, "onnx", tmp_path / "nanosd", model=model,
                            onnx=spaces.OnnxOptions(exporter="torchscript"))
    assert {"unet.onnx", "vae_encoder.onnx", "vae_decoder.onnx", "spec.json", "README.md",
            "export.json"} <= set(default.files)
    written = json.loads((tmp_path / "nanosd" / "export.json").read_text())["onnx"]
    assert {c["exporter"] for c in written["components"].values()} == {"torchscript"}
    assert {c["opset"] for c in written["components"].values()} == {17}

    # Shapes the export never checked: batch 3 at twice the resolution, and batch 1 as built.
    for component, module in components.items():
        session = ort.InferenceSession(str(tmp_path / "nanosd" / f"{component}.onnx"))
        names = written["components"][component]["inputs"]
        for batch, size in ((1, TINY.latent_size), (3, 2 * TINY.latent_size)):
            inputs = component_inputs(TINY, component, batch=batch, latent_size=size, seed=5)
            got = _run_at(session, names, inputs)
            with torch.no_grad():
                expected = module(*inputs).numpy()
            assert got.shape == expected.shape and got.shape[0] == batch
            assert np.abs(got - expected).max() < 1e-4, (component, batch, size)

    optimum = spaces.export(TINY, "onnx", tmp_path / "optimum", model=model,
                            onnx=spaces.OnnxOptions(layout="optimum", precision="fp16",
                                                         exporter="torchscript"))
    assert {"unet/model.onnx", "vae_encoder/model.onnx", "vae_decoder/model.onnx",
            "model_index.json", "scheduler/scheduler_config.json"} <= set(optimum.files)
    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(tmp_path / "optimum")
    assert index["_class_name"] == "OnnxStableDiffusionPipeline"
    assert index["unet"] == index["vae_decoder"] == ["diffusers", "OnnxRuntimeModel"]
    # Fed by the names diffusers' and Optimum's pipelines use, at batch 2.
    unet = ort.InferenceSession(str(tmp_path / "optimum" / "unet" / "model.onnx"))
    assert [i.name for i in unet.get_inputs()] == ["sample", "timestep", "encoder_hidden_states"]
    assert [o.name for o in unet.get_outputs()] == ["out_sample"]
    sample, timestep, text = model.example_inputs(batch=2)["unet"]
    (noise,) = unet.run(None, {"sample": sample.numpy(), "timestep": timestep.numpy(),
                               "encoder_hidden_states": text.numpy()})
    with torch.no_grad():
        expected = components["unet"](sample, timestep, text).numpy()
    assert noise.dtype == np.float32  # inputs and outputs stay float32
    assert np.abs(noise - expected).max() < 1e-2 * (1 + np.abs(expected).max())
    graph = onnx.load(str(tmp_path / "optimum" / "vae_decoder" / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["latent_sample"]
    assert [o.name for o in graph.graph.output] == ["sample"]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)
    card = (tmp_path / "optimum" / "README.md").read_text()
    assert "precision `fp16`" in card and "ORTStableDiffusionPipeline" in card


@pytest.mark.slow  # the dynamo exporter takes ~20-70 s for these three small graphs
def test_the_default_exporter_is_dynamo_and_writes_dynamic_graphs(tmp_path: Path) -> None:
    model = spaces.build(TINY)
    result = spaces.export(TINY, "onnx", tmp_path / "out", model=model)
    written = result.metadata["onnx"]["components"]
    # Where dynamo fails for a component, TorchScript writes it and the reason is kept.
    for component, entry in written.items():
        assert (entry["exporter"], entry["opset"], entry["fallback"]) == ("dynamo", 18, None), \
            (component, entry)
    assert "| unet | dynamo | 18 |" in (tmp_path / "out" / "README.md").read_text()
    # The free axes carry the names a user sizes them by, as the TorchScript graphs' do.
    unet = onnx.load(str(tmp_path / "out" / "unet.onnx"), load_external_data=False)
    assert {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in unet.graph.input} == {
        "sample": ["batch", 4, "latent_height", "latent_width"], "timestep": ["steps"],
        "encoder_hidden_states": ["batch", TINY.unet.context_length,
                                  TINY.unet.cross_attention_dim]}
    session = ort.InferenceSession(str(tmp_path / "out" / "vae_decoder.onnx"))
    latent = torch.randn(3, 4, 2 * TINY.latent_size, 2 * TINY.latent_size)
    (image,) = session.run(None, {"latent": latent.numpy()})
    with torch.no_grad():
        expected = model.components()["vae_decoder"](latent).numpy()
    assert image.shape == expected.shape and np.abs(image - expected).max() < 1e-4
