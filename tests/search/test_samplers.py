"""The initial design every model-based study starts from: the space's corners."""

from __future__ import annotations

import pytest

from nanosd_nas.search._samplers import INITIAL_DESIGN_SHARE, initial_design
from nanosd_nas.search._study_config import StudyConfig

NANOSD = (4, 4, 4, 8, 8, 8)


def test_the_corners_of_nanosd_fit_a_sixth_of_400_trials():
    design = initial_design(NANOSD, 400, seed=0)
    assert len(design) == 64 == len(set(design))
    assert design[0] == (0,) * 6 and design[1] == (3, 3, 3, 7, 7, 7)  # the extremes first
    for member in design:
        assert all(c in (0, n - 1) for c, n in zip(member, NANOSD, strict=True))


def test_a_small_budget_takes_both_extremes_and_a_seeded_sample_of_corners():
    design = initial_design(NANOSD, 40, seed=3)
    assert len(design) == int(40 * INITIAL_DESIGN_SHARE) == len(set(design))
    assert design[:2] == [(0,) * 6, (3, 3, 3, 7, 7, 7)]
    assert design == initial_design(NANOSD, 40, seed=3)
    assert design != initial_design(NANOSD, 40, seed=4)


def test_fixed_dimensions_stay_put_and_huge_spaces_are_sampled():
    assert all(member[1] == 0 for member in initial_design((3, 1, 5), 100, seed=0))
    design = initial_design((3,) * 40, 600, seed=0)  # 2**40 corners: never listed
    assert len(design) == 100 == len(set(design))
    assert initial_design(NANOSD, 5, seed=0) == []  # no room for a design


@pytest.mark.parametrize(("sampler", "given", "used"), [
    ("tpe", None, "corners"), ("nsga2", None, "corners"), ("random", None, "none"),
    ("tpe", "none", "none"), ("random", "corners", "corners")])
def test_a_study_names_its_design_or_takes_its_samplers_default(sampler, given, used):
    document = {"name": "s", "space": "nanosd", "sampler": sampler}
    if given:
        document["initial_design"] = given
    assert StudyConfig.from_document(document).design == used


def test_an_unknown_design_is_one_line():
    with pytest.raises(ValueError, match="initial_design"):
        StudyConfig.from_document({"name": "s", "space": "nanosd", "initial_design": "grid"})
