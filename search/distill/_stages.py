"""U-Net stages as distillation units: names, the modules that hold them, and their features.

Stages are named by level, as NanoSD names them: encoder stages ``E1..En`` and decoder stages
``Dn..D1``. A student that dropped the deepest level (E4, the mid block and D4) keeps the names
of the stages it kept, so student stage ``D3`` is distilled toward teacher stage ``D3``'s
output, with the same skip connections.

What a stage receives can change with surgery: after E4, the mid block and D4 are gone, D3 is
fed by E3 instead of D4. :func:`fed_by` names each stage's source, and :func:`path_features`
gives a stage the teacher's features along the student's own path (for D3: the teacher's E3
output as its input, the teacher's D3 output as its target), which repairs the boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nanosd_nas.spaces import ArchSpec, SpecUNet


@dataclass(frozen=True)
class StageRef:
    """Where a stage sits: ``kind`` is ``down`` or ``up``, ``level`` counts from the image."""

    name: str
    kind: str
    level: int
    index: int

    def module(self, unet: SpecUNet) -> nn.Module:
        blocks = unet.down_blocks if self.kind == "down" else unet.up_blocks
        return blocks[self.index]


def unet_stages(spec: ArchSpec) -> list[StageRef]:
    """The stages of ``spec``'s U-Net in execution order (the mid block is not a stage)."""
    n = len(spec.unet.levels)
    down = [StageRef(f"E{k + 1}", "down", k, k) for k in range(n)]
    up = [StageRef(f"D{k + 1}", "up", k, n - 1 - k) for k in reversed(range(n))]
    return down + up


def fed_by(spec: ArchSpec) -> dict[str, str]:
    """What feeds each stage's main input: ``stem`` (the input convolution), a stage's name,
    or ``mid`` (the mid block)."""
    refs = unet_stages(spec)
    sources: dict[str, str] = {}
    previous = "stem"
    for ref in refs:
        if ref.kind == "up" and previous.startswith("E") and spec.unet.mid_block:
            previous = "mid"
        sources[ref.name] = previous
        previous = ref.name
    return sources


@dataclass
class StageFeatures:
    """One stage's inputs and outputs for a batch.

    Attributes:
        h: the stage's main input.
        skips: the skip connections an ``up`` stage consumes, in the order it pops them
            (empty for ``down`` stages).
        outputs: what the stage hands on: a ``down`` stage's skip outputs (each layer's output,
            then the downsampler's), an ``up`` stage's single output.
    """

    h: torch.Tensor
    skips: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)

    def to(self, device: str | torch.device) -> StageFeatures:
        return StageFeatures(h=self.h.to(device), skips=[s.to(device) for s in self.skips],
                             outputs=[o.to(device) for o in self.outputs])


def run_stage(
    stage: nn.Module, kind: str, features: StageFeatures, temb: torch.Tensor,
    context: torch.Tensor,
) -> list[torch.Tensor]:
    """Run ``stage`` on recorded inputs; returns its outputs as :class:`StageFeatures` holds
    them."""
    if kind == "down":
        _, skips = stage(features.h, temb, context)
        return list(skips)
    # An up stage pops its skips from the end of the list it is given.
    return [stage(features.h, list(reversed(features.skips)), temb, context)]


@dataclass
class Trace:
    """A U-Net's per-stage features on one batch, and its time embedding and output."""

    stages: dict[str, StageFeatures]
    temb: torch.Tensor
    output: torch.Tensor


def _kept(tensor: torch.Tensor) -> torch.Tensor:
    # Convolutions may hand back channels-last tensors; PyTorch's CPU backward of a stage fed
    # one crashes (seen with 2.13), so recorded features are kept in the standard layout.
    return tensor.detach().contiguous()


Hook = Callable[..., None]


