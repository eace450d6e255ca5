"""What an export says about itself: where the student comes from (:class:`ExportSource`),
the ``model_index.json`` that names a pipeline's components, and the ``README.md`` model card.

The student replaces a Stable Diffusion pipeline's U-Net and VAE; the text encoder and the
tokenizer stay the base model's (SD 1.5), and the scheduler is SD 1.5's noise schedule, the one
the teachers denoise with. The model index names them so, and the card says where to get them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nanosd_nas.spaces._spec import ArchSpec
from nanosd_nas.spaces._summary import stage_layouts

#: SD 1.5's noise schedule (its ``scheduler_config.json``), the teachers' own.
SD15_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "steps_offset": 1, "prediction_type": "epsilon",
    "set_alpha_to_one": False, "clip_sample": False,
}
#: Where the components the student does not replace come from.
SD15_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
#: The text embeddings' width SD 1.5's CLIP text encoder produces.
CLIP_WIDTH = 768


@dataclass(frozen=True)
class ObjectiveValue:
    """One objective of the trial an export came from, and how it was obtained
    (``measured``, ``computed`` or ``predicted``)."""

    name: str
    value: float
    provenance: str


@dataclass(frozen=True)
class ExportSource:
    """Where an exported student comes from, for its model card.

    Attributes:
        weights: ``seeded`` (the builder's initial weights, untrained), ``distilled``
            (assembled from a block bank) or ``teacher`` (the teacher's weights by surgery).
        seed: the seed of ``seeded`` weights.
        study: the study and ``trial`` that chose the architecture, if one did.
        teacher: the teacher's label and id.
        bank: the block bank the distilled blocks come from (teacher, settings, data).
        objectives: the trial's objective values with their provenance.
    """

    weights: str = "seeded"
    seed: int = 0
    study: str | None = None
    trial: int | None = None
    teacher: str | None = None
    bank: str | None = None
    objectives: tuple[ObjectiveValue, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "seed": self.seed if self.weights == "seeded" else None,
                "study": self.study, "trial": self.trial, "teacher": self.teacher,
                "bank": self.bank, "objectives": [
                    {"name": o.name, "value": o.value, "provenance": o.provenance}
                    for o in self.objectives]}


def diffusers_model_index() -> dict[str, Any]:
    """``model_index.json`` of a ``diffusers`` export: a ``StableDiffusionPipeline`` whose U-Net,
    VAE and scheduler are in the folder and whose text encoder and tokenizer are SD 1.5's."""
    import diffusers

    return {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "_name_or_path": SD15_BASE,
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "safety_checker": [None, None], "feature_extractor": [None, None],
        "image_encoder": [None, None], "requires_safety_checker": False,
    }


def onnx_model_index() -> dict[str, Any]:
    """``model_index.json`` of an ONNX export in diffusers' and Optimum's layout: an
    ``OnnxStableDiffusionPipeline`` (each component an ``OnnxRuntimeModel``)."""
    import diffusers

    onnx_model = ["diffusers", "OnnxRuntimeModel"]
    return {
        "_class_name": "OnnxStableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__, "_name_or_path": SD15_BASE,
        "unet": onnx_model, "vae_encoder": onnx_model, "vae_decoder": onnx_model,
        "text_encoder": onnx_model, "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "safety_checker": [None, None], "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }


def model_index_json(index: dict[str, Any]) -> str:
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


def _front_matter(tags: list[str]) -> str:
    lines = ["---", "library_name: diffusers", "pipeline_tag: text-to-image",
             f"base_model: {SD15_BASE}", "tags:"] + [f"- {tag}" for tag in tags] + ["---"]
    return "\n".join(lines)


def _origin(source: ExportSource) -> list[str]:
    weights = {
        "seeded": f"the builder's seeded initial weights (seed {source.seed}): untrained, for "
                  "checking a deployment, not for images",
        "distilled": "distilled: each stage assembled from the block bank below, where every "
                     "block was trained to match the teacher's stage",
        "teacher": "the teacher's own weights, cut down to this architecture (surgery)",
    }[source.weights]
    lines = [f"- Weights: {weights}."]
    if source.study is not None:
        lines.append(f"- Chosen by: trial {source.trial} of study `{source.study}`.")
    if source.teacher:
        lines.append(f"- Teacher: {source.teacher}.")
    if source.bank:
        lines.append(f"- Block bank: {source.bank}.")
    return lines


def _objectives(source: ExportSource) -> list[str]:
    if not source.objectives:
        return ["No trial scored this export (it was made from a spec)."]
    rows = ["| objective | value | provenance |", "|---|---|---|"]
    rows += [f"| {o.name} | {o.value:.6g} | {o.provenance} |" for o in source.objectives]
    rows += ["", "*measured*: timed on the study's device, or scored against the teacher; "
             "*computed*: counted from the spec; *predicted*: by the device's latency "
             "predictor."]
    return rows


def _text_encoder_note(spec: ArchSpec) -> str:
    width = spec.unet.cross_attention_dim
    if width == CLIP_WIDTH:
        return (f"The text encoder and tokenizer are SD 1.5's (`{SD15_BASE}`): the U-Net reads "
                f"{CLIP_WIDTH}-wide CLIP embeddings.")
    return (f"The U-Net reads {width}-wide text embeddings of {spec.unet.context_length} "
            "tokens, which SD 1.5's CLIP text encoder does not produce: pass "
            f"`prompt_embeds` of shape `(batch, {spec.unet.context_length}, {width})` (the "
            "teacher's conditioning) instead of a prompt.")


def _diffusers_loading(spec: ArchSpec) -> list[str]:
    text = ("text_encoder=base.text_encoder, tokenizer=base.tokenizer"
            if spec.unet.cross_attention_dim == CLIP_WIDTH
            else "text_encoder=None, tokenizer=None")
    return [
        "```python", "from diffusers import AutoencoderKL, StableDiffusionPipeline, "
        "UNet2DConditionModel", "",
        'unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")',
        'vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")', "",
        "# The whole pipeline: the folder's U-Net, VAE and scheduler, the base's text side.",
        *([f'base = StableDiffusionPipeline.from_pretrained("{SD15_BASE}")']
          if spec.unet.cross_attention_dim == CLIP_WIDTH else []),
        f"pipe = StableDiffusionPipeline.from_pretrained(folder, {text}, "
        "safety_checker=None)", "```",
    ]


def _onnx_loading(layout: str) -> list[str]:
    if layout == "optimum":
        return [
            "The folder has diffusers' and Optimum's ONNX layout (`unet/model.onnx`, "
            "`vae_encoder/model.onnx`, `vae_decoder/model.onnx`, `scheduler/`, "
            "`model_index.json`). Copy "
            "`text_encoder/` and `tokenizer/` from an ONNX export of the base (for example "
            f"`optimum-cli export onnx --model {SD15_BASE} base-onnx/`), then:", "",
            "```python", "from optimum.onnxruntime import ORTStableDiffusionPipeline", "",
            "pipe = ORTStableDiffusionPipeline.from_pretrained(folder)", "```", "",
            "or diffusers' `OnnxStableDiffusionPipeline.from_pretrained(folder)` (deprecated "
            "in diffusers, which points to Optimum).",
        ]
    return [
        "Each component is one file run by ONNX Runtime:", "",
        "```python", "import onnxruntime as ort", "",
        'unet = ort.InferenceSession(f"{folder}/unet.onnx")',
        "noise = unet.run(None, {\"sample\": latents, \"timestep\": t, "
        "\"encoder_hidden_states\": text})[0]", "```",
    ]


def model_card(spec: ArchSpec, source: ExportSource, *, fmt: str,
               onnx: dict[str, Any] | None = None) -> str:
    """The ``README.md`` of an export: front matter for the Hub, then the spec, where the
    weights come from, the objectives and their provenance, and how to load it.

    Args:
        spec: the exported architecture.
        source: where the student comes from.
        fmt: ``diffusers`` or ``onnx``.
        onnx: the ONNX export's metadata (layout, precision, exporter and opset per component).
    """
    tags = ["nanosd-nas", "stable-diffusion", "neural-architecture-search"]
    tags += ["onnx"] if fmt == "onnx" else []
    layouts = ", ".join(f"{stage} {layers}" for stage, layers in stage_layouts(spec).items())
    lines = [
        _front_matter(tags), "", f"# nanosd-nas student `{spec.spec_id}`", "",
        "A Stable Diffusion U-Net and VAE found by hardware-aware architecture search. "
        "The text encoder and tokenizer are not part of this export: they are the base "
        f"model's (`{SD15_BASE}`); the scheduler is SD 1.5's noise schedule.", "",
        "## Architecture", "",
        f"- Spec id: `{spec.spec_id}` (the whole spec is `spec.json`).",
        f"- Image {spec.image_size} px, latent {spec.latent_channels}x{spec.latent_size}x"
        f"{spec.latent_size}.",
        f"- U-Net stages (T: ResNet + transformer, R: ResNet only): {layouts}.",
        f"- Text embeddings: {spec.unet.context_length} tokens x "
        f"{spec.unet.cross_attention_dim}.", "",
        "## Where it comes from", "", *_origin(source), "",
        "## Objectives", "", *_objectives(source), "",
    ]
    if onnx is not None:
        lines += ["## ONNX", "", f"Layout `{onnx['layout']}`, precision `{onnx['precision']}` "
                  "(inputs and outputs stay float32); batch and spatial axes are dynamic.", "",
                  "| component | exporter | opset |", "|---|---|---|"]
        lines += [f"| {c} | {e['exporter']} | {e['opset']} |"
                  for c, e in onnx["components"].items()]
        fallbacks = {c: e["fallback"] for c, e in onnx["components"].items() if e["fallback"]}
        for component, reason in fallbacks.items():
            lines.append(f"\n`{component}`: the dynamo exporter failed ({reason}); the "
                         "TorchScript exporter wrote it.")
        lines += ["", "## How to load it", "", _text_encoder_note(spec), "",
                  *_onnx_loading(onnx["layout"])]
    else:
        lines += ["## How to load it", "", _text_encoder_note(spec), "",
                  *_diffusers_loading(spec)]
    return "\n".join(lines) + "\n"
