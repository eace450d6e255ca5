"""Stage variants: what a stage of a candidate is, as a key that the block bank is indexed by.

A U-Net stage variant is described by the parameter shapes of its module (which fix its layers,
transformers, widths and sampler), its heads and norm groups, and the widths of the features it
receives (the split of a decoder stage's concatenated input is not visible in the shapes). A
VAE variant is its side's widths, layers and mid attention. Two candidates that share a stage
variant share its bank entry, whatever the rest of them is.

The variants of a space are found without enumerating it: probing each dimension from the
space's largest member shows which dimensions a stage depends on, and only the product of those
dimensions' choices is walked.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from nanosd_nas.search.distill._stages import fed_by, unet_stages
from nanosd_nas.spaces import ArchSpec, Space, build, skip_channels

VAE_PARTS = ("vae_encoder", "vae_decoder")
#: The U-Net's stem, time embedding and head as one unit: their shapes follow the first
#: level's width, so a narrower first level needs them distilled too.
UNET_IO = "unet_io"
#: The U-Net's tensors outside its stages, by module name (the unit :data:`UNET_IO` holds).
UNET_IO_MODULES = ("conv_in", "time_embedding", "conv_norm_out", "conv_out")


@dataclass(frozen=True)
class StageVariant:
    """One variant of one stage, and a member of the space that has it.

    Attributes:
        stage: ``E1``..``En``, ``D1``..``Dn``, ``unet_io``, ``vae_encoder`` or ``vae_decoder``.
        document: what identifies the variant (see the module docstring).
        spec: a candidate with this variant (the one distillation builds it from).
    """

    stage: str
    document: str
    spec: ArchSpec

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.document.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """A short human description (the attention layout of a U-Net stage, a VAE's widths)."""
        return str(json.loads(self.document).get("label", ""))


@lru_cache(maxsize=512)
def _stage_shapes(spec: ArchSpec) -> dict[str, list[tuple[str, list[int]]]]:
    with torch.device("meta"):
        model = build(spec, device="meta")
    return {
        ref.name: sorted((name, list(p.shape)) for name, p in ref.module(model.unet)
                         .state_dict().items())
        for ref in unet_stages(spec)
    }


def _input_widths(spec: ArchSpec, kind: str, level: int) -> dict[str, Any]:
    channels = [lv.channels for lv in spec.unet.levels]
    n = len(channels)
    if kind == "down":
        return {"h": channels[level - 1] if level > 0 else channels[0]}
    return {"h": channels[level + 1] if level < n - 1 else channels[-1],
            "skips": skip_channels(spec.unet, level)}


def stage_documents(spec: ArchSpec) -> dict[str, str]:
    """The variant document of every stage of ``spec`` (U-Net stages and both VAE sides)."""
    shapes = _stage_shapes(spec)
    unet = spec.unet
    sources = fed_by(spec)
    documents: dict[str, dict[str, Any]] = {}
    for ref in unet_stages(spec):
        level = unet.levels[ref.level]
        layers = level.down if ref.kind == "down" else level.up
        documents[ref.name] = {
            "stage": ref.name, "kind": ref.kind,
            "label": "".join("T" if layer.has_transformer else "R" for layer in layers)
            + f"@{level.channels}",
            "parameters": shapes[ref.name], "heads": level.heads,
            "norm_groups": unet.norm_groups, "context": [unet.context_length,
                                                         unet.cross_attention_dim],
            "temb": 4 * unet.levels[0].channels, "inputs": _input_widths(spec, ref.kind,
                                                                         ref.level),
            "latent_size": spec.latent_size, "fed_by": sources[ref.name],
        }
    width = unet.levels[0].channels
    documents[UNET_IO] = {
        "stage": UNET_IO, "channels": width, "temb": 4 * width, "norm_groups": unet.norm_groups,
        "latent_channels": spec.latent_channels, "label": f"stem, time, head @{width}",
    }
    vae = spec.vae
    for part, side in zip(VAE_PARTS, ("encoder", "decoder"), strict=True):
        widths = getattr(vae, f"{side}_channels")
        documents[part] = {
            "stage": part, "channels": list(widths), "layers": getattr(vae, f"{side}_layers"),
            "mid_attention": getattr(vae, f"{side}_mid_attention"), "norm_groups":
            vae.norm_groups, "latent_channels": spec.latent_channels,
            "image_size": spec.image_size,
            "label": "/".join(map(str, widths)) + f" x{getattr(vae, f'{side}_layers')}",
        }
    return {name: json.dumps(doc, sort_keys=True) for name, doc in documents.items()}


def stage_variants(spec: ArchSpec) -> dict[str, StageVariant]:
    """Every stage variant of one candidate, by stage name."""
    return {name: StageVariant(name, document, spec)
            for name, document in stage_documents(spec).items()}


def space_variants(space: Space, scale: str, *, vae: bool | None = None) -> list[StageVariant]:
    """The distinct stage variants of every member of ``space`` at ``scale``.

    Args:
        space: the search space.
        scale: ``full`` or ``mini``.
        vae: include the VAE sides; by default only if the space varies the VAE.
    """
    base = space.extremes()[1]
    base_docs = stage_documents(space.spec(base, scale))
    depends: dict[str, list[int]] = {name: [] for name in base_docs}
    for d, dimension in enumerate(space.dimensions):
        for choice in range(len(dimension.choices)):
            probe = list(base)
            probe[d] = choice
            docs = stage_documents(space.spec(probe, scale))
            for name in depends:
                if docs[name] != base_docs[name] and d not in depends[name]:
                    depends[name].append(d)
    if vae is None:
        vae = any(depends[part] for part in VAE_PARTS)
    found: dict[tuple[str, str], StageVariant] = {}
    for name, dims in depends.items():
        if name in VAE_PARTS and not vae:
            continue
        for values in itertools.product(*(range(len(space.dimensions[d].choices))
                                          for d in dims)):
            vector = list(base)
            for d, value in zip(dims, values, strict=True):
                vector[d] = value
            spec = space.spec(vector, scale)
            document = stage_documents(spec)[name]
            found.setdefault((name, document), StageVariant(name, document, spec))
    return list(found.values())
