"""Feature-wise distillation of one stage alone (NanoSD), and the loss it minimises.

A student stage, initialised by surgery, learns to map the teacher's input features of that
stage to the teacher's output features of that stage: the mean of each output's relative MSE
(MSE over the target's mean square, so that stages of different magnitude weigh alike).
Optionally BK-SDM's output-level terms join it: the stage is spliced into the frozen teacher,
whose noise prediction is then compared with the teacher's own (``output_weight``) and with the
true noise (``task_weight``).

Teacher features are cut to the student's widths by taking their first channels (the same
prefix on every axis of a level, so residual paths stay aligned); at SD 1.5's own widths this
is the identity.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nanosd_nas.search._accuracy_config import DistillSettings
from nanosd_nas.search.distill._stages import StageFeatures, run_stage
from nanosd_nas.spaces import SpecUNet


def relative_mse(outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean over outputs of MSE / mean square of the target."""
    terms = [
        torch.mean((o - t) ** 2) / torch.mean(t**2).clamp_min(1e-12)
        for o, t in zip(outputs, targets, strict=True)
    ]
    return torch.stack(terms).mean()


def fit_channels(tensor: torch.Tensor, channels: int) -> torch.Tensor:
    """The first ``channels`` channels of ``tensor`` (axis 1): the structured selection that
    maps a teacher feature onto a narrower student."""
    if tensor.shape[1] < channels:
        raise ValueError(f"a student stage needs {channels} channels where the teacher has "
                         f"{tensor.shape[1]}: a student may be narrower than its teacher, "
                         f"not wider")
    return tensor[:, :channels].contiguous()


def fit_features(features: StageFeatures, like: StageFeatures) -> StageFeatures:
    """``features`` cut to the channel counts of ``like`` (a student trace of the same stage).

    A student stage that lost its sampler (the new deepest encoder stage) hands on fewer
    outputs; it is matched on the ones it has, which come first.
    """
    if len(like.outputs) > len(features.outputs) or len(like.skips) != len(features.skips):
        raise ValueError(f"the student stage has {len(like.outputs)} outputs and "
                         f"{len(like.skips)} skip inputs where the teacher's has "
                         f"{len(features.outputs)} and {len(features.skips)}")
    return StageFeatures(
        h=fit_channels(features.h, like.h.shape[1]),
        skips=[fit_channels(s, t.shape[1]) for s, t in zip(features.skips, like.skips,
                                                           strict=True)],
        outputs=[fit_channels(s, t.shape[1]) for s, t in zip(features.outputs, like.outputs,
                                                             strict=False)],
    )


def _rows(features: StageFeatures, rows: torch.Tensor) -> StageFeatures:
    return StageFeatures(h=features.h[rows], skips=[s[rows] for s in features.skips],
                         outputs=[o[rows] for o in features.outputs])


@dataclass
class StageBatchSource:
    """What a stage is distilled on: the teacher's (fitted) stage features, and per sample its
    time embedding and conditioning (``context``: ``[N, tokens, D]``)."""

    features: StageFeatures
    temb: torch.Tensor
    context: torch.Tensor
    unet_inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    teacher_output: torch.Tensor | None = None
    noise: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.features.h.shape[0]


@dataclass
class DistillResult:
    """A distilled stage's weights and how the loss moved."""

    state: dict[str, torch.Tensor]
    initial_loss: float
    final_loss: float
    heldout_initial: float
    heldout_final: float
    steps: int
    seconds: float


def stage_loss(stage: nn.Module, kind: str, source: StageBatchSource) -> torch.Tensor:
    """The feature loss of ``stage`` on all of ``source`` (no output-level terms)."""
    outputs = run_stage(stage, kind, source.features, source.temb, source.context)
    return relative_mse(outputs, source.features.outputs)


def _spliced(teacher: SpecUNet, kind: str, index: int, stage: nn.Module) -> SpecUNet:
    """A shallow copy of ``teacher`` whose stage ``kind``/``index`` is ``stage``."""
    hybrid = copy.copy(teacher)
    hybrid._modules = dict(teacher._modules)
    attribute = "down_blocks" if kind == "down" else "up_blocks"
    blocks = nn.ModuleList(list(getattr(teacher, attribute)))
    blocks[index] = stage
    hybrid._modules[attribute] = blocks
    return hybrid


