"""``bench distill``: what one stage variant's distillation costs at a scale, so that a user can
size a real SD-1.5 bank before building it.

It builds a seeded teacher at the scale (SD 1.5's topology; the weights do not change the
cost), makes calibration data of a few samples, traces the teacher, and times a few training
steps of each chosen stage of one member. The projection per variant is the measured median
step times the settings' steps, at the batch timed (``batch_timed``: the settings' batch, or
every distillation sample when ``samples`` gives fewer), plus the teacher trace of the
settings' sample count shared by every variant of a bank; it is labelled a projection, not a
measurement.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nanosd_nas.search._accuracy_config import DistillSettings
from nanosd_nas.search.distill._bank import BankError, BlockBank
from nanosd_nas.search.distill._context import demo_context
from nanosd_nas.search.distill._distill import batch_of, stage_loss
from nanosd_nas.search.distill._stages import unet_stages
from nanosd_nas.search.distill._teacher import Teacher, frozen
from nanosd_nas.spaces import ArchSpec, Space, build, load_point, to_scale, transplant

SEEDED_LABEL = "seeded SD-1.5 at {scale} scale (timing only; not a trained model)"


def seeded_teacher(scale: str, *, seed: int = 0) -> Teacher:
    """SD 1.5's topology at ``scale`` with seeded weights and the demo's synthetic context."""
    spec = to_scale(load_point("sd15"), scale)
    model = frozen(build(spec, seed=seed))
    return Teacher(teacher_id=f"seeded-{scale}-seed{seed}",
                   label=SEEDED_LABEL.format(scale=scale), is_demo=True, scale=scale,
                   spec=spec, model=model, context=demo_context(spec),
                   context_label="demo context (synthetic)")


def _step_seconds(bank: BlockBank, spec: ArchSpec, stage: str, steps: int
                  ) -> tuple[list[float], int]:
    """Seconds of each of ``steps`` Adam steps of ``spec``'s stage, and the batch they ran
    (the settings' batch, or every distillation sample when there are fewer)."""
    settings = bank.settings
    student = transplant(bank.teacher_state, spec).model
    ref = next(r for r in unet_stages(spec) if r.name == stage)
    source = bank.stage_source(student, ref, "distill")
    module = ref.module(student.unet).train().to(bank.device)
    optimiser = torch.optim.Adam(module.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(steps + 1):  # the first step (allocations, kernel choice) is not timed
        rows = torch.randperm(len(source), generator=generator)[: settings.batch_size]
        started = time.perf_counter()
        loss = stage_loss(module, ref.kind, batch_of(source, rows.to(bank.device)))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if bank.device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds[1:], min(settings.batch_size, len(source))


def bench_distill(
    space: Space, scale: str = "full", *, stages: list[str] | None = None, steps: int = 3,
    samples: int = 16, settings: DistillSettings | None = None, device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Time ``steps`` training steps of each of ``stages`` (default: every U-Net stage) of the
    space's largest member at ``scale``, on calibration data of ``samples`` samples.

    Args:
        settings: the budget projected (steps, batch size, samples); default settings if None.
    """
    settings = settings or DistillSettings()
    started = time.perf_counter()
    teacher = seeded_teacher(scale)
    teacher_s = time.perf_counter() - started
    spec = space.spec(space.extremes()[1], scale)
    known = [ref.name for ref in unet_stages(spec)]
    names = stages or known
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BankError(f"stage {unknown[0]!r} is not a U-Net stage of {space.name}'s largest "
                        f"member at {scale} ({', '.join(known)})")
    timed = DistillSettings(**{**settings.model_dump(), "samples": samples, "holdout": 0.25})
    with tempfile.TemporaryDirectory(prefix="nanosd-nas-bench-") as scratch:
        bank = BlockBank(teacher, settings=timed, folder=Path(scratch), device=device)
        started = time.perf_counter()
        _ = bank.data
        data_s = time.perf_counter() - started
        started = time.perf_counter()
        trace = bank.teacher_trace("distill")
        trace_s = time.perf_counter() - started
        per_sample_trace = trace_s / trace.output.shape[0]
        rows: dict[str, dict[str, Any]] = {}
        projected: list[float] = []
        for i, stage in enumerate(names):
            seconds, batch = _step_seconds(bank, spec, stage, steps)
            step = statistics.median(seconds)
            projected.append(round(step * settings.steps, 1))
            rows[stage] = {"step_s": [round(s, 3) for s in seconds],
                           "median_step_s": round(step, 3),
                           "projected_variant_s": projected[-1]}
            if progress is not None:
                progress("stages", i + 1, len(names))
    return {
        "scale": scale, "space": space.name, "member": spec.spec_id, "device": device,
        "threads": torch.get_num_threads(), "samples_timed": samples, "steps_timed": steps,
        "batch_size": settings.batch_size, "batch_timed": batch,
        "settings_steps": settings.steps,
        "teacher_build_s": round(teacher_s, 1), "data_s": round(data_s, 1),
        "trace_per_sample_s": round(per_sample_trace, 2),
        "projected_shared_trace_s": round(per_sample_trace * settings.samples, 1),
        "stages": rows,
        "projected_variant_s": {"median": round(statistics.median(projected), 1),
                                "max": max(projected)},
    }
