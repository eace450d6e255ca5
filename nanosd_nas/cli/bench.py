"""``nanosd-nas bench``: the benchmarks whose figures the README quotes (predictor, fidelity,
search)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nanosd_nas import latency_models, spaces
from nanosd_nas.cli._choices import BenchObjective, ComputeDevice, Encoding, InitialDesign
from nanosd_nas.cli._options import DbOption, JsonOption, open_store
from nanosd_nas.cli._output import UserError, accuracy_table, console, emit_json
from nanosd_nas.cli._progress import phase_progress

app = typer.Typer(help="Benchmarks (each prints JSON with --json).", no_args_is_help=True)


@app.command("predictor")
def predictor(
    space: Annotated[str, typer.Option(help="Space to calibrate on.")] = "nanosd",
    scale: Annotated[str, typer.Option(help="full or mini.")] = "mini",
    device: Annotated[str, typer.Option(help="A registered device.")] = "local-cpu",
    initial: Annotated[int, typer.Option(help="Random training members.")] = 40,
    rounds: Annotated[int, typer.Option(help="Rounds of least-sure members.")] = 3,
    per_round: Annotated[int, typer.Option(help="Members added per round.")] = 20,
    test: Annotated[int, typer.Option(help="Held-out members measured.")] = 60,
    repeats: Annotated[int, typer.Option(help="Members re-measured for repeatability.")] = 10,
    component: Annotated[str, typer.Option(help="Component scored.")] = "unet",
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 0,
    precision: Annotated[str | None, typer.Option(
        help="Measure at fp32, fp16 or int8 (a torch device: its dtypes); default: the "
        "device's own.")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Calibrate a device from scratch, then score the predictor on architectures it never
    saw, beside the params, MACs and block-sum baselines. Every measurement is kept in the
    database; the device's own predictor is left as it is."""
    spaces.get_scale(scale)
    target = spaces.load_space(space)
    registered = latency_models.DeviceRegistry().get(device)  # an unknown device: before work
    plan = latency_models.CalibrationPlan(initial=initial, rounds=rounds, per_round=per_round,
                                          seed=seed)
    with open_store(db, upgrade=True) as store:
        store.upsert_device(registered)
        profiler = registered.profiler(store=store, precision=precision)
        with phase_progress(not json_output) as on_progress:
            result = latency_models.bench_predictor(
                target, scale, profiler, plan=plan, test=test, repeats=repeats,
                component=component, store=store, on_progress=on_progress)
    if json_output:
        emit_json(result)
        return
    _print_accuracy(result)