def distill_stage(
    stage: nn.Module, kind: str, index: int, *, train: StageBatchSource,
    heldout: StageBatchSource, settings: DistillSettings, teacher: SpecUNet | None = None,
    seed: int = 0,
) -> DistillResult:
    """Train ``stage`` (a copy; the argument is left as it was) and return its weights.

    Args:
        stage: the surgery-initialised student stage.
        kind: ``down`` or ``up``.
        index: the stage's index among the teacher's ``down_blocks``/``up_blocks`` (for the
            output-level terms only).
        train, heldout: the distillation and held-out features.
        settings: steps, batch size, learning rate and loss weights.
        teacher: the frozen teacher U-Net, needed when an output-level weight is set.
        seed: seeds the batch order.
    """
    started = time.perf_counter()
    student = copy.deepcopy(stage).train()
    student.to(train.features.h.device)
    with torch.no_grad():
        initial, held_initial = stage_loss(student, kind, train), stage_loss(student, kind, heldout)
    steps = settings.steps if float(initial) > 1e-10 else 0
    output_terms = settings.output_weight > 0 or settings.task_weight > 0
    if output_terms and (teacher is None or train.unet_inputs is None):
        raise ValueError("output-level terms need the teacher and its U-Net inputs")
    loss_fn: Callable[[StageBatchSource], torch.Tensor] = (
        (lambda b: _full_loss(student, kind, index, b, settings, teacher)) if output_terms
        else (lambda b: stage_loss(student, kind, b))
    )
    train_loop(student, lambda rows: loss_fn(batch_of(train, rows)), n=len(train), steps=steps,
               settings=settings, seed=seed)
    student.eval()
    with torch.no_grad():
        final, held_final = stage_loss(student, kind, train), stage_loss(student, kind, heldout)
    return DistillResult(
        state={k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()},
        initial_loss=float(initial), final_loss=float(final),
        heldout_initial=float(held_initial), heldout_final=float(held_final), steps=steps,
        seconds=time.perf_counter() - started,
    )


def train_loop(
    module: nn.Module, batch_loss: Callable[[torch.Tensor], torch.Tensor], *, n: int, steps: int,
    settings: DistillSettings, seed: int,
) -> None:
    """``steps`` Adam steps on ``batch_loss`` of seeded random rows of ``n`` samples, the
    learning rate following ``settings``' warm-up and schedule."""
    device = next(module.parameters()).device
    optimiser = torch.optim.Adam(module.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: learning_rate_factor(step, steps, settings))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randperm(n, generator=generator)[: settings.batch_size].to(device)
        loss = batch_loss(rows)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()


def learning_rate_factor(step: int, steps: int, settings: DistillSettings) -> float:
    """The share of ``settings.learning_rate`` used at ``step`` of ``steps``."""
    warmup = min(settings.warmup_steps, steps)
    if step < warmup:
        return (step + 1) / warmup
    if settings.lr_schedule == "constant" or steps <= warmup:
        return 1.0
    progress = (step - warmup) / (steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_of(source: StageBatchSource, rows: torch.Tensor) -> StageBatchSource:
    """The samples ``rows`` of ``source``."""
    return StageBatchSource(
        features=_rows(source.features, rows), temb=source.temb[rows],
        context=source.context[rows],
        unet_inputs=(None if source.unet_inputs is None
                     else tuple(t[rows] for t in source.unet_inputs)),  # type: ignore[arg-type]
        teacher_output=None if source.teacher_output is None else source.teacher_output[rows],
        noise=None if source.noise is None else source.noise[rows],
    )


def _full_loss(
    student: nn.Module, kind: str, index: int, batch: StageBatchSource,
    settings: DistillSettings, teacher: SpecUNet | None,
) -> torch.Tensor:
    loss = stage_loss(student, kind, batch)
    if teacher is None or batch.unet_inputs is None or batch.teacher_output is None:
        return loss
    prediction = _spliced(teacher, kind, index, student)(*batch.unet_inputs)
    if settings.output_weight > 0:
        loss = loss + settings.output_weight * relative_mse([prediction], [batch.teacher_output])
    if settings.task_weight > 0 and batch.noise is not None:
        loss = loss + settings.task_weight * relative_mse([prediction], [batch.noise])
    return loss
