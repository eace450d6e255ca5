"""Ground truth of a student: paired sampling with SD 1.5's scheduler, paired PSNR and SSIM, FID
and KID in the feature network's features, class accuracy; on the seeded demo teacher and a
feature network with seeded random weights."""

from __future__ import annotations

import pytest
import torch

from nanosd_nas.search.distill import load_teacher
from nanosd_nas.search.teacher import (
    GRID_GAP,
    IDENTICAL_DB,
    FeatureNet,
    SamplingError,
    TruthError,
    TruthReference,
    TruthSettings,
    UnknownClassError,
    check_student,
    class_rows,
    sample,
    sample_grid,
)
from nanosd_nas.spaces import build, load_point, to_scale

CLASSES = ("prompt 1", "prompt 4", "prompt 7")
PER_CLASS = 2


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("demo")


@pytest.fixture(scope="module")
def features(teacher):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return FeatureNet(list(teacher.classes)).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def real():
    generator = torch.Generator().manual_seed(1)
    smooth = torch.rand(12, 3, 16, 16, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(smooth, size=128, mode="bilinear")


@pytest.fixture(scope="module")
def reference(teacher, features, real):
    settings = TruthSettings(per_class=PER_CLASS, classes=CLASSES)
    return TruthReference.of(teacher, features=features, real=real, settings=settings)


def perturbed(teacher):
    """The teacher with one U-Net weight scaled: a student that is close but not equal."""
    student = build(teacher.spec)
    student.load_state_dict(teacher.model.state_dict())
    with torch.no_grad():
        student.unet.conv_out.weight.mul_(1.5)
    for module in (student.unet, student.vae):
        module.eval().requires_grad_(False)
    return student


def test_the_same_seeds_give_the_same_teacher_samples(teacher, reference):
    rows = reference.rows
    first = sample(teacher.model, teacher.context, rows, steps=4, seed=0)
    again = sample(teacher.model, teacher.context, rows, steps=4, seed=0)
    assert torch.equal(first, again)
    assert torch.equal(first, reference.samples[4])  # the reference's batches are the same
    # A sample's noise depends on its seed, row and occurrence: other batches, other rows
    # asked beside it, give the same picture.
    alone = sample(teacher.model, teacher.context, rows[2:4], steps=4, seed=0, batch=1)
    torch.testing.assert_close(alone, first[2:4], atol=1e-4, rtol=0)
    other = sample(teacher.model, teacher.context, rows[:2], steps=4, seed=1)
    assert not torch.allclose(other, first[:2])


def test_both_step_settings_give_images_of_the_right_shape_in_range(teacher, reference):
    assert reference.settings.steps == (25, 4)
    for steps in (25, 4):
        images = reference.samples[steps]
        assert images.shape == (len(CLASSES) * PER_CLASS, 3, 128, 128)
        assert images.dtype == torch.float32
        assert images.min() >= -1 and images.max() <= 1
    assert not torch.allclose(reference.samples[25], reference.samples[4])
    rows = torch.tensor([3])
    solver = sample(teacher.model, teacher.context, rows, steps=4, sampler="dpmsolver++")
    assert solver.shape == (1, 3, 128, 128) and solver.abs().max() <= 1
    conditional = sample(teacher.model, teacher.context, rows, steps=4, guidance=1.0)
    assert not torch.allclose(conditional, reference.samples[4][2:3])


def test_the_teacher_against_itself_scores_the_cap_and_its_own_accuracy(teacher, reference):
    report = reference.score(teacher.model, keep_samples=True)
    for steps in (25, 4):
        mine, theirs = report.student[steps], report.teacher[steps]
        assert mine.psnr_db == IDENTICAL_DB and mine.ssim == pytest.approx(1.0, abs=1e-6)
        assert mine.class_accuracy == theirs.class_accuracy is not None
        assert 0 <= theirs.class_accuracy <= 1
        assert mine.fid == pytest.approx(theirs.fid) and mine.kid == pytest.approx(theirs.kid)
        assert theirs.fid is not None and theirs.fid >= 0 and theirs.psnr_db is None
        assert list(mine.by_class) == list(CLASSES)
        assert all(f["psnr_db"] == IDENTICAL_DB for f in mine.by_class.values())
        assert torch.equal(report.samples[steps], reference.samples[steps])
    document = report.to_dict()
    assert set(document["student"]) == {"25", "4"} and document["notes"] == []
    assert document["settings"]["classes"] == list(CLASSES)


def test_a_perturbed_student_scores_lower_than_the_teacher_itself(teacher, reference):
    report = reference.score(perturbed(teacher))
    for steps in (25, 4):
        figures = report.student[steps]
        assert figures.psnr_db < IDENTICAL_DB - 60 and figures.ssim < 1
        assert figures.fid != pytest.approx(report.teacher[steps].fid)
    assert report.samples == {}


def test_classes_are_spread_evenly_or_named(teacher):
    assert class_rows(teacher.classes) == [1, 2, 3, 4, 5, 6, 7]
    assert class_rows(teacher.classes, max_classes=3) == [1, 3, 5]
    assert class_rows([f"c{i}" for i in range(1000)], max_classes=4) == [1, 251, 501, 751]
    assert class_rows(teacher.classes, ["prompt 5", "prompt 2", "prompt 5"]) == [5, 2]


def test_bad_input_is_named(teacher, features, real):
    with pytest.raises(UnknownClassError, match=r"'prompt 9'.*prompt 1, prompt 2, .*prompt 7"):
        TruthReference.of(teacher, settings=TruthSettings(classes=("prompt 9",)))
    assert issubclass(UnknownClassError, ValueError)
    with pytest.raises(TruthError, match=r"expected \[-1, 1\]"):
        TruthReference.of(teacher, features=features, real=real * 3,
                          settings=TruthSettings(steps=(1,), per_class=1, classes=CLASSES))
    lacking = FeatureNet(["prompt 1"])
    with pytest.raises(TruthError, match="feature network knows no class 'prompt 4'"):
        TruthReference.of(teacher, features=lacking, settings=TruthSettings(classes=CLASSES))
    with pytest.raises(TruthError, match="not at the teacher's scale"):
        check_student(teacher.spec, to_scale(load_point("sd15"), "full"))
    with pytest.raises(SamplingError, match="unknown sampler"):
        TruthReference.of(teacher, settings=TruthSettings(sampler="euler"))
    with pytest.raises(SamplingError, match="context rows"):
        sample(teacher.model, teacher.context, torch.tensor([0]), steps=1)


def test_without_features_or_real_images_the_figures_are_omitted_with_a_note(teacher, features):
    settings = TruthSettings(steps=(1,), per_class=1, classes=("prompt 3",))
    bare = TruthReference.of(teacher, settings=settings).score(teacher.model)
    assert bare.student[1].psnr_db == IDENTICAL_DB
    assert bare.student[1].class_accuracy is None and bare.student[1].fid is None
    assert bare.notes == ("no feature network: FID, KID and class accuracy omitted",)
    classified = TruthReference.of(teacher, features=features, settings=settings)
    assert classified.figures[1].class_accuracy in (0.0, 1.0)
    assert classified.figures[1].fid is None
    assert classified.notes == ["no real images: FID and KID omitted"]


def test_the_grid_puts_the_teacher_left_and_the_student_right():
    teacher = torch.full((4, 3, 8, 8), -1.0)
    student = torch.ones(4, 3, 8, 8)
    grid = sample_grid(teacher, student, per_class=2)
    assert grid.size == (2 * 2 * 8 + GRID_GAP, 2 * 8)
    assert grid.getpixel((0, 0)) == (0, 0, 0)
    assert grid.getpixel((16, 0)) == (255, 255, 255)  # the gap
    assert grid.getpixel((16 + GRID_GAP, 15)) == (255, 255, 255)