@app.command("fidelity")
def fidelity(
    space: Annotated[str, typer.Option(help="Space to sample candidates from.")] = "nanosd",
    teacher: Annotated[str, typer.Option(help="'trained' (shipped), 'demo' (seeded) or an "
                                                   "SD-1.5 checkpoint path.")] = "trained",
    candidates: Annotated[int, typer.Option(min=2, help="Sampled candidates (the smallest "
                                            "and largest members are added).")] = 24,
    distill_steps: Annotated[int, typer.Option(min=0, help="Training steps per stage "
                                               "variant.")] = 150,
    samples: Annotated[int, typer.Option(min=4, help="Calibration patches.")] = 160,
    device: Annotated[str, typer.Option(help="auto (cuda when there is a GPU), cpu or cuda: "
                                        "where stages are distilled.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the candidate sample.")] = 0,
    images: Annotated[Path | None, typer.Option(help="A folder of calibration images "
                                                "(default: the shipped pool).")] = None,
    context: Annotated[Path | None, typer.Option(help="A safetensors file of conditioning "
                                                 "embeddings [n, tokens, D] (default: the "
                                                 "teacher's own).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Build a fresh block bank, then score sampled candidates surgery-only and distilled:
    teacher-identical score, effect of removing attention, share improved by distillation,
    untrained parameters (0 for every scored candidate), the width of the 95% intervals."""
    from nanosd_nas.search.distill import DistillSettings
    from nanosd_nas.search.evaluators import bench_fidelity

    target = spaces.load_space(space)
    settings = DistillSettings(steps=distill_steps, samples=samples)
    with phase_progress(not json_output) as on_progress:
        result = bench_fidelity(target, teacher=teacher, candidates=candidates,
                                settings=settings, seed=seed, device=device,
                                progress=on_progress, images=images, context=context)
    if json_output:
        emit_json(result)
        return
    _print_fidelity(result)


@app.command("distill")
def distill(
    space: Annotated[str, typer.Option(help="Space whose largest member's stages are "
                                       "timed.")] = "nanosd",
    scale: Annotated[str, typer.Option(help="full or mini.")] = "full",
    stage: Annotated[list[str] | None, typer.Option(help="A stage to time (repeatable; "
                                                    "default: every U-Net stage).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Training steps timed per stage.")] = 3,
    samples: Annotated[int, typer.Option(min=4, help="Calibration samples made and traced "
                                         "for the timing.")] = 16,
    distill_steps: Annotated[int, typer.Option(min=1, help="Steps per variant the projection "
                                               "assumes.")] = 150,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch of a training step.")] = 16,
    device: Annotated[ComputeDevice, typer.Option(help="Where PyTorch runs (auto: cuda when "
                                                  "it sees a GPU).")] = "auto",
    json_output: JsonOption = False,
) -> None:
    """Time a stage variant's distillation at a scale (seeded SD-1.5 weights: the cost does not
    depend on them) and project the time per variant of a bank at the given budget."""
    from nanosd_nas.search.distill import DistillSettings, bench_distill
    from nanosd_nas.search.evaluators import resolve_device

    spaces.get_scale(scale)
    target = spaces.load_space(space)
    settings = DistillSettings(steps=distill_steps, batch_size=batch_size)
    with phase_progress(not json_output) as on_progress:
        result = bench_distill(target, scale, stages=stage or None, steps=steps,
                               samples=samples, settings=settings,
                               device=resolve_device(device), progress=on_progress)
    if json_output:
        emit_json(result)
        return
    console.print(f"distillation at {result['scale']} on {result['device']} "
                  f"({result['threads']} threads), batch {result['batch_timed']}: teacher trace "
                  f"{result['trace_per_sample_s']} s per sample")
    for name, row in result["stages"].items():
        console.print(f"  {name}: {row['median_step_s']} s per step (median of "
                      f"{len(row['step_s'])}); projected {row['projected_variant_s']} s per "
                      f"variant at {result['settings_steps']} steps")


@app.command("search")
def search(
    space: Annotated[str, typer.Option(help="Space whose every member is scored.")] = "nanosd",
    scale: Annotated[str, typer.Option(help="full or mini (the teacher's scale).")] = "mini",
    device: Annotated[str, typer.Option(help="A registered device.")] = "local-cpu",
    trials: Annotated[str, typer.Option(help="Trials per study; comma-separated budgets "
                                        "run a study of each (e.g. 200,500,1000).")] = "200",
    seeds: Annotated[int, typer.Option(min=1, help="Studies per sampler (seeds 0..N-1).")] = 3,
    samplers: Annotated[str, typer.Option(help="Comma-separated: tpe, nsga2, gp, random, "
                                          "tpe-independent.")] = "tpe,nsga2,random",
    initial_design: Annotated[InitialDesign | None, typer.Option(
        help="For every sampler; default: as a study's (corners, none for "
             "random).")] = None,
    encoding: Annotated[Encoding | None, typer.Option(
        help="How choices are presented to the samplers "
             "(default: a new study's).")] = None,
    compare_encodings: Annotated[bool, typer.Option(
        "--compare-encodings", help="Run the model-based samplers in every encoding too.")
    ] = False,
    parallelism: Annotated[int, typer.Option(
        min=1, help="Also measure asking this many trials before telling any, with and "
                    "without TPE's constant liar (1: sequential only).")] = 1,
    objective: Annotated[BenchObjective, typer.Option(
        help="surrogate (every member, stage-additive bank losses) or real (a sub-space, each "
             "member scored by the distill evaluator, beside the surrogate).")] = "surrogate",
    fix: Annotated[str | None, typer.Option(
        help="With --objective real: the dimensions held, NAME=INDEX,... (default "
             "E1=3,E2=3,E3=3).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="U-Net evaluations in the pipeline "
                                       "latency.")] = 1,
    teacher: Annotated[str, typer.Option(help="'trained' (shipped), 'demo' (seeded) or an "
                                                   "SD-1.5 checkpoint path.")] = "trained",
    distill_steps: Annotated[int, typer.Option(min=0, help="Training steps per stage variant "
                                               "of the block bank.")] = 150,
    samples: Annotated[int, typer.Option(min=4, help="Calibration patches of the block "
                                         "bank.")] = 160,
    initial: Annotated[int, typer.Option(help="Random training members, if the device needs "
                                         "calibrating.")] = 40,
    rounds: Annotated[int, typer.Option(help="Rounds of least-sure members, idem.")] = 3,
    per_round: Annotated[int, typer.Option(help="Members added per round, idem.")] = 20,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Score every member of the space on predicted latency, parameters and a block-bank
    fidelity surrogate (swept in chunks, memory bounded; a space above 134 M members is
    refused); take the exhaustive Pareto front as reference; then report the hypervolume each
    sampler reaches at each budget, as a ratio of the reference's, optionally in every
    encoding and with parallel asks."""
    from nanosd_nas.search import (
        DEFAULT_ENCODING,
        bench_search,
        check_fixed,
        check_samplers,
        check_sweepable,
    )
    from nanosd_nas.search.distill import DistillSettings

    spaces.get_scale(scale)
    names = check_samplers([n.strip() for n in samplers.split(",") if n.strip()])
    budgets = _budgets(trials)
    if fix is not None and objective != "real":
        raise UserError("--fix holds dimensions of the real objective's sub-space: add "
                        "--objective real")
    target = spaces.load_space(space)
    check_sweepable(target)
    fixed = check_fixed(target, fix) if objective == "real" else None
    registered = latency_models.DeviceRegistry().get(device)  # unknown device: before any work
    plan = latency_models.CalibrationPlan(initial=initial, rounds=rounds, per_round=per_round)
    settings = DistillSettings(steps=distill_steps, samples=samples)
    # The device's predictor is the one the database holds (as studies and 'device calibrate'
    # use it), calibrated and registered there first if there is none made on this host.
    with open_store(db, upgrade=True) as store, phase_progress(not json_output) as on_progress:
        store.upsert_device(registered)
        result = bench_search(target, scale, device=device, trials=budgets, seeds=seeds,
                              samplers=names, design=initial_design,
                              encoding=encoding or DEFAULT_ENCODING,
                              compare_encodings=compare_encodings, parallelism=parallelism,
                              objective=objective, fixed=fixed, steps=steps, plan=plan,
                              teacher=teacher, settings=settings, store=store,
                              on_progress=on_progress)
    if json_output:
        emit_json(result)
        return
    _print_search(result)


def _budgets(text: str) -> list[int]:
    """``--trials``: one budget or several, comma-separated, each at least 1."""
    try:
        budgets = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) < 1:
        raise UserError(f"--trials {text!r}: give one or more budgets of at least 1, "
                        "comma-separated (e.g. 200,500,1000)")
    return sorted(set(budgets))


def _print_search(result: dict[str, Any]) -> None:
    predictor, bank = result["predictor"], result["bank"]
    if predictor["calibrated_now"]:
        console.print(f"calibrated {result['device']} for {result['space']} at "
                      f"{result['scale']} first ({predictor['calibration_s']} s)")
    table = Table(title=f"hypervolume as a share of the exhaustive front's, {result['seeds']} "
                        f"seeds, {result['encoding']} encoding")
    for column in ("sampler", "initial design", "trials", "mean", "min", "max", "front size",
                   "s / study"):
        table.add_column(column, justify="right")
    for name, s in result["samplers"].items():
        for budget, b in s["by_trials"].items():
            table.add_row(name, s["initial_design"], budget, f"{b['hv_ratio']:.1%}",
                          f"{b['hv_ratio_min']:.1%}", f"{b['hv_ratio_max']:.1%}",
                          f"{b['front_size']:g}", f"{b['seconds']:g}")
    console.print(table)
    for coding, by_sampler in result.get("encodings", {}).items():
        for name, row in by_sampler.items():
            shares = ", ".join(f"{r:.1%} at {n}" for n, r in row["by_trials"].items())
            console.print(f"  {coding:11s} {name}: {shares}")
    parallel = result.get("parallel")
    if parallel:
        for name, row in parallel["samplers"].items():
            shares = ", ".join(f"{kind} {r:.1%}" for kind, r in row.items())
            console.print(f"  {parallel['parallelism']} asked at a time, {parallel['trials']} "
                          f"trials, {name}: {shares}")
    objectives = ", ".join(f"{o['name']} ({o['direction']})" for o in result["objectives"])
    sweep = result["sweep"]
    console.print(f"{result['space']} at {result['scale']}: {result['space_size']:,} members "
                  f"scored in {sweep['seconds']} s (peak {sweep['peak_mb']} MB) on "
                  f"{objectives}; reference front {result['reference_front_size']} members")
    console.print(f"latency: {result['device']} predictor ({predictor['statistic']}); "
                  f"fidelity: block bank of {bank['teacher_label']} ({bank['built']} entries "
                  f"built, {bank['reused']} reused)")
    target = result["target"]
    verdict = "met" if target["met"] else "not met"
    console.print(f"target {target['hv_ratio']:.0%} by the default sampler "
                  f"({target['default_sampler']}, {target['default_hv_ratio']:.1%}) at "
                  f"{target['trials']} trials: {verdict}; ahead of random at every budget: "
                  f"{target['beats_random']}")


def _print_fidelity(result: dict[str, Any]) -> None:
    console.print(f"fidelity on {result['space']} at {result['scale']}, {result['teacher']}, "
                  f"{result['candidates']} candidates")
    console.print(f"  teacher-identical student: {result['teacher_identical_db']} dB; largest "
                  f"member {result['largest_member_db']} dB (U-Net alone "
                  f"{result['largest_member_unet_db']} dB); untrained parameters at most "
                  f"{result['max_untrained_parameters']}; median 95% interval width "
                  f"{result['median_ci95_width_db']} dB")
    for label, part in (("pipeline", result), ("U-Net", result["unet"])):
        for mode in ("surgery", "distilled"):
            s = part[mode]
            if s is not None:
                console.print(f"  {label} {mode:9s}: mean {s['mean_db']} dB, median "
                              f"{s['median_db']}, range {s['min_db']}..{s['max_db']}")
        if part["improved_share"] is not None:
            console.print(f"  {label}: distillation improves {part['improved_share']:.0%} of "
                          f"candidates; Spearman surgery vs distilled "
                          f"{part['spearman_surgery_vs_distilled']}; transformers kept vs "
                          f"fidelity {part['spearman_transformers_vs_fidelity']}")
    console.print(f"  mean distilled dB by transformers removed: "
                  f"{result['distilled_db_by_transformers_removed']}")
    bank = result["bank"]
    console.print(f"  bank: {bank['built']} entries in {bank['build_s']} s (median "
                  f"{bank['median_entry_s']} s each); held-out stage loss median "
                  f"{bank['median_heldout_loss']['before']} -> "
                  f"{bank['median_heldout_loss']['after']}")


def _print_accuracy(result: dict[str, Any]) -> None:
    console.print(accuracy_table(
        f"{result['component']} latency on {result['device']}, {result['space']} at "
        f"{result['scale']} ({result['n_test']} held-out, {result['n_train']} trained)",
        {"predictor": result, **result["baselines"]}))
    repeat = result["repeatability"]
    console.print(f"calibration {result['calibration_s']} s; {result['predict_per_s']:,} "
                  f"predictions/s; statistic {result['statistic']} repeats within "
                  f"{repeat.get('median_pct')}% (median), {repeat.get('max_pct')}% (max) "
                  f"over {repeat['n']} re-measured models")
    snr = result["output_snr_db"]
    if snr is not None:
        console.print(f"{result['precision']} output against fp32: SNR median "
                      f"{snr['median']} dB, lowest {snr['min']} dB over {snr['n']} held-out "
                      f"{result['component']} models")
