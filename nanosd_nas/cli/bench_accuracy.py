"""``nanosd-nas bench accuracy``: the fidelity proxy against the quality of generated samples."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from nanosd_nas.cli._choices import ComputeDevice
from nanosd_nas.cli._options import JsonOption
from nanosd_nas.cli._output import console, emit_json
from nanosd_nas.cli._progress import phase_progress


def bench_accuracy(
    candidates: Annotated[int, typer.Option(min=6, help="Candidates in all (both spaces).")] = 40,
    teacher: Annotated[str, typer.Option(help="'trained' or the folder of a teacher that ships "
                                         "a feature network (teacher train makes one).")
                       ] = "trained",
    scaled_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the "
                                                "candidates drawn from nanosd-scaled.")] = 0.1,
    pool: Annotated[int, typer.Option(min=0, help="nanosd members scored by the proxy to "
                                      "choose candidates across its range.")] = 80,
    per_class: Annotated[int, typer.Option(min=1, help="Samples per class for ground "
                                           "truth.")] = 5,
    distill_steps: Annotated[int, typer.Option(min=0, help="Training steps per stage variant "
                                               "of the block bank.")] = 150,
    samples: Annotated[int, typer.Option(min=4, help="Calibration patches of the block "
                                         "bank.")] = 160,
    seed: Annotated[int, typer.Option(help="Seed of the members drawn and of sampling.")] = 0,
    device: Annotated[ComputeDevice, typer.Option(help="Where stage variants are distilled "
                                                  "(auto: cuda when PyTorch sees a GPU).")
                      ] = "auto",
    json_output: JsonOption = False,
) -> None:
    """Score candidates of nanosd and nanosd-scaled by the fidelity proxy and by the quality
    of what they generate (paired PSNR and SSIM against the teacher's samples, FID, KID and
    class accuracy, at 25 and 4 DDIM steps); report rank agreement with bootstrap intervals,
    the same for baselines (parameters, MACs, transformers kept, surgery-only score), the
    top-10 overlap and the proxy's spread over two bank seeds."""
    from nanosd_nas.search import bench_accuracy as run
    from nanosd_nas.search.distill import DistillSettings

    settings = DistillSettings(steps=distill_steps, samples=samples)
    with phase_progress(not json_output) as on_progress:
        result = run(teacher=teacher, candidates=candidates, scaled_share=scaled_share,
                     pool=pool, per_class=per_class, settings=settings, seed=seed,
                     device=device, progress=on_progress)
    if json_output:
        emit_json(result)
        return
    _print(result)


def _interval(agreement: dict[str, Any]) -> str:
    if agreement["spearman"] is None:
        return "-"
    low, high = agreement["spearman_ci95"]
    if low is None or high is None:
        return f"{agreement['spearman']:+.3f}"
    return f"{agreement['spearman']:+.3f} ({low:+.2f}..{high:+.2f})"


def _print(result: dict[str, Any]) -> None:
    table = Table(title=f"Spearman against ground truth, {result['n_candidates']} candidates "
                        f"({result['teacher']})")
    table.add_column("truth metric")
    table.add_column("fidelity proxy", justify="right")
    for name in result["baselines"]:
        table.add_column(name, justify="right")
    for metric, agreement in result["agreement"].items():
        table.add_row(metric, _interval(agreement),
                      *(_interval(b[metric]) for b in result["baselines_agreement"].values()))
    console.print(table)
    spread = result["proxy_spread"]
    console.print(f"top-10 overlap {result['top10_overlap']}/10; margin over the best baseline "
                  f"{result['margin_over_best_baseline']}; proxy spread over two bank seeds "
                  f"({spread['space']}): median |difference| {spread['median_abs_difference_db']} "
                  f"dB, Spearman {spread.get('between_seeds_spearman')}; "
                  f"{result['seconds']:.0f} s")
    within = ", ".join(f"{space} {_interval(a)} (n={a['n']})"
                       for space, a in result["by_space"].items())
    console.print(f"fidelity against psnr_25 within each space: {within}")
    console.print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result["timing_s"].items()))