def _pre_hook(ref: StageRef, layers: int, records: dict[str, StageFeatures],
              tembs: list[torch.Tensor]) -> Hook:
    def hook(_: nn.Module, args: tuple[Any, ...]) -> None:
        if ref.kind == "down":
            h, temb, _context = args
            records[ref.name] = StageFeatures(h=_kept(h))
        else:
            h, skips, temb, _context = args
            popped = [_kept(s) for s in reversed(skips[-layers:])]
            records[ref.name] = StageFeatures(h=_kept(h), skips=popped)
        if not tembs:
            tembs.append(_kept(temb))
    return hook


def _post_hook(ref: StageRef, records: dict[str, StageFeatures]) -> Hook:
    def hook(_: nn.Module, __: tuple[Any, ...], output: Any) -> None:
        outputs = output[1] if ref.kind == "down" else [output]
        records[ref.name].outputs = [_kept(t) for t in outputs]
    return hook


@contextmanager
def _recording(unet: SpecUNet, spec: ArchSpec) -> Iterator[tuple[dict[str, StageFeatures],
                                                                 list[torch.Tensor]]]:
    records: dict[str, StageFeatures] = {}
    tembs: list[torch.Tensor] = []
    handles = []
    for ref in unet_stages(spec):
        module = ref.module(unet)
        layers = len(module.resnets)  # type: ignore[arg-type]
        handles.append(module.register_forward_pre_hook(_pre_hook(ref, layers, records, tembs)))
        handles.append(module.register_forward_hook(_post_hook(ref, records)))
    try:
        yield records, tembs
    finally:
        for handle in handles:
            handle.remove()


def trace(
    unet: SpecUNet, spec: ArchSpec, sample: torch.Tensor, timestep: torch.Tensor,
    context: torch.Tensor,
) -> Trace:
    """Run ``unet`` once and record every stage's inputs and outputs (no gradients)."""
    with torch.no_grad(), _recording(unet, spec) as (records, tembs):
        output = unet(sample, timestep, context)
    return Trace(stages=records, temb=tembs[0], output=output)


def trace_batched(
    unet: SpecUNet, spec: ArchSpec, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    batch: int = 16,
) -> Trace:
    """:func:`trace` over ``inputs`` in batches, concatenated."""
    sample, timestep, context = inputs
    parts = [trace(unet, spec, sample[i:i + batch], timestep[i:i + batch], context[i:i + batch])
             for i in range(0, sample.shape[0], batch)]
    first = parts[0]
    stages = {
        name: StageFeatures(
            h=torch.cat([p.stages[name].h for p in parts]),
            skips=[torch.cat(ts) for ts in zip(*(p.stages[name].skips for p in parts),
                                               strict=True)],
            outputs=[torch.cat(ts) for ts in zip(*(p.stages[name].outputs for p in parts),
                                                 strict=True)],
        )
        for name in first.stages
    }
    return Trace(stages=stages, temb=torch.cat([p.temb for p in parts]),
                 output=torch.cat([p.output for p in parts]))


def path_features(teacher: Trace, teacher_spec: ArchSpec, spec: ArchSpec, name: str
                  ) -> StageFeatures:
    """The teacher's features of stage ``name`` along ``spec``'s path: the input the stage
    receives in the student, with the teacher's skips and outputs as its targets.

    Where the student's stage is fed as the teacher's is, these are the teacher's own
    features. Where surgery changed its source (D3 fed by E3 once E4, the mid block and D4
    are gone), the input is the teacher's output of that source: an encoder stage's last
    layer output (a deepest encoder stage has no downsampler, so that is what it hands on).

    Raises:
        ValueError: the source is the mid block at another level than the teacher's (the mid
            block is not a distillation unit).
    """
    own = teacher.stages[name]
    source = fed_by(spec)[name]
    if source == fed_by(teacher_spec)[name]:
        return own
    if not source.startswith("E"):
        raise ValueError(f"stage {name} is fed by {source!r} in the student; only an encoder "
                         f"stage can replace the teacher's source")
    level = int(source[1:]) - 1
    layers = len(spec.unet.levels[level].down)
    return StageFeatures(h=teacher.stages[source].outputs[layers - 1], skips=own.skips,
                         outputs=own.outputs)
