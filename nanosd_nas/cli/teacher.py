"""``nanosd-nas teacher``: train the mini teacher (SD 1.5's topology, class-conditional).

The training code loads PyTorch; it is imported inside the command so that the rest of the
command line starts quickly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nanosd_nas.cli._choices import TorchTarget
from nanosd_nas.cli._options import JsonOption
from nanosd_nas.cli._output import UserError, console, emit_json
from nanosd_nas.cli._progress import phase_progress

app = typer.Typer(help="The teacher: train SD 1.5's topology at mini scale on shipped data.",
                  no_args_is_help=True)


@app.command("train")
def train(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the teacher to (must not "
                                      "exist; work goes to OUT.partial until it is done).")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="U-Net training steps.")] = 2000,
    vae_steps: Annotated[int, typer.Option("--vae-steps", min=1,
                                           help="VAE training steps.")] = 1500,
    feature_steps: Annotated[int, typer.Option("--feature-steps", min=1,
                                               help="Feature network training steps.")] = 400,
    encoded: Annotated[int, typer.Option("--encoded", min=64, help="Training images encoded "
                                         "for the U-Net.")] = 8000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the weights and data.")] = 0,
    device: Annotated[TorchTarget, typer.Option("--device", help="Where PyTorch trains.")
                      ] = "cpu",
    restart: Annotated[bool, typer.Option("--restart", help="Discard an interrupted run's "
                                          "checkpoints instead of resuming them.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Train the mini teacher: VAE, feature network and class-conditional U-Net (about an
    hour on a 2-core CPU with the defaults). Interrupted, it resumes from its last
    checkpoint when run again with the same settings."""
    # Busy-waiting OpenMP threads slow training twenty-fold when another process shares the
    # cores; waiting passively costs little when they do not. Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from nanosd_nas.search.teacher import Recipe, train_teacher

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch sees no GPU here (install a CUDA build of torch)")
    recipe = Recipe(seed=seed, unet_steps=steps, vae_steps=vae_steps,
                    feature_steps=feature_steps, encoded=encoded)
    with phase_progress(not json_output) as on_progress:
        result = train_teacher(out, recipe, device=device, restart=restart,
                               on_progress=on_progress)
    document = {"folder": str(result.folder), "resumed": result.resumed,
                "metrics": result.metrics, "seconds": result.seconds,
                "recipe": recipe.to_dict()}
    if json_output:
        emit_json(document)
        return
    table = Table(title=f"teacher written to {result.folder}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value}")
    for name, value in result.seconds.items():
        table.add_row(f"{name} (s)", f"{value:.0f}")
    console.print(table)
