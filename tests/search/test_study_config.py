"""The study document of DESIGN.md §6: what parses, what it means, and one clear line per
mistake."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nanosd_nas import spaces
from nanosd_nas.search._accuracy_config import (
    ACCURACY_DEVICES,
    AccuracyConfig,
    DistillSettings,
)
from nanosd_nas.search._objectives import photo_tiles, tiles_along
from nanosd_nas.search._study_config import (
    KNOWN_OBJECTIVES,
    PipelineConfig,
    StudyConfig,
    StudyConfigError,
)

#: DESIGN.md §6, verbatim but for ``pipeline.image_size`` (left out: it defaults to the scale's).
DESIGN_EXAMPLE = """\
name: phone-sr-1step
space: nanosd            # a shipped space or a path to a space YAML
scale: mini              # full | mini
device: local-cpu        # a registered device
pipeline: {steps: 1}     # latency = vae_encoder + steps × unet + vae_decoder
objectives:
  - {name: fidelity, direction: maximize}
  - {name: latency_ms, direction: minimize}
  - {name: params_m, direction: minimize}
constraints: {latency_ms: {max: 40}, params_m: {max: 315}}
sampler: tpe             # tpe | nsga2 | gp | random
n_trials: 200
parallelism: 2
latency: {source: predictor, verify_front: true}
accuracy: {evaluator: distill, teacher: demo}
seed: 0
"""  # noqa: RUF001 (the multiplication sign is DESIGN.md's)
EXAMPLE: dict[str, Any] = yaml.safe_load(DESIGN_EXAMPLE)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_design_example_parses_and_round_trips(tmp_path):
    config = StudyConfig.load(write(tmp_path, "study.yaml", DESIGN_EXAMPLE))
    assert (config.name, config.space, config.scale, config.device) == (
        "phone-sr-1step", "nanosd", "mini", "local-cpu")
    assert config.pipeline.steps == 1
    assert config.objective_names == ("fidelity", "latency_ms", "params_m")
    assert config.directions == ("maximize", "minimize", "minimize")
    latency = config.constraints["latency_ms"]
    assert latency.max == 40 and latency.min is None
    assert (config.sampler, config.n_trials, config.parallelism, config.seed) == ("tpe", 200, 2, 0)
    assert config.latency.source == "predictor" and config.latency.verify_front
    assert (config.accuracy.evaluator, config.accuracy.teacher) == ("distill", "demo")

    document = config.to_document()
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert StudyConfig.from_document(document) == config
    assert document["constraints"] == {"latency_ms": {"max": 40.0}, "params_m": {"max": 315.0}}
    # the same study as JSON
    as_json = StudyConfig.load(write(tmp_path, "study.json", json.dumps(EXAMPLE)))
    assert as_json == config


def test_omitted_fields_take_their_defaults():
    config = StudyConfig.from_document({"name": "s", "space": "nanosd"})
    assert config.objective_names == ("fidelity", "latency_ms", "params_m")
    assert config.directions == ("maximize", "minimize", "minimize")
    # the default teacher's scale: a study of only a name and a space can score its trials
    assert (config.scale, config.accuracy.teacher) == ("mini", "trained")
    assert (config.device, config.sampler, config.parallelism) == ("local-cpu", "tpe", 2)
    assert config.pipeline.steps == 1
    assert config.accuracy.device == "auto" and config.accuracy.distill == {}
    assert config.accuracy.images is None and config.accuracy.context is None
    assert config.latency.source == "predictor" and config.latency.verify_front
    assert config.constraints == {} and config.seed == 0


def test_a_scale_other_than_a_named_teachers_is_refused_where_the_teacher_scores(tmp_path):
    for teacher in ("trained", "demo"):
        with pytest.raises(StudyConfigError) as caught:
            StudyConfig.load(write(tmp_path, "study.yaml", f"name: s\nspace: nanosd\n"
                                   f"scale: full\naccuracy: {{teacher: {teacher}}}\n"))
        assert str(caught.value) == (
            f"{tmp_path / 'study.yaml'}: scale: full conflicts with accuracy.teacher: {teacher} "
            "(SD 1.5 at mini scale); set scale: mini, or give a teacher at full scale (a "
            "diffusers folder or .safetensors file)")
    # no accuracy value, or a teacher whose scale only its weights tell: nothing to refuse
    latency_only = {"name": "s", "space": "nanosd", "scale": "full",
                    "objectives": [{"name": "latency_ms"}, {"name": "params_m"}]}
    assert StudyConfig.from_document(latency_only).scale == "full"
    weights = {"name": "s", "space": "nanosd", "accuracy": {"teacher": "sd15.safetensors"}}
    assert StudyConfig.from_document(weights).scale == "full"  # SD 1.5 checkpoints are full
    assert StudyConfig.from_document({**weights, "scale": "mini"}).scale == "mini"


@pytest.mark.parametrize("accuracy", [{}, {"teacher": "demo"}, {"evaluator": "surgery"}])
def test_the_teacher_a_study_of_a_name_and_a_space_scores_against_is_at_its_scale(accuracy):
    from nanosd_nas.search.distill import load_teacher

    config = StudyConfig.from_document({"name": "s", "space": "nanosd", "accuracy": accuracy})
    # what the built-in evaluators check before their first trial (every trial failed on it)
    assert load_teacher(config.accuracy.teacher).scale == config.scale == "mini"


def test_an_omitted_direction_is_the_natural_one_and_a_contrary_one_is_kept():
    config = StudyConfig.from_document({**EXAMPLE, "objectives": [
        {"name": "vae_psnr_db"}, {"name": "macs_g"},
        {"name": "latency_ms", "direction": "maximize"}]})
    assert config.directions == ("maximize", "minimize", "maximize")


def test_objectives_say_where_they_come_from():
    config = StudyConfig.from_document({**EXAMPLE, "objectives": [
        {"name": "fidelity"}, {"name": "params_m"}], "constraints": {"latency_ms": {"max": 40},
                                                                      "macs_g": {"max": 9}}})
    assert config.metric_names == ("fidelity", "params_m", "latency_ms", "macs_g")
    assert config.accuracy_objectives == ("fidelity",)
    assert config.latency_objectives == ("latency_ms",)
    assert config.size_objectives == ("params_m", "macs_g")


def test_constraint_values_follow_optunas_convention():
    config = StudyConfig.from_document({**EXAMPLE, "constraints": {
        "latency_ms": {"min": 5, "max": 40}, "params_m": {"max": 315}}})
    values = config.constraint_values({"latency_ms": 50.0, "params_m": 100.0, "fidelity": 1.0})
    assert values == {"latency_ms.min": -45.0, "latency_ms.max": 10.0, "params_m.max": -215.0}
    assert config.constraint_values({"latency_ms": 20.0, "params_m": 315.0}) == {
        "latency_ms.min": -15.0, "latency_ms.max": -20.0, "params_m.max": 0.0}


@pytest.mark.parametrize(("photo", "tile", "overlap", "tiles"), [
    ((4000, 3000), 512, 128, 88),    # NanoSD's 12-MP photo: 11 x 8 tiles
    ((300, 200), 512, 128, 1),       # smaller than a tile: one
    ((512, 512), 512, 128, 1),       # exactly a tile
    ((896, 512), 512, 128, 2),       # exactly two tiles wide (512 + 384)
    ((897, 512), 512, 128, 3),       # one pixel more takes a third
    ((1024, 1024), 512, 0, 4),       # no overlap: a plain grid
    ((4000, 3000), 128, 32, 42 * 31),  # mini's 128-px tiles, a quarter tile overlapping
])
def test_a_photo_takes_overlapping_tiles(photo, tile, overlap, tiles):
    assert photo_tiles(photo, tile, overlap) == tiles


def test_tiles_overlap_by_less_than_a_tile():
    with pytest.raises(ValueError, match="an overlap of 128 px must be at least 0 and less"):
        tiles_along(4000, 128, 128)
    with pytest.raises(ValueError, match="a side of 0 px"):
        tiles_along(0, 512, 128)


def test_a_photo_study_gives_its_photo_latency_and_overlaps_a_quarter_tile_by_default():
    document = {**EXAMPLE, "pipeline": {"steps": 2, "photo": [4000, 3000]},
                "objectives": [{"name": "fidelity"}, {"name": "photo_latency_ms"}],
                "constraints": {"photo_latency_ms": {"max": 9000}}}
    config = StudyConfig.from_document(document)
    assert config.pipeline.photo == (4000, 3000) and config.pipeline.tile_overlap is None
    assert config.directions == ("maximize", "minimize")
    assert config.latency_objectives == ("photo_latency_ms",) and config.predicts_latency
    assert (config.tile_size, config.pipeline.tiles(config.tile_size)) == (128, 42 * 31)
    assert config.pipeline.tiles(512) == 88  # the same photo at full scale
    assert config.to_document()["pipeline"] == {"steps": 2, "photo": [4000, 3000]}
    assert StudyConfig.from_document(config.to_document()) == config
    given = StudyConfig.from_document({**document, "scale": "full", "pipeline": {
        "photo": [4000, 3000], "tile_overlap": 64}, "objectives": [{"name": "photo_latency_ms"}]})
    assert (given.tile_size, given.pipeline.tiles(given.tile_size)) == (512, 9 * 7)
    assert PipelineConfig().tiles(512) is None  # no photo, no tiles


def test_an_image_size_sets_the_tile_latency_is_measured_at_and_the_photos_tiles():
    document = {**EXAMPLE, "pipeline": {"steps": 1, "image_size": 512, "photo": [4000, 3000]},
                "objectives": [{"name": "fidelity"}, {"name": "photo_latency_ms"}]}
    config = StudyConfig.from_document(document)
    # mini's widths on 512-px tiles: NanoSD's 88 tiles for a 12-MP photo
    assert (config.latency_scale, config.tile_size) == ("mini@512", 512)
    assert config.pipeline.tiles(config.tile_size) == 88
    spec = spaces.load_space("nanosd").spec((0,) * 6, config.latency_scale)
    assert (spec.image_size, spec.latent_size) == (512, 64)
    assert spec.unet.levels[0].channels == spaces.load_space("nanosd").spec(
        (0,) * 6, "mini").unet.levels[0].channels  # the widths stay the scale's
    plain = StudyConfig.from_document(EXAMPLE)
    assert (plain.latency_scale, plain.tile_size) == ("mini", 128)


def test_a_plugin_evaluator_may_define_its_own_objectives():
    plugin = {**EXAMPLE, "accuracy": {"evaluator": "my_scores:clip_score"},
              "objectives": [{"name": "clip_score"}, {"name": "latency_ms"}],
              "constraints": {"aesthetic": {"min": 5}}}
    config = StudyConfig.from_document(plugin)
    assert config.uses_plugin
    assert config.directions == ("maximize", "minimize")
    assert config.accuracy_objectives == ("clip_score", "aesthetic")
    with pytest.raises(StudyConfigError, match=r"objectives\.0\.name: 'clip_score' is not a known"):
        StudyConfig.from_document({**plugin, "accuracy": {"evaluator": "surgery"}})


def test_a_space_file_is_found_beside_the_study_and_stored_absolute(tmp_path, monkeypatch):
    studies = tmp_path / "studies"
    studies.mkdir()
    with resources.as_file(resources.files("nanosd_nas.spaces.presets") / "nanosd.yaml") as shipped:
        shutil.copy(shipped, studies / "mine.yaml")
    write(studies, "study.yaml", DESIGN_EXAMPLE.replace("space: nanosd ", "space: mine.yaml "))
    monkeypatch.chdir(tmp_path)  # elsewhere: the path is looked up beside the study file
    config = StudyConfig.load(Path("studies/study.yaml"))
    assert config.space == str((studies / "mine.yaml").resolve())
    assert config.load_space().cardinalities == StudyConfig.from_document(
        EXAMPLE).load_space().cardinalities
    assert StudyConfig.from_document(config.to_document()) == config


def test_distill_settings_are_checked_and_kept_as_given():
    config = StudyConfig.from_document({**EXAMPLE, "accuracy": {
        "evaluator": "distill", "distill": {"steps": 40, "lr_schedule": "constant",
                                            "learning_rate": 0.002}}})
    assert config.accuracy.distill == {"steps": 40, "lr_schedule": "constant",
                                       "learning_rate": 0.002}
    assert config.to_document()["accuracy"]["distill"] == config.accuracy.distill
    settings = DistillSettings(**config.accuracy.distill)  # what the evaluator makes of it
    assert (settings.steps, settings.lr_schedule, settings.batch_size) == (40, "constant", 16)
    assert StudyConfig.from_document(config.to_document()) == config


@pytest.mark.parametrize("device", ACCURACY_DEVICES)
def test_each_accuracy_device_is_accepted(device):
    config = StudyConfig.from_document({**EXAMPLE, "accuracy": {"device": device}})
    assert config.accuracy.device == device == config.to_document()["accuracy"]["device"]


def test_calibration_images_and_context_are_found_beside_the_study_and_stored_absolute(
        tmp_path, monkeypatch):
    studies = tmp_path / "studies"
    (studies / "calibration").mkdir(parents=True)
    (studies / "context.safetensors").write_bytes(b"not read while parsing")
    write(studies, "study.yaml", DESIGN_EXAMPLE.replace(
        "accuracy: {evaluator: distill, teacher: demo}",
        "accuracy: {evaluator: distill, teacher: demo, images: calibration/, "
        "context: context.safetensors, device: cpu}"))
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths are looked up beside the study file
    config = StudyConfig.load(Path("studies/study.yaml"))
    assert config.accuracy.images == str((studies / "calibration").resolve())
    assert config.accuracy.context == str((studies / "context.safetensors").resolve())
    document = config.to_document()
    assert (document["accuracy"]["images"], document["accuracy"]["context"]) == (
        config.accuracy.images, config.accuracy.context)
    assert StudyConfig.from_document(document) == config
    # from the working folder, when not beside the study file
    monkeypatch.chdir(studies)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(elsewhere, "study.json", json.dumps({**EXAMPLE, "accuracy": {"images": "calibration"}}))
    assert StudyConfig.load(elsewhere / "study.json").accuracy.images == config.accuracy.images


@pytest.mark.parametrize(("accuracy", "message"), [
    ({"images": "photos"}, "accuracy.images: no folder of images 'photos' (looked beside the "
                           "study file and in the working folder)"),
    ({"context": "embeddings.safetensors"},
     "accuracy.context: no safetensors file 'embeddings.safetensors' (looked beside"),
    ({"images": "file.txt"}, "accuracy.images: {dir}/file.txt is a file, not a folder of images"),
    ({"context": "folder"}, "accuracy.context: {dir}/folder is a folder, not a safetensors file"),
    ({"context": "{dir}/gone.safetensors"},
     "accuracy.context: no safetensors file '{dir}/gone.safetensors'"),
])
def test_a_missing_images_or_context_path_is_one_line_naming_it(tmp_path, monkeypatch,
                                                                 accuracy, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    folder = str(tmp_path.resolve())
    document = {**EXAMPLE, "accuracy": {k: v.format(dir=folder) for k, v in accuracy.items()}}
    path = write(tmp_path, "study.yaml", yaml.safe_dump(document))
    with pytest.raises(StudyConfigError) as raised:
        StudyConfig.load(path)
    assert str(raised.value).startswith(f"{path}: {message.format(dir=folder)}"), raised.value
    assert "\n" not in str(raised.value)


def test_a_stored_section_is_taken_as_it_is_away_from_a_study_document(tmp_path):
    """A worker remakes the accuracy section from the stored study: its paths were checked
    when the study was created, and a worker on another node need not see them."""
    stored = {"evaluator": "distill", "images": "/data/on/the/runner", "device": "cuda",
              "distill": {"steps": 3}}
    assert AccuracyConfig(**stored).model_dump(exclude_none=True) == {
        **stored, "teacher": "trained", "options": {}}


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"objectives": [{"name": "fidelity"}, {"name": "latency_ms", "direction": "fastest"}]},
     "objectives.1.direction: 'fastest' is not one of maximize, minimize"),
    ({"sampler": "cmaes"}, "sampler: 'cmaes' is not one of tpe, nsga2, gp, random"),
    ({"scale": "huge"}, "scale: 'huge' is not one of full, mini"),
    ({"n_trials": 0}, "n_trials: input should be greater than or equal to 1 (got 0)"),
    ({"parallelism": 1000}, "parallelism: input should be less than or equal to 256"),
    ({"n_trials": True}, "n_trials: input should be a valid integer (got True)"),
    ({"pipeline": {"steps": 1, "stepz": 2}}, "pipeline.stepz: is not a field; fields: steps"),
    ({"pipeline": {"steps": 1, "image_size": 100}},
     "pipeline.image_size: input should be a multiple of 64 (got 100)"),
    ({"pipeline": {"steps": 1, "image_size": 8192}},
     "pipeline.image_size: input should be less than or equal to 4096 (got 8192)"),
    ({"accuracy": {"distill": {"steps": -1}}},
     "accuracy.distill.steps: input should be greater than or equal to 0 (got -1)"),
    ({"accuracy": {"distill": {"lr_schedule": "linear"}}},
     "accuracy.distill.lr_schedule: 'linear' is not one of constant, cosine"),
    ({"accuracy": {"distill": {"step": 10}}},
     "accuracy.distill.step: is not a field; fields: steps, batch_size, learning_rate"),
    ({"accuracy": {"distill": {"holdout": 1.5}}}, "accuracy.distill.holdout: input should be"),
    ({"accuracy": {"distill": [1]}}, "accuracy.distill: must be a mapping, not [1]"),
    ({"accuracy": {"device": "gpu"}}, "accuracy.device: 'gpu' is not one of auto, cpu, cuda"),
    ({"accuracy": {"device": "cuda:0"}}, "accuracy.device: 'cuda:0' is not one of auto, cpu"),
    ({"accuracy": {"images": ""}}, "accuracy.images: string should have at least 1 character"),
    ({"constraints": {"latency_ms": {}}}, "constraints.latency_ms: a constraint needs min, max"),
    ({"constraints": {"latency_ms": {"min": 50, "max": 40}}},
     "constraints.latency_ms: min 50 is above max 40"),
    ({"constraints": {"speed": {"max": 1}}}, "constraints.speed: 'speed' is not a known"),
    ({"constraints": {"latency_ms": {"max": float("nan")}}},
     "constraints.latency_ms.max: input should be a finite number"),
    ({"objectives": []}, "objectives: needs at least 1 item"),
    ({"objectives": [{"name": "speed"}]}, "objectives.0.name: 'speed' is not a known objective"),
    ({"objectives": [{"name": "fidelity"}, {"name": "fidelity"}]},
     "objectives.1.name: 'fidelity' is listed twice (also objectives.0)"),
    ({"space": "no-such-space"}, "space: 'no-such-space' is neither a shipped space (nanosd"),
    ({"name": "my study"}, "name: study name 'my study' must be"),
    ({"device": "my phone"}, "device: device name 'my phone' must be"),
    ({"colour": "red"}, "colour: is not a field; fields: name, space, scale"),
    ({"accuracy": {"evaluator": "clip score"}},
     "accuracy.evaluator: 'clip score' is neither distill nor surgery"),
    ({"accuracy": {"teacher_path": "x"}}, "accuracy.teacher_path: is not a field"),
    ({"latency": {"source": "guess"}}, "latency.source: 'guess' is not one of predictor, measured"),
    ({"pipeline": 5}, "pipeline: must be a mapping, not 5"),
    ({"objectives": [{"name": "fidelity"}, {"name": "photo_latency_ms"}]},
     "objectives.1.name: photo_latency_ms needs pipeline.photo, the photo's [width, height] in "
     "px (e.g. [4000, 3000])"),
    ({"constraints": {"photo_latency_ms": {"max": 900}}},
     "constraints.photo_latency_ms: photo_latency_ms needs pipeline.photo"),
    ({"pipeline": {"photo": [4000]}},
     "pipeline.photo: the photo is [width, height] in px, not [4000]"),
    ({"pipeline": {"photo": "4000x3000"}},
     "pipeline.photo: the photo is [width, height] in px, not '4000x3000'"),
    ({"pipeline": {"photo": [4000, 0]}},
     "pipeline.photo.1: input should be greater than or equal to 1 (got 0)"),
    ({"pipeline": {"photo": [4000.5, 3000]}},
     "pipeline.photo.0: input should be a valid integer (got 4000.5)"),
    ({"pipeline": {"photo": [4000, 100_000]}},
     "pipeline.photo.1: input should be less than or equal to 65535 (got 100000)"),
    ({"pipeline": {"photo": [4000, 3000], "tile_overlap": -1}},
     "pipeline.tile_overlap: input should be greater than or equal to 0 (got -1)"),
    ({"pipeline": {"photo": [4000, 3000], "tile_overlap": 128}},
     "pipeline.tile_overlap: 128 px is not less than a tile (128 px, the image size at mini)"),
    ({"seed": -1}, "seed: input should be greater than or equal to 0"),
]


@pytest.mark.parametrize(("change", "message"), BAD_FIELDS,
                         ids=[str(next(iter(c))) + f"-{i}" for i, (c, _) in enumerate(BAD_FIELDS)])
def test_each_bad_field_is_named_with_its_value(change, message):
    with pytest.raises(StudyConfigError) as raised:
        StudyConfig.from_document({**EXAMPLE, **change}, source="study.yaml")
    text = str(raised.value)
    assert text.startswith("study.yaml: " + message), text
    assert "\n" not in text


def test_several_problems_report_the_first_and_count_the_rest():
    with pytest.raises(StudyConfigError, match=r"^s: name: is required \(and 1 more\)$"):
        StudyConfig.from_document({"space": "nanosd", "seed": "x"}, source="s")


@pytest.mark.parametrize(("text", "message"), [
    ("name: a\nspace: [nanosd\nseed: 1\n", "study.yaml: malformed YAML at line 3"),
    ('{"name": "a",\n "space": }\n', "study.yaml: malformed JSON at line 2, column 11"),
    ("- name: a\n", "study.yaml: a study must be a mapping of fields, not a list"),
    ("just a sentence\n", "study.yaml: a study must be a mapping of fields, not a string"),
    ("  \n", "study.yaml: the file is empty"),
])
def test_a_malformed_file_is_one_line_naming_it(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "study.yaml", text)
    with pytest.raises(StudyConfigError) as raised:
        StudyConfig.load("study.yaml")
    assert str(raised.value).startswith(message), raised.value
    assert "\n" not in str(raised.value)


def test_a_missing_file_is_a_study_config_error(tmp_path):
    with pytest.raises(StudyConfigError, match=r"nope\.yaml: cannot be read"):
        StudyConfig.load(tmp_path / "nope.yaml")


def test_the_device_is_checked_against_the_registry_apart_from_parsing(tmp_path):
    config = StudyConfig.from_document({**EXAMPLE, "device": "pixel-99"})  # parses anywhere
    with pytest.raises(StudyConfigError,
                       match=r"^study\.yaml: device: device 'pixel-99' is not registered"):
        config.check_device(home=tmp_path, source="study.yaml")
    assert StudyConfig.from_document(EXAMPLE).check_device(home=tmp_path).name == "local-cpu"


# -- fuzz ------------------------------------------------------------------------------------
_scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**12)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
            | st.sampled_from(["nanosd", "mini", "full", "tpe", "local-cpu", "maximize",
                               "minimize", *KNOWN_OBJECTIVES, "min", "max", "mod:fn"]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10) | st.sampled_from(["name", "max"]),
                                       inner, max_size=4), max_leaves=12)
_fields = st.sampled_from([*EXAMPLE, "colour", "min", "max", "steps"])
_names = st.sampled_from([*KNOWN_OBJECTIVES, "clip_score"])
_bound = st.fixed_dictionaries({}, optional={"min": st.floats(-1e3, 1e3) | _scalars,
                                             "max": st.floats(-1e3, 1e3) | _scalars})
#: Values near the valid ones, so that many documents parse and round-trip.
_plausible = st.fixed_dictionaries({}, optional={
    "scale": st.sampled_from(["full", "mini", "huge"]),
    "sampler": st.sampled_from(["tpe", "nsga2", "gp", "random", "cmaes"]),
    "n_trials": st.integers(-1, 200_000), "parallelism": st.integers(0, 300),
    "seed": st.integers(-1, 2**33),
    "pipeline": st.fixed_dictionaries({}, optional={
        "steps": st.integers(0, 4), "image_size": st.none() | st.integers(0, 600),
        "photo": st.none() | st.lists(st.integers(-1, 70_000), max_size=3),
        "tile_overlap": st.none() | st.integers(-1, 600)}),
    "objectives": st.lists(st.fixed_dictionaries({"name": _names}, optional={
        "direction": st.sampled_from(["maximize", "minimize", "up"])}), max_size=4),
    "constraints": st.dictionaries(_names, _bound, max_size=3),
    "latency": st.fixed_dictionaries({}, optional={"source": st.sampled_from(["predictor",
                                                                              "measured", "x"]),
                                                   "verify_front": st.booleans() | _scalars}),
    "accuracy": st.fixed_dictionaries({}, optional={
        "evaluator": st.sampled_from(["distill", "surgery", "my.scores:clip", "bad name"]),
        "options": st.dictionaries(st.text(max_size=5), _json, max_size=3),
        "device": st.sampled_from(["auto", "cpu", "cuda", "gpu"]) | _scalars,
        "distill": st.dictionaries(st.sampled_from(["steps", "lr_schedule", "holdout", "x"]),
                                   st.integers(-2, 200) | st.sampled_from(["cosine", "linear"])
                                   | st.floats(0, 2) | _scalars, max_size=3)}),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(
    _json,
    st.dictionaries(_fields, _json, max_size=8),
    st.dictionaries(_fields, _json, max_size=4).map(lambda change: {**EXAMPLE, **change}),
    _plausible.map(lambda change: {**EXAMPLE, **change}),
))
def test_any_json_document_gives_a_config_or_a_study_config_error(document):
    try:
        config = StudyConfig.from_document(document, source="fuzz.yaml")
    except StudyConfigError as error:
        assert str(error).startswith("fuzz.yaml: ") and "\n" not in str(error)
        event("refused")
        return
    event("parsed")
    document = config.to_document()
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert StudyConfig.from_document(document) == config
