"""``nanosd-nas accuracy``: build the block bank of a space, score one architecture's fidelity,
show what the calibration data is made of.

The distillation code loads PyTorch; it is imported inside the commands so that the rest of the
command line starts quickly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from nanosd_nas import spaces
from nanosd_nas.cli._choices import AccuracyMode, ComputeDevice, Scheduler
from nanosd_nas.cli._options import JsonOption
from nanosd_nas.cli._output import console, emit_json
from nanosd_nas.cli._progress import phase_progress
from nanosd_nas.cli._resolve import resolve_spec

if TYPE_CHECKING:
    import torch

    from nanosd_nas.search.distill import DistillSettings
    from nanosd_nas.search.teacher import FeatureNet

app = typer.Typer(help="Accuracy: block bank distillation and fidelity against a teacher.",
                  no_args_is_help=True)

TeacherOption = Annotated[str, typer.Option(
    "--teacher", help="'trained' (the shipped mini teacher, SD-1.5 topology trained on shipped "
    "data), 'demo' (seeded, untrained; for tests) or the path of an SD-1.5 diffusers folder or "
    "safetensors file.")]
StepsOption = Annotated[int, typer.Option("--distill-steps", min=0,
                                          help="Training steps per stage variant.")]
SamplesOption = Annotated[int, typer.Option("--samples", min=4,
                                            help="Calibration patches (distill + held out).")]
OutputWeightOption = Annotated[float, typer.Option(
    "--output-weight", min=0.0, help="Weight of BK-SDM's output-level term (0: feature loss "
    "only, as NanoSD).")]
DeviceOption = Annotated[ComputeDevice, typer.Option(
    "--device", help="auto (cuda when PyTorch sees a GPU, else cpu), cpu or cuda: where stage "
    "variants are distilled.")]
BankOption = Annotated[Path | None, typer.Option(
    "--bank", help="Bank folder (default: banks/ in the project home).")]
ImagesOption = Annotated[Path | None, typer.Option(
    "--images", help="Folder of PNG/JPEG pictures for calibration, searched recursively "
    "(default: the pictures shipped with scikit-image).")]
ContextOption = Annotated[Path | None, typer.Option(
    "--context", help="safetensors file of text-encoder outputs [n, tokens, D] of your prompts, "
    "the null prompt among them (default: the teacher's own context).")]
HoldoutOption = Annotated[float, typer.Option(
    "--holdout", help="Share of the calibration crops held out, by whole source picture.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the data's choices.")]


def settings(steps: int, samples: int, output_weight: float) -> DistillSettings:
    from nanosd_nas.search.distill import DistillSettings

    return DistillSettings(steps=steps, samples=samples, output_weight=output_weight)


@app.command("bank")
def bank(
    space: Annotated[str, typer.Option(help="A shipped space or a space YAML file.")] = "nanosd",
    teacher: TeacherOption = "trained", distill_steps: StepsOption = 150,
    samples: SamplesOption = 160, output_weight: OutputWeightOption = 0.0,
    device: DeviceOption = "auto", bank_folder: BankOption = None, images: ImagesOption = None,
    context: ContextOption = None, json_output: JsonOption = False,
) -> None:
    """Distil every stage variant of a space that the bank lacks (entries are reused across
    studies with the same teacher, settings and data). The space is taken at the teacher's
    scale."""
    from nanosd_nas.search.distill import BlockBank, load_teacher, space_variants
    from nanosd_nas.search.evaluators import resolve_device

    target = spaces.load_space(space)
    where = resolve_device(device)
    loaded = load_teacher(teacher)
    block_bank = BlockBank(loaded, settings=settings(distill_steps, samples, output_weight),
                           folder=bank_folder, device=where, images=images, context=context)
    with phase_progress(not json_output) as on_progress:
        report = block_bank.build(space_variants(target, loaded.scale), on_progress=on_progress)
    document = {"teacher": loaded.label, "teacher_id": loaded.teacher_id, "space": target.name,
                "scale": loaded.scale, "folder": str(block_bank.folder),
                "entries": len(report.entries), "built": report.built,
                "reused": report.reused, "seconds": round(report.seconds, 1),
                "stages": [e.to_dict() for e in report.entries]}
    if json_output:
        emit_json(document)
        return
    table = Table(title=f"block bank of {target.name} at {loaded.scale} ({loaded.label})")
    for column in ("stage", "variant", "held-out loss before", "after", "steps", "s", "reused"):
        table.add_column(column, justify="left" if column in ("stage", "variant") else "right")
    for e in report.entries:
        table.add_row(e.stage, e.label, f"{e.heldout_initial:.4f}", f"{e.heldout_final:.4f}",
                      str(e.steps), f"{e.seconds:.1f}", "yes" if e.reused else "")
    console.print(table)
    console.print(f"{report.built} built, {report.reused} reused in {report.seconds:.1f} s; "
                  f"bank at {block_bank.folder}")


@app.command("score")
def score(
    spec: Annotated[str, typer.Argument(help="Preset, space member (nanosd:0,1,2,3,4,5), spec "
                                        "JSON file or point YAML file.")],
    teacher: TeacherOption = "trained",
    mode: Annotated[AccuracyMode, typer.Option(
        help="distill (block bank) or surgery (training-free).")] = "distill",
    distill_steps: StepsOption = 150, samples: SamplesOption = 160,
    output_weight: OutputWeightOption = 0.0, device: DeviceOption = "auto",
    bank_folder: BankOption = None, images: ImagesOption = None, context: ContextOption = None,
    json_output: JsonOption = False,
) -> None:
    """Fidelity of one architecture against the teacher on held-out calibration data (stage
    variants missing from the bank are distilled first)."""
    from nanosd_nas.search.distill import BlockBank, load_teacher
    from nanosd_nas.search.evaluators import BankEvaluator, resolve_device

    where = resolve_device(device)
    loaded = load_teacher(teacher)
    arch = resolve_spec(spec, loaded.scale)
    block_bank = BlockBank(loaded, settings=settings(distill_steps, samples, output_weight),
                           folder=bank_folder, device=where, images=images, context=context)
    evaluator = BankEvaluator.on(block_bank, distilled=mode == "distill")
    with console.status(f"scoring {arch.spec_id} against {loaded.label} ..."):
        result = evaluator.evaluate(arch)
    document = {"spec_id": arch.spec_id, "mode": mode, "teacher": loaded.label,
                "objectives": result.objectives,
                "untrained_parameters": result.details.get("untrained_parameters"),
                "details": result.details}
    if json_output:
        emit_json(document)
        return
    console.print(f"{arch.spec_id} against {loaded.label} ({mode}):")
    for name, value in result.objectives.items():
        console.print(f"  {name}: {value:.2f} dB")
    errors = result.details.get("stage_errors", {})
    if errors:
        console.print("  stage feature errors (relative MSE): " + ", ".join(
            f"{k} {v:.4f}" for k, v in errors.items()))
    for key in ("untrained_parameters", "fidelity_ci95", "fidelity_by_t"):
        if key in result.details:
            console.print(f"  {key}: {_plain(result.details[key])}")


def _plain(value: Any) -> str:
    """A detail's value on one line: numbers rounded, lists bracketed, mappings as key value."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return str(value)


