"""Every tensor of a scored student is the teacher's or a bank entry's; the surgery boundary is
repaired; the pipeline fidelity, its interval and its breakdown by timestep."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nanosd_nas.search.distill import (
    BankError,
    BlockBank,
    DistillSettings,
    load_teacher,
    trace_batched,
)
from nanosd_nas.search.distill._assembly import bank_units, parameter_origins
from nanosd_nas.search.distill._stages import fed_by, path_features
from nanosd_nas.search.evaluators import BankEvaluator, EvaluatorError
from nanosd_nas.search.evaluators._fidelity import IDENTICAL_DB
from nanosd_nas.spaces import SCALES, load_point, load_space, to_scale, transplant

SMALL = DistillSettings(steps=25, samples=32, batch_size=8)
SHIPPED = ("nanosd", "nanosd-scaled", "vae")


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("demo")


@pytest.fixture(scope="module")
def bank(teacher, tmp_path_factory):
    return BlockBank(teacher, settings=SMALL, folder=tmp_path_factory.mktemp("bank"))


def _members(name: str, scale: str):
    space = load_space(name)
    smallest, largest = space.extremes()
    middle = tuple(len(d.choices) // 2 for d in space.dimensions)
    return [space.spec(choices, scale) for choices in (smallest, middle, largest)]


@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("name", SHIPPED)
def test_no_member_of_a_shipped_space_carries_an_untrained_tensor(name, scale):
    teacher_spec = to_scale(load_point("sd15"), scale)
    for spec in _members(name, scale):
        origins = parameter_origins(teacher_spec, spec, bank_units(teacher_spec, spec))
        assert origins.untrained == 0, origins.untrained_names()[:5]


def test_surgery_alone_leaves_the_narrowest_widths_untrained_and_is_refused(teacher, bank):
    narrowest = load_space("nanosd-scaled").spec(load_space("nanosd-scaled").extremes()[0],
                                                 "mini")
    origins = parameter_origins(teacher.spec, narrowest, [])
    untrained = set(origins.untrained_names())
    assert {"unet.conv_in.weight", "unet.time_embedding.linear_1.weight",
            "unet.conv_out.weight"} <= untrained
    with pytest.raises(EvaluatorError, match="untrained parameters"):
        BankEvaluator.on(bank, distilled=False).evaluate(narrowest)


@pytest.mark.parametrize("name, which", [("nanosd-scaled", 0), ("nanosd", 1), ("vae", 0)])
def test_an_assembled_student_holds_exactly_teacher_or_entry_tensors(teacher, bank, name,
                                                                     which):
    space = load_space(name)
    spec = space.spec(space.extremes()[which], "mini")
    evaluator = BankEvaluator.on(bank)
    state = evaluator.candidate(spec).state_dict()
    origins = bank.origins(spec)
    entries = {v.stage: bank.load(v) for v in bank.units(spec)}
    copied = transplant(teacher.model.state_dict(), spec).copied
    teacher_state = teacher.model.state_dict()
    for tensor, origin in origins.origin.items():
        if origin == "teacher":
            assert torch.equal(state[tensor], teacher_state[copied[tensor]]), tensor
            continue
        unit = origin.removeprefix("bank:")
        stored = [t for key, t in entries[unit].items() if tensor.endswith("." + key)]
        assert stored and torch.equal(state[tensor], stored[0]), tensor
    assert evaluator.evaluate(spec).details["untrained_parameters"] == 0
    assert origins.count("teacher") > 0 or name == "nanosd-scaled"


def test_points_that_drop_layers_are_refused_in_one_line_not_mis_distilled(bank):
    spec = to_scale(load_point("bk-sdm-small"), "mini")
    with pytest.raises(BankError, match="layers where the teacher's has"):
        BankEvaluator.on(bank).evaluate(spec)
    assert BankEvaluator.on(bank, distilled=False).evaluate(spec).details[
        "untrained_parameters"] == 0


def test_the_stage_after_the_cut_is_fed_and_distilled_as_in_the_student(teacher, bank):
    nanosd = load_space("nanosd")
    largest = nanosd.spec(nanosd.extremes()[1], "mini")
    assert fed_by(largest)["D3"] == "E3" and fed_by(teacher.spec)["D3"] == "D4"
    heldout = bank.data.heldout
    teacher_trace = trace_batched(teacher.model.unet, teacher.spec,
                                  heldout.unet_inputs(slice(None)))
    path = path_features(teacher_trace, teacher.spec, largest, "D3")
    assert torch.equal(path.h, teacher_trace.stages["E3"].outputs[1])
    assert torch.equal(path.outputs[0], teacher_trace.stages["D3"].outputs[0])
    assert path_features(teacher_trace, teacher.spec, largest, "D2") is \
        teacher_trace.stages["D2"]
    # Every layer of the largest member's D3 is the teacher's, yet it is distilled.
    units = [v.stage for v in bank.units(largest)]
    assert "D3" in units and "E1" not in units
    distilled = BankEvaluator.on(bank).evaluate(largest)
    surgery = BankEvaluator.on(bank, distilled=False).evaluate(largest)
    d3 = next(v for v in bank.units(largest) if v.stage == "D3")
    info = bank.info(d3)
    assert info.steps == SMALL.steps and info.heldout_final < info.heldout_initial
    assert distilled.objectives["unet_fidelity_db"] > surgery.objectives["unet_fidelity_db"]
    assert distilled.objectives["fidelity"] > surgery.objectives["fidelity"]


def test_fidelity_is_one_pipeline_figure_with_its_interval_and_breakdown(teacher, bank):
    evaluator = BankEvaluator.on(bank)
    identical = evaluator.evaluate(teacher.spec)
    assert identical.objectives == {"fidelity": IDENTICAL_DB, "unet_fidelity_db": IDENTICAL_DB,
                                    "vae_psnr_db": IDENTICAL_DB}
    member = load_space("nanosd").spec((0, 1, 0, 1, 0, 1), "mini")
    result = evaluator.evaluate(member)
    assert set(result.objectives) == {"fidelity", "unet_fidelity_db", "vae_psnr_db"}
    assert result.objectives["vae_psnr_db"] == IDENTICAL_DB  # the teacher's VAE: its cap
    lo, hi = result.details["fidelity_ci95"]
    assert lo < result.objectives["fidelity"] < hi
    lo, hi = result.details["unet_fidelity_db_ci95"]
    assert lo < result.objectives["unet_fidelity_db"] < hi
    by_t = result.details["fidelity_by_t"]
    assert list(by_t) == ["0-250", "250-500", "500-750", "750-1000"]
    timesteps = bank.data.heldout.timesteps
    for bucket, value in by_t.items():
        lo_t, hi_t = (int(x) for x in bucket.split("-"))
        present = bool(((timesteps >= lo_t) & (timesteps < hi_t)).any())
        assert (value is not None) == present
    narrow_vae = load_space("vae").spec(load_space("vae").extremes()[0], "mini")
    scored = evaluator.evaluate(narrow_vae)
    assert scored.objectives["unet_fidelity_db"] == IDENTICAL_DB
    assert scored.objectives["vae_psnr_db"] < IDENTICAL_DB
    assert scored.objectives["fidelity"] < IDENTICAL_DB


def test_a_bank_entry_key_follows_the_conditioning(teacher, tmp_path: Path):
    from safetensors.torch import save_file

    context = torch.linspace(-1, 1, 2 * 5 * teacher.spec.unet.cross_attention_dim)
    save_file({"context": context.reshape(2, 5, -1).contiguous()}, tmp_path / "c.safetensors")
    own = BlockBank(teacher, settings=SMALL, folder=tmp_path)
    users = BlockBank(teacher, settings=SMALL, folder=tmp_path,
                      context=tmp_path / "c.safetensors")
    variant = own.units(load_space("nanosd").spec((0,) * 6, "mini"))[0]
    assert own.key(variant) != users.key(variant)
    assert users.data.heldout.context.shape[1:] == (5, teacher.spec.unet.cross_attention_dim)


def test_a_teacher_at_another_scale_than_the_study_is_refused_before_any_work(tmp_path):
    evaluator = BankEvaluator(teacher="demo", bank_folder=tmp_path, device="cpu")
    with pytest.raises(EvaluatorError, match="at mini scale; the study is at full"):
        evaluator.prepare(load_space("nanosd"), "full")
    assert not list(tmp_path.rglob("*.safetensors"))


def test_output_level_terms_need_the_teachers_widths(teacher, tmp_path):
    spliced = BlockBank(teacher, settings=SMALL.model_copy(update={"output_weight": 1.0}),
                        folder=tmp_path)
    narrow = load_space("nanosd-scaled").spec(load_space("nanosd-scaled").extremes()[0], "mini")
    with pytest.raises(BankError, match="need the teacher's widths"):
        spliced.build(spliced.units(narrow))
    assert not list(tmp_path.rglob("*.safetensors"))
    # At the teacher's widths the repaired D3 trains spliced into the teacher's surgery path.
    largest = load_space("nanosd").spec(load_space("nanosd").extremes()[1], "mini")
    d3 = next(v for v in spliced.units(largest) if v.stage == "D3")
    info = spliced.build([d3]).entries[0]
    assert info.steps == SMALL.steps and info.heldout_final < info.heldout_initial
