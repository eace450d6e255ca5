"""Calibration data, stage variants, the block bank and the fidelity evaluators, on the demo
teacher with small settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nanosd_nas.search.distill import (
    BankError,
    BlockBank,
    CalibrationDataError,
    DistillSettings,
    calibration_data,
    load_teacher,
    space_variants,
    stage_variants,
)
from nanosd_nas.search.evaluators import BankEvaluator
from nanosd_nas.search.evaluators._fidelity import IDENTICAL_DB
from nanosd_nas.spaces import load_space

SMALL = DistillSettings(steps=25, samples=48, batch_size=8)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("demo")


@pytest.fixture(scope="module")
def nanosd():
    return load_space("nanosd")


@pytest.fixture(scope="module")
def bank(teacher, tmp_path_factory):
    return BlockBank(teacher, settings=SMALL, folder=tmp_path_factory.mktemp("bank"))


def test_calibration_data_is_seeded_and_holds_out_whole_images(teacher):
    first = calibration_data(teacher.model, samples=40, seed=3, context=teacher.context)
    again = calibration_data(teacher.model, samples=40, seed=3, context=teacher.context)
    other = calibration_data(teacher.model, samples=40, seed=4, context=teacher.context)
    assert torch.equal(first.distill.noisy, again.distill.noisy)
    assert torch.equal(first.distill.context, again.distill.context)
    assert first.distill.context.shape == (len(first.distill), *teacher.context.shape[1:])
    assert not torch.equal(first.distill.images[:4], other.distill.images[:4])
    assert not set(first.distill.sources) & set(first.heldout.sources)
    assert len(first.distill) + len(first.heldout) == 40
    assert 0 < len(first.heldout) < 40
    size = teacher.spec.image_size
    assert first.distill.images.shape[1:] == (3, size, size)
    assert float(first.distill.images.min()) >= -1 and float(first.distill.images.max()) <= 1
    assert float(first.distill.timesteps.min()) >= 0 and float(first.distill.timesteps.max()) < 1000
    with torch.no_grad():
        latent = teacher.model.vae.encode(first.distill.images[:2])
    expected = latent * teacher.spec.vae.scaling_factor
    assert torch.allclose(first.distill.latents[:2], expected, atol=1e-5)


def test_calibration_data_rejects_bad_sizes(teacher):
    with pytest.raises(CalibrationDataError, match="holdout"):
        calibration_data(teacher.model, samples=40, holdout=1.0, context=teacher.context)
    with pytest.raises(CalibrationDataError, match="samples"):
        calibration_data(teacher.model, samples=100_000, context=teacher.context)


def test_nanosd_has_nanosd_stage_variants_and_teacher_stages_need_no_entry(nanosd, bank):
    variants = space_variants(nanosd, "mini")
    per_stage = {}
    for variant in variants:
        per_stage[variant.stage] = per_stage.get(variant.stage, 0) + 1
    assert per_stage == {"E1": 4, "E2": 4, "E3": 4, "D3": 8, "D2": 8, "D1": 8, "unet_io": 1}
    needed = bank.needed(variants)
    # With every transformer kept, E1, E2, D2 and D1 are the teacher's own (same weights, fed
    # by the same source), and so are the stem, time embedding and head (the same widths).
    # E3 is not (it lost its downsampler with E4), nor D3: E3 feeds it where D4 did.
    assert len(needed) == 32
    assert sorted(v.stage + ":" + v.label for v in variants if bank.is_teacher_stage(v)) == [
        "D1:TTT@32", "D2:TTT@64", "E1:TT@32", "E2:TT@64", "unet_io:stem, time, head @32"]


def test_distilling_a_stage_lowers_its_held_out_error_and_is_reused(nanosd, bank):
    spec = nanosd.spec((0, 0, 0, 0, 0, 0), "mini")
    variant = stage_variants(spec)["E3"]
    first = bank.build([variant]).entries[0]
    assert not first.reused and first.steps == SMALL.steps
    assert first.heldout_final < 0.7 * first.heldout_initial
    modified = bank.path(variant).stat().st_mtime_ns
    second = bank.build([variant]).entries[0]
    assert second.reused
    assert bank.path(variant).stat().st_mtime_ns == modified
    other = BlockBank(bank.teacher, settings=SMALL.model_copy(update={"steps": 3}),
                      folder=bank.folder.parent)
    assert other.path(variant) != bank.path(variant)


def test_a_damaged_entry_is_named_not_loaded(nanosd, teacher, tmp_path):
    damaged = BlockBank(teacher, settings=SMALL.model_copy(update={"steps": 1}), folder=tmp_path)
    variant = stage_variants(nanosd.spec((0, 0, 0, 0, 0, 0), "mini"))["E1"]
    damaged.build([variant])
    path = damaged.path(variant)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(BankError, match="damaged"):
        damaged.load(variant)
    with pytest.raises(BankError, match="damaged"):
        damaged.build([variant])
    assert path.read_bytes() == bytes(data)  # left as found, for the user to inspect or delete
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(BankError, match="damaged"):
        damaged.load(variant)
    path.unlink()
    assert not damaged.build([variant]).entries[0].reused
    damaged.load(variant)
    assert not list(Path(path.parent).glob("*.tmp"))


def test_distillation_beats_surgery_and_the_teacher_scores_highest(nanosd, bank):
    distilled, surgery = BankEvaluator.on(bank), BankEvaluator.on(bank, distilled=False)
    smallest, largest = (nanosd.spec(c, "mini") for c in nanosd.extremes())
    small_distilled = distilled.evaluate(smallest)
    small_surgery = surgery.evaluate(smallest)
    assert small_distilled.objectives["fidelity"] > small_surgery.objectives["fidelity"] + 1.0
    assert set(small_distilled.details["stage_errors"]) == {"E1", "E2", "E3", "D3", "D2", "D1"}
    assert surgery.evaluate(largest).objectives["fidelity"] > (
        small_surgery.objectives["fidelity"])
    assert distilled.evaluate(bank.teacher.spec).objectives["fidelity"] == IDENTICAL_DB
    assert small_distilled.objectives["vae_psnr_db"] == IDENTICAL_DB  # the teacher's VAE


def test_an_assembled_candidate_carries_the_bank_entries(nanosd, bank):
    spec = nanosd.spec((1, 2, 0, 3, 0, 5), "mini")
    model = BankEvaluator.on(bank).candidate(spec)
    entry = bank.load(stage_variants(spec)["D2"])
    stage = model.unet.up_blocks[1].state_dict()
    assert set(stage) == set(entry)
    assert all(torch.equal(stage[k], entry[k]) for k in entry)


def test_output_level_terms_train_against_the_teacher_output(nanosd, teacher, tmp_path):
    settings = SMALL.model_copy(update={"steps": 10, "output_weight": 1.0, "task_weight": 0.1})
    spliced = BlockBank(teacher, settings=settings, folder=tmp_path)
    variant = stage_variants(nanosd.spec((0, 0, 0, 0, 0, 0), "mini"))["D1"]
    info = spliced.build([variant]).entries[0]
    assert info.heldout_final < info.heldout_initial


def test_a_narrower_vae_is_distilled_and_scored_by_reconstruction(teacher, tmp_path):
    space = load_space("vae")
    spec = space.spec((0, 0, 0, 0, 0, 0), "mini")
    vae_bank = BlockBank(teacher, settings=SMALL.model_copy(update={"steps": 15}),
                         folder=tmp_path)
    entries = vae_bank.build(stage_variants(spec).values()).entries
    assert {e.stage for e in entries} == {"vae_encoder", "vae_decoder"}
    assert all(e.heldout_final < e.heldout_initial for e in entries)
    result = BankEvaluator.on(vae_bank).evaluate(spec)
    assert result.objectives["unet_fidelity_db"] == IDENTICAL_DB
    assert result.objectives["vae_psnr_db"] < IDENTICAL_DB
    assert result.objectives["fidelity"] < IDENTICAL_DB