@app.command("data")
def data(
    teacher: TeacherOption = "trained", images: ImagesOption = None, context: ContextOption = None,
    samples: SamplesOption = 160, holdout: HoldoutOption = 0.33, seed: SeedOption = 0,
    json_output: JsonOption = False,
) -> None:
    """What the calibration data is made of: its source pictures (size, colour, crops given and
    chosen, held out or not), duplicates dropped, unreadable files skipped, the split, and the
    text condition. Nothing is encoded."""
    from nanosd_nas.search.distill import calibration_plan, data_identity, load_teacher

    loaded = load_teacher(teacher)
    tensor, label = loaded.calibration_context(context)
    plan = calibration_plan(loaded.spec.image_size, samples=samples, holdout=holdout,
                            seed=seed, images=images, contexts=tensor.shape[0])
    n, tokens, dim = tensor.shape
    document = {"teacher": loaded.label, "teacher_id": loaded.teacher_id, **plan.composition(),
                "context": {"source": label, "n": n, "tokens": tokens, "dim": dim},
                "data_id": data_identity(images, tensor)}
    if json_output:
        emit_json(document)
        return
    _print_data(document)


def _print_data(document: dict[str, Any]) -> None:
    table = Table(title=f"calibration data at {document['image_size']} px from "
                        f"{document['images']}")
    for column in ("source", "size", "colour", "crops", "chosen", "held out"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for s in document["sources"]:
        table.add_row(s["name"], f"{s['width']}x{s['height']}", "colour" if s["colour"] else
                      "grey", str(s["crops"]), str(s["chosen"]), "yes" if s["heldout"] else "")
    console.print(table)
    mirrored = " (mirrored crops added)" if document["mirrored"] else ""
    console.print(f"{len(document['sources'])} pictures, {document['pool_crops']} crops"
                  f"{mirrored}; {document['samples']} chosen: {document['distill']} to distil, "
                  f"{document['heldout']} held out; colour share {document['colour_share']:.0%}")
    duplicates = ", ".join(f"{d['name']} = {d['same_as']}" for d in document["duplicates"])
    console.print(f"duplicates dropped: {len(document['duplicates'])}"
                  + (f" ({duplicates})" if duplicates else ""))
    unreadable = ", ".join(document["unreadable"])
    console.print(f"unreadable files skipped: {len(document['unreadable'])}"
                  + (f" ({unreadable})" if unreadable else ""))
    c = document["context"]
    console.print(f"context: {c['source']}; n={c['n']} prompts, {c['tokens']} tokens, "
                  f"D={c['dim']}; rows used " + ", ".join(
                      f"{row}: {n}" for row, n in document["context_rows"].items()))
    console.print(f"data id {document['data_id']} (seed {document['seed']})")


@app.command("sample")
def sample(
    spec: Annotated[str, typer.Argument(help="Preset, space member (nanosd:0,1,2,3,4,5), spec "
                                        "JSON file or point YAML file.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for grid.png and samples.json (default: samples/SPEC_ID/ in the "
        "project home, where the candidate page looks).")] = None,
    teacher: TeacherOption = "trained",
    features: Annotated[Path | None, typer.Option(
        "--features", help="The feature network (default: features.safetensors in the "
        "teacher's folder, X.features.safetensors beside a file X.safetensors; none: class "
        "accuracy omitted).")] = None,
    classes: Annotated[list[str] | None, typer.Option(
        "--class", help="A class (a context row's name) to sample; repeat for more (default: "
        "up to 16 spread over the teacher's).")] = None,
    per_class: Annotated[int, typer.Option("--per-class", min=1,
                                           help="Samples per class.")] = 4,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Sampling steps.")] = 25,
    guidance: Annotated[float, typer.Option(
        "--guidance", min=0.0, help="Classifier-free guidance scale (1: conditional only).")
                        ] = 3.0,
    sampler: Annotated[Scheduler, typer.Option("--sampler", help="The diffusion sampler.")
                       ] = "ddim",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the initial noise.")] = 0,
    mode: Annotated[AccuracyMode, typer.Option(
        help="distill (block bank) or surgery (training-free).")] = "distill",
    distill_steps: StepsOption = 150, samples: SamplesOption = 160,
    output_weight: OutputWeightOption = 0.0, device: DeviceOption = "auto",
    bank_folder: BankOption = None, images: ImagesOption = None, context: ContextOption = None,
    json_output: JsonOption = False,
) -> None:
    """Sample the teacher and one student from the same seeds and classes (SD 1.5's scheduler,
    classifier-free guidance against the null prompt) and write grid.png — one row per class:
    the teacher's samples, a 4-pixel white gap, then the student's of the same seeds — and
    samples.json: per class the paired PSNR (images in [0, 1]) and SSIM and each model's class
    accuracy. The student is assembled as accuracy score assembles it (--images and --context
    are the bank's calibration data; samples use the teacher's own classes)."""
    from nanosd_nas.search.distill import BlockBank, load_teacher, stage_variants
    from nanosd_nas.search.evaluators import BankEvaluator, resolve_device
    from nanosd_nas.search.study_views import GRID_FILE, SAMPLES_FILE, samples_folder
    from nanosd_nas.search.teacher import (
        TruthReference,
        TruthSettings,
        check_student,
        class_rows,
        save_grid,
        scheduler,
    )

    scheduler(sampler)
    where = resolve_device(device)
    loaded = load_teacher(teacher)
    class_rows(loaded.classes, classes or ())
    arch = resolve_spec(spec, loaded.scale)
    check_student(loaded.spec, arch)
    net, features_file = _feature_net(loaded.path, features)
    block_bank = BlockBank(loaded, settings=settings(distill_steps, samples, output_weight),
                           folder=bank_folder, device=where, images=images, context=context)
    truth = TruthSettings(steps=(steps,), per_class=per_class, seed=seed, guidance=guidance,
                          sampler=sampler, classes=tuple(classes or ()))
    real = _real_images(loaded.classes, net, per_class, loaded.spec.image_size, seed)
    with phase_progress(not json_output) as on_progress:
        reference = TruthReference.of(loaded, features=net, real=real, settings=truth,
                                      on_progress=on_progress)
        if mode == "distill":
            block_bank.build(stage_variants(arch).values(), on_progress=on_progress)
        student = BankEvaluator.on(block_bank, distilled=mode == "distill").candidate(arch)
        report = reference.score(student, keep_samples=True, on_progress=on_progress)
    folder = out or samples_folder(arch.spec_id)
    folder.mkdir(parents=True, exist_ok=True)
    save_grid(reference.samples[steps], report.samples[steps], per_class, folder / GRID_FILE)
    document = {"spec_id": arch.spec_id, "mode": mode, "teacher": loaded.label,
                "teacher_id": loaded.teacher_id, "features": features_file,
                "grid": str(folder / GRID_FILE), "layout": _layout(per_class),
                **_per_class(report.to_dict(), steps)}
    (folder / SAMPLES_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    if json_output:
        emit_json(document)
        return
    _print_samples(document, folder / SAMPLES_FILE)


def _feature_net(path: Path | None,
                 features: Path | None) -> tuple[FeatureNet | None, str | None]:
    """The feature network given, else the one beside the teacher's weights at ``path``, else
    none."""
    from nanosd_nas.search.teacher import FEATURES_FILE, load_features

    if features is None and path is not None:
        beside = (path / FEATURES_FILE if path.is_dir()
                  else path.with_name(f"{path.stem}.{FEATURES_FILE}"))
        features = beside if beside.is_file() else None
    if features is None:
        return None, None
    return load_features(features), str(features)


def _real_images(classes: tuple[str, ...], net: FeatureNet | None, per_class: int, size: int,
                 seed: int) -> torch.Tensor | None:
    """Held-out real images for FID and KID: those of the project's own data set, when the
    teacher was trained on it (its classes are the data set's) and a feature network is there
    to compare them in; else none."""
    from nanosd_nas.search.teacher import CLASSES, heldout_set

    if net is None or tuple(classes) != tuple(CLASSES):
        return None
    return heldout_set(max(2, per_class), size, seed)[0]


def _layout(per_class: int) -> str:
    return (f"one row per class: the teacher's {per_class} samples, a 4-pixel white gap, then "
            f"the student's {per_class} samples of the same seeds")


def _per_class(report: dict[str, Any], steps: int) -> dict[str, Any]:
    """samples.json's figures: overall and per class, the student's paired PSNR and SSIM and
    both models' class accuracy (null where omitted)."""
    student, teacher = report["student"][str(steps)], report["teacher"][str(steps)]

    def figures(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
        return {"psnr_db": mine["psnr_db"], "ssim": mine["ssim"],
                "student_accuracy": mine["class_accuracy"],
                "teacher_accuracy": theirs["class_accuracy"]}

    return {"settings": report["settings"], "notes": report["notes"],
            "overall": figures(student, teacher) | {
                k: student[k] for k in ("fid", "kid", "kid_std")} | {
                f"teacher_{k}": teacher[k] for k in ("fid", "kid", "kid_std")},
            "classes": {name: figures(mine, teacher["by_class"][name])
                        for name, mine in student["by_class"].items()}}


def _print_samples(document: dict[str, Any], written: Path) -> None:
    s = document["settings"]
    table = Table(title=f"{document['spec_id']} against {document['teacher']} "
                        f"({document['mode']}; {s['sampler']}, {s['steps'][0]} steps, guidance "
                        f"{s['guidance']:g}, {s['per_class']} per class)")
    for column in ("class", "PSNR dB", "SSIM", "teacher accuracy", "student accuracy"):
        table.add_column(column, justify="left" if column == "class" else "right")
    rows = {**document["classes"], "all": document["overall"]}
    for name, f in rows.items():
        table.add_row(name, *(_figure(f[key], digits) for key, digits in (
            ("psnr_db", 2), ("ssim", 4), ("teacher_accuracy", 2), ("student_accuracy", 2))))
    console.print(table)
    overall = document["overall"]
    if overall["fid"] is not None:
        console.print(f"against held-out real images: FID {overall['fid']:.2f} (teacher "
                      f"{overall['teacher_fid']:.2f}), KID {overall['kid']:.4f} (teacher "
                      f"{overall['teacher_kid']:.4f})")
    for note in document["notes"]:
        console.print(f"note: {note}")
    console.print(f"grid at {document['grid']} ({document['layout']}); figures in {written}")


def _figure(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
