"""``nanosd-nas study run``, ``demo`` and ``export``: run a stored study, run the whole job on
embedded defaults, export a trial's architecture."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from nanosd_nas.cli._choices import ExportFormat, ExportWeights
from nanosd_nas.cli._options import DbOption, JsonOption, RayOption, open_store
from nanosd_nas.cli._output import console, emit_json, err_console
from nanosd_nas.cli._progress import PhaseLines
from nanosd_nas.cli._signals import ABORTED, stop_on_signals
from nanosd_nas.cli.spec import ExporterOption, LayoutOption, PrecisionOption

if TYPE_CHECKING:
    from nanosd_nas.search.store import Store


#: The demo study: the main job on embedded defaults, small enough for a first run (calibration
#: and block bank included) of a few minutes on 2 cores: 16 trials, a bank of 24 distillation
#: steps per unit on 64 crops.
DEMO_STUDY: dict[str, Any] = {
    "name": "demo", "space": "nanosd", "scale": "mini", "device": "local-cpu",
    "pipeline": {"steps": 1},
    "objectives": [{"name": "fidelity", "direction": "maximize"},
                   {"name": "latency_ms", "direction": "minimize"},
                   {"name": "params_m", "direction": "minimize"}],
    "sampler": "tpe", "n_trials": 16, "parallelism": 2,
    "latency": {"source": "predictor", "verify_front": True},
    "accuracy": {"evaluator": "distill", "teacher": "trained",
                 "distill": {"steps": 24, "samples": 64}},
    "seed": 0,
}



def _progress_display(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not enabled or not err_console.is_terminal:  # a pipe or a log: PhaseLines instead
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[facts]}"), TimeElapsedColumn(),
                    console=err_console)


def run_study(store: Store, name: str, *, ray_address: str | None, show: bool,
              calibration: Any = None) -> Any:
    """Run ``name`` with a Rich display of each phase (trials, feasible, front, hypervolume),
    or, when stderr is not a terminal, a line per phase (:class:`PhaseLines`)."""
    from nanosd_nas.search import StudyRunner

    display = _progress_display(show)
    lines = PhaseLines() if show and display is None else None
    tasks: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int, facts: dict[str, Any]) -> None:
        text = ""
        if facts:
            volume = facts.get("hypervolume")
            text = (f"feasible {facts.get('feasible', 0)}  front {facts.get('front', 0)}  "
                    f"hv {volume:.4g}" if volume is not None else "")
        if lines is not None:
            lines(phase, done, total, text)
        if display is None:
            return
        if phase not in tasks:
            tasks[phase] = display.add_task(phase, total=total, facts=text)
        display.update(tasks[phase], completed=done, total=total, facts=text)

    runner = StudyRunner(store, name, ray_address=ray_address, progress=progress,
                         calibration=calibration)
    with stop_on_signals(runner.interrupt, finishing="finishing the trials in flight, then "
                         f"the study is left stopped ('study run {name}' resumes it)"):
        if display is None:
            return runner.run()
        with display:
            return runner.run()


def front_rows(store: Store, name: str) -> list[dict[str, Any]]:
    rows = []
    for trial in store.front(name):
        values = {v.name: {"value": v.value, "provenance": v.provenance} for v in trial.values}
        rows.append({"number": trial.number, "spec_id": trial.spec_id, "params": trial.params,
                     "values": values})
    return rows


def print_front(store: Store, name: str, objectives: list[str]) -> None:
    table = Table(title=f"Pareto front of study {name}")
    table.add_column("trial", justify="right")
    table.add_column("spec id")
    for objective in objectives:
        table.add_column(objective, justify="right")
    for row in sorted(front_rows(store, name), key=lambda r: r["number"]):
        cells = []
        for objective in objectives:
            value = row["values"].get(objective)
            cells.append("-" if value is None else
                         f"{value['value']:.3f} ({value['provenance']})")
        table.add_row(str(row["number"]), str(row["spec_id"]), *cells)
    console.print(table)


def study_run(name: Annotated[str, typer.Argument(help="A study created with 'study create'.")],
              db: DbOption = None, ray_address: RayOption = None,
              json_output: JsonOption = False) -> None:
    """Run a study to its trial budget; a study that was stopped or killed continues where it
    left off (completed trials are kept, unfinished ones asked again). Ctrl-C or SIGTERM lets
    the trials in flight land and leaves the study 'stopped'; a second one aborts at once."""
    with open_store(db, upgrade=True) as store:
        try:
            summary = run_study(store, name, ray_address=ray_address, show=not json_output)
        except KeyboardInterrupt:
            err_console.print(f"aborted: study {name} is stopped; 'study run {name}' resumes "
                              "it", markup=False)
            raise typer.Exit(ABORTED) from None
        if json_output:
            emit_json({**summary.__dict__, "front": front_rows(store, name)})
            return
        if summary.stopped:
            err_console.print(f"study {name} stopped before its budget; 'study run {name}' "
                              "resumes it", markup=False)
        config = store.get_study(name).config
        print_front(store, name, [o["name"] for o in config["objectives"]])
        console.print(f"{summary.complete} complete, {summary.failed} failed, "
                      f"{summary.feasible} feasible; front of {summary.front_size}; "
                      f"{summary.verified} front members measured; {summary.seconds:.0f} s")
        if summary.unmeasured:
            console.print(f"{summary.unmeasured} front members' latency is predicted, not "
                          "measured (latency.verify_front is off, or the run was stopped "
                          "before it verified the front)")


def demo(
    trials: Annotated[int, typer.Option(min=1, help="Trials of the demo study.")] = DEMO_STUDY[
        "n_trials"],
    db: DbOption = None,
    out: Annotated[Path, typer.Option(help="Folder of the HTML report.")] = Path(
        "nanosd-nas-demo"),
    json_output: JsonOption = False,
) -> None:
    """The main job on embedded defaults: a small study of NanoSD's space at mini scale on this
    machine's CPU against the shipped trained teacher (SQLite in the project home, local Ray);
    prints the Pareto front and writes an HTML report of it. The first run calibrates the CPU
    and distils the block bank into the project home; a later one, from any folder, reuses
    them and continues the same study."""
    from nanosd_nas.latency_models import CalibrationPlan, DeviceRegistry, project_home
    from nanosd_nas.search import write_report
    from nanosd_nas.search.store import StudyExists

    home = project_home()
    with open_store(db, upgrade=True) as store:
        document = {**DEMO_STUDY, "n_trials": trials}
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        try:
            store.create_study("demo", document, device="local-cpu")
        except StudyExists:  # a second demo continues the first (nothing to do if it finished)
            err_console.print("continuing the existing study 'demo'", markup=False)
        before, entries = _predictor(store), _bank_entries(home)
        # A smaller calibration than the default plan (10 members measured for training, 6
        # held out), to keep a first demo to a few minutes; its held-out check is printed.
        plan = CalibrationPlan(initial=10, rounds=0, per_round=0, held_out=6)
        summary = run_study(store, "demo", ray_address=None, show=True, calibration=plan)
        predictor = _predictor(store)
        check = {} if predictor is None else {
            k: v for k, v in predictor.held_out.get("pipeline", {}).items() if k != "points"}
        made: dict[str, Any] = {
            "home": str(home), "calibrated": predictor != before,
            "bank_entries": _bank_entries(home), "bank_distilled": _bank_entries(home) - entries,
            "predictor_held_out": check}
        report = write_report(store, "demo", out / "report.html", x="latency_ms",
                              y="fidelity")
        front = front_rows(store, "demo")
        if json_output:
            emit_json({**summary.__dict__, **made, "report": str(report), "front": front})
            return
        print_front(store, "demo", ["fidelity", "latency_ms", "params_m"])
        measured = sum(r["values"]["latency_ms"]["provenance"] == "measured" for r in front)
        console.print(f"{summary.complete} trials complete, front of {len(front)}: latency "
                      f"measured on local-cpu for {measured}, predicted for "
                      f"{len(front) - measured}; in {summary.seconds:.0f} s. Fidelity is "
                      "measured against the shipped trained teacher ('trained', SD 1.5's "
                      "topology at mini scale) with the distilled block bank.", markup=False)
        console.print(f"Predicted latency: local-cpu's predictor, on {check.get('n')} held-out "
                      f"members {100 * (check.get('within_10pct') or 0):.0f}% within 10%, "
                      f"RMSPE {100 * (check.get('rmspe') or 0):.1f}%.", markup=False)
        console.print(f"project home {home}: calibration "
                      f"{'made now' if made['calibrated'] else 'reused'}, block bank "
                      f"{made['bank_distilled']} entries distilled now of "
                      f"{made['bank_entries']}", markup=False)
        console.print(f"report: {report}", markup=False)
        console.print("next: 'nanosd-nas study trials demo --csv trials.csv', 'nanosd-nas "
                      "export demo TRIAL --format onnx --out DIR', or your own study file "
                      "with 'nanosd-nas study create FILE' and 'study run NAME'")


def _predictor(store: Store) -> Any:
    """The identity of the demo's latest predictor (its held-out check and the time it was
    made), or ``None``."""
    made = [p.identity for p in store.list_predictors("local-cpu")
            if (p.identity.space, p.identity.scale) == (DEMO_STUDY["space"], DEMO_STUDY["scale"])]
    return max(made, key=lambda identity: identity.created_at, default=None)


def _bank_entries(home: Path) -> int:
    """How many block-bank entries the project home holds (every teacher's)."""
    return sum(1 for _ in (home / "banks").rglob("*.safetensors"))


def export(
    study: Annotated[str, typer.Argument(help="A study.")],
    trial: Annotated[int, typer.Argument(help="A trial number of that study.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="What to write.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write into.")],
    weights: Annotated[ExportWeights | None, typer.Option(
        help="distilled (assembled from the block bank) or teacher (surgery); default: what "
             "the study's evaluator scored.")] = None,
    layout: LayoutOption = "nanosd", precision: PrecisionOption = "fp32",
    exporter: ExporterOption = "dynamo",
    db: DbOption = None, json_output: JsonOption = False,
) -> None:
    """Export a trial's architecture (weights from the study's teacher: distilled or
    teacher-initialised); diffusers and onnx exports carry a model card with the trial's
    objectives and where the weights come from."""
    from nanosd_nas import spaces
    from nanosd_nas.search import export_trial

    onnx = spaces.OnnxOptions(layout=layout, precision=precision, exporter=exporter)
    with (open_store(db, upgrade=True) as store,
          err_console.status(f"exporting trial {trial} of {study} ...")):
        result = export_trial(store, study, trial, fmt, out, weights=weights, onnx=onnx)
    if json_output:
        emit_json({"study": study, "trial": trial, **result.to_dict()})
        return
    console.print(f"exported trial {trial} of {study} as {fmt} to {out}: "
                  f"{', '.join(result.files)}")
