"""The command line as a user meets it: real processes, exit codes, stdout JSON, stderr lines."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from nanosd_nas import spaces


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nanosd_nas", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, check=False,
    )


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_space_list_names_the_shipped_spaces_and_points():
    listing = run_json("space", "list")
    sizes = {row["name"]: row["size"] for row in listing["spaces"]}
    assert sizes["nanosd"] == 32_768
    assert {"nanosd-scaled", "vae"} <= set(sizes)
    assert listing["points"] == ["bk-sdm-base", "bk-sdm-small", "bk-sdm-tiny", "sd15"]


def test_space_show_reports_size_dimensions_and_parameter_range():
    shown = run_json("space", "show", "nanosd")
    assert shown["size"] == 4 * 4 * 4 * 8 * 8 * 8
    assert [d["name"] for d in shown["dimensions"]] == ["E1", "E2", "E3", "D3", "D2", "D1"]
    assert [d["size"] for d in shown["dimensions"]] == [4, 4, 4, 8, 8, 8]
    low, high = shown["params_range"]["unet"]
    assert low < high
    scaled = run_json("space", "show", "nanosd-scaled")
    low, high = scaled["params_range"]["unet"]
    assert low <= 130e6 and high >= 315e6  # NanoSD's reported 130M-315M U-Net family
    mini = run_json("space", "show", "nanosd", "--scale", "mini")
    assert mini["params_range"]["unet"][1] < high / 50


@pytest.mark.parametrize(
    ("preset", "unet"),
    [("sd15", 859_520_964), ("bk-sdm-base", 579_384_964), ("bk-sdm-small", 482_346_884),
     ("bk-sdm-tiny", 323_384_964)],
)
def test_spec_params_match_diffusers_figures(preset, unet):
    counts = run_json("spec", "params", preset)
    assert counts["params"]["unet"] == unet
    assert counts["vae_core_params"] == {"vae_encoder": 34_163_592, "vae_decoder": 49_490_179}
    assert counts["params"]["vae_encoder"] + counts["params"]["vae_decoder"] == 83_653_863


def test_spec_show_summarises_a_space_member_and_prints_the_spec():
    shown = run_json("spec", "show", "nanosd:1,0,3,0,7,1", "--scale", "mini")
    layouts = {s["stage"]: s["layers"] for s in shown["summary"]["stages"]}
    assert layouts == {"E1": "TR", "E2": "RR", "E3": "TT", "D3": "RRR", "D2": "TTT", "D1": "TRR"}
    spec = spaces.ArchSpec.from_dict(shown["spec"])
    assert spec.spec_id == shown["summary"]["spec_id"]
    assert spec == spaces.load_space("nanosd").spec((1, 0, 3, 0, 7, 1), "mini")


def test_spec_export_spec_round_trips(tmp_path):
    result = run("spec", "export", "bk-sdm-tiny", "--format", "spec", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    written = spaces.ArchSpec.from_file(tmp_path / "o" / "spec.json")
    assert written == spaces.load_point("bk-sdm-tiny")
    # the exported file is itself a SPEC argument
    again = run_json("spec", "params", str(tmp_path / "o" / "spec.json"))
    assert again["params"]["unet"] == 323_384_964


def test_spec_export_onnx_runs_in_onnxruntime(tmp_path):
    """In diffusers' and Optimum's layout, at FP16: a folder per component, a model index,
    and graphs whose batch and spatial axes are free."""
    out = tmp_path / "onnx"
    exported = run_json("spec", "export", "nanosd:3,0,1,7,0,2", "--scale", "mini",
                        "--format", "onnx", "--out", str(out), "--layout", "optimum",
                        "--precision", "fp16", "--exporter", "torchscript")
    assert {"spec.json", "README.md", "export.json", "model_index.json", "unet/model.onnx",
            "vae_decoder/model.onnx", "vae_encoder/model.onnx"} <= set(exported["files"])
    assert exported["onnx"]["exporters"] == dict.fromkeys(
        ("unet", "vae_encoder", "vae_decoder"), "torchscript")
    assert exported["onnx"]["precision"] == "fp16"
    assert all(d < 1e-1 for d in exported["onnx_max_abs_diff"].values())
    spec = spaces.ArchSpec.from_file(out / "spec.json")
    session = ort.InferenceSession(
        str(out / "vae_decoder" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    latent = np.zeros((2, 4, spec.latent_size // 2, spec.latent_size // 2), dtype=np.float32)
    (image,) = session.run(None, {"latent_sample": latent})
    assert image.shape == (2, 3, spec.image_size // 2, spec.image_size // 2)


def test_an_attention_free_unet_exports_without_the_text_input_it_never_reads(tmp_path):
    """The smallest ``nanosd`` member has no cross-attention: its ONNX U-Net takes no text
    embeddings (the TorchScript exporter drops an input the graph never reads) and is checked on the
    inputs it kept."""
    out = tmp_path / "onnx"
    exported = run_json("spec", "export", "nanosd:0,0,0,0,0,0", "--scale", "mini",
                        "--format", "onnx", "--out", str(out), "--exporter", "torchscript")
    assert exported["onnx_max_abs_diff"]["unet"] < 1e-3
    session = ort.InferenceSession(str(out / "unet.onnx"), providers=["CPUExecutionProvider"])
    assert "encoder_hidden_states" not in [i.name for i in session.get_inputs()]


def test_spec_export_diffusers_loads_with_from_pretrained(tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    out = tmp_path / "d"
    result = run("spec", "export", "bk-sdm-small", "--scale", "mini", "--format", "diffusers",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    unet = UNet2DConditionModel.from_pretrained(out / "unet")
    vae = AutoencoderKL.from_pretrained(out / "vae")
    counts = spaces.count(spaces.ArchSpec.from_file(out / "spec.json"))
    assert sum(p.numel() for p in unet.parameters()) == counts.params["unet"]
    assert sum(p.numel() for p in vae.parameters()) == (
        counts.params["vae_encoder"] + counts.params["vae_decoder"]
    )


def test_spec_export_safetensors_writes_named_weights(tmp_path):
    from safetensors import safe_open

    out = tmp_path / "w"
    result = run("spec", "export", "sd15", "--scale", "mini", "--format", "safetensors",
                 "--out", str(out), "--seed", "3")
    assert result.returncode == 0, result.stderr
    spec = spaces.ArchSpec.from_file(out / "spec.json")
    built = spaces.build(spec, seed=3)
    with safe_open(out / "unet.safetensors", framework="pt") as weights:
        assert weights.metadata()["spec_id"] == spec.spec_id
        name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
        assert (weights.get_tensor(name) == built.unet.state_dict()[name]).all()


def _assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unknown_preset_is_one_line_exit_2():
    _assert_user_error(run("spec", "show", "sd16"), "sd16", "sd15")


def test_malformed_json_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"unet": [1, 2')
    _assert_user_error(run("spec", "params", str(bad)), "malformed", "bad.json")


def test_invalid_spec_names_field_and_writes_nothing(tmp_path):
    document = spaces.load_point("sd15").to_dict()
    document["unet"]["levels"][1]["channels"] = 650
    path = tmp_path / "invalid.json"
    path.write_text(json.dumps(document))
    out = tmp_path / "never"
    _assert_user_error(run("spec", "export", str(path), "--format", "onnx", "--out", str(out)),
                       "unet.levels[1].channels", "650", "group-norm")
    assert not out.exists()


def test_inexpressible_diffusers_export_says_why_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    _assert_user_error(
        run("spec", "export", "nanosd:1,0,0,0,0,0", "--scale", "mini", "--format", "diffusers",
            "--out", str(out)),
        "E1", "mixes",
    )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind either


def test_bad_choices_and_scale_and_format_are_user_errors(tmp_path):
    _assert_user_error(run("spec", "show", "nanosd:1,2"), "6 dimensions")
    _assert_user_error(run("spec", "show", "nanosd:9,0,0,0,0,0"), "E1", "out of range")
    _assert_user_error(run("space", "show", "nanosd", "--scale", "huge"), "huge", "mini")
    _assert_user_error(run("space", "show", "nowhere"), "nowhere")
    _assert_user_error(
        run("spec", "export", "sd15", "--format", "bogus", "--out", str(tmp_path / "x")),
        "bogus", "onnx",
    )
    _assert_user_error(run("spec", "export", "sd15", "--format", "onnx", "--layout", "coreml",
                           "--out", str(tmp_path / "x")), "coreml", "nanosd", "optimum")
    _assert_user_error(run("spec", "export", "bk-sdm-tiny", "--scale", "mini", "--format",
                           "diffusers", "--precision", "fp16", "--out", str(tmp_path / "x")),
                       "onnx format")
    _assert_user_error(run("export", "demo", "0", "--format", "onnx", "--exporter", "jit",
                           "--out", str(tmp_path / "x")), "jit", "dynamo")
    assert not (tmp_path / "x").exists()


def test_the_onnx_choices_the_export_commands_offer_are_the_librarys():
    from typing import get_args

    from nanosd_nas.cli import _choices

    assert get_args(_choices.OnnxLayout) == spaces.ONNX_LAYOUTS
    assert get_args(_choices.OnnxPrecision) == spaces.ONNX_PRECISIONS
    assert get_args(_choices.OnnxExporter) == spaces.ONNX_EXPORTERS
    # Both export commands default to what the library writes when asked for nothing (local:
    # this file's own ``run`` helper would be shadowed).
    from nanosd_nas.cli import run, spec

    library = spaces.OnnxOptions()
    for command in (spec.export, run.export):
        parameters = inspect.signature(command).parameters
        assert (parameters["layout"].default, parameters["precision"].default,
                parameters["exporter"].default) == (library.layout, library.precision,
                                                    library.exporter), command


def test_user_space_yaml_file_is_accepted(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "kind: space\nname: mine\nbase: bk-sdm-tiny\ndimensions:\n"
        "  - {name: E1, kind: attention, stage: down, level: 0}\n"
        "  - {name: W1, kind: width, level: 0, choices: [160, 320]}\n"
    )
    shown = run_json("space", "show", str(path))
    assert shown["size"] == 2 * 2
    member = run_json("spec", "params", f"{path}:1,1")
    assert member["params"]["unet"] == 323_384_964  # all choices at their largest = bk-sdm-tiny
