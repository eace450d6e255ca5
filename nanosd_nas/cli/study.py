"""``nanosd-nas study``: create, list, show and read the results of studies; re-queue and
delete them.

The store, pydantic and pandas are imported inside the commands, so that the rest of the
command line starts without them; nothing here loads PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nanosd_nas.cli import _study_views as views
from nanosd_nas.cli._options import DbOption, JsonOption, open_store
from nanosd_nas.cli._output import console, emit_json, err_console
from nanosd_nas.cli._progress import phase_progress

app = typer.Typer(help="Studies: create one from a YAML file, list them, show one, read its "
                       "Pareto front and trials, rescore it for another device, queue a "
                       "failed or stopped one again, delete one.",
                  no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="The study's name.")]


@app.command("create")
def create(
    file: Annotated[Path, typer.Argument(
        help="The study file, YAML or JSON (see the README's 'Studies').", show_default=False)],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Validate a study file, check its device is registered, and store it (status 'created').
    An embedded SQLite database is created if there is none."""
    from nanosd_nas.search import StudyConfig

    config = StudyConfig.load(file)
    device = config.check_device(source=str(file))
    with open_store(db, upgrade=True) as store:
        store.upsert_device(device)
        record = store.create_study(config.name, config.to_document(), device=device.name)
        shown = views.summary(record, [], [], [])
    if json_output:
        emit_json({**shown, "config": record.config})
        return
    console.print(f"created study {record.name}: {config.space} at {config.scale} on "
                  f"{device.name}, {config.n_trials} trials with {config.sampler}, objectives "
                  f"{', '.join(config.objective_names)}; run it with "
                  f"'nanosd-nas study run {record.name}'")


# `study run NAME` lives in cli/run.py beside `demo`: both run a study (search.StudyRunner).


@app.command("list")
def list_studies(db: DbOption = None, json_output: JsonOption = False) -> None:
    """List the stored studies: status, trials done and failed, front size, best hypervolume."""
    with open_store(db) as store:
        summaries = [views.summary(record, store.list_trials(record.name),
                                   store.front(record.name),
                                   store.hypervolume_history(record.name))
                     for record in store.list_studies()]
    if json_output:
        emit_json({"studies": summaries})
    elif not summaries:
        console.print("no studies yet; create one with 'nanosd-nas study create FILE'")
    else:
        console.print(views.studies_table(summaries))


@app.command("show")
def show(name: NameArgument, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Show a study: its settings, trial counts, front size and status."""
    with open_store(db) as store:
        record = store.get_study(name)
        shown = views.summary(record, store.list_trials(name), store.front(name),
                              store.hypervolume_history(name))
    if json_output:
        emit_json({**shown, "config": record.config})
    else:
        console.print(views.study_table(record, shown))


@app.command("front")
def front(name: NameArgument, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Show a study's stored Pareto front, each value with where it comes from (measured,
    predicted or computed)."""
    with open_store(db) as store:
        record = store.get_study(name)
        members, history = store.front(name), store.hypervolume_history(name)
    if json_output:
        emit_json(views.front_document(record, members, history))
    elif not members:
        console.print(f"study {name} has no front yet ({record.status})")
    else:
        console.print(views.front_table(record, members, history))


@app.command("trials")
def trials(
    name: NameArgument,
    db: DbOption = None,
    csv: Annotated[Path | None, typer.Option(
        "--csv", show_default=False, help="Also write the table to this CSV file.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Every trial of a study: number, state, spec id, its architecture's layout and widths,
    each objective with its provenance, feasibility, why it failed, when it started and
    finished, how long it took and the worker that evaluated it (with --json also the
    fidelity's 95% interval, its figures by timestep and the untrained parameters, where the
    evaluator gave them)."""
    with open_store(db) as store:
        record = store.get_study(name)
        stored = store.list_trials(name)
        specs = store.get_architectures(t.spec_id for t in stored if t.spec_id)
    frame = views.trials_frame(record, stored, specs)
    if csv is not None:
        views.write_csv_atomic(frame, csv)
    if json_output:
        emit_json({"study": name, "trials": views.trials_records(frame, stored)})
        return
    console.print(views.trials_table(record, stored, frame))
    if csv is not None:
        console.print(f"wrote {len(frame)} trial(s) to {csv}")


@app.command("rescore")
def rescore(
    name: NameArgument,
    device: Annotated[str, typer.Option(
        "--device", show_default=False, help="A registered device other than the study's.")],
    measure: Annotated[bool, typer.Option(
        "--measure", help="Measure each trial's model on the device instead of predicting "
                          "it.")] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Predict (or, with --measure, measure) the latency of a finished study's trials on
    another device, and store it beside the study's own values (which stay as they are):
    the study's front on that device is then on the compare page and at
    /api/studies/NAME/fronts. The device's predictor for the study's space and scale is
    loaded, or calibrated first (calibrate it yourself with 'nanosd-nas device calibrate' to
    choose the plan). Rescoring a device again replaces its values."""
    from nanosd_nas.search import rescore_study

    with open_store(db, upgrade=True) as store, phase_progress(not json_output) as progress:
        outcome = rescore_study(store, name, device, measure=measure, on_progress=progress)
    document = outcome.to_dict()
    if json_output:
        emit_json(document)
        return
    err_console.print(document["message"], markup=False)
    console.print(views.rescore_table(document))


@app.command("delete")
def delete(
    name: NameArgument,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Delete without asking.")] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete a study with its trials, front, history and Optuna study. A running study is
    stopped first (its page's Stop button, or POST /api/studies/NAME/stop) and deleted once it
    has stopped."""
    with open_store(db) as store:
        record = store.get_study(name)
        if not yes:
            typer.confirm(f"delete study {name} ({record.status}) and all its trials?",
                          abort=True, err=True)
        store.delete_study(name)
    if json_output:
        emit_json({"study": name, "deleted": True})
    else:
        console.print(f"deleted study {name}")


@app.command("requeue")
def requeue(name: NameArgument, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Queue a failed or stopped study again: the next 'nanosd-nas worker' continues it where
    it ended, its completed trials kept."""
    with open_store(db) as store:
        record = store.requeue_study(name)
        shown = views.summary(record, store.list_trials(name), store.front(name),
                              store.hypervolume_history(name))
    if json_output:
        emit_json(shown)
    else:
        console.print(f"queued study {name} again; a 'nanosd-nas worker' continues it")
