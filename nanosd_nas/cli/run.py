"""``nanosd-nas study run``, ``demo`` and ``export``: run a stored study, run the whole job on
embedded defaults, export a trial's architecture."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from nanosd_nas.cli._options import DbOption, JsonOption, RayOption, open_store
from nanosd_nas.cli._output import console, emit_json, err_console

if TYPE_CHECKING:
    from nanosd_nas.search.store import Store


#: The demo study: the main job on embedded defaults, small enough for 10 minutes on 2 cores.
DEMO_STUDY: dict[str, Any] = {
    "name": "demo", "space": "nanosd", "scale": "mini", "device": "local-cpu",
    "pipeline": {"steps": 1},
    "objectives": [{"name": "fidelity", "direction": "maximize"},
                   {"name": "latency_ms", "direction": "minimize"},
                   {"name": "params_m", "direction": "minimize"}],
    "sampler": "tpe", "n_trials": 40, "parallelism": 2,
    "latency": {"source": "predictor", "verify_front": True},
    "accuracy": {"evaluator": "distill", "teacher": "trained",
                 "distill": {"steps": 60, "samples": 96}},
    "seed": 0,
}


def _progress_display(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not enabled:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[facts]}"), TimeElapsedColumn(),
                    console=err_console)


def run_study(store: Store, name: str, *, ray_address: str | None, show: bool,
              calibration: Any = None) -> Any:
    """Run ``name`` with a Rich display of each phase (trials, feasible, front, hypervolume)."""
    from nanosd_nas.search import StudyRunner

    display = _progress_display(show)
    tasks: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int, facts: dict[str, Any]) -> None:
        if display is None:
            return
        text = ""
        if facts:
            volume = facts.get("hypervolume")
            text = (f"feasible {facts.get('feasible', 0)}  front {facts.get('front', 0)}  "
                    f"hv {volume:.4g}" if volume is not None else "")
        if phase not in tasks:
            tasks[phase] = display.add_task(phase, total=total, facts=text)
        display.update(tasks[phase], completed=done, total=total, facts=text)

    runner = StudyRunner(store, name, ray_address=ray_address, progress=progress,
                         calibration=calibration)
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
    left off (completed trials are kept, unfinished ones asked again)."""
    with open_store(db, upgrade=True) as store:
        summary = run_study(store, name, ray_address=ray_address, show=not json_output)
        if json_output:
            emit_json({**summary.__dict__, "front": front_rows(store, name)})
            return
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
    trials: Annotated[int, typer.Option(min=1, help="Trials of the demo study.")] = 40,
    db: DbOption = None,
    out: Annotated[Path, typer.Option(help="Folder of the HTML report.")] = Path(
        "nanosd-nas-demo"),
    json_output: JsonOption = False,
) -> None:
    """The main job on embedded defaults: a small study of NanoSD's space at mini scale on this
    machine's CPU against the shipped trained teacher (SQLite, local Ray); prints the Pareto
    front and writes an HTML report of it."""
    from nanosd_nas.latency_models import CalibrationPlan, DeviceRegistry
    from nanosd_nas.search import write_report
    from nanosd_nas.search.store import StudyExists

    with open_store(db, upgrade=True) as store:
        document = {**DEMO_STUDY, "n_trials": trials}
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        try:
            store.create_study("demo", document, device="local-cpu")
        except StudyExists:  # a second demo continues the first (nothing to do if it finished)
            err_console.print("continuing the existing study 'demo'")
        plan = CalibrationPlan(initial=20, rounds=1, per_round=10, held_out=12)
        summary = run_study(store, "demo", ray_address=None, show=not json_output,
                            calibration=plan)
        report = write_report(store, "demo", out / "report.html", x="latency_ms",
                              y="fidelity")
        if json_output:
            emit_json({**summary.__dict__, "report": str(report),
                       "front": front_rows(store, "demo")})
            return
        print_front(store, "demo", ["fidelity", "latency_ms", "params_m"])
        console.print(f"{summary.complete} trials complete, front of {summary.front_size} "
                      f"({summary.verified} measured on local-cpu) in {summary.seconds:.0f} s. "
                      f"Fidelity is against the shipped trained teacher ('trained', SD 1.5's "
                      f"topology at mini scale).")
        console.print(f"report: {report}")
        console.print("next: 'nanosd-nas study trials demo --csv trials.csv', 'nanosd-nas "
                      "export demo TRIAL --format onnx --out DIR', or your own study file "
                      "with 'nanosd-nas study create FILE' and 'study run NAME'")


def export(
    study: Annotated[str, typer.Argument(help="A study.")],
    trial: Annotated[int, typer.Argument(help="A trial number of that study.")],
    fmt: Annotated[str, typer.Option("--format", help="spec, diffusers, onnx or "
                                     "safetensors.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write into.")],
    weights: Annotated[str | None, typer.Option(
        help="distilled (assembled from the block bank) or teacher (surgery); default: what "
             "the study's evaluator scored.")] = None,
    db: DbOption = None, json_output: JsonOption = False,
) -> None:
    """Export a trial's architecture (weights from the study's teacher: distilled or
    teacher-initialised)."""
    from nanosd_nas.search import export_trial

    with (open_store(db, upgrade=True) as store,
          err_console.status(f"exporting trial {trial} of {study} ...")):
        result = export_trial(store, study, trial, fmt, out, weights=weights)
    if json_output:
        emit_json({"study": study, "trial": trial, **result.to_dict()})
        return
    console.print(f"exported trial {trial} of {study} as {fmt} to {out}: "
                  f"{', '.join(result.files)}")
